//! This node's part in a pool of gateways sharing one store ([`fedgate_store::cluster`]): its
//! heartbeat (at start, then every [`HEARTBEAT_INTERVAL`], with its authenticated partner stream
//! counts), and its stream leases: one per authenticated partner stream ([`take_lease`]), so that
//! the connection limits count the streams of every alive node; released when the stream ends
//! ([`LeaseGuard`]), at start (leftovers of a previous life) and at graceful shutdown.
//!
//! Store calls block, so each runs on the blocking pool. A store failure never stops the gateway:
//! it is logged once per outage (the store availability that the policy refresh also tracks,
//! [`Metrics::store_read`](crate::state::Metrics::store_read)) and the next heartbeat tries again.
//! While no lease can be taken (store unreachable, or this node's heartbeat too old: NodeNotAlive)
//! admission falls back to this node's own streams, logged once per outage and counted in
//! `fedgate_lease_fallbacks_total`. The decision itself stays the pure
//! [`fedgate_model::enforce::connection_admission`]; this module only carries it out.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use fedgate_model::Domain;
use fedgate_model::enforce::{ConnectionCounts, Refusal, Side};
use fedgate_model::health::Direction as LeaseDirection;
use fedgate_store::cluster::{HEARTBEAT_INTERVAL, LEASE_TTL};
use fedgate_store::{NodeHeartbeat, Store, StoreError, StreamLease};
use tracing::{debug, info, warn};

use crate::state::{Direction, Shared};

/// The fedgate version every heartbeat reports.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Run `f` with the store on the blocking pool; a failed task is a store error too.
pub async fn blocking<T: Send + 'static>(
    shared: &Shared,
    f: impl FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, String> {
    let store = shared.store.clone();
    match tokio::task::spawn_blocking(move || f(store.as_ref())).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(format!("the store task failed: {e}")),
    }
}

/// Note the outcome of a store call in the store's availability: said once when the store goes
/// away (with `what` failed) and once when it is back, not at every call.
pub fn note_store<T>(shared: &Shared, what: &str, result: &Result<T, String>) {
    match result {
        Ok(_) => {
            if shared.metrics.store_read(None) {
                info!("the store can be read again");
            }
        }
        Err(e) => {
            if shared.metrics.store_read(Some(e.clone())) {
                warn!(error = %e, "{what} failed; the store is unavailable, going on without it until it is back");
            } else {
                debug!(error = %e, "{what} failed again");
            }
        }
    }
}

/// This node's heartbeat now: its authenticated partner (external) streams by direction.
pub fn heartbeat_of(shared: &Shared, address: Option<String>, starting: bool) -> NodeHeartbeat {
    let (mut inbound, mut outbound) = (0u32, 0u32);
    shared.registry.for_each(|_, e| {
        if e.side == Side::External && e.authenticated {
            match e.direction {
                Direction::Inbound => inbound = inbound.saturating_add(1),
                Direction::Outbound => outbound = outbound.saturating_add(1),
            }
        }
    });
    NodeHeartbeat {
        node: shared.node_name.clone(),
        starting,
        version: VERSION.to_owned(),
        address,
        inbound_streams: inbound,
        outbound_streams: outbound,
    }
}

/// Write one heartbeat (on the blocking pool), noting the store's availability.
pub async fn heartbeat(shared: &Shared, address: Option<String>, starting: bool) -> bool {
    let beat = heartbeat_of(shared, address, starting);
    let result = blocking(shared, move |s| s.heartbeat(&beat, LEASE_TTL)).await;
    note_store(shared, "writing this node's heartbeat", &result);
    result.is_ok()
}

/// Before accepting: drop the leases a previous life of this node left, and say it started.
pub async fn join(shared: &Shared, address: Option<String>) {
    let node = shared.node_name.clone();
    let released = blocking(shared, move |s| s.release_node_leases(&node)).await;
    if let Ok(n @ 1..) = released {
        info!(node = %shared.node_name, leases = n, "released the stream leases a previous run of this node left");
    }
    note_store(shared, "releasing this node's old stream leases", &released);
    if heartbeat(shared, address, true).await {
        info!(node = %shared.node_name, "joined the pool of nodes sharing the store");
    }
}

