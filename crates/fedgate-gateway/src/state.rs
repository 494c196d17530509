//! Shared runtime state: the [`Snapshot`] the data plane decides on (hosted domains, partners
//! and their index, policies and grants, settings, authorisations — swapped whole when any of
//! them changes), the registry of live streams (for limits, live re-checks, shutdown and
//! `/status`), and the metrics counters.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use fedgate_model::enforce::{ConnectionCounts, Side};
use fedgate_model::{AuthMethod, Domain};
use fedgate_xmpp::StreamError;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::config::Config;
use crate::conn::Counters;

pub use fedgate_model::snapshot::Snapshot;

/// The hosted domains of `config` as the snapshot holds them.
pub fn hosted_of(config: &Config) -> Vec<fedgate_model::snapshot::Hosted> {
    config
        .hosted
        .iter()
        .map(|h| fedgate_model::snapshot::Hosted {
            domain: h.domain.clone(),
            site: h.site.clone(),
            internal_server: h.internal_server.clone(),
        })
        .collect()
}

/// Direction of a stream, seen from the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Direction {
    Inbound,
    Outbound,
}

/// A control message to a connection task.
#[derive(Debug)]
pub enum Control {
    /// Close the stream with this error; the label is the refusal reason it is counted as
    /// (`partner_removed`, `partner_connection_limit`, `settings_changed`).
    Close(StreamError, &'static str),
}

/// A stream's control channel: the sender is kept in its registry entry, the stream's task
/// receives. Messages travel boxed: the channel allocates its first block of 32 slots with the
/// channel, so every stream (idle ones included) would hold 32 unboxed [`Control`]s (~1.5 KiB)
/// for the one message it may ever get; boxed, the block is 32 pointers.
pub fn control_channel() -> (ControlSender, ControlReceiver) {
    let (tx, rx) = mpsc::unbounded_channel();
    (ControlSender(tx), ControlReceiver(rx))
}

/// The sending half of [`control_channel`].
#[derive(Debug, Clone)]
pub struct ControlSender(mpsc::UnboundedSender<Box<Control>>);

impl ControlSender {
    /// Send to the stream's task; fails (giving the message back) when the task has ended.
    pub fn send(&self, c: Control) -> Result<(), mpsc::error::SendError<Control>> {
        self.0
            .send(Box::new(c))
            .map_err(|e| mpsc::error::SendError(*e.0))
    }
}

/// The receiving half of [`control_channel`].
#[derive(Debug)]
pub struct ControlReceiver(mpsc::UnboundedReceiver<Box<Control>>);

impl ControlReceiver {
    /// The next message; `None` once every sender is gone. Cancel safe.
    pub async fn recv(&mut self) -> Option<Control> {
        self.0.recv().await.map(|c| *c)
    }
}

/// One live stream, as the registry knows it.
#[derive(Debug)]
pub struct StreamEntry {
    pub side: Side,
    pub direction: Direction,
    pub remote_ip: Option<IpAddr>,
    /// The partner (Identity) this stream is with, once known (external side only).
    pub partner: Option<Domain>,
    /// The remote domains authenticated on this stream (inbound) or the remote domain (outbound).
    pub domains: Vec<String>,
    pub local_domain: Option<String>,
    pub method: Option<AuthMethod>,
    pub tls_version: Option<&'static str>,
    pub authenticated: bool,
    pub since: SystemTime,
    pub counters: Arc<Counters>,
    pub control: ControlSender,
}

/// A row of `/status`.
#[derive(Debug, Clone, Serialize)]
pub struct StreamStatus {
    pub id: u64,
    pub side: Side,
    pub direction: Direction,
    pub partner: Option<String>,
    pub domains: Vec<String>,
    pub local_domain: Option<String>,
    pub auth_method: Option<String>,
    pub tls: Option<&'static str>,
    pub since: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// The live streams.
#[derive(Debug, Default)]
pub struct Registry {
    next: AtomicU64,
    streams: Mutex<HashMap<u64, StreamEntry>>,
}

impl Registry {
    pub fn insert(&self, entry: StreamEntry) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        self.lock().insert(id, entry);
        id
    }
    pub fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, StreamEntry>> {
        self.streams.lock().unwrap_or_else(|e| e.into_inner())
    }
    pub fn update(&self, id: u64, f: impl FnOnce(&mut StreamEntry)) {
        if let Some(e) = self.lock().get_mut(&id) {
            f(e);
        }
    }
    /// Unauthenticated streams from an address.
    /// Authenticated partner connections: with `partner`, and in total.
    pub fn partner_counts(&self, partner: &Domain, except: u64) -> ConnectionCounts {
        let map = self.lock();
        let mut c = ConnectionCounts::default();
        for (id, e) in map.iter() {
            if *id == except || !e.authenticated || e.side != Side::External {
                continue;
            }
            if e.partner.is_some() {
                c.total += 1;
            }
            if e.partner.as_ref() == Some(partner) {
                c.partner += 1;
            }
        }
        c
    }
    /// Call `f` for every stream (under the lock; `f` must not block).
    pub fn for_each(&self, mut f: impl FnMut(u64, &StreamEntry)) {
        for (id, e) in self.lock().iter() {
            f(*id, e);
        }
    }
    pub fn len(&self) -> usize {
        self.lock().len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn status(&self) -> Vec<StreamStatus> {
        let mut rows: Vec<StreamStatus> = self
            .lock()
            .iter()
            .map(|(id, e)| StreamStatus {
                id: *id,
                side: e.side,
                direction: e.direction,
                partner: e.partner.as_ref().map(|d| d.to_string()),
                domains: e.domains.clone(),
                local_domain: e.local_domain.clone(),
                auth_method: e.method.map(|m| format!("{m:?}")),
                tls: e.tls_version,
                since: e
                    .since
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0),
                bytes_in: e.counters.bytes_in.load(Ordering::Relaxed),
                bytes_out: e.counters.bytes_out.load(Ordering::Relaxed),
            })
            .collect();
        rows.sort_by_key(|r| r.id);
        rows
    }
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    pub stanzas_relayed: AtomicU64,
    pub stanzas_bounced: AtomicU64,
    pub streams_accepted: AtomicU64,
    /// Session changes not recorded because the session table was at its total bound.
    pub session_table_full: AtomicU64,
    refusals: Mutex<BTreeMap<(String, &'static str), u64>>,
    /// Refused stanzas nothing was sent back for, by side and reason.
    drops: Mutex<BTreeMap<(String, &'static str), u64>>,
    /// Why the last refresh could not read the store; None while it can.
    store_error: Mutex<Option<String>>,
    /// Admissions decided on this node's own streams because no stream lease could be taken.
    pub lease_fallbacks: AtomicU64,
    /// Whether the last attempt to take a stream lease failed (logged once per outage).
    pub leases_failing: std::sync::atomic::AtomicBool,
}

impl Metrics {
    /// Record how the last store read went (None: it worked); whether that changed the store's
    /// availability.
    pub fn store_read(&self, error: Option<String>) -> bool {
        let mut e = self.store_error.lock().unwrap_or_else(|e| e.into_inner());
        let changed = e.is_some() != error.is_some();
        *e = error;
        changed
    }
    /// Why the store cannot be read now, if it cannot.
    pub fn store_error(&self) -> Option<String> {
        self.store_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
    pub fn refused(&self, side: Side, reason: &'static str) {
        let mut m = self.refusals.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry((side.to_string(), reason)).or_default() += 1;
    }
    pub fn refusals(&self) -> Vec<((String, &'static str), u64)> {
        self.refusals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }
    /// A refused stanza was dropped: nothing was sent back to its sender.
    pub fn dropped(&self, side: Side, reason: &'static str) {
        let mut m = self.drops.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry((side.to_string(), reason)).or_default() += 1;
    }
    pub fn drops(&self) -> Vec<((String, &'static str), u64)> {
        self.drops
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }
    /// The refusals as rows of `/status` (by side and reason, with what the reason means).
    pub fn refusal_status(&self) -> Vec<RefusalStatus> {
        self.refusals()
            .into_iter()
            .map(|((side, reason), count)| RefusalStatus {
                side,
                reason,
                what: refusal_meaning(reason),
                count,
            })
            .collect()
    }
}

/// A row of the refusals in `/status`.
#[derive(Debug, Clone, Serialize)]
pub struct RefusalStatus {
    pub side: String,
    /// The stable label (as in `/metrics` and the logs), e.g. `user_not_enabled`.
    pub reason: &'static str,
    /// Whether it concerns a stream or a stanza, and why, for admins.
    pub what: &'static str,
    pub count: u64,
}

/// What a refusal label means (the reasons of `fedgate_refusals_total`, README "Operations"),
/// for `fedgate status`.
pub fn refusal_meaning(reason: &str) -> &'static str {
    match reason {
        "not_listed" => "stream: partner not allowed (not on the partner list)",
        "partner_removed" => "stream: partner not allowed any more (removed)",
        "user_not_enabled" => "stanza: local user not enabled for XMPP (external access policy)",
        "not_authorised" => "stanza: not authorised by the local user (PublicUnverified partner)",
        "unsolicited" => {
            "stanza dropped: an answer to nothing the local user sent (PublicUnverified partner)"
        }
        "contact_request_limited" => {
            "stanza dropped: contact requests past the budget of their sender or partner (PublicUnverified partner)"
        }
        "path_closed" => {
            "stanza dropped: room traffic in flight after the local user left the room (PublicUnverified partner)"
        }
        fedgate_model::route::AUTHORISATION_NOT_COMMITTED => {
            "stanza not forwarded: its authorisation change could not be committed to the store (PublicUnverified partner; the sender is told to retry later)"
        }
        "bounce_rate_limited" => "stanza dropped: the stream's bounce budget is spent",
        "tls_handshake" => "stream: TLS handshake failed",
        "dialback_invalid" | "dialback_unverified" => "stream: dialback failed",
        "improper_addressing" => "stanza: improper addressing (stream closed)",
        "connection_limit" | "partner_connection_limit" => "stream: connection limit reached",
        "malformed_jid" => "stanza: an address is not a valid JID",
        "write_stalled" => "stream: the peer stopped reading (write stall limit); stanzas bounced",
        "peer_stalled" => "stanza: bounced while new streams to a peer that stopped reading wait",
        fedgate_model::enforce::SASL_EXTERNAL_REFUSED => {
            "outbound stream: the remote refused our certificate for SASL EXTERNAL (dialback follows where the settings allow it)"
        }
        _ => "stream refused or closed",
    }
}

/// Counts running connection tasks so shutdown can wait for them.
#[derive(Debug, Default)]
pub struct Tracker {
    active: std::sync::atomic::AtomicUsize,
    idle: tokio::sync::Notify,
}

/// Held by a running task; dropping it marks the task done.
pub struct TaskGuard(Arc<Shared>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        if self.0.tracker.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.tracker.idle.notify_waiters();
        }
    }
}

impl Tracker {
    /// Wait until no task runs.
    pub async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.active.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// Partner health per (partner Identity, direction) (see [`fedgate_model::health`]): kept in
/// memory, loaded from the store at start and saved to it every
/// [`crate::runtime::HEALTH_SAVE_INTERVAL`] when changed, and at shutdown. At most
/// [`PartnerHealthTable::MAX`] entries (records of removed partners are kept).
///
/// Beside it, each listed partner's traffic per minute over the last hour (see
/// [`fedgate_model::traffic`]): stanzas forwarded each way and refusals by reason, in memory
/// only, under a lock of its own held for one bucket increment; the series of a partner no
/// longer listed is dropped ([`retain_traffic`](Self::retain_traffic)).
#[derive(Debug, Default)]
pub struct PartnerHealthTable {
    map: Mutex<
        HashMap<(String, fedgate_model::health::Direction), fedgate_model::health::PartnerHealth>,
    >,
    /// Changed since the last [`rows_to_save`](Self::rows_to_save).
    dirty: std::sync::atomic::AtomicBool,
    /// Per partner Identity; at most [`PartnerHealthTable::MAX`].
    traffic: Mutex<HashMap<String, fedgate_model::traffic::PartnerTraffic>>,
}

/// A stored partner health row: `(partner, direction, JSON)`.
pub type HealthRow = (String, String, String);

impl PartnerHealthTable {
    pub const MAX: usize = 20_000;

    /// Take the stored records (at start); a row that does not parse is skipped (logged).
    pub fn load(&self, rows: Vec<HealthRow>) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        for (partner, direction, data) in rows {
            let parsed = fedgate_model::health::Direction::parse(&direction)
                .zip(serde_json::from_str(&data).ok());
            match parsed {
                Some((d, h)) if map.len() < Self::MAX => {
                    map.insert((partner, d), h);
                }
                Some(_) => {}
                None => tracing::warn!(
                    partner,
                    direction,
                    "a stored partner health record does not parse; skipped"
                ),
            }
        }
    }

    /// Every record as a row to store, when any changed since the last call.
    pub fn rows_to_save(&self) -> Option<Vec<HealthRow>> {
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return None;
        }
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        Some(
            map.iter()
                .filter_map(|((p, d), h)| {
                    let data = serde_json::to_string(h).ok()?;
                    Some((p.clone(), d.name().to_owned(), data))
                })
                .collect(),
        )
    }

    /// Mark the records changed (a save failed: try again next time).
    pub fn mark_dirty(&self) {
        self.dirty.store(true, Ordering::Release);
    }

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    fn with(
        &self,
        partner: &str,
        direction: fedgate_model::health::Direction,
        f: impl FnOnce(&mut fedgate_model::health::PartnerHealth),
    ) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let key = (partner.to_owned(), direction);
        if !map.contains_key(&key) && map.len() >= Self::MAX {
            return;
        }
        f(map.entry(key).or_default());
        self.mark_dirty();
    }

