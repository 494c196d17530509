//! Outbound streams: one per (side, local domain, remote domain), created on demand by
//! [`route`]; stanzas are queued while the stream is set up (TCP, STARTTLS, SASL EXTERNAL or
//! dialback, in the order [`enforce::outbound_step`] decides) and bounced with
//! `<remote-server-not-found/>` / `<remote-server-timeout/>` when it cannot be set up. The
//! targets are tried in the resolver's order (RFC 2782 for SRV targets, see
//! [`crate::resolve`]): one that refuses the connection, does not answer in time or fails the
//! Direct TLS handshake is logged once and the next is tried (`open_first`). When the
//! remote refuses our certificate for SASL EXTERNAL, [`enforce::after_external_refused`] decides
//! whether dialback follows (on the same stream or a new connection) or the stanzas are bounced
//! with a text that says why. A stream whose peer stops reading is closed at the write-stall
//! limit, its stanzas bounced, and new streams to that peer wait ([`Backoffs`]).
//! Also the dialback verification client ([`verify_key`]).
//!
//! A stream's task goes through two typed states: `Setup` (the establishment under way, the
//! stanzas queued meanwhile with the credits held past the free ones) and, once established,
//! `Relay` (the connection, what to write next, its clocks, keepalive period and lease). The
//! setup's future lives in a scope of its own, so it takes no room beside the relay's.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fedgate_model::AuthMethod;
use fedgate_model::NegotiationSettings;
use fedgate_model::enforce::{
    self, AfterExternalRefused, CertCheck, INTERNAL_SETTINGS, OutboundStep, SetupFailure, Side,
};
use fedgate_model::health::Direction as HealthDirection;
use fedgate_xmpp::negotiation::{self, DialbackType, Features, SaslCondition};
use fedgate_xmpp::{
    Element, ErrorType, Event, Payload, StanzaError, StanzaErrorCondition, StreamError,
    StreamErrorCondition, StreamHeader, ns,
};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tracing::{debug, info, warn};

use crate::conn::{Conn, Counters, ReadError, UpgradeError};
use crate::dialback::dialback_key;
use crate::incoming::Incoming;
use crate::log_limit::{Culprit, LogDecision, Wire};
use crate::resolve::Target;
use crate::state::{Control, Direction, Shared, StreamEntry};
use crate::stop::{Waited, until_stopped};

/// TCP connect per address.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A write gathers queued stanzas until it holds this many bytes (a larger stanza goes alone)…
pub const WRITE_BATCH_BYTES: usize = 64 * 1024;
/// …or this many stanzas.
pub const WRITE_BATCH_STANZAS: usize = 256;

/// Serialize the first stanzas of `queue` into `out` (cleared first): at least one, then more
/// while the batch stays under [`WRITE_BATCH_BYTES`] and [`WRITE_BATCH_STANZAS`]. Returns how
/// many stanzas `out` holds.
pub fn serialize_batch(queue: &VecDeque<Element>, out: &mut Vec<u8>) -> usize {
    out.clear();
    let mut n = 0;
    for s in queue.iter().take(WRITE_BATCH_STANZAS) {
        let before = out.len();
        s.write_to(out);
        n += 1;
        if out.len() >= WRITE_BATCH_BYTES {
            if n > 1 && out.len() > WRITE_BATCH_BYTES {
                // Keep this one for the next write.
                out.truncate(before);
                n -= 1;
            }
            break;
        }
    }
    n
}

/// How many stanzas a sender that waits for room ([`route_paced`]: the inbound streams) may
/// have queued on one outbound stream; past that, the inbound stream stops reading until the
/// outbound stream has taken some (TCP backpressure to the sender, instead of an unbounded
/// queue in the gateway).
pub const QUEUE_CREDITS: usize = 256;

/// While an outbound stream is being set up, the first this-many queued stanzas give their
/// credit back at once (a few stanzas for an unreachable target must not stall the sender's
/// stream for its other destinations); later ones keep it, so a burst meets backpressure from
/// [`QUEUE_CREDITS`] as on a stream that is up.
pub const SETUP_FREE_STANZAS: usize = QUEUE_CREDITS / 2;
/// And the queue of a stream being set up holds at most this many bytes (as
/// [`Element::heap_size`] counts them); a stanza past that is bounced at once with
/// `<resource-constraint/>`.
pub const SETUP_QUEUE_BYTES: usize = 4 * 1024 * 1024;

/// A queued stanza and the credit it holds (released when the outbound stream takes it).
pub type Queued = (Element, Option<OwnedSemaphorePermit>);

/// The queue of one outbound stream.
pub struct Queue {
    tx: mpsc::UnboundedSender<Queued>,
    credits: Arc<Semaphore>,
}

type Key = (Side, String, String);

/// A [`Key`] by reference: it hashes and compares as the key it names, so that the queue of a
/// relayed stanza is found without copying its two domains into a key.
#[derive(Hash)]
struct KeyRef<'a>(Side, &'a str, &'a str);

impl KeyRef<'_> {
    fn to_key(&self) -> Key {
        (self.0, self.1.to_owned(), self.2.to_owned())
    }
}

impl hashbrown::Equivalent<Key> for KeyRef<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        self.0 == key.0 && self.1 == key.1 && self.2 == key.2
    }
}

/// The outbound streams' queues by `Key` (`Shared::outbound`); looked up by `KeyRef`.
pub type Queues = hashbrown::HashMap<Key, Queue, std::hash::RandomState>;

/// Peers whose last outbound stream stalled (they stopped reading), with how many stalls in a
/// row and until when new streams to them wait ([`enforce::stall_backoff`]). One entry per
/// (side, local domain, remote domain) — outbound streams exist only for hosted and partner
/// domains — and at most [`Backoffs::MAX`] entries.
#[derive(Debug, Default)]
pub struct Backoffs(std::sync::Mutex<std::collections::HashMap<Key, (u32, Instant)>>);

impl Backoffs {
    pub const MAX: usize = 4096;

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<Key, (u32, Instant)>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A stream for `key` stalled: returns how long new streams wait.
    fn stalled(&self, key: &Key, now: Instant) -> Duration {
        let mut map = self.lock();
        if !map.contains_key(key) && map.len() >= Self::MAX {
            map.retain(|_, (_, until)| *until > now);
        }
        let stalls = map.get(key).map_or(0, |(n, _)| *n) + 1;
        let wait = enforce::stall_backoff(stalls);
        if map.len() < Self::MAX || map.contains_key(key) {
            map.insert(key.clone(), (stalls, now + wait));
        }
        wait
    }

