//! Inbound streams on both listeners: stream header, features, STARTTLS, SASL EXTERNAL, server
//! dialback (requests verified against the authoritative server by a task per request, which
//! first waits, bounded, for one of the domain's slots ([`crate::admission::DialbackSlots`]);
//! `db:verify` answered for the domains we are authoritative for), then stanzas, each decided by
//! [`fedgate_model::route::decide`] on one snapshot and the decision carried out
//! ([`crate::access`]): forwarded to the other side, bounced, dropped, or the stream closed.
//! Timers (keepalive, establishment, inactivity) and live policy changes close the stream through
//! the same path.
//!
//! The stream's negotiation is a typed state (`State`): `Connected` (admitted, no header yet: only
//! the place among unauthenticated connections), `Negotiating` (the peer's header answered: what
//! the headers established, `Header`) and `Authenticated` (the domains, the method, the lease);
//! transitions consume one state and return the next (`State::answered`,
//! `State::authenticated`). What every state has (the connection, clocks, dialback work in
//! flight) is `Inbound`'s own.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fedgate_model::access::StanzaKind;
use fedgate_model::enforce::{
    self, CertCheck, Condition, DialbackRequest, INTERNAL_SETTINGS, Refusal, Side,
    UNKNOWN_PEER_SETTINGS,
};
use fedgate_model::health::Direction as HealthDirection;
use fedgate_model::route::{self, Decision};
use fedgate_model::{AuthMethod, Domain, NegotiationSettings, XmppAllowedPartner};
use fedgate_xmpp::negotiation::{self, DialbackType, SaslCondition, TlsOffer};
use fedgate_xmpp::{Element, Event, StreamError, StreamErrorCondition, StreamHeader, ns};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::access;
use crate::admission::{
    PreAuthTicket, SLOT_WAIT, SlotRequest, VERIFICATIONS_PER_DOMAIN, WAITING_PER_DOMAIN,
    internal_source_allowed,
};
use crate::config::HostPort;
use crate::conn::{Conn, Counters, ReadError, UpgradeError};
use crate::dialback::check_key;
use crate::incoming::Incoming;
use crate::log_limit::{Culprit, LogDecision, Wire};
use crate::outbound;
use crate::state::{Control, ControlReceiver, Direction, Shared, Snapshot, StreamEntry};
use crate::stop::{Waited, until_stopped};

fn condition(c: Condition) -> StreamErrorCondition {
    match c {
        Condition::PolicyViolation => StreamErrorCondition::PolicyViolation,
        Condition::ResourceConstraint => StreamErrorCondition::ResourceConstraint,
        Condition::NotAuthorized => StreamErrorCondition::NotAuthorized,
        Condition::InvalidFrom => StreamErrorCondition::InvalidFrom,
        Condition::HostUnknown => StreamErrorCondition::HostUnknown,
        Condition::ImproperAddressing => StreamErrorCondition::ImproperAddressing,
        Condition::ConnectionTimeout => StreamErrorCondition::ConnectionTimeout,
    }
}

/// The stream error for a refusal.
pub fn refusal_error(r: &Refusal) -> StreamError {
    StreamError::new(condition(r.condition), r.text.clone())
}

/// An inbound stream: what it has in every state (connection, clocks, dialback work in flight),
/// and its [`State`].
struct Inbound {
    shared: Arc<Shared>,
    side: Side,
    reg: u64,
    conn: Conn,
    stream_id: String,
    opened: Instant,
    /// When the event being handled was read: the stream's one clock read per event, which
    /// the stanza's decision and `last_stanza` use too (the idle timers count seconds).
    last_data: Instant,
    last_stanza: Instant,
    last_sent: Instant,
    /// The remote address, for logs.
    peer_addr: SocketAddr,
    /// Failed authentication attempts (dialback, SASL) so far.
    auth_failures: u32,
    /// Domains whose dialback verification is in flight, and the tasks doing it.
    pending: Vec<String>,
    verifications: JoinSet<Verified>,
    /// Policy bounces this stream may still provoke.
    bounces: crate::access::BounceBudget,
    /// Stanzas forwarded per partner, not yet in the partner's traffic: handed over each tick
    /// and when the stream ends ([`Inbound::flush_relayed`]).
    relayed: fedgate_model::traffic::Tally,
    /// The snapshot each stanza is decided on, read again only when a newer one is published.
    snapshot: crate::state::SnapshotCache,
    state: State,
}

/// Where an inbound stream is, each state holding only what is known then. A transition
/// consumes one state and returns the next ([`State::answered`], [`State::authenticated`]);
/// a stream restart (after STARTTLS or SASL) keeps the state, and the peer's new header updates
/// it.
enum State {
    /// Admitted, no stream header from the peer yet.
    Connected(Connected),
    /// The peer's stream header answered; no domain authenticated yet.
    Negotiating(Negotiating),
    /// A domain authenticated (dialback may authenticate more on the same stream).
    Authenticated(Authenticated),
    /// Refused at admission, or over; also what stands in while a transition takes the state.
    Closed,
}

/// Admitted, before the peer's stream header.
struct Connected {
    /// This connection's place among the unauthenticated ones.
    pre_auth: PreAuthTicket,
}

/// What the peer's stream headers established, and our answer to the latest.
struct Header {
    /// The local domain the peer addressed (the latest header's `to`).
    local: String,
    /// The peer's domain: the latest `from` a header gave (normalised), or the one SASL
    /// authenticated; a header need not give one.
    peer: Option<String>,
    /// The partner the peer is (external side): of a header's `from`, or of the latest
    /// authenticated domain.
    partner: Option<Arc<XmppAllowedPartner>>,
    /// The peer's certificate checked for `peer` (on TLS, once a `from` was given).
    peer_cert: CertCheck,
    /// Our header answering the peer's latest.
    ours: StreamHeader,
}

/// The peer's header answered, nothing authenticated yet.
struct Negotiating {
    /// This connection's place among the unauthenticated ones.
    pre_auth: PreAuthTicket,
    header: Header,
}