    /// A stream with `partner` came up; `not_after` is its certificate's, when one was seen.
    pub fn succeeded(
        &self,
        partner: &str,
        direction: fedgate_model::health::Direction,
        method: AuthMethod,
        tls_version: Option<&str>,
        not_after: Option<i64>,
    ) {
        self.with(partner, direction, |h| {
            h.succeeded(Self::now(), method, tls_version);
            if not_after.is_some() {
                h.certificate_not_after = not_after;
            }
        });
    }

    /// A stream with `partner` failed at `step` for `reason`.
    pub fn failed(
        &self,
        partner: &str,
        direction: fedgate_model::health::Direction,
        step: &str,
        reason: &str,
    ) {
        self.with(partner, direction, |h| h.failed(Self::now(), step, reason));
    }

    /// Something on an authenticated stream of `partner` was refused for `reason`.
    pub fn refused(
        &self,
        partner: &str,
        direction: fedgate_model::health::Direction,
        reason: &'static str,
    ) {
        let now = Self::now();
        self.with(partner, direction, |h| h.refused(now));
        self.with_traffic(partner, |t| t.refused(reason, now));
    }

    /// The stanzas a stream counted in `tally` (forwarded from its partners, inbound, or to
    /// them, outbound), added to their traffic now: one clock read and one short lock for all,
    /// no allocation but for a partner's first stanza; the tally is empty after. Streams count
    /// per stanza in their tally and call this about once a second (a clock read and a lock per
    /// stanza were 2 % of the gateway's CPU).
    pub fn relayed_tally(
        &self,
        direction: fedgate_model::health::Direction,
        tally: &mut fedgate_model::traffic::Tally,
    ) {
        if tally.is_empty() {
            return;
        }
        let now = Self::now();
        let mut map = self.traffic.lock().unwrap_or_else(|e| e.into_inner());
        for (partner, n) in tally.drain() {
            if let Some(t) = Self::traffic_of(&mut map, partner.as_str()) {
                t.relayed(direction, now, n);
            }
        }
    }