    /// How much longer new streams for `key` wait, if they do.
    fn waiting(&self, key: &Key, now: Instant) -> Option<Duration> {
        let map = self.lock();
        let (_, until) = map.get(key)?;
        (*until > now).then(|| *until - now)
    }

    /// A stream for `key` ended without a stall: the count starts over.
    fn cleared(&self, key: &Key) {
        self.lock().remove(key);
    }
}

/// Send a stanza out on `side` (Internal: to a hosted domain's internal server, speaking as the
/// partner domain `from`; External: to a partner domain, speaking as the hosted domain `from`).
/// Never waits: for the gateway's own stanzas (bounces, errors); relayed stanzas go through
/// [`route_paced`].
pub fn route(shared: &Arc<Shared>, side: Side, from: &str, to: &str, stanza: Element) {
    enqueue(shared, KeyRef(side, from, to), stanza, None);
}

/// [`route`], but first wait for room on the outbound stream's queue ([`QUEUE_CREDITS`]).
/// The common case — the stream exists and has room — takes the queue's lock once, builds no
/// key and does not wait: the credit is taken and the stanza queued under that one lock. It
/// still counts against the task's scheduling budget, as the wait for a credit did: a busy
/// inbound stream then yields every so many stanzas, and the outbound stream, woken on the
/// same worker, writes them in one batch (without it, the outbound stream was woken on the
/// other worker for a few stanzas at a time: 5–10 times the context switches, more CPU).
pub async fn route_paced(shared: &Arc<Shared>, side: Side, from: &str, to: &str, stanza: Element) {
    let key = KeyRef(side, from, to);
    // What the lookup found: queued (Ok), or the stanza back and the credits to wait for.
    let looked_up = {
        let map = shared.outbound.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(&key) {
            Some(q) => match q.credits.clone().try_acquire_owned() {
                Ok(credit) => match q.tx.send((stanza, Some(credit))) {
                    Ok(()) => Ok(()),
                    // The stream ended meanwhile: a new one, below.
                    Err(mpsc::error::SendError((stanza, credit))) => Err((stanza, credit, None)),
                },
                Err(_) => Err((stanza, None, Some(q.credits.clone()))),
            },
            None => Err((stanza, None, None)),
        }
    };
    let (stanza, mut credit, wait_for) = match looked_up {
        Ok(()) => {
            tokio::task::consume_budget().await;
            return;
        }
        Err(back) => back,
    };
    // No room (wait for it), or no stream yet (a new one, see `enqueue`). A closed semaphore
    // (the stream ended meanwhile): go on without a credit.
    if let Some(c) = wait_for {
        credit = c.acquire_owned().await.ok();
    }
    // The stream may be gone because a Remove closed it ([`recheck_streams`]) while this
    // stanza, decided on the policy before, waited: a stream to the internal server speaks as a
    // partner domain, so a new one needs the partner still listed (the partner's own stream is
    // being closed too). The gateway's own stanzas (`route`) are not checked: errors from
    // unlisted domains to local users travel that way.
    //
    // [`recheck_streams`]: crate::runtime::recheck_streams
    if side == Side::Internal && shared.snapshot().partner(from).is_none() {
        shared.metrics.refused(side, "partner_removed");
        debug!(%side, %from, %to, "the partner was removed while its stanza waited: dropped");
        return;
    }
    enqueue(shared, key, stanza, credit);
}

fn enqueue(
    shared: &Arc<Shared>,
    key: KeyRef<'_>,
    stanza: Element,
    credit: Option<OwnedSemaphorePermit>,
) {
    let paced = credit.is_some();
    let mut item = (stanza, credit);
    let mut map = shared.outbound.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(q) = map.get(&key) {
        // The gateway's own stanzas (bounces, errors) never wait, but take a credit too: when
        // the queue is full they are dropped, so a peer that provokes bounces towards a slow
        // reader cannot grow it.
        if !paced && item.1.is_none() && !q.credits.is_closed() {
            match q.credits.clone().try_acquire_owned() {
                Ok(c) => item.1 = Some(c),
                Err(_) => {
                    drop(map);
                    shared.metrics.refused(key.0, "bounce_dropped");
                    debug!(side = %key.0, to = %key.2, "queue full: the gateway's own stanza is dropped");
                    return;
                }
            }
        }
        match q.tx.send(item) {
            Ok(()) => return,
            Err(mpsc::error::SendError(i)) => item = i,
        }
    }
    // A new stream: its key is built now, once.
    let key = key.to_key();
    let side = key.0;
    // No new stream at shutdown, nor to a peer that stopped reading lately (it is waited for).
    let waiting = shared.outbound_backoff.waiting(&key, Instant::now());
    if waiting.is_some() || *shared.shutdown.borrow() {
        drop(map);
        if let Some(wait) = waiting {
            shared.metrics.refused(side, "peer_stalled");
            debug!(%side, to = %key.2, wait_s = wait.as_secs(), "the peer stopped reading lately: bounced without a new stream");
        }
        bounce(
            shared,
            side,
            &item.0,
            StanzaErrorCondition::RemoteServerTimeout,
        );
        return;
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let credits = Arc::new(Semaphore::new(QUEUE_CREDITS));
    let _ = tx.send(item);
    map.insert(
        key.clone(),
        Queue {
            tx: tx.clone(),
            credits: credits.clone(),
        },
    );
    drop(map);
    let guard = shared.task();
    let shared = shared.clone();
    tokio::spawn(async move {
        let _guard = guard;
        run(&shared, key.clone(), rx).await;
        let mut map = shared.outbound.lock().unwrap_or_else(|e| e.into_inner());
        if map.get(&key).is_some_and(|q| q.tx.same_channel(&tx)) {
            map.remove(&key);
        }
        drop(map);
        // Senders still waiting for room go on (to a new stream).
        credits.close();
    });
}

/// Bounce an undeliverable stanza back the way it came (never an error in reply to an error).
pub fn bounce(
    shared: &Arc<Shared>,
    failed_side: Side,
    stanza: &Element,
    condition: StanzaErrorCondition,
) {
    bounce_with(shared, failed_side, stanza, StanzaError::new(condition));
}

/// [`bounce`] with a prepared error (e.g. one carrying a text).
fn bounce_with(shared: &Arc<Shared>, failed_side: Side, stanza: &Element, error: StanzaError) {
    let error = error.with_type(ErrorType::Cancel);
    let Some(reply) = fedgate_xmpp::bounce(stanza, &error, Payload::Drop) else {
        return;
    };
    let domain = |a: Option<&str>| {
        a.and_then(|j| fedgate_xmpp::Jid::parse(j).ok())
            .map(|j| j.domain().to_ascii_lowercase())
    };
    let (Some(from), Some(to)) = (domain(reply.attr("from")), domain(reply.attr("to"))) else {
        return;
    };
    shared
        .metrics
        .stanzas_bounced
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let back = match failed_side {
        Side::Internal => Side::External,
        Side::External => Side::Internal,
    };
    route(shared, back, &from, &to, reply);
}

#[derive(Debug)]
pub(crate) enum Failure {
    NotFound(String),
    /// The remote closed the stream or the connection (`</stream:stream>`, a stream error, end
    /// of file, a failed write) while we waited for its answer.
    Closed(String),
    Timeout,
    /// A failure the bounce explains (`<remote-server-not-found/>` with the text).
    Explained(SetupFailure),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::NotFound(why) | Failure::Closed(why) => f.write_str(why),
            Failure::Timeout => f.write_str("timed out"),
            Failure::Explained(e) => write!(f, "{} ({})", e.text, e.reason),
        }
    }
}

