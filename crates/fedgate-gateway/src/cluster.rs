//! This node's part in a pool of gateways sharing one store ([`fedgate_store::cluster`]): its
//! heartbeat (at start, then every [`HEARTBEAT_INTERVAL`], with its authenticated partner stream
//! counts), and its stream leases released at start (leftovers of a previous life) and at
//! graceful shutdown.
//!
//! Store calls block, so each runs on the blocking pool. A store failure never stops the gateway:
//! it is logged once per outage (the store availability that the policy refresh also tracks,
//! [`Metrics::store_read`](crate::state::Metrics::store_read)) and the next heartbeat tries again.

use std::sync::Arc;

use fedgate_model::enforce::Side;
use fedgate_store::cluster::{HEARTBEAT_INTERVAL, LEASE_TTL};
use fedgate_store::{NodeHeartbeat, Store, StoreError};
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
    match &released {
        Ok(0) => {}
        Ok(n) => {
            info!(node = %shared.node_name, leases = n, "released the stream leases a previous run of this node left")
        }
        Err(_) => {}
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