    fn with_traffic(
        &self,
        partner: &str,
        f: impl FnOnce(&mut fedgate_model::traffic::PartnerTraffic),
    ) {
        let mut map = self.traffic.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = Self::traffic_of(&mut map, partner) {
            f(t);
        }
    }

    /// `partner`'s traffic in `map`, a new entry if there is room for one ([`Self::MAX`]).
    fn traffic_of<'m>(
        map: &'m mut HashMap<String, fedgate_model::traffic::PartnerTraffic>,
        partner: &str,
    ) -> Option<&'m mut fedgate_model::traffic::PartnerTraffic> {
        if map.contains_key(partner) {
            return map.get_mut(partner);
        }
        (map.len() < Self::MAX).then(|| map.entry(partner.to_owned()).or_default())
    }

    /// Drop the traffic of the partners `listed` says are not listed any more.
    pub fn retain_traffic(&self, listed: impl Fn(&str) -> bool) {
        self.traffic
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|p, _| listed(p));
    }

    /// Every entry as shown now, by partner then direction, with the partner's traffic.
    pub fn views(&self) -> Vec<fedgate_model::health::HealthView> {
        self.views_at(Self::now())
    }

    fn views_at(&self, now: u64) -> Vec<fedgate_model::health::HealthView> {
        let traffic: HashMap<String, fedgate_model::traffic::TrafficView> = self
            .traffic
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(p, t)| (p.clone(), t.view(now)))
            .collect();
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<_> = map
            .iter()
            .map(|((p, d), h)| {
                let t = traffic
                    .get(p)
                    .cloned()
                    .unwrap_or_else(|| fedgate_model::traffic::TrafficView::quiet(now));
                h.view(p, *d, now, t)
            })
            .collect();
        v.sort_by(|a, b| (&a.partner, a.direction).cmp(&(&b.partner, b.direction)));
        v
    }
}