fn shutdown_error() -> StreamError {
    StreamError::new(
        StreamErrorCondition::SystemShutdown,
        "The gateway is shutting down.",
    )
}

/// The remote's `<failure/>` to our SASL EXTERNAL: its condition and (for the log only) text.
#[derive(Debug, Clone)]
struct ExternalRefusal {
    condition: Option<SaslCondition>,
    text: Option<String>,
}

impl ExternalRefusal {
    fn condition_name(&self) -> Option<&'static str> {
        self.condition.map(SaslCondition::name)
    }
}

impl std::fmt::Display for ExternalRefusal {
    /// `not-authorized: "unsupported certificate purpose"` (the remote's text escaped).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.condition_name().unwrap_or("no condition given"))?;
        if let Some(t) = &self.text {
            write!(f, ": {:?}", Wire(t))?;
        }
        Ok(())
    }
}

/// What one connection's negotiation came to. A return value only, never stored: as large as the
/// connection, as the `Option` it replaces was (boxing it would add an allocation per stream).
#[allow(clippy::large_enum_variant)]
enum Negotiated {
    /// The stream authenticated, by this method.
    Authenticated(Conn, AuthMethod),
    /// The remote refused SASL EXTERNAL and dialback follows on a new connection (this one is
    /// closed).
    NewConnection,
}

/// An authenticated outbound stream, and whether SASL EXTERNAL was refused on the way to it.
struct Established {
    conn: Conn,
    method: AuthMethod,
    external_refused: Option<ExternalRefusal>,
}

/// An outbound stream being set up ([`establish`] under way): the stanzas queued meanwhile,
/// bounded in count (credits, see [`SETUP_FREE_STANZAS`]) and in bytes
/// ([`SETUP_QUEUE_BYTES`]); the establishment timeout bounds how long. [`Setup::finish`] ends
/// it: the queued stanzas go to the [`Relay`] or are bounced ([`setup_failed`]).
#[derive(Default)]
struct Setup {
    queue: VecDeque<Element>,
    queued_bytes: usize,
    /// The credits of the stanzas queued past [`SETUP_FREE_STANZAS`].
    held_credits: Vec<OwnedSemaphorePermit>,
}

impl Setup {
    /// Queue a stanza routed meanwhile, or bounce it when the queue is full.
    fn queue(&mut self, shared: &Arc<Shared>, side: Side, (s, credit): Queued) {
        let size = s.heap_size();
        if self.queued_bytes + size > SETUP_QUEUE_BYTES {
            shared.metrics.refused(side, "setup_queue_full");
            bounce(shared, side, &s, StanzaErrorCondition::ResourceConstraint);
        } else {
            self.queued_bytes += size;
            if self.queue.len() >= SETUP_FREE_STANZAS {
                self.held_credits.extend(credit);
            }
            self.queue.push_back(s);
        }
    }

    /// The setup is over (established or failed): the credits held go back; the queued
    /// stanzas remain.
    fn finish(self) -> VecDeque<Element> {
        drop(self.held_credits);
        self.queue
    }
}

/// The stream could not be set up (`f`): the stanzas queued meanwhile, and those still
/// arriving, are bounced with the error `f` calls for.
fn setup_failed(
    shared: &Arc<Shared>,
    key: &Key,
    reg: u64,
    mut rx: mpsc::UnboundedReceiver<Queued>,
    mut queue: VecDeque<Element>,
    f: Failure,
) {
    let (side, local, remote) = key;
    let side = *side;
    let error = match &f {
        Failure::Timeout => StanzaError::new(StanzaErrorCondition::RemoteServerTimeout),
        Failure::NotFound(_) | Failure::Closed(_) => {
            StanzaError::new(StanzaErrorCondition::RemoteServerNotFound)
        }
        Failure::Explained(e) => {
            StanzaError::new(StanzaErrorCondition::RemoteServerNotFound).with_text(e.text.clone())
        }
    };
    shared.registry.remove(reg);
    rx.close();
    while let Ok((s, _)) = rx.try_recv() {
        queue.push_back(s);
    }
    warn!(%side, %local, %remote, failure = %f, queued = queue.len(), "outbound stream failed; bouncing queued stanzas");
    if side == Side::External
        && let Some(p) = shared.snapshot().partner(remote)
    {
        shared.health.failed(
            p.identity.as_str(),
            HealthDirection::Outbound,
            "outbound setup",
            &f.to_string(),
        );
    }
    for s in queue {
        bounce_with(shared, side, &s, error.clone());
    }
}

/// The task taking an outbound stream's lease; its guard, if one was taken.
type LeaseTaking = tokio::task::JoinHandle<Option<crate::cluster::LeaseGuard>>;

/// An established outbound stream: what it relays next, its clocks, keepalive period and
/// lease.
struct Relay {
    conn: Conn,
    /// Stanzas to write, the ones queued during the setup first.
    pending: VecDeque<Element>,
    /// The task taking the stream's lease in the pool's connection count (external side).
    lease: Option<LeaseTaking>,
    /// Seconds between keepalives, if any.
    keepalive: Option<u64>,
    opened: Instant,
    last_sent: Instant,
    last_stanza: Instant,
}