/// At least one domain authenticated.
struct Authenticated {
    header: Header,
    /// The authenticated domains (lowercase), the first one first; never empty.
    domains: Vec<String>,
    /// How the latest domain authenticated.
    method: AuthMethod,
    /// The stream's lease in the pool's connection count (external side, when one was taken).
    lease: Option<crate::cluster::LeaseGuard>,
}

impl State {
    /// A stream header answered with `header`: the first one takes a connected stream to
    /// negotiation; later ones (after a restart) replace the header facts.
    fn answered(self, header: Header) -> State {
        match self {
            State::Connected(c) => State::Negotiating(Negotiating {
                pre_auth: c.pre_auth,
                header,
            }),
            State::Negotiating(n) => State::Negotiating(Negotiating { header, ..n }),
            State::Authenticated(a) => State::Authenticated(Authenticated { header, ..a }),
            State::Closed => State::Closed,
        }
    }

    /// `domain` authenticated by `method`: the first one gives up the place among the
    /// unauthenticated connections and takes `lease`; `partner`, when given, becomes the
    /// stream's. A stream without a header yet stays as it is (no element comes before it).
    fn authenticated(
        self,
        domain: String,
        method: AuthMethod,
        partner: Option<Arc<XmppAllowedPartner>>,
        lease: Option<crate::cluster::LeaseGuard>,
    ) -> State {
        match self {
            State::Negotiating(n) => {
                let mut ticket = n.pre_auth;
                ticket.release();
                let mut header = n.header;
                if partner.is_some() {
                    header.partner = partner;
                }
                State::Authenticated(Authenticated {
                    header,
                    domains: vec![domain],
                    method,
                    lease,
                })
            }
            State::Authenticated(mut a) => {
                if partner.is_some() {
                    a.header.partner = partner;
                }
                a.domains.push(domain);
                a.method = method;
                State::Authenticated(a)
            }
            other @ (State::Connected(_) | State::Closed) => other,
        }
    }

    fn header(&self) -> Option<&Header> {
        match self {
            State::Negotiating(n) => Some(&n.header),
            State::Authenticated(a) => Some(&a.header),
            State::Connected(_) | State::Closed => None,
        }
    }

    fn header_mut(&mut self) -> Option<&mut Header> {
        match self {
            State::Negotiating(n) => Some(&mut n.header),
            State::Authenticated(a) => Some(&mut a.header),
            State::Connected(_) | State::Closed => None,
        }
    }

    fn peer(&self) -> Option<&str> {
        self.header()?.peer.as_deref()
    }

    fn local(&self) -> Option<&str> {
        self.header().map(|h| h.local.as_str())
    }

    fn partner(&self) -> Option<&Arc<XmppAllowedPartner>> {
        self.header()?.partner.as_ref()
    }

    /// The authenticated domains; empty before authentication.
    fn domains(&self) -> &[String] {
        match self {
            State::Authenticated(a) => &a.domains,
            _ => &[],
        }
    }
}

/// Where the authoritative server of a dialback request is, to be resolved by the
/// verification task (never before the request passed admission).
enum Authoritative {
    Partner(Option<fedgate_model::ProxyTarget>),
    Internal(HostPort),
}

/// A dialback verification's outcome, reported by its task to the stream.
struct Verified {
    from: String,
    to: String,
    method: AuthMethod,
    /// The stream id the key was for: a result for an earlier stream (before a restart) is void.
    stream_id: String,
    verdict: Verdict,
}

enum Verdict {
    /// The authoritative server's answer (valid or not), or why there was none.
    Checked(Result<bool, String>),
    /// No slot came free within [`SLOT_WAIT`]: refused as `dialback_busy`, not verified.
    Busy,
}

/// The refusal of a dialback request for `domain` past its slots and queue (or the time to wait).
fn busy(domain: &str) -> Refusal {
    Refusal {
        condition: Condition::ResourceConstraint,
        reason: "dialback_busy",
        text: format!(
            "Too many dialback verifications for '{domain}' in progress (at most \
             {VERIFICATIONS_PER_DOMAIN}, {WAITING_PER_DOMAIN} more waiting up to {} s).",
            SLOT_WAIT.as_secs()
        ),
    }
}

/// What the stream does after an event. A stream restart (after TLS or SASL) needs nothing of
/// the loop: the [`Conn`] restarted ([`Conn::accept_tls`], [`Conn::restart`]) and the peer's new
/// header comes as any event does.
enum Flow {
    Continue,
    End,
}

/// How long a TLS handshake (Direct TLS, or after STARTTLS) may take.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);

fn new_stream_id() -> String {
    use rand::Rng;
    let mut r = rand::rng();
    (0..20)
        .map(|_| {
            let v: u8 = r.random_range(0..36);
            char::from_digit(v.into(), 36).unwrap_or('x')
        })
        .collect()
}

/// Handle one accepted connection until it ends.
/// With `direct_tls` (XEP-0368 listener) the TLS handshake comes first.
pub async fn handle(
    shared: Arc<Shared>,
    side: Side,
    tcp: TcpStream,
    peer_addr: SocketAddr,
    direct_tls: bool,
) {
    let _ = tcp.set_nodelay(true);
    let ip = peer_addr.ip();
    if side == Side::Internal && !internal_source_allowed(&shared.internal_sources(), ip) {
        log_refusal(
            &shared,
            side,
            ip,
            None,
            None,
            "source_not_allowed",
            "the address is not an internal server's (internal_listener.allowed_sources)",
        );
        return;
    }
    // Admission before any other work (TLS handshake included).
    let admitted = shared.pre_auth.admit(ip, shared.config().limits.pre_auth());
    if direct_tls && let Err(r) = &admitted {
        log_refusal(&shared, side, ip, None, None, r.reason, &r.text);
        return;
    }
    let counters = Arc::new(Counters::default());
    // The control channel from the start: its sender goes to the registry once the stream is
    // there, the handshake before hears shutdown through it.
    let (ctl_tx, mut ctl_rx) = crate::state::control_channel();
    let Some(conn) = accept(&shared, side, ip, tcp, direct_tls, &counters, &mut ctl_rx).await
    else {
        return;
    };
    let reg = shared.registry.insert(StreamEntry {
        side,
        direction: Direction::Inbound,
        remote_ip: Some(ip),
        partner: None,
        domains: Vec::new(),
        local_domain: None,
        method: None,
        tls_version: None,
        authenticated: false,
        since: std::time::SystemTime::now(),
        counters: counters.clone(),
        control: ctl_tx,
    });
    let mut s = Inbound {
        conn,
        shared: shared.clone(),
        side,
        reg,
        stream_id: new_stream_id(),
        opened: Instant::now(),
        last_data: Instant::now(),
        last_stanza: Instant::now(),
        last_sent: Instant::now(),
        peer_addr,
        auth_failures: 0,
        pending: Vec::new(),
        verifications: JoinSet::new(),
        bounces: Default::default(),
        relayed: Default::default(),
        snapshot: crate::state::SnapshotCache::new(&shared),
        state: State::Closed,
    };
    match admitted {
        Err(r) => s.refuse(&r).await,
        Ok(pre_auth) => {
            s.state = State::Connected(Connected { pre_auth });
            s.run(ctl_rx).await;
        }
    }
    s.flush_relayed();
    shared.registry.remove(reg);
    if let State::Authenticated(a) = s.state
        && let Some(lease) = a.lease
    {
        lease.release().await;
    }
    debug!(%side, peer = %peer_addr, "inbound connection ended");
}