/// A stream's copy of the current snapshot ([`Shared::snapshot`]), read again only when a newer
/// one was published ([`Shared::update_snapshot`]): per stanza one atomic load instead of a lock
/// and a reference count taken and given back on the gateway-wide snapshot. The stream refreshes
/// it on its tick as well, so an idle stream keeps an old snapshot alive for a second at most.
pub struct SnapshotCache {
    generation: u64,
    snapshot: Arc<Snapshot>,
}

impl SnapshotCache {
    pub fn new(shared: &Shared) -> SnapshotCache {
        // The count first: a replacement in between makes the next call read again.
        let generation = shared.snapshot_generation.load(Ordering::Acquire);
        SnapshotCache {
            generation,
            snapshot: shared.snapshot(),
        }
    }

    /// The current snapshot.
    pub fn current(&mut self, shared: &Shared) -> &Arc<Snapshot> {
        let generation = shared.snapshot_generation.load(Ordering::Acquire);
        if generation != self.generation {
            *self = SnapshotCache {
                generation,
                snapshot: shared.snapshot(),
            };
        }
        &self.snapshot
    }
}

/// Everything the tasks share.
pub struct Shared {
    /// The configuration file's content; SIGHUP replaces it (see [`Shared::replace_config`]).
    config: RwLock<Arc<Config>>,
    /// What every stanza is decided on; replaced whole (see [`Shared::update_snapshot`]).
    snapshot: RwLock<Arc<Snapshot>>,
    /// Counts the snapshots published after the first (bumped after each replacement), so a
    /// [`SnapshotCache`] sees a change with one atomic load.
    snapshot_generation: AtomicU64,
    /// Serialises the read-modify-swap of the snapshot (policy refresh, configuration reload,
    /// authorisation changes), so no writer loses another's change.
    snapshot_writes: Mutex<()>,
    /// Makes PublicUnverified authorisation changes durable, then visible in the snapshot.
    pub authorisations: crate::authorisations::Writer,
    /// What local users' own traffic opened through PublicUnverified partners (gateway-wide: a
    /// request leaves on one stream, its answer arrives on another); bounded, in memory only.
    pub sessions: Mutex<fedgate_model::session::Sessions>,
    pub registry: Registry,
    pub metrics: Metrics,
    pub tls: Arc<crate::tls::TlsContext>,
    /// The store (the data plane never reads it per stanza: see [`Snapshot`]).
    pub store: Arc<dyn fedgate_store::Store>,
    /// Outbound streams by (side, local domain, remote domain), looked up per relayed stanza
    /// without building the key ([`crate::outbound::Queues`]).
    pub outbound: Mutex<crate::outbound::Queues>,
    /// Peers whose outbound stream stalled lately, by the same key.
    pub outbound_backoff: crate::outbound::Backoffs,
    /// Becomes true at shutdown.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    pub tracker: Tracker,
    /// Unauthenticated connections, for the pre-authentication limits.
    pub pre_auth: Arc<crate::admission::PreAuth>,
    /// Dialback verifications in flight.
    pub dialback_slots: Arc<crate::admission::DialbackSlots>,
    /// Open dialback verification connections, by domain pair.
    pub callbacks: crate::callback::Callbacks,
    /// Who may connect to the internal listener (resolved from the config at start and reload).
    internal_sources: RwLock<Arc<Vec<ipnet::IpNet>>>,
    /// Rate limit for refusal log lines.
    pub refusal_log: crate::log_limit::RefusalLog,
    /// Outbound DNS, built from `[dns]` at start (a change applies at the next start).
    pub resolver: crate::resolve::Resolver,
    /// Keeping `[internal_dns]` in step; None when not configured.
    internal_dns: Mutex<Option<crate::internal_dns::InternalDnsStatus>>,
    /// Partner health per partner and direction.
    pub health: PartnerHealthTable,
    /// This node's name in the pool (`[node] name` at start; a change applies at the next start).
    pub node_name: String,
}