async fn run(shared: &Arc<Shared>, key: Key, mut rx: mpsc::UnboundedReceiver<Queued>) {
    let (side, local, remote) = key.clone();
    let mut shutdown = shared.shutdown.clone();
    let counters = Arc::new(Counters::default());
    let (ctl_tx, mut ctl_rx) = crate::state::control_channel();
    let reg = shared.registry.insert(StreamEntry {
        side,
        direction: Direction::Outbound,
        remote_ip: None,
        partner: None,
        domains: vec![remote.clone()],
        local_domain: Some(local.clone()),
        method: None,
        tls_version: None,
        authenticated: false,
        since: std::time::SystemTime::now(),
        counters: counters.clone(),
        control: ctl_tx,
    });
    let timeout = Duration::from_secs(
        shared
            .snapshot()
            .settings
            .stream_establishment_timeout
            .into(),
    );
    let mut setup = Setup::default();
    // The setup's future in a scope of its own: it takes no room beside the relay's.
    let result = {
        let establish =
            tokio::time::timeout(timeout, establish(shared, side, &local, &remote, counters));
        tokio::pin!(establish);
        loop {
            tokio::select! {
                r = &mut establish => break r.unwrap_or(Err(Failure::Timeout)),
                Some(queued) = rx.recv() => setup.queue(shared, side, queued),
                Some(Control::Close(e, reason)) = ctl_rx.recv() => {
                    break Err(Failure::Closed(format!("closed while being set up ({reason}): {}", e.text)));
                }
                _ = shutdown.changed() => break Err(Failure::Timeout),
            }
        }
    };
    let queue = setup.finish();
    let Established {
        conn,
        method,
        external_refused,
    } = match result {
        Ok(c) => c,
        Err(f) => {
            setup_failed(shared, &key, reg, rx, queue, f);
            return;
        }
    };
    let partner = shared
        .snapshot()
        .partner(&remote)
        .map(|p| p.identity.clone());
    let tls_version = conn.tls_version();
    if side == Side::External
        && let Some(p) = &partner
    {
        shared.health.succeeded(
            p.as_str(),
            HealthDirection::Outbound,
            method,
            tls_version,
            crate::tls::not_after(&conn.peer_certificates()),
        );
    }
    // The stream counts in the pool's connection count. Outbound streams are not limited (the
    // decision always admits), so nothing waits for the store: the lease is taken by a task of
    // its own while the stream relays (without the store, no lease).
    let lease = match (&partner, side) {
        (Some(p), Side::External) => {
            let (shared, p) = (shared.clone(), p.clone());
            Some(tokio::spawn(async move {
                crate::cluster::take_lease(&shared, reg, &p, HealthDirection::Outbound, |_| Ok(()))
                    .await
                    .ok()
                    .flatten()
            }))
        }
        _ => None,
    };
    shared.registry.update(reg, |e| {
        e.authenticated = true;
        e.method = Some(method);
        e.tls_version = tls_version;
        e.partner = if side == Side::External {
            partner.clone()
        } else {
            None
        };
    });
    match &external_refused {
        None => {
            info!(%side, %local, %remote, method = %method, tls = tls_version.unwrap_or("none"), "outbound stream established")
        }
        Some(r) => {
            info!(%side, %local, %remote, method = %method, tls = tls_version.unwrap_or("none"), external_refused = %r, "outbound stream established by dialback: the remote refused our certificate for SASL EXTERNAL")
        }
    }
    let keepalive = {
        let policy = shared.snapshot();
        let enable = match side {
            Side::External => policy.partner(&remote).is_none_or(|p| p.enable_keep_alive),
            Side::Internal => true,
        };
        enforce::keepalive_period(enable, policy.settings.keep_alive_interval.into())
    };
    let now = Instant::now();
    let relay = Relay {
        conn,
        pending: queue,
        lease,
        keepalive,
        opened: now,
        last_sent: now,
        last_stanza: now,
    };
    relay.run(shared, &key, reg, rx, ctl_rx, shutdown).await;
}