/// The connection of an accepted stream: plain, or with `direct_tls` after the TLS handshake
/// (within [`TLS_HANDSHAKE_TIMEOUT`], given up at shutdown); `None` when the handshake failed,
/// timed out or was given up (counted, and logged when it failed). A function of its own so that
/// the handshake's state and the stream's never take room side by side in the connection task.
async fn accept(
    shared: &Arc<Shared>,
    side: Side,
    ip: IpAddr,
    tcp: TcpStream,
    direct_tls: bool,
    counters: &Arc<Counters>,
    ctl: &mut ControlReceiver,
) -> Option<Conn> {
    let mut conn = Conn::new(tcp, shared.limits(), counters.clone());
    if !direct_tls {
        return Some(conn);
    }
    let cfg = shared.tls.server_for(side == Side::Internal, None)?;
    let mut shutdown = shared.shutdown.clone();
    let handshaken = {
        let handshake = std::pin::pin!(tokio::time::timeout(
            TLS_HANDSHAKE_TIMEOUT,
            conn.accept_tls(cfg)
        ));
        until_stopped(handshake, ctl, &mut shutdown).await
    };
    let done = match handshaken {
        Waited::Done(r) | Waited::Shutdown(Some(r)) => r,
        Waited::Control(_) | Waited::Shutdown(None) => return None,
    };
    match done {
        Ok(Ok(())) => Some(conn),
        Ok(Err(e)) => {
            log_refusal(
                shared,
                side,
                ip,
                None,
                None,
                "tls_handshake",
                &format!("Direct TLS handshake failed: {e}"),
            );
            None
        }
        Err(_) => {
            shared.metrics.refused(side, "tls_handshake");
            None
        }
    }
}

/// Count a refusal, and log it unless its culprit has written its lines for this reason for now
/// ([`RefusalLog`](crate::log_limit::RefusalLog)): before authentication the source address
/// `addr` is charged, after it the `authenticated` domain. `claimed`, the domain the peer says it
/// is, is only named in the line.
pub fn log_refusal(
    shared: &Shared,
    side: Side,
    addr: IpAddr,
    authenticated: Option<&str>,
    claimed: Option<&str>,
    reason: &'static str,
    text: &str,
) {
    shared.metrics.refused(side, reason);
    // A refusal on a partner's authenticated stream counts in its health.
    if side == Side::External
        && let Some(p) = authenticated.and_then(|d| shared.snapshot().partner(d).cloned())
    {
        shared
            .health
            .refused(p.identity.as_str(), HealthDirection::Inbound, reason);
    }
    let culprit = authenticated.map_or(Culprit::Source(addr), Culprit::Peer);
    if let LogDecision::Log { suppressed } = shared.refusal_log.decide(culprit, reason) {
        let peer = Wire(authenticated.unwrap_or("-"));
        let claimed = Wire(claimed.unwrap_or("-"));
        warn!(%side, %addr, %peer, %claimed, reason, suppressed, "refused: {}", Wire(text));
    }
}

/// A domain from the wire (a stream header's or a dialback request's `from`/`to`), normalised
/// as the partner list is (case, trailing dot, IDNA); None if it is not a domain at all.
fn wire_domain(value: &str) -> Option<String> {
    Domain::parse(value).ok().map(|d| d.as_str().to_owned())
}

impl Inbound {
    fn settings(&self) -> NegotiationSettings {
        match self.side {
            Side::Internal => INTERNAL_SETTINGS,
            Side::External => self
                .state
                .partner()
                .map(|p| p.negotiation())
                .unwrap_or(UNKNOWN_PEER_SETTINGS),
        }
    }

    fn tls_available(&self) -> bool {
        self.shared
            .tls
            .server(self.side == Side::Internal)
            .is_some()
    }

    /// Whether this listener serves `to` (a hosted domain on the external side, an allowed
    /// partner domain on the internal side); if not, the refusal.
    fn target_admission(&self, to: &str, policy: &Snapshot) -> Result<(), Refusal> {
        let to_ok = match self.side {
            Side::External => policy.is_hosted(to),
            Side::Internal => policy.partner(to).is_some(),
        };
        enforce::target_admission(self.side, to, to_ok)
    }

    /// Apply a transition to the state.
    fn transition(&mut self, f: impl FnOnce(State) -> State) {
        let state = std::mem::replace(&mut self.state, State::Closed);
        self.state = f(state);
    }

    /// Log, count, send the stream error and close.
    async fn refuse(&mut self, r: &Refusal) {
        self.fail(&refusal_error(r), r.reason).await;
    }