/// Heartbeat every [`HEARTBEAT_INTERVAL`] until aborted.
pub async fn heartbeat_loop(shared: Arc<Shared>, address: Option<String>) {
    let mut tick = tokio::time::interval(HEARTBEAT_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate; `join` has just written a heartbeat.
    tick.tick().await;
    loop {
        tick.tick().await;
        heartbeat(&shared, address.clone(), false).await;
    }
}

/// At graceful shutdown, once the streams are closed: release every lease this node holds.
pub async fn leave(shared: &Shared) {
    let node = shared.node_name.clone();
    let released = blocking(shared, move |s| s.release_node_leases(&node)).await;
    match released {
        Ok(n) => debug!(node = %shared.node_name, leases = n, "released this node's stream leases"),
        Err(e) => {
            warn!(node = %shared.node_name, error = %e, "cannot release this node's stream leases; they stop counting once its heartbeat is older than the lease time")
        }
    }
}

/// The stream lease of one of this node's registry streams. [`release`](Self::release) gives it
/// back when the stream ends; dropped without that (a task aborted), it is released in the
/// background.
pub struct LeaseGuard {
    shared: Arc<Shared>,
    stream: Option<u64>,
}

impl LeaseGuard {
    /// Release the lease now (on the blocking pool); a failure is logged, and the lease stops
    /// counting once this node's heartbeat is older than the lease time.
    pub async fn release(mut self) {
        if let Some(stream) = self.stream.take() {
            release_lease(&self.shared, stream).await;
        }
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        let Some(stream) = self.stream.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let shared = self.shared.clone();
        runtime.spawn(async move { release_lease(&shared, stream).await });
    }
}

/// Release one stream's lease (on the blocking pool); a failure is logged (quietly while the
/// store is known to be unavailable).
async fn release_lease(shared: &Shared, stream: u64) {
    let node = shared.node_name.clone();
    let released = blocking(shared, move |s| s.release_stream_lease(&node, stream)).await;
    if let Err(e) = released {
        if shared.metrics.store_error().is_none() {
            warn!(stream, error = %e, "cannot release a stream lease; it stops counting once this node's heartbeat is older than the lease time");
        } else {
            debug!(stream, error = %e, "cannot release a stream lease (the store is unavailable)");
        }
    }
}

/// Admit this node's registry stream `stream` with `partner` (its Identity) in `direction`:
/// `decide` on the pool's counts (the leases of every alive node) and, when it admits, hold a
/// lease for the stream. Without a lease (the store is unavailable or says this node is not
/// alive) `decide` runs on this node's own registry counts instead: admitted then without a
/// lease (None).
pub async fn take_lease(
    shared: &Arc<Shared>,
    stream: u64,
    partner: &Domain,
    direction: LeaseDirection,
    decide: impl Fn(ConnectionCounts) -> Result<(), Refusal> + Send + Sync + 'static,
) -> Result<Option<LeaseGuard>, Refusal> {
    let decide = Arc::new(decide);
    // While the store is known to be unavailable, no connection attempt to wait for.
    let failure = match shared.metrics.store_error() {
        Some(e) => e,
        None => {
            let lease = StreamLease {
                node: shared.node_name.clone(),
                stream,
                partner: partner.clone(),
                direction,
            };
            let d = decide.clone();
            let taken = blocking(shared, move |s| {
                s.acquire_stream_lease(&lease, LEASE_TTL, &mut |counts| d(counts))
            })
            .await;
            match taken {
                Ok(verdict) => {
                    if shared.metrics.leases_failing.swap(false, Ordering::AcqRel) {
                        info!(
                            "stream leases can be taken again: the connection limits count the whole pool"
                        );
                    }
                    return verdict.map(|()| {
                        Some(LeaseGuard {
                            shared: shared.clone(),
                            stream: Some(stream),
                        })
                    });
                }
                Err(e) => e,
            }
        }
    };
    shared
        .metrics
        .lease_fallbacks
        .fetch_add(1, Ordering::Relaxed);
    if !shared.metrics.leases_failing.swap(true, Ordering::AcqRel) {
        warn!(error = %failure, "cannot take a stream lease; admitting by this node's own streams until it can (the connection limits are per node meanwhile)");
    } else {
        debug!(error = %failure, "no stream lease; admitted by this node's own streams");
    }
    decide(shared.registry.partner_counts(partner, stream)).map(|()| None)
}