impl Relay {
    /// Relay until the stream ends (the queue closed, the remote closed or stopped reading,
    /// inactivity, a live change, shutdown); then bounce what is left and close.
    async fn run(
        self,
        shared: &Arc<Shared>,
        key: &Key,
        reg: u64,
        mut rx: mpsc::UnboundedReceiver<Queued>,
        mut ctl_rx: crate::state::ControlReceiver,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let (side, local, remote) = key;
        let side = *side;
        let Relay {
            mut conn,
            mut pending,
            lease,
            keepalive,
            opened,
            mut last_sent,
            mut last_stanza,
        } = self;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut error: Option<StreamError> = None;
        loop {
            while !pending.is_empty() {
                // Everything queued, up to WRITE_BATCH_BYTES, in one write: one syscall (and one
                // wake-up of the receiver) per batch instead of per stanza. The write hears
                // control and shutdown (a live change drops it at once; at shutdown it gets
                // CLOSE_WRITE_TIMEOUT to finish); a peer that stopped reading is not waited for.
                // The batch is serialized into the Conn's write buffer, reused from batch to
                // batch and freed when the stream is idle.
                let written = {
                    let send =
                        std::pin::pin!(conn.send_filled(|out| serialize_batch(&pending, out)));
                    until_stopped(send, &mut ctl_rx, &mut shutdown).await
                };
                let (written, stopping) = match written {
                    Waited::Done(r) => (Some(r), false),
                    Waited::Control(Control::Close(e, reason)) => {
                        info!(%side, %local, %remote, reason, "closing the outbound stream in the middle of a write: {}", e.text);
                        error = Some(e);
                        break;
                    }
                    Waited::Shutdown(r) => {
                        error = Some(shutdown_error());
                        (r, true)
                    }
                };
                let n = match written {
                    Some(Ok(n)) => n,
                    Some(Err(e)) => {
                        warn!(%side, %remote, error = %e, "outbound write failed");
                        break;
                    }
                    None => {
                        conn.abandon();
                        break;
                    }
                };
                pending.drain(..n);
                last_sent = Instant::now();
                last_stanza = last_sent;
                shared
                    .metrics
                    .stanzas_relayed
                    .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
                if stopping {
                    break;
                }
            }
            if error.is_some() || !pending.is_empty() {
                break;
            }
            tokio::select! {
                s = rx.recv() => match s {
                    Some((s, _credit)) => {
                        pending.push_back(s);
                        while pending.len() < WRITE_BATCH_STANZAS {
                            match rx.try_recv() {
                                Ok((s, _credit)) => pending.push_back(s),
                                Err(_) => break,
                            }
                        }
                    }
                    None => break,
                },
                ev = conn.next_event() => match ev {
                    Ok(Event::StreamClose) => { conn.close().await; break; }
                    Ok(Event::Element { element, .. }) if Incoming::classify(&element) == Incoming::StreamError => {
                        let e = StreamError::from_element(&element);
                        info!(%side, %remote, error = ?e, "remote closed the outbound stream with an error");
                        break;
                    }
                    Ok(_) => {}
                    Err(ReadError::Stream(e)) => { error = Some(e); break; }
                    Err(_) => break,
                },
                Some(Control::Close(e, _)) = ctl_rx.recv() => { error = Some(e); break; }
                _ = shutdown.changed() => {
                    error = Some(shutdown_error());
                    break;
                }
                _ = tick.tick() => {
                    // StreamInactivityTimeout: an outbound stream without stanzas is closed (the
                    // remote's silence is normal on an outbound stream, so only the stanza clock
                    // counts here).
                    let st = &shared.snapshot().settings;
                    let clock = enforce::StreamClock {
                        since_open: opened.elapsed().as_secs(),
                        since_data: 0,
                        since_stanza: last_stanza.elapsed().as_secs(),
                        authenticated: true,
                    };
                    let timeouts = enforce::Timeouts {
                        keep_alive_interval: st.keep_alive_interval.into(),
                        stream_establishment_timeout: st.stream_establishment_timeout.into(),
                        stream_inactivity_timeout: st.stream_inactivity_timeout.into(),
                    };
                    if let Some(r) = enforce::timeout_verdict(clock, timeouts) {
                        debug!(%side, %remote, reason = r.reason, "closing an idle outbound stream");
                        break;
                    }
                    if let Some(p) = keepalive
                        && last_sent.elapsed() >= Duration::from_secs(p) {
                        let sent = {
                            let send = std::pin::pin!(conn.send_bytes(b" "));
                            until_stopped(send, &mut ctl_rx, &mut shutdown).await
                        };
                        match sent {
                            Waited::Done(Ok(())) => last_sent = Instant::now(),
                            Waited::Done(Err(_)) => break,
                            Waited::Control(Control::Close(e, _)) => { error = Some(e); break; }
                            Waited::Shutdown(_) => { error = Some(shutdown_error()); break; }
                        }
                    }
                }
            }
        }
        // A peer that stopped reading gets no closing write (Conn skips it) and no new stream for
        // a while; what was queued for it is bounced now.
        if conn.is_stalled() && !*shared.shutdown.borrow() {
            let wait = shared.outbound_backoff.stalled(key, Instant::now());
            shared.metrics.refused(side, "write_stalled");
            warn!(%side, %local, %remote, queued = pending.len(), retry_after_s = wait.as_secs(), "the peer stopped reading; the stream is closed, its stanzas bounced, and new streams wait");
        } else if !conn.is_stalled() {
            shared.outbound_backoff.cleared(key);
        }
        shared.registry.remove(reg);
        rx.close();
        while let Ok((s, _)) = rx.try_recv() {
            pending.push_back(s);
        }
        for s in pending {
            bounce(shared, side, &s, StanzaErrorCondition::RemoteServerTimeout);
        }
        if let Some(taking) = lease {
            // Given back once taken, beside the close: the stream's end waits for no store.
            tokio::spawn(async move {
                if let Ok(Some(lease)) = taking.await {
                    lease.release().await;
                }
            });
        }
        if let Some(e) = &error {
            conn.fail(e, None).await;
        } else {
            conn.close().await;
        }
        debug!(%side, %local, %remote, "outbound stream ended");
    }
}

/// A TCP connection to `target` within [`CONNECT_TIMEOUT`].
async fn connect_tcp(target: &Target) -> Result<TcpStream, String> {
    match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target.addr)).await {
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(s)
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("connect timed out".to_owned()),
    }
}

/// The failure after every target failed: the last one's address and reason (the others were
/// logged as they failed), or that there was none to try.
fn none_reached(last: Option<(SocketAddr, String)>) -> Failure {
    Failure::NotFound(match last {
        Some((addr, why)) => format!("{addr}: {why}"),
        None => "no address found".to_owned(),
    })
}

/// Connect to the first reachable target, in order (the dialback verification client);
/// returns the stream and whether it is Direct TLS. A target that cannot be reached is logged
/// (once, with its address) when another follows; the last one's reason is the failure.
async fn connect_any(targets: &[Target], remote: &str) -> Result<(TcpStream, bool), Failure> {
    let mut last: Option<(SocketAddr, String)> = None;
    for t in targets {
        if let Some((addr, why)) = &last {
            info!(remote, target = %addr, failure = %why, "target unreachable; trying the next one");
        }
        match connect_tcp(t).await {
            Ok(s) => return Ok((s, t.direct_tls)),
            Err(why) => last = Some((t.addr, why)),
        }
    }
    Err(none_reached(last))
}

/// The transport of an outbound stream: the first target, in the resolver's order (RFC 2782
/// for SRV targets), that accepts the TCP connection within [`CONNECT_TIMEOUT`] and, for a
/// Direct TLS target, completes the TLS handshake within it too. A target that fails (refused,
/// timed out, a failed or stalled Direct TLS handshake) is logged once, with its address, and
/// the next is tried; after the last, its address and reason are the failure (logged with the
/// bounce). Returns the connection (counting in `counters`) and the index of its target in
/// `targets`.
async fn open_first(
    shared: &Shared,
    side: Side,
    local: &str,
    remote: &str,
    targets: &[Target],
    counters: &Arc<Counters>,
) -> Result<(Conn, usize), Failure> {
    let internal = side == Side::Internal;
    let mut last: Option<(Target, String)> = None;
    for (i, t) in targets.iter().enumerate() {
        if let Some((failed, why)) = last.take() {
            info!(%side, local, remote, target = %failed.addr, direct_tls = failed.direct_tls, failure = %why, "outbound target unreachable; trying the next one");
        }
        let tcp = match connect_tcp(t).await {
            Ok(tcp) => tcp,
            Err(why) => {
                last = Some((*t, why));
                continue;
            }
        };
        let mut conn = Conn::new(tcp, shared.limits(), counters.clone());
        if !t.direct_tls {
            return Ok((conn, i));
        }
        let handshake = client_tls(shared, &mut conn, local, remote, internal, true);
        match tokio::time::timeout(CONNECT_TIMEOUT, handshake).await {
            Ok(Ok(())) => return Ok((conn, i)),
            Ok(Err(why)) => last = Some((*t, why)),
            Err(_) => last = Some((*t, "Direct TLS handshake timed out".to_owned())),
        }
    }
    Err(none_reached(last.map(|(t, why)| (t.addr, why))))
}