    /// [`log_refusal`] for this stream: charged to its address until it authenticated a domain;
    /// `claimed` (else the stream header's `from`) named in the line.
    /// Record a failed inbound authentication of `domain` in its partner's health (external
    /// side, listed partners only; dialback answers come from the partner's own server).
    fn health_failed(&self, domain: &str, step: &str, reason: &str) {
        if self.side == Side::External
            && let Some(p) = self.shared.snapshot().partner(domain)
        {
            self.shared
                .health
                .failed(p.identity.as_str(), HealthDirection::Inbound, step, reason);
        }
    }

    fn log_refusal(&self, claimed: Option<&str>, reason: &'static str, text: &str) {
        log_refusal(
            &self.shared,
            self.side,
            self.peer_addr.ip(),
            self.state.domains().first().map(String::as_str),
            claimed.or(self.state.peer()),
            reason,
            text,
        );
    }

    async fn fail(&mut self, e: &StreamError, reason: &'static str) {
        let text = format!("{}: {}", e.condition.name(), e.text);
        self.log_refusal(None, reason, &text);
        let header = self.fallback_header();
        self.conn.fail(e, Some(&header)).await;
    }

    /// [`Inbound::fail`] for a peer's stream header addressed `to` whose `from` (else the
    /// peer's domain so far) is `peer`: named in the log line; before any header of ours, the
    /// stream error comes in one answering this header.
    async fn fail_header(
        &mut self,
        e: &StreamError,
        reason: &'static str,
        to: Option<&str>,
        peer: Option<&str>,
    ) {
        let text = format!("{}: {}", e.condition.name(), e.text);
        self.log_refusal(peer, reason, &text);
        let header = match self.state.header() {
            Some(h) => h.ours.clone(),
            None => StreamHeader::responding(
                to.unwrap_or_default(),
                peer.map(str::to_owned),
                self.stream_id.clone(),
                true,
            ),
        };
        self.conn.fail(e, Some(&header)).await;
    }

    /// Another failed authentication attempt: the stream is closed at the limit.
    async fn auth_failed(&mut self) -> Flow {
        self.auth_failures += 1;
        match enforce::auth_failure_verdict(self.auth_failures) {
            Some(r) => {
                self.refuse(&r).await;
                Flow::End
            }
            None => Flow::Continue,
        }
    }

    /// Our header of the latest stream, for a stream error before our header of this one (an
    /// anonymous one before any).
    fn fallback_header(&self) -> StreamHeader {
        match self.state.header() {
            Some(h) => h.ours.clone(),
            None => StreamHeader::responding(String::new(), None, self.stream_id.clone(), true),
        }
    }