impl Shared {
    pub fn new(
        config: Config,
        snapshot: Snapshot,
        tls: Arc<crate::tls::TlsContext>,
        store: Arc<dyn fedgate_store::Store>,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Shared {
        let snapshot = snapshot.with_hosted(hosted_of(&config));
        let resolver = crate::resolve::Resolver::new(&config.dns);
        let internal_dns =
            config
                .internal_dns
                .as_ref()
                .map(|d| crate::internal_dns::InternalDnsStatus {
                    file: d.file.display().to_string(),
                    ..Default::default()
                });
        Shared {
            node_name: config.node_name.clone(),
            internal_dns: Mutex::new(internal_dns),
            resolver,
            config: RwLock::new(Arc::new(config)),
            snapshot: RwLock::new(Arc::new(snapshot)),
            snapshot_generation: Default::default(),
            snapshot_writes: Mutex::new(()),
            authorisations: crate::authorisations::Writer::new(store.clone()),
            sessions: Mutex::default(),
            registry: Registry::default(),
            metrics: Metrics::default(),
            tls,
            store,
            outbound: Mutex::default(),
            outbound_backoff: Default::default(),
            shutdown,
            tracker: Tracker::default(),
            pre_auth: Arc::default(),
            dialback_slots: Arc::default(),
            callbacks: Default::default(),
            internal_sources: RwLock::new(Arc::new(Vec::new())),
            refusal_log: crate::log_limit::RefusalLog::default(),
            health: PartnerHealthTable::default(),
        }
    }
    /// What keeping `[internal_dns]` in step has done (None: not configured).
    pub fn internal_dns(&self) -> Option<crate::internal_dns::InternalDnsStatus> {
        self.internal_dns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
    /// The current `[internal_dns]` status, to update (default when not configured).
    pub fn internal_dns_status(&self) -> crate::internal_dns::InternalDnsStatus {
        self.internal_dns().unwrap_or_default()
    }
    pub fn set_internal_dns_status(&self, status: crate::internal_dns::InternalDnsStatus) {
        *self.internal_dns.lock().unwrap_or_else(|e| e.into_inner()) = Some(status);
    }
    /// `[internal_dns]` is no longer configured: nothing to show.
    pub fn clear_internal_dns_status(&self) {
        *self.internal_dns.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
    /// The networks the internal listener accepts connections from.
    pub fn internal_sources(&self) -> Arc<Vec<ipnet::IpNet>> {
        self.internal_sources
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
    /// Replace the internal listener's source networks (start, reload).
    pub fn set_internal_sources(&self, nets: Vec<ipnet::IpNet>) {
        *self
            .internal_sources
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Arc::new(nets);
    }
    /// Mark a task as running until the guard drops.
    pub fn task(self: &Arc<Self>) -> TaskGuard {
        self.tracker.active.fetch_add(1, Ordering::AcqRel);
        TaskGuard(self.clone())
    }
    /// The current configuration (hosted domains, internal servers, sites, limits).
    pub fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
    /// Use a re-read configuration from now on (new streams and stanzas see it, the hosted
    /// domains and sites through the snapshot).
    pub fn replace_config(&self, config: Config) {
        let hosted = hosted_of(&config);
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
        self.update_snapshot(|s| s.with_hosted(hosted));
    }
    /// The current snapshot: decide a whole stanza (or step) on this one value.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
    /// Replace the snapshot by `change(current)`; writers are serialised, readers never wait
    /// for `change`.
    pub fn update_snapshot(&self, change: impl FnOnce(&Snapshot) -> Snapshot) {
        let _writing = self
            .snapshot_writes
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let next = Arc::new(change(&self.snapshot()));
        *self.snapshot.write().unwrap_or_else(|e| e.into_inner()) = next;
        // After the replacement: a cache that sees the new count reads the new snapshot (or a
        // newer one).
        self.snapshot_generation.fetch_add(1, Ordering::Release);
    }
    /// The limits of a new connection: the codec's from `[limits]`, and the write-stall limit
    /// (`limits.write_stall_timeout`, at most KeepAliveInterval: a peer that takes nothing for
    /// that long is dead by the keepalive rule too).
    pub fn limits(&self) -> crate::conn::ConnLimits {
        let limits = self.config().limits.clone();
        let keep_alive = Duration::from_secs(self.snapshot().settings.keep_alive_interval.into());
        crate::conn::ConnLimits {
            codec: fedgate_xmpp::Limits {
                max_stanza_size: limits.max_stanza_size,
                max_depth: limits.max_depth,
                ..fedgate_xmpp::Limits::default()
            },
            write_stall: limits.write_stall_timeout.min(keep_alive),
        }
    }
    /// The session state, locked (never held across an await).
    pub fn sessions(&self) -> std::sync::MutexGuard<'_, fedgate_model::session::Sessions> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }
    /// Whether `domain` is one of our hosted domains.
    pub fn is_hosted(&self, domain: &str) -> bool {
        self.snapshot().is_hosted(domain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partner_traffic_is_shown_on_both_health_rows_and_dropped_with_the_partner() {
        use fedgate_model::health::Direction as D;
        let t = PartnerHealthTable::default();
        t.succeeded("a.example", D::Inbound, AuthMethod::TcpDialback, None, None);
        t.succeeded(
            "a.example",
            D::Outbound,
            AuthMethod::TcpDialback,
            None,
            None,
        );
        t.succeeded("b.example", D::Inbound, AuthMethod::TcpDialback, None, None);
        // Streams count in their tallies and hand them over (twice here for a.example inbound).
        let relayed = |direction, partners: &[&str]| {
            let mut tally = fedgate_model::traffic::Tally::default();
            for p in partners {
                tally.add(&fedgate_model::Domain::parse(p).unwrap());
            }
            t.relayed_tally(direction, &mut tally);
            assert!(tally.is_empty());
            // An empty tally adds nothing.
            t.relayed_tally(direction, &mut tally);
        };
        relayed(D::Inbound, &["a.example"]);
        relayed(D::Inbound, &["a.example", "a.example"]);
        relayed(
            D::Outbound,
            &["a.example", "b.example", "a.example", "a.example"],
        );
        relayed(D::Outbound, &["a.example"]);
        t.refused("a.example", D::Inbound, "not_authorised");
        let now = PartnerHealthTable::now();
        let views = t.views_at(now);
        assert_eq!(views.len(), 3);
        // (Sums, not the last minute: a minute may begin while the test runs.)
        let sum = |s: &[u32]| s.iter().sum::<u32>();
        for v in views.iter().filter(|v| v.partner == "a.example") {
            assert_eq!(sum(&v.traffic.inbound), 3, "{v:?}");
            assert_eq!(sum(&v.traffic.outbound), 4, "{v:?}");
            assert_eq!(sum(&v.traffic.refusals["not_authorised"]), 1, "{v:?}");
        }
        let b = views.iter().find(|v| v.partner == "b.example").unwrap();
        assert_eq!((sum(&b.traffic.inbound), sum(&b.traffic.outbound)), (0, 1));
        // b.example is removed from the partner list: its series goes, its health stays.
        t.retain_traffic(|p| p == "a.example");
        let views = t.views_at(now);
        let b = views.iter().find(|v| v.partner == "b.example").unwrap();
        assert_eq!(b.traffic, fedgate_model::traffic::TrafficView::quiet(now));
        let a = views.iter().find(|v| v.partner == "a.example").unwrap();
        assert_eq!(sum(&a.traffic.inbound), 3);
    }

    #[test]
    fn refusals_are_counted_by_side_and_reason_and_explained() {
        let m = Metrics::default();
        m.refused(Side::Internal, "user_not_enabled");
        m.refused(Side::Internal, "user_not_enabled");
        m.refused(Side::External, "not_authorised");
        m.refused(Side::External, "not_listed");
        let rows = m.refusal_status();
        let find = |side: &str, reason: &str| {
            rows.iter()
                .find(|r| r.side == side && r.reason == reason)
                .unwrap_or_else(|| panic!("no {side}/{reason} in {rows:?}"))
        };
        assert_eq!(rows.len(), 3, "{rows:?}");
        assert_eq!(find("internal", "user_not_enabled").count, 2);
        assert!(
            find("internal", "user_not_enabled")
                .what
                .contains("user not enabled")
        );
        assert_eq!(find("external", "not_authorised").count, 1);
        assert!(
            find("external", "not_authorised")
                .what
                .contains("not authorised")
        );
        assert!(
            find("external", "not_listed")
                .what
                .contains("partner not allowed")
        );
        let json = serde_json::to_value(&rows).unwrap();
        assert!(json.as_array().unwrap().iter().all(|r| r["count"].is_u64()
            && r["reason"].is_string()
            && r["side"].is_string()
            && r["what"].is_string()));
    }
}