async fn targets(shared: &Shared, side: Side, remote: &str) -> Vec<Target> {
    match side {
        Side::Internal => {
            let server = shared
                .snapshot()
                .hosted(remote)
                .map(|h| h.internal_server.clone());
            match server {
                Some(s) => shared.resolver.internal_targets(&s).await,
                None => Vec::new(),
            }
        }
        Side::External => {
            let proxy = shared
                .snapshot()
                .partner(remote)
                .and_then(|p| p.proxy_fqdn.clone());
            shared
                .resolver
                .partner_targets(remote, proxy.as_ref())
                .await
        }
    }
}

pub(crate) async fn expect_header(conn: &mut Conn) -> Result<StreamHeader, Failure> {
    loop {
        match conn.next_event().await {
            Ok(Event::StreamOpen(h)) => return Ok(h),
            Ok(Event::Whitespace(_)) => {}
            Ok(other) => {
                return Err(Failure::NotFound(format!(
                    "unexpected {other:?} before the stream header"
                )));
            }
            Err(e) => return Err(Failure::NotFound(e.to_string())),
        }
    }
}

pub(crate) async fn expect_element(conn: &mut Conn) -> Result<Element, Failure> {
    loop {
        match conn.next_event().await {
            Ok(Event::Element { element, .. }) => {
                if Incoming::classify(&element) == Incoming::StreamError {
                    let e = StreamError::from_element(&element);
                    return Err(Failure::Closed(format!("stream error: {e:?}")));
                }
                return Ok(element);
            }
            Ok(Event::Whitespace(_)) => {}
            Ok(Event::StreamClose) => {
                return Err(Failure::Closed("the remote closed the stream".into()));
            }
            Ok(other) => return Err(Failure::NotFound(format!("unexpected {other:?}"))),
            Err(e @ (ReadError::Eof | ReadError::Io(_))) => {
                return Err(Failure::Closed(e.to_string()));
            }
            Err(e) => return Err(Failure::NotFound(e.to_string())),
        }
    }
}

/// The TLS handshake of an outbound stream on `conn` as `local` to `remote` (SNI = the remote
/// domain; [`Conn::start_tls_client`]): Direct TLS (XEP-0368, ALPN `xmpp-server`) or after
/// STARTTLS's `<proceed/>`. The remote's certificate is judged afterwards
/// ([`crate::tls::TlsContext::check_peer`]).
pub(crate) async fn client_tls(
    shared: &Shared,
    conn: &mut Conn,
    local: &str,
    remote: &str,
    internal: bool,
    direct_tls: bool,
) -> Result<(), String> {
    let mut cfg = shared
        .tls
        .client(local, internal)
        .map_err(|e| e.to_string())?;
    if direct_tls {
        let mut with_alpn = (*cfg).clone();
        with_alpn.alpn_protocols = vec![b"xmpp-server".to_vec()];
        cfg = Arc::new(with_alpn);
    }
    let name = ServerName::try_from(remote.to_owned()).map_err(|e| e.to_string())?;
    let what = if direct_tls {
        "Direct TLS handshake"
    } else {
        "TLS handshake"
    };
    conn.start_tls_client(cfg, name).await.map_err(|e| match e {
        UpgradeError::Handshake(e) => format!("{what}: {e}"),
        other => other.to_string(),
    })
}

/// STARTTLS as the initiating server on `conn` (as `local` to `remote`): `<starttls/>`, the
/// remote's `<proceed/>`, the handshake ([`client_tls`]). The stream restarts: our header is
/// the caller's to send.
async fn starttls(
    shared: &Shared,
    conn: &mut Conn,
    local: &str,
    remote: &str,
    internal: bool,
) -> Result<(), Failure> {
    conn.send(&negotiation::starttls())
        .await
        .map_err(|e| Failure::NotFound(e.to_string()))?;
    let reply = expect_element(conn).await?;
    if !reply.is("proceed", ns::TLS) {
        return Err(Failure::NotFound("STARTTLS refused".into()));
    }
    client_tls(shared, conn, local, remote, internal, false)
        .await
        .map_err(Failure::NotFound)
}

/// Set up the outbound stream: one connection, and when the remote refused our certificate for
/// SASL EXTERNAL and [`enforce::after_external_refused`] said so, a second one that uses
/// dialback only.
async fn establish(
    shared: &Arc<Shared>,
    side: Side,
    local: &str,
    remote: &str,
    counters: Arc<Counters>,
) -> Result<Established, Failure> {
    let settings = match side {
        Side::Internal => INTERNAL_SETTINGS,
        Side::External => shared
            .snapshot()
            .partner(remote)
            .map(|p| p.negotiation())
            .ok_or_else(|| Failure::NotFound(format!("'{remote}' is not an allowed partner")))?,
    };
    // Resolved once: both connections follow the same plan.
    let resolved = targets(shared, side, remote).await;
    let mut plan = resolved.as_slice();
    let mut refused = None;
    let mut result = connect_and_authenticate(
        shared,
        side,
        local,
        remote,
        settings,
        counters.clone(),
        &mut refused,
        &mut plan,
    )
    .await;
    if matches!(result, Ok(Negotiated::NewConnection)) {
        // The refusal made the first connection useless: a new one, dialback only
        // (`external_refused` in its facts, so it cannot end here again), starting from the
        // target that answered (those before it did not).
        result = connect_and_authenticate(
            shared,
            side,
            local,
            remote,
            settings,
            counters,
            &mut refused,
            &mut plan,
        )
        .await;
    }
    match (result, refused) {
        (Ok(Negotiated::Authenticated(conn, method)), external_refused) => Ok(Established {
            conn,
            method,
            external_refused,
        }),
        (Ok(Negotiated::NewConnection), _) => Err(Failure::NotFound(
            "SASL EXTERNAL was refused again on the dialback-only connection".into(),
        )),
        (Err(f @ (Failure::Explained(_) | Failure::Timeout)), _) | (Err(f), None) => Err(f),
        (Err(f), Some(r)) => {
            warn!(%side, local, remote, external_refused = %r, failure = %f, "dialback after the refused SASL EXTERNAL failed too");
            Err(Failure::Explained(enforce::dialback_after_external_failed(
                side,
                remote,
                r.condition_name(),
            )))
        }
    }
}