    /// The stream's loop: wait for the next input (the peer's next event, a verification's
    /// outcome, the clock) and handle it, hearing control and shutdown throughout, the handling
    /// too ([`until_stopped`]: a handler waiting for queue room, an authorisation commit, a
    /// TLS handshake, a certificate check, a lease or a write is dropped for them).
    async fn run(&mut self, mut ctl: ControlReceiver) {
        let mut shutdown = self.shared.shutdown.clone();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            // Each input's handling in its own until_stopped: no enum of inputs carried into a
            // common handler, whose copy every idle stream's task would hold.
            let handled = tokio::select! {
                ev = self.conn.next_event() => {
                    let handling = std::pin::pin!(self.on_read(ev));
                    until_stopped(handling, &mut ctl, &mut shutdown).await
                }
                Some(c) = ctl.recv() => Waited::Control(c),
                Some(done) = self.verifications.join_next(), if !self.verifications.is_empty() => match done {
                    Ok(v) => {
                        let handling = std::pin::pin!(self.on_verified(v));
                        until_stopped(handling, &mut ctl, &mut shutdown).await
                    }
                    Err(_) => continue,
                },
                _ = shutdown.changed() => Waited::Shutdown(None),
                _ = tick.tick() => {
                    let handling = std::pin::pin!(self.on_tick());
                    until_stopped(handling, &mut ctl, &mut shutdown).await
                }
            };
            match handled {
                Waited::Done(Flow::Continue) => {}
                Waited::Done(Flow::End) => return,
                stop => return self.stopped(stop).await,
            }
        }
    }

    /// What the peer sent next (or why nothing more comes).
    async fn on_read(&mut self, ev: Result<Event, ReadError>) -> Flow {
        match ev {
            Ok(ev) => {
                self.last_data = Instant::now();
                self.on_event(ev).await
            }
            Err(ReadError::Stream(e)) => {
                self.fail(&e, "bad_input").await;
                Flow::End
            }
            Err(e) => {
                debug!(side = %self.side, error = %e, "connection lost");
                Flow::End
            }
        }
    }

    /// A stop heard while waiting or handling (`stop` is never [`Waited::Done`] with the stream
    /// over): a live change closes the stream with its error, shutdown with
    /// `<system-shutdown/>` (a handler that finished within the grace and ended the stream
    /// itself has closed it already). After a write cut off half-way nothing is written
    /// ([`Conn::write_cut`]).
    async fn stopped(&mut self, stop: Waited<Flow>) {
        match stop {
            Waited::Control(Control::Close(e, reason)) => self.fail(&e, reason).await,
            Waited::Done(_) | Waited::Shutdown(Some(Flow::End)) => {}
            Waited::Shutdown(_) => {
                let e = StreamError::new(
                    StreamErrorCondition::SystemShutdown,
                    "The gateway is shutting down.",
                );
                let header = self.fallback_header();
                self.conn.fail(&e, Some(&header)).await;
            }
        }
    }

    /// Add the stanzas counted in `relayed` to their partners' traffic: from them (external
    /// side) or to them (internal side).
    fn flush_relayed(&mut self) {
        let direction = match self.side {
            Side::External => HealthDirection::Inbound,
            Side::Internal => HealthDirection::Outbound,
        };
        self.shared
            .health
            .relayed_tally(direction, &mut self.relayed);
    }

    async fn on_tick(&mut self) -> Flow {
        self.flush_relayed();
        // Through the stream's copy: it drops a replaced snapshot an idle stream still held.
        let policy = self.snapshot.current(&self.shared).clone();
        let st = &policy.settings;
        let clock = enforce::StreamClock {
            since_open: self.opened.elapsed().as_secs(),
            since_data: self.last_data.elapsed().as_secs(),
            since_stanza: self.last_stanza.elapsed().as_secs(),
            authenticated: !self.state.domains().is_empty(),
        };
        let timeouts = enforce::Timeouts {
            keep_alive_interval: st.keep_alive_interval.into(),
            stream_establishment_timeout: st.stream_establishment_timeout.into(),
            stream_inactivity_timeout: st.stream_inactivity_timeout.into(),
        };
        if let Some(r) = enforce::timeout_verdict(clock, timeouts) {
            self.refuse(&r).await;
            return Flow::End;
        }
        let enable = self.state.partner().is_none_or(|p| p.enable_keep_alive);
        if self.conn.header_sent()
            && let Some(p) = enforce::keepalive_period(enable, st.keep_alive_interval.into())
            && self.last_sent.elapsed() >= Duration::from_secs(p)
        {
            if self.conn.send_bytes(b" ").await.is_err() {
                return Flow::End;
            }
            self.last_sent = Instant::now();
        }
        Flow::Continue
    }

    async fn on_event(&mut self, ev: Event) -> Flow {
        match ev {
            Event::StreamOpen(h) => self.on_header(h).await,
            Event::Whitespace(_) => Flow::Continue,
            Event::StreamClose => {
                self.conn.close().await;
                Flow::End
            }
            Event::Element { element, .. } => self.on_element(element).await,
        }
    }

    async fn on_header(&mut self, h: StreamHeader) -> Flow {
        let policy = self.shared.snapshot();
        self.stream_id = new_stream_id();
        // A new stream (after TLS or SASL): verifications for the old one are void.
        self.verifications.abort_all();
        self.pending.clear();
        let to = match h.to.as_deref().map(|t| (t, wire_domain(t))) {
            Some((_, Some(d))) => Some(d),
            Some((t, None)) => {
                let e = StreamError::new(
                    StreamErrorCondition::HostUnknown,
                    format!("The stream's 'to' ({}) is not a domain.", Wire(t)),
                );
                self.fail(&e, "unknown_target").await;
                return Flow::End;
            }
            None => None,
        };
        let from = match h.from.as_deref().map(|f| (f, wire_domain(f))) {
            Some((_, Some(d))) => Some(d),
            Some((f, None)) => {
                let e = StreamError::new(
                    StreamErrorCondition::InvalidFrom,
                    format!("The stream's 'from' ({}) is not a domain.", Wire(f)),
                );
                self.fail(&e, "invalid_from").await;
                return Flow::End;
            }
            None => None,
        };
        // From here on a refusal names this header's `from`, else the peer's domain so far.
        let peer = from
            .clone()
            .or_else(|| self.state.peer().map(str::to_owned));
        if h.content_ns != ns::SERVER {
            let e = StreamError::new(
                StreamErrorCondition::InvalidNamespace,
                "This is a server-to-server port (jabber:server).",
            );
            self.fail_header(&e, "invalid_namespace", to.as_deref(), peer.as_deref())
                .await;
            return Flow::End;
        }
        let Some(to) = to else {
            let e = StreamError::new(
                StreamErrorCondition::HostUnknown,
                "The stream header has no 'to'.",
            );
            self.fail_header(&e, "unknown_target", None, peer.as_deref())
                .await;
            return Flow::End;
        };
        if let Err(r) = self.target_admission(&to, &policy) {
            self.fail_header(&refusal_error(&r), r.reason, Some(&to), peer.as_deref())
                .await;
            return Flow::End;
        }
        let mut partner = self.state.partner().cloned();
        if let Some(from) = &from {
            match self.side {
                Side::External => {
                    match enforce::partner_admission(from, policy.partner(from).map(|p| &**p)) {
                        Ok(_) => partner = policy.partner(from).cloned(),
                        Err(r) => {
                            self.fail_header(
                                &refusal_error(&r),
                                r.reason,
                                Some(&to),
                                peer.as_deref(),
                            )
                            .await;
                            return Flow::End;
                        }
                    }
                }
                Side::Internal => {
                    if !self.shared.is_hosted(from) {
                        let e = StreamError::new(
                            StreamErrorCondition::PolicyViolation,
                            format!("'{from}' is not a domain hosted by this gateway."),
                        );
                        self.fail_header(&e, "not_hosted", Some(&to), peer.as_deref())
                            .await;
                        return Flow::End;
                    }
                }
            }
        }
        let mut peer_cert = self
            .state
            .header()
            .map_or(CertCheck::Absent, |h| h.peer_cert);
        if self.conn.is_tls()
            && let Some(peer) = &peer
        {
            peer_cert = self
                .shared
                .tls
                .check_peer_off_thread(
                    self.conn.peer_certificates(),
                    peer,
                    self.side == Side::Internal,
                )
                .await;
        }
        let ours = StreamHeader::responding(to.clone(), from, self.stream_id.clone(), true);
        self.transition(|s| {
            s.answered(Header {
                local: to,
                peer,
                partner,
                peer_cert,
                ours,
            })
        });
        let sasl_done =
            matches!(&self.state, State::Authenticated(a) if a.method == AuthMethod::SaslExternal);
        let offer = if !sasl_done {
            enforce::features_offer(
                self.settings(),
                self.conn.is_tls(),
                self.tls_available(),
                peer_cert == CertCheck::Valid,
            )
        } else {
            // After SASL: nothing more to negotiate.
            enforce::Offer {
                starttls: enforce::TlsOffer::None,
                sasl_external: false,
                dialback: false,
            }
        };
        let starttls = match offer.starttls {
            enforce::TlsOffer::None => TlsOffer::None,
            enforce::TlsOffer::Optional => TlsOffer::Optional,
            enforce::TlsOffer::Required => TlsOffer::Required,
        };
        let features = negotiation::stream_features(starttls, offer.sasl_external, offer.dialback);
        let Some(header) = self.state.header() else {
            return Flow::End;
        };
        if self
            .conn
            .send_header_with(&header.ours, Some(&features))
            .await
            .is_err()
        {
            return Flow::End;
        }
        self.last_sent = Instant::now();
        Flow::Continue
    }

    async fn on_element(&mut self, e: Element) -> Flow {
        match Incoming::classify(&e) {
            Incoming::StartTls => self.on_starttls().await,
            Incoming::Sasl => self.on_sasl(&e).await,
            Incoming::DbResult => self.on_db_result(&e).await,
            Incoming::DbVerify => self.on_db_verify(&e).await,
            Incoming::StreamError => {
                info!(side = %self.side, peer = self.state.peer().unwrap_or("-"), error = ?StreamError::from_element(&e), "peer sent a stream error");
                self.conn.close().await;
                Flow::End
            }
            Incoming::Stanza(kind) => self.on_stanza(kind, e).await,
            Incoming::Other => {
                let err = StreamError::new(
                    StreamErrorCondition::UnsupportedStanzaType,
                    format!("Unexpected element '{}'.", e.name),
                );
                self.fail(&err, "unsupported_element").await;
                Flow::End
            }
        }
    }

    async fn on_starttls(&mut self) -> Flow {
        if self.conn.is_tls() {
            let e = StreamError::new(
                StreamErrorCondition::PolicyViolation,
                "TLS is already active.",
            );
            self.fail(&e, "tls_twice").await;
            return Flow::End;
        }
        if let Err(r) = enforce::starttls_admission(self.settings(), self.tls_available()) {
            let _ = self.conn.send(&negotiation::tls_failure()).await;
            self.refuse(&r).await;
            return Flow::End;
        }
        let Some(cfg) = self
            .shared
            .tls
            .server_for(self.side == Side::Internal, self.state.local())
        else {
            return Flow::End;
        };
        if self.conn.send(&negotiation::proceed()).await.is_err() {
            return Flow::End;
        }
        match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, self.conn.accept_tls(cfg)).await {
            Ok(Ok(())) => {
                let v = self.conn.tls_version();
                self.shared.registry.update(self.reg, |e| e.tls_version = v);
                Flow::Continue
            }
            Ok(Err(UpgradeError::NotPlain)) => Flow::End,
            Ok(Err(UpgradeError::DataAfterStartTls(discarded))) => {
                warn!(side = %self.side, discarded, "data after <starttls/> discarded; closing");
                Flow::End
            }
            Ok(Err(e)) => {
                let text = format!("TLS handshake failed: {e}");
                self.log_refusal(None, "tls_handshake", &text);
                Flow::End
            }
            Err(_) => {
                let text = "TLS handshake timed out";
                self.log_refusal(None, "tls_handshake", text);
                Flow::End
            }
        }
    }

    /// Admission of an authenticated domain on this stream: partner and limits. The first domain
    /// of an external stream takes a stream lease: the limits count the whole pool's streams
    /// (this node's own when no lease can be taken, see [`crate::cluster::take_lease`]).
    async fn admit_domain(&mut self, domain: &str, method: AuthMethod) -> Result<(), Refusal> {
        let first = match &self.state {
            State::Negotiating(_) => true,
            State::Authenticated(_) => false,
            // No element comes before the stream header (the parser's rule): nothing
            // authenticates there.
            State::Connected(_) | State::Closed => {
                return Err(Refusal {
                    condition: Condition::PolicyViolation,
                    reason: "unsupported_element",
                    text: "No stream header yet.".to_owned(),
                });
            }
        };
        let policy = self.shared.snapshot();
        let (mut partner, mut lease) = (None, None);
        match self.side {
            Side::External => {
                let p = enforce::partner_admission(domain, policy.partner(domain).map(|p| &**p))?;
                if first {
                    let partner = p.clone();
                    let (partner_limit, limit) = (
                        policy.settings.partner_connection_limit,
                        policy.settings.connection_limit,
                    );
                    // A task of its own, reporting back: when this wait is dropped (a stop,
                    // [`until_stopped`]) the lease it takes is dropped with its guard, which gives
                    // it back, instead of staying in the store without a stream.
                    let (shared, reg) = (self.shared.clone(), self.reg);
                    let identity = partner.identity.clone();
                    let taking = tokio::spawn(async move {
                        crate::cluster::take_lease(
                            &shared,
                            reg,
                            &identity,
                            HealthDirection::Inbound,
                            move |counts| {
                                enforce::connection_admission(
                                    &partner,
                                    partner_limit,
                                    limit,
                                    counts,
                                )
                            },
                        )
                        .await
                    });
                    lease = match taking.await {
                        Ok(taken) => taken?,
                        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                        // The runtime is going away: no lease, nor a stream for long.
                        Err(_) => None,
                    };
                }
                partner = policy.partner(domain).cloned();
            }
            Side::Internal => {
                if !self.shared.is_hosted(domain) {
                    return Err(Refusal {
                        condition: Condition::PolicyViolation,
                        reason: "not_hosted",
                        text: format!("'{domain}' is not a domain hosted by this gateway."),
                    });
                }
            }
        }
        self.transition(|s| s.authenticated(domain.to_owned(), method, partner, lease));
        self.last_stanza = Instant::now();
        let (partner, domains, local, tls) = (
            self.state.partner().map(|p| p.identity.clone()),
            self.state.domains().to_vec(),
            self.state.local().map(str::to_owned),
            self.conn.tls_version(),
        );
        if let Some(p) = partner.as_ref().filter(|_| self.side == Side::External) {
            self.shared.health.succeeded(
                p.as_str(),
                HealthDirection::Inbound,
                method,
                tls,
                crate::tls::not_after(&self.conn.peer_certificates()),
            );
        }
        self.shared.registry.update(self.reg, |e| {
            e.authenticated = true;
            e.partner = partner;
            e.domains = domains;
            e.local_domain = local;
            e.method = Some(method);
            e.tls_version = tls;
        });
        info!(side = %self.side, domain, method = %method, tls = tls.unwrap_or("none"), "inbound stream authenticated");
        Ok(())
    }

    async fn on_sasl(&mut self, e: &Element) -> Flow {
        let (mech, authzid) = match negotiation::parse_sasl_auth(e) {
            Some(Ok(v)) => v,
            _ => {
                return self
                    .sasl_failed(SaslCondition::IncorrectEncoding, "bad authzid")
                    .await;
            }
        };
        if mech != "EXTERNAL" {
            return self
                .sasl_failed(SaslCondition::InvalidMechanism, "only EXTERNAL")
                .await;
        }
        let authzid = match authzid.map(|a| wire_domain(&a)) {
            Some(Some(d)) => Some(d),
            Some(None) => {
                return self
                    .sasl_failed(SaslCondition::InvalidAuthzid, "the authzid is not a domain")
                    .await;
            }
            None => None,
        };
        let domain = match (authzid, self.state.peer().map(str::to_owned)) {
            (Some(a), Some(p)) if a != p => {
                return self
                    .sasl_failed(
                        SaslCondition::InvalidAuthzid,
                        "authzid differs from the stream's from",
                    )
                    .await;
            }
            (Some(a), _) => a,
            (None, Some(p)) => p,
            (None, None) => {
                return self
                    .sasl_failed(SaslCondition::InvalidAuthzid, "no identity")
                    .await;
            }
        };
        let settings = match self.side {
            Side::Internal => INTERNAL_SETTINGS,
            Side::External => match self.shared.snapshot().partner(&domain) {
                Some(p) => p.negotiation(),
                None => {
                    let r = enforce::partner_admission(&domain, None).unwrap_err();
                    self.refuse(&r).await;
                    return Flow::End;
                }
            },
        };
        let cert = self
            .shared
            .tls
            .check_peer_off_thread(
                self.conn.peer_certificates(),
                &domain,
                self.side == Side::Internal,
            )
            .await;
        let result = match enforce::sasl_admission(&domain, settings, self.conn.is_tls(), cert) {
            Ok(m) => self.admit_domain(&domain, m).await,
            Err(r) => Err(r),
        };
        match result {
            Ok(()) => {
                if self.conn.send(&negotiation::sasl_success()).await.is_err() {
                    return Flow::End;
                }
                if let Some(h) = self.state.header_mut() {
                    h.peer = Some(domain);
                }
                self.conn.restart();
                Flow::Continue
            }
            Err(r) if r.condition == Condition::NotAuthorized => {
                self.log_refusal(Some(&domain), r.reason, &r.text);
                self.sasl_failed(SaslCondition::NotAuthorized, &r.text)
                    .await
            }
            Err(r) => {
                self.refuse(&r).await;
                Flow::End
            }
        }
    }

    /// Answer a SASL attempt with `<failure/>`; a failed attempt counts toward the limit.
    async fn sasl_failed(&mut self, condition: SaslCondition, text: &str) -> Flow {
        let failure = negotiation::sasl_failure(condition, Some(text));
        if self.conn.send(&failure).await.is_err() {
            return Flow::End;
        }
        self.auth_failed().await
    }

    async fn on_db_result(&mut self, e: &Element) -> Flow {
        let addressing = (
            e.attr("from").map(wire_domain),
            e.attr("to").map(wire_domain),
        );
        let (Some(Some(from)), Some(Some(to))) = addressing else {
            let err = StreamError::new(
                StreamErrorCondition::ImproperAddressing,
                "db:result needs 'from' and 'to', each a domain.",
            );
            self.fail(&err, "improper_addressing").await;
            return Flow::End;
        };
        let key = e.text();
        let policy = self.shared.snapshot();
        if let Err(r) = self.target_admission(&to, &policy) {
            self.refuse(&r).await;
            return Flow::End;
        }
        // Admission first, from the partner list and the config alone: no DNS or network work
        // for a domain that may not use dialback here.
        let (settings, authoritative) = match self.side {
            Side::External => {
                match enforce::partner_admission(&from, policy.partner(&from).map(|p| &**p)) {
                    Ok(p) => (
                        p.negotiation(),
                        Authoritative::Partner(p.proxy_fqdn.clone()),
                    ),
                    Err(r) => {
                        self.refuse(&r).await;
                        return Flow::End;
                    }
                }
            }
            Side::Internal => match policy.hosted(&from) {
                Some(h) => (
                    INTERNAL_SETTINGS,
                    Authoritative::Internal(h.internal_server.clone()),
                ),
                None => {
                    let err = StreamError::new(
                        StreamErrorCondition::PolicyViolation,
                        format!("'{from}' is not a domain hosted by this gateway."),
                    );
                    self.fail(&err, "not_hosted").await;
                    return Flow::End;
                }
            },
        };
        let method = match enforce::dialback_admission(&from, settings, self.conn.is_tls()) {
            Ok(m) => m,
            Err(r) => {
                self.refuse(&r).await;
                return Flow::End;
            }
        };
        match enforce::dialback_request(&from, self.state.domains(), &self.pending) {
            DialbackRequest::AlreadyAuthenticated => {
                let valid = negotiation::db_result_response(&to, &from, &DialbackType::Valid);
                return match self.conn.send(&valid).await {
                    Ok(()) => Flow::Continue,
                    Err(_) => Flow::End,
                };
            }
            DialbackRequest::Reject(r) => return self.dialback_rejected(&to, &from, &r).await,
            DialbackRequest::Verify => {}
        }
        // A slot now, or a place in the domain's queue: the task waits for it (bounded), so
        // this loop goes on hearing the peer, shutdown and live changes meanwhile.
        let slot = match self.shared.dialback_slots.request(&from) {
            SlotRequest::Granted(slot) => Ok(slot),
            SlotRequest::Waiting(wait) => Err(wait),
            SlotRequest::Busy => return self.dialback_rejected(&to, &from, &busy(&from)).await,
        };
        self.pending.push(from.clone());
        let shared = self.shared.clone();
        let internal = self.side == Side::Internal;
        let stream_id = self.stream_id.clone();
        self.verifications.spawn(async move {
            let _slot = match slot {
                Ok(slot) => slot,
                Err(wait) => match wait.granted(SLOT_WAIT).await {
                    Some(slot) => slot,
                    None => {
                        return Verified {
                            from,
                            to,
                            method,
                            stream_id,
                            verdict: Verdict::Busy,
                        };
                    }
                },
            };
            let targets = match &authoritative {
                Authoritative::Partner(proxy) => {
                    shared.resolver.partner_targets(&from, proxy.as_ref()).await
                }
                Authoritative::Internal(server) => shared.resolver.internal_targets(server).await,
            };
            let verdict =
                outbound::verify_key(&shared, &targets, &to, &from, &stream_id, &key, internal)
                    .await;
            Verified {
                from,
                to,
                method,
                stream_id,
                verdict: Verdict::Checked(verdict),
            }
        });
        Flow::Continue
    }

    /// A dialback request refused before verification: answered with a dialback error (the
    /// stream stays up), counted as a failed attempt.
    async fn dialback_rejected(&mut self, to: &str, from: &str, r: &Refusal) -> Flow {
        self.log_refusal(Some(from), r.reason, &r.text);
        let condition = match r.condition {
            Condition::ResourceConstraint => fedgate_xmpp::StanzaErrorCondition::ResourceConstraint,
            _ => fedgate_xmpp::StanzaErrorCondition::PolicyViolation,
        };
        let err = fedgate_xmpp::StanzaError::new(condition).with_text(&r.text);
        let reply = negotiation::db_result_response(to, from, &DialbackType::Error(err));
        if self.conn.send(&reply).await.is_err() {
            return Flow::End;
        }
        self.auth_failed().await
    }

    /// A verification task reported back.
    async fn on_verified(&mut self, v: Verified) -> Flow {
        self.pending.retain(|d| *d != v.from);
        if v.stream_id != self.stream_id {
            return Flow::Continue;
        }
        let (to, from) = (v.to.as_str(), v.from.as_str());
        let verdict = match v.verdict {
            Verdict::Checked(verdict) => verdict,
            Verdict::Busy => return self.dialback_rejected(to, from, &busy(from)).await,
        };
        match verdict {
            Ok(true) => {
                if let Err(r) = self.admit_domain(from, v.method).await {
                    self.refuse(&r).await;
                    return Flow::End;
                }
                let valid = negotiation::db_result_response(to, from, &DialbackType::Valid);
                match self.conn.send(&valid).await {
                    Ok(()) => Flow::Continue,
                    Err(_) => Flow::End,
                }
            }
            Ok(false) => {
                self.log_refusal(Some(from), "dialback_invalid", "dialback key invalid");
                self.health_failed(
                    from,
                    "dialback",
                    "its authoritative server answered the key invalid",
                );
                let invalid = negotiation::db_result_response(to, from, &DialbackType::Invalid);
                if self.conn.send(&invalid).await.is_err() {
                    return Flow::End;
                }
                self.auth_failed().await
            }
            Err(why) => {
                let text = format!("dialback verification failed: {why}");
                self.log_refusal(Some(from), "dialback_unverified", &text);
                self.health_failed(from, "dialback", &text);
                let err = fedgate_xmpp::StanzaError::new(
                    fedgate_xmpp::StanzaErrorCondition::RemoteServerNotFound,
                );
                let reply = negotiation::db_result_response(to, from, &DialbackType::Error(err));
                if self.conn.send(&reply).await.is_err() {
                    return Flow::End;
                }
                self.auth_failed().await
            }
        }
    }

    async fn on_db_verify(&mut self, e: &Element) -> Flow {
        let (Some(from), Some(to), Some(id)) = (e.attr("from"), e.attr("to"), e.attr("id")) else {
            let err = StreamError::new(
                StreamErrorCondition::ImproperAddressing,
                "db:verify needs 'from', 'to' and 'id'.",
            );
            self.fail(&err, "improper_addressing").await;
            return Flow::End;
        };
        let policy = self.shared.snapshot();
        let authoritative = match self.side {
            Side::External => policy.is_hosted(to),
            Side::Internal => policy.partner(to).is_some(),
        };
        let valid = authoritative && check_key(policy.secret(), from, to, id, &e.text());
        debug!(side = %self.side, from, to, valid, "answered db:verify");
        let verdict = if valid {
            DialbackType::Valid
        } else {
            DialbackType::Invalid
        };
        if self
            .conn
            .send(&negotiation::db_verify_response(to, from, id, &verdict))
            .await
            .is_err()
        {
            return Flow::End;
        }
        Flow::Continue
    }

    async fn on_stanza(&mut self, kind: StanzaKind, e: Element) -> Flow {
        let snapshot = self.snapshot.current(&self.shared);
        let log_bodies = snapshot.settings.enable_logging_all_message_bodies;
        let decision = route::decide(
            snapshot,
            route::StreamFacts {
                side: self.side,
                authenticated: self.state.domains(),
            },
            route::Addressing {
                from: e.attr("from"),
                to: e.attr("to"),
                id: e.attr("id"),
            },
            kind,
            &access::LiveSessions {
                sessions: &self.shared.sessions,
                now: self.last_data,
            },
        );
        match decision {
            Decision::Forward(f) => {
                self.last_stanza = self.last_data;
                let (from, to) = (&f.from_domain, &f.to_domain);
                if log_bodies {
                    debug!(side = %self.side, %from, %to, stanza = %String::from_utf8_lossy(&e.to_bytes()), "relaying");
                } else {
                    debug!(side = %self.side, %from, %to, kind = %e.name, "relaying");
                }
                let Some(e) =
                    access::forward(&self.shared, self.side, &f, e, &mut self.bounces).await
                else {
                    return Flow::Continue;
                };
                // Counted in the partner's traffic (from the stream's tally, each second).
                if let Some(p) = &f.partner
                    && self.relayed.add(p)
                {
                    self.flush_relayed();
                }
                outbound::route_paced(
                    &self.shared,
                    f.out,
                    f.from_domain.as_str(),
                    f.to_domain.as_str(),
                    e,
                )
                .await;
                Flow::Continue
            }
            Decision::Bounce(condition, r) => {
                access::refuse(
                    &self.shared,
                    self.side,
                    &e,
                    Some(condition),
                    &r,
                    &mut self.bounces,
                );
                Flow::Continue
            }
            Decision::Drop(r) => {
                access::refuse(&self.shared, self.side, &e, None, &r, &mut self.bounces);
                Flow::Continue
            }
            Decision::Close(r) => {
                self.refuse(&r).await;
                Flow::End
            }
        }
    }
}