/// One connection to the remote, to the first target of `plan` that can be reached
/// ([`open_first`]; `plan` then starts with it), negotiated as [`enforce::outbound_step`] says:
/// the stream and its method, or [`Negotiated::NewConnection`] when the remote refused SASL
/// EXTERNAL and dialback is to follow on a new connection. `refused` holds the refusal once
/// there was one (and tells a second connection not to try EXTERNAL again). A failure after the connection (in
/// STARTTLS, SASL or dialback) is the remote's answer: no other target is tried for it.
#[allow(clippy::too_many_arguments)]
async fn connect_and_authenticate(
    shared: &Arc<Shared>,
    side: Side,
    local: &str,
    remote: &str,
    settings: NegotiationSettings,
    counters: Arc<Counters>,
    refused: &mut Option<ExternalRefusal>,
    plan: &mut &[Target],
) -> Result<Negotiated, Failure> {
    let (mut conn, i) = open_first(shared, side, local, remote, plan, &counters).await?;
    // From the target that answered on (a second connection starts there).
    *plan = plan.get(i..).unwrap_or_default();
    let direct_tls = conn.is_tls();
    let internal = side == Side::Internal;
    let err = |e: std::io::Error| Failure::NotFound(e.to_string());
    // Judge the remote's certificate once TLS is up, whether Direct TLS or after STARTTLS.
    let check_remote = async |conn: &Conn| {
        let check = shared
            .tls
            .check_peer_off_thread(conn.peer_certificates(), remote, internal)
            .await;
        if check != CertCheck::Valid {
            info!(%side, remote, check = ?check, "the remote certificate is not valid for the domain; SASL EXTERNAL will not be used");
        }
        check
    };
    let mut remote_cert = if direct_tls {
        check_remote(&conn).await
    } else {
        CertCheck::Absent
    };
    loop {
        conn.send_header(&StreamHeader::initiating(local, remote, true))
            .await
            .map_err(err)?;
        let header = expect_header(&mut conn).await?;
        let stream_id = header.id.clone().unwrap_or_default();
        let features_el = expect_element(&mut conn).await?;
        let features = Features::from_element(&features_el).unwrap_or(Features {
            starttls: negotiation::TlsOffer::None,
            sasl_mechanisms: Vec::new(),
            dialback: true,
        });
        let step = enforce::outbound_step(
            settings,
            enforce::OutboundFacts {
                offered_starttls: features.starttls != negotiation::TlsOffer::None,
                offered_sasl_external: features.sasl_mechanisms.iter().any(|m| m == "EXTERNAL"),
                offered_dialback: features.dialback,
                tls_active: conn.is_tls(),
                tls_available: true,
                we_have_trusted_cert: shared.tls.presents_trusted(local, internal),
                remote_cert_valid: remote_cert == CertCheck::Valid,
                external_refused: refused.is_some(),
            },
        );
        debug!(%side, local, remote, ?step, "outbound negotiation step");
        match step {
            OutboundStep::StartTls => {
                starttls(shared, &mut conn, local, remote, internal).await?;
                remote_cert = check_remote(&conn).await;
            }
            OutboundStep::SaslExternal => {
                conn.send(&negotiation::sasl_auth_external(Some(local)))
                    .await
                    .map_err(err)?;
                let reply = expect_element(&mut conn).await?;
                if let Some((condition, text)) = negotiation::parse_sasl_failure(&reply) {
                    let refusal = ExternalRefusal { condition, text };
                    let facts = enforce::ExternalRefusedFacts {
                        side,
                        remote,
                        condition: refusal.condition_name(),
                        dialback_offered: features.dialback || header.dialback,
                    };
                    let next = enforce::after_external_refused(settings, facts);
                    log_external_refused(shared, side, local, remote, &refusal, &next);
                    *refused = Some(refusal);
                    return follow_refusal(shared, conn, settings, facts, next, local, &stream_id)
                        .await;
                }
                if !reply.is("success", ns::SASL) {
                    return Err(Failure::NotFound(format!(
                        "SASL EXTERNAL answered with <{}/>, neither success nor failure",
                        Wire(&reply.name)
                    )));
                }
                conn.restart();
                conn.send_header(&StreamHeader::initiating(local, remote, true))
                    .await
                    .map_err(err)?;
                expect_header(&mut conn).await?;
                expect_element(&mut conn).await?;
                return Ok(Negotiated::Authenticated(conn, AuthMethod::SaslExternal));
            }
            OutboundStep::Dialback(method) => {
                dialback(shared, &mut conn, local, remote, &stream_id, method).await?;
                return Ok(Negotiated::Authenticated(conn, method));
            }
            OutboundStep::Fail(why) => return Err(Failure::NotFound(why.into())),
        }
    }
}

/// Carry out `next`, what [`enforce::after_external_refused`] said after the remote refused SASL
/// EXTERNAL on `conn` (stream `stream_id`): dialback on it, or close it for a new connection
/// ([`Negotiated::NewConnection`]), or give up. A remote that ends the stream instead of
/// answering the dialback offers none there any more: the decision is taken again with that
/// fact.
async fn follow_refusal(
    shared: &Shared,
    mut conn: Conn,
    settings: NegotiationSettings,
    mut facts: enforce::ExternalRefusedFacts<'_>,
    mut next: AfterExternalRefused,
    local: &str,
    stream_id: &str,
) -> Result<Negotiated, Failure> {
    let (side, remote) = (facts.side, facts.remote);
    loop {
        match next {
            AfterExternalRefused::Dialback(method) => {
                match dialback(shared, &mut conn, local, remote, stream_id, method).await {
                    Ok(()) => return Ok(Negotiated::Authenticated(conn, method)),
                    Err(Failure::Closed(why)) if facts.dialback_offered => {
                        facts.dialback_offered = false;
                        next = enforce::after_external_refused(settings, facts);
                        info!(%side, local, remote, closed = %why, next = ?next, "the remote closed the stream after refusing SASL EXTERNAL");
                    }
                    Err(f) => return Err(f),
                }
            }
            AfterExternalRefused::NewConnection => {
                conn.close().await;
                return Ok(Negotiated::NewConnection);
            }
            AfterExternalRefused::GiveUp(f) => {
                conn.close().await;
                return Err(Failure::Explained(f));
            }
        }
    }
}

/// Count the remote's refusal of our certificate (every time) and log it with what follows
/// (rate-limited per remote like the other refusal lines).
fn log_external_refused(
    shared: &Shared,
    side: Side,
    local: &str,
    remote: &str,
    refusal: &ExternalRefusal,
    next: &AfterExternalRefused,
) {
    let reason = enforce::SASL_EXTERNAL_REFUSED;
    shared.metrics.refused(side, reason);
    if let LogDecision::Log { suppressed } =
        shared.refusal_log.decide(Culprit::Peer(remote), reason)
    {
        let next = match next {
            AfterExternalRefused::Dialback(m) => format!("{m} on the same stream"),
            AfterExternalRefused::NewConnection => "dialback on a new connection".to_owned(),
            AfterExternalRefused::GiveUp(f) => format!("none, bouncing: {}", f.text),
        };
        warn!(%side, local, remote, reason, suppressed, external_refused = %refusal, next = %next, "the remote refused our certificate for SASL EXTERNAL");
    }
}

/// Dialback as the originating server on `conn` (XEP-0220 §2.1): send our key for the stream
/// `stream_id`, wait for the verdict.
pub(crate) async fn dialback(
    shared: &Shared,
    conn: &mut Conn,
    local: &str,
    remote: &str,
    stream_id: &str,
    method: AuthMethod,
) -> Result<(), Failure> {
    let secret = shared.snapshot().secret().to_owned();
    let key = dialback_key(&secret, remote, local, stream_id);
    conn.send(&negotiation::db_result_request(local, remote, &key))
        .await
        .map_err(|e| Failure::Closed(e.to_string()))?;
    loop {
        let reply = expect_element(conn).await?;
        if reply.is("result", ns::DIALBACK) {
            return match negotiation::dialback_type(&reply) {
                Some(DialbackType::Valid) => Ok(()),
                other => Err(Failure::NotFound(format!("{method} refused: {other:?}"))),
            };
        }
    }
}

/// How long a dialback verification may take in all (connection, negotiation, answer).
pub const VERIFY_TIMEOUT: Duration = Duration::from_secs(20);

/// Ask the authoritative server at `targets` whether `key` is valid for a stream from
/// `originating` to `receiving` with stream id `id` (XEP-0220 §2.2, `db:verify`), within
/// [`VERIFY_TIMEOUT`]. Concurrent requests for the same pair share one connection
/// ([`crate::callback`]).
pub async fn verify_key(
    shared: &Arc<Shared>,
    targets: &[Target],
    receiving: &str,
    originating: &str,
    id: &str,
    key: &str,
    internal: bool,
) -> Result<bool, String> {
    let work = crate::callback::verify(shared, targets, receiving, originating, id, key, internal);
    tokio::time::timeout(VERIFY_TIMEOUT, work)
        .await
        .map_err(|_| "verification timed out".to_owned())?
}

/// A connection to the authoritative server at `targets` for `db:verify` as `receiving` to
/// `originating`: stream header, and STARTTLS first when the peer requires it.
pub(crate) async fn open_verification(
    shared: &Arc<Shared>,
    targets: &[Target],
    receiving: &str,
    originating: &str,
    internal: bool,
) -> Result<Conn, String> {
    // Verification connections use STARTTLS targets only.
    let plain: Vec<Target> = targets.iter().filter(|t| !t.direct_tls).copied().collect();
    let (tcp, _) = connect_any(&plain, originating)
        .await
        .map_err(|f| f.to_string())?;
    let mut conn = Conn::new(tcp, shared.limits(), Arc::new(Counters::default()));
    conn.send_header(&StreamHeader::initiating(receiving, originating, true))
        .await
        .map_err(|e| e.to_string())?;
    let header = expect_header(&mut conn).await.map_err(|f| f.to_string())?;
    // A peer that requires TLS before anything else (e.g. Prosody with
    // s2s_require_encryption) gets STARTTLS first; otherwise verify at once.
    if header.version_numbers().is_some_and(|v| v >= (1, 0)) {
        let f = expect_element(&mut conn).await.map_err(|f| f.to_string())?;
        let required = Features::from_element(&f)
            .is_some_and(|f| f.starttls == negotiation::TlsOffer::Required);
        if required {
            starttls(shared, &mut conn, receiving, originating, internal)
                .await
                .map_err(|f| f.to_string())?;
            conn.send_header(&StreamHeader::initiating(receiving, originating, true))
                .await
                .map_err(|e| e.to_string())?;
            expect_header(&mut conn).await.map_err(|f| f.to_string())?;
            expect_element(&mut conn).await.map_err(|f| f.to_string())?;
        }
    }
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(body_len: usize) -> Element {
        Element::new("message", ns::SERVER)
            .with_attr("to", "bob@corp.example")
            .with_child(Element::new("body", ns::SERVER).with_text("x".repeat(body_len)))
    }

    #[test]
    fn batches_are_the_concatenated_stanzas_in_order_and_bounded() {
        let mut out = Vec::new();
        // Small stanzas: all of them (up to the stanza cap), byte for byte as written one by one.
        let q: VecDeque<Element> = (0..10).map(msg).collect();
        assert_eq!(serialize_batch(&q, &mut out), 10);
        let one_by_one: Vec<u8> = q.iter().flat_map(|e| e.to_bytes()).collect();
        assert_eq!(out, one_by_one);
        let q: VecDeque<Element> = (0..WRITE_BATCH_STANZAS + 5).map(|_| msg(1)).collect();
        assert_eq!(serialize_batch(&q, &mut out), WRITE_BATCH_STANZAS);
        // 1 KiB stanzas: the batch stops at WRITE_BATCH_BYTES.
        let q: VecDeque<Element> = (0..200).map(|_| msg(1000)).collect();
        let n = serialize_batch(&q, &mut out);
        assert!(n > 1 && n < 200, "{n}");
        assert!(out.len() <= WRITE_BATCH_BYTES, "{}", out.len());
        assert_eq!(out.len(), n * q[0].to_bytes().len());
        // A stanza larger than a batch goes alone; the one after it waits.
        let q: VecDeque<Element> = [msg(WRITE_BATCH_BYTES * 2), msg(1)].into_iter().collect();
        assert_eq!(serialize_batch(&q, &mut out), 1);
        assert_eq!(out, q[0].to_bytes());
        let q: VecDeque<Element> = [msg(1), msg(WRITE_BATCH_BYTES * 2)].into_iter().collect();
        assert_eq!(serialize_batch(&q, &mut out), 1);
        assert_eq!(out, q[0].to_bytes());
    }
}
