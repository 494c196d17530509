//! Inbound streams on both listeners: stream header, features, STARTTLS, SASL EXTERNAL, server
//! dialback (requests verified against the authoritative server, `db:verify` answered for the
//! domains we are authoritative for), then stanzas, each judged by
//! [`fedgate_model::enforce::stanza_verdict`] and routed to the other side. Timers (keepalive,
//! establishment, inactivity) and live policy changes close the stream through the same path.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fedgate_model::enforce::{
    self, CertCheck, Condition, INTERNAL_SETTINGS, Refusal, Side, StanzaVerdict,
    UNKNOWN_PEER_SETTINGS,
};
use fedgate_model::{AuthMethod, NegotiationSettings, XmppAllowedPartner};
use fedgate_xmpp::negotiation::{self, DialbackType, SaslCondition, TlsOffer};
use fedgate_xmpp::{Element, Event, StreamError, StreamErrorCondition, StreamHeader, ns};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::conn::{Conn, Counters, Io, ReadError};
use crate::dialback::check_key;
use crate::outbound;
use crate::resolve;
use crate::state::{Control, Direction, Policy, Shared, StreamEntry};

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

struct Inbound {
    shared: Arc<Shared>,
    side: Side,
    reg: u64,
    conn: Conn,
    stream_id: String,
    /// The peer's `from` (lowercase), once given.
    peer: Option<String>,
    /// The local domain the peer addressed (`to`).
    local: Option<String>,
    partner: Option<Arc<XmppAllowedPartner>>,
    authenticated: Vec<String>,
    method: Option<AuthMethod>,
    peer_cert: CertCheck,
    opened: Instant,
    last_data: Instant,
    last_stanza: Instant,
    last_sent: Instant,
    our_header: Option<StreamHeader>,
}

enum Flow {
    Continue,
    /// Stream restarted (after TLS or SASL): expect a new header.
    Restart,
    End,
}

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
    let io = if direct_tls {
        let Some(cfg) = shared.tls.server_for(side == Side::Internal, None) else {
            return;
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
        match tokio::time::timeout(Duration::from_secs(15), acceptor.accept(tcp)).await {
            Ok(Ok(tls)) => Io::TlsServer(Box::new(tls)),
            Ok(Err(e)) => {
                warn!(%side, peer = %peer_addr, error = %e, "Direct TLS handshake failed");
                shared.metrics.refused(side, "tls_handshake");
                return;
            }
            Err(_) => {
                shared.metrics.refused(side, "tls_handshake");
                return;
            }
        }
    } else {
        Io::Plain(tcp)
    };
    let counters = Arc::new(Counters::default());
    let (ctl_tx, ctl_rx) = mpsc::unbounded_channel();
    let ip = peer_addr.ip();
    let before_auth = shared.registry.unauthenticated_from(ip);
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
        conn: Conn::new(io, shared.limits(), counters),
        shared: shared.clone(),
        side,
        reg,
        stream_id: new_stream_id(),
        peer: None,
        local: None,
        partner: None,
        authenticated: Vec::new(),
        method: None,
        peer_cert: CertCheck::Absent,
        opened: Instant::now(),
        last_data: Instant::now(),
        last_stanza: Instant::now(),
        last_sent: Instant::now(),
        our_header: None,
    };
    if let Err(r) = enforce::ip_admission(
        before_auth,
        shared.config().limits.connections_per_ip_before_auth,
    ) {
        s.refuse(&r).await;
    } else {
        s.run(ctl_rx).await;
    }
    shared.registry.remove(reg);
    debug!(%side, peer = %peer_addr, "inbound connection ended");
}

impl Inbound {
    fn settings(&self) -> NegotiationSettings {
        match self.side {
            Side::Internal => INTERNAL_SETTINGS,
            Side::External => self
                .partner
                .as_ref()
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

    /// Log, count, send the stream error and close.
    /// Whether this listener serves `to` (a hosted domain on the external side, an allowed
    /// partner domain on the internal side); if not, the stream is refused and false returned.
    async fn admit_target(&mut self, to: &str, policy: &Policy) -> bool {
        let to_ok = match self.side {
            Side::External => self.shared.is_hosted(to),
            Side::Internal => policy.partner(to).is_some(),
        };
        match enforce::target_admission(self.side, to, to_ok) {
            Ok(()) => true,
            Err(r) => {
                self.refuse(&r).await;
                false
            }
        }
    }

    async fn refuse(&mut self, r: &Refusal) {
        warn!(side = %self.side, peer = self.peer.as_deref().unwrap_or("-"), reason = r.reason, condition = r.condition.name(), "refused: {}", r.text);
        self.shared.metrics.refused(self.side, r.reason);
        let header = self.fallback_header();
        self.conn.fail(&refusal_error(r), Some(&header)).await;
    }

    async fn fail(&mut self, e: &StreamError, reason: &'static str) {
        warn!(side = %self.side, peer = self.peer.as_deref().unwrap_or("-"), reason, condition = e.condition.name(), "closing stream: {}", e.text);
        self.shared.metrics.refused(self.side, reason);
        let header = self.fallback_header();
        self.conn.fail(e, Some(&header)).await;
    }

    fn fallback_header(&self) -> StreamHeader {
        self.our_header.clone().unwrap_or_else(|| {
            StreamHeader::responding(
                self.local.clone().unwrap_or_default(),
                self.peer.clone(),
                self.stream_id.clone(),
                true,
            )
        })
    }

    async fn run(&mut self, mut ctl: mpsc::UnboundedReceiver<Control>) {
        let mut shutdown = self.shared.shutdown.clone();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            let flow = tokio::select! {
                ev = self.conn.next_event() => match ev {
                    Ok(ev) => { self.last_data = Instant::now(); self.on_event(ev).await }
                    Err(ReadError::Stream(e)) => { self.fail(&e, "bad_input").await; Flow::End }
                    Err(e) => { debug!(side = %self.side, error = %e, "connection lost"); Flow::End }
                },
                Some(Control::Close(e)) = ctl.recv() => { self.fail(&e, "settings_changed").await; Flow::End }
                _ = shutdown.changed() => {
                    let e = StreamError::new(StreamErrorCondition::SystemShutdown, "The gateway is shutting down.");
                    let header = self.fallback_header();
                    self.conn.fail(&e, Some(&header)).await;
                    Flow::End
                }
                _ = tick.tick() => self.on_tick().await,
            };
            match flow {
                Flow::Continue | Flow::Restart => {}
                Flow::End => return,
            }
        }
    }

    async fn on_tick(&mut self) -> Flow {
        let policy = self.shared.policy();
        let st = &policy.settings;
        let clock = enforce::StreamClock {
            since_open: self.opened.elapsed().as_secs(),
            since_data: self.last_data.elapsed().as_secs(),
            since_stanza: self.last_stanza.elapsed().as_secs(),
            authenticated: !self.authenticated.is_empty(),
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
        let enable = self.partner.as_ref().is_none_or(|p| p.enable_keep_alive);
        if self.conn.header_sent
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
        let policy = self.shared.policy();
        self.stream_id = new_stream_id();
        let to =
            h.to.as_deref()
                .map(|t| t.trim_end_matches('.').to_ascii_lowercase());
        let from = h
            .from
            .as_deref()
            .map(|t| t.trim_end_matches('.').to_ascii_lowercase());
        self.local = to.clone();
        if from.is_some() {
            self.peer = from.clone();
        }
        if h.content_ns != ns::SERVER {
            let e = StreamError::new(
                StreamErrorCondition::InvalidNamespace,
                "This is a server-to-server port (jabber:server).",
            );
            self.fail(&e, "invalid_namespace").await;
            return Flow::End;
        }
        let Some(to) = to else {
            let e = StreamError::new(
                StreamErrorCondition::HostUnknown,
                "The stream header has no 'to'.",
            );
            self.fail(&e, "unknown_target").await;
            return Flow::End;
        };
        if !self.admit_target(&to, &policy).await {
            return Flow::End;
        }
        if let Some(from) = &from {
            match self.side {
                Side::External => {
                    match enforce::partner_admission(from, policy.partner(from).map(|p| &**p)) {
                        Ok(_) => self.partner = policy.partner(from).cloned(),
                        Err(r) => {
                            self.refuse(&r).await;
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
                        self.fail(&e, "not_hosted").await;
                        return Flow::End;
                    }
                }
            }
        }
        if self.conn.is_tls()
            && let Some(peer) = self.peer.clone()
        {
            self.peer_cert = self
                .shared
                .tls
                .check_peer(&self.conn.peer_certificates(), &peer);
        }
        let header = StreamHeader::responding(to, from, self.stream_id.clone(), true);
        let offer =
            if self.authenticated.is_empty() || self.method != Some(AuthMethod::SaslExternal) {
                enforce::features_offer(
                    self.settings(),
                    self.conn.is_tls(),
                    self.tls_available(),
                    self.peer_cert == CertCheck::Valid,
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
        let mut out = Vec::new();
        header.write_to(&mut out);
        negotiation::stream_features(starttls, offer.sasl_external, offer.dialback)
            .write_to(&mut out);
        self.our_header = Some(header);
        self.conn.header_sent = true;
        if self.conn.send_bytes(&out).await.is_err() {
            return Flow::End;
        }
        self.last_sent = Instant::now();
        Flow::Continue
    }

    async fn on_element(&mut self, e: Element) -> Flow {
        if e.is("starttls", ns::TLS) {
            return self.on_starttls().await;
        }
        if e.is("auth", ns::SASL) {
            return self.on_sasl(&e).await;
        }
        if e.is("result", ns::DIALBACK) && e.attr("type").is_none() {
            return self.on_db_result(&e).await;
        }
        if e.is("verify", ns::DIALBACK) && e.attr("type").is_none() {
            return self.on_db_verify(&e).await;
        }
        if e.is("error", ns::STREAMS) {
            info!(side = %self.side, peer = self.peer.as_deref().unwrap_or("-"), error = ?StreamError::from_element(&e), "peer sent a stream error");
            self.conn.close().await;
            return Flow::End;
        }
        if (e.namespace == ns::SERVER) && matches!(e.name.as_str(), "message" | "presence" | "iq") {
            return self.on_stanza(e).await;
        }
        let err = StreamError::new(
            StreamErrorCondition::UnsupportedStanzaType,
            format!("Unexpected element '{}'.", e.name),
        );
        self.fail(&err, "unsupported_element").await;
        Flow::End
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
            .server_for(self.side == Side::Internal, self.local.as_deref())
        else {
            return Flow::End;
        };
        if self.conn.send(&negotiation::proceed()).await.is_err() {
            return Flow::End;
        }
        let Some((tcp, discarded)) = self.conn.take_plain() else {
            return Flow::End;
        };
        if discarded > 0 {
            warn!(side = %self.side, discarded, "data after <starttls/> discarded; closing");
            return Flow::End;
        }
        let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
        match tokio::time::timeout(Duration::from_secs(15), acceptor.accept(tcp)).await {
            Ok(Ok(tls)) => {
                self.conn.io = Io::TlsServer(Box::new(tls));
                let v = self.conn.tls_version();
                self.shared.registry.update(self.reg, |e| e.tls_version = v);
                Flow::Restart
            }
            Ok(Err(e)) => {
                warn!(side = %self.side, error = %e, "TLS handshake failed");
                self.shared.metrics.refused(self.side, "tls_handshake");
                Flow::End
            }
            Err(_) => {
                self.shared.metrics.refused(self.side, "tls_handshake");
                Flow::End
            }
        }
    }

    /// Admission of an authenticated domain on this stream: partner and limits.
    fn admit_domain(&mut self, domain: &str, method: AuthMethod) -> Result<(), Refusal> {
        let policy = self.shared.policy();
        match self.side {
            Side::External => {
                let p = enforce::partner_admission(domain, policy.partner(domain).map(|p| &**p))?;
                if self.authenticated.is_empty() {
                    let counts = self.shared.registry.partner_counts(&p.identity, self.reg);
                    enforce::connection_admission(
                        p,
                        policy.settings.partner_connection_limit,
                        policy.settings.connection_limit,
                        counts,
                    )?;
                }
                self.partner = policy.partner(domain).cloned();
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
        self.authenticated.push(domain.to_owned());
        self.method = Some(method);
        self.last_stanza = Instant::now();
        let (partner, domains, local, tls) = (
            self.partner.as_ref().map(|p| p.identity.clone()),
            self.authenticated.clone(),
            self.local.clone(),
            self.conn.tls_version(),
        );
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
        let fail = |c: SaslCondition, t: &str| negotiation::sasl_failure(c, Some(t));
        let (mech, authzid) = match negotiation::parse_sasl_auth(e) {
            Some(Ok(v)) => v,
            _ => {
                let _ = self
                    .conn
                    .send(&fail(SaslCondition::IncorrectEncoding, "bad authzid"))
                    .await;
                return Flow::Continue;
            }
        };
        if mech != "EXTERNAL" {
            let _ = self
                .conn
                .send(&fail(SaslCondition::InvalidMechanism, "only EXTERNAL"))
                .await;
            return Flow::Continue;
        }
        let domain = match (authzid.map(|a| a.to_ascii_lowercase()), self.peer.clone()) {
            (Some(a), Some(p)) if a != p => {
                let _ = self
                    .conn
                    .send(&fail(
                        SaslCondition::InvalidAuthzid,
                        "authzid differs from the stream's from",
                    ))
                    .await;
                return Flow::Continue;
            }
            (Some(a), _) => a,
            (None, Some(p)) => p,
            (None, None) => {
                let _ = self
                    .conn
                    .send(&fail(SaslCondition::InvalidAuthzid, "no identity"))
                    .await;
                return Flow::Continue;
            }
        };
        let settings = match self.side {
            Side::Internal => INTERNAL_SETTINGS,
            Side::External => match self.shared.policy().partner(&domain) {
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
            .check_peer(&self.conn.peer_certificates(), &domain);
        let result = enforce::sasl_admission(&domain, settings, self.conn.is_tls(), cert)
            .and_then(|m| self.admit_domain(&domain, m));
        match result {
            Ok(()) => {
                if self.conn.send(&negotiation::sasl_success()).await.is_err() {
                    return Flow::End;
                }
                self.peer = Some(domain);
                self.conn.parser.reset();
                self.conn.header_sent = false;
                Flow::Restart
            }
            Err(r) if r.condition == Condition::NotAuthorized => {
                warn!(side = %self.side, domain, reason = r.reason, "SASL EXTERNAL refused: {}", r.text);
                self.shared.metrics.refused(self.side, r.reason);
                let _ = self
                    .conn
                    .send(&fail(SaslCondition::NotAuthorized, &r.text))
                    .await;
                Flow::Continue
            }
            Err(r) => {
                self.refuse(&r).await;
                Flow::End
            }
        }
    }

    async fn on_db_result(&mut self, e: &Element) -> Flow {
        let (Some(from), Some(to)) = (e.attr("from"), e.attr("to")) else {
            let err = StreamError::new(
                StreamErrorCondition::ImproperAddressing,
                "db:result needs 'from' and 'to'.",
            );
            self.fail(&err, "improper_addressing").await;
            return Flow::End;
        };
        let from = from.trim_end_matches('.').to_ascii_lowercase();
        let to = to.trim_end_matches('.').to_ascii_lowercase();
        let key = e.text();
        let policy = self.shared.policy();
        if !self.admit_target(&to, &policy).await {
            return Flow::End;
        }
        // Which settings apply, and where the authoritative server is.
        let (settings, targets) = match self.side {
            Side::External => {
                let partner =
                    match enforce::partner_admission(&from, policy.partner(&from).map(|p| &**p)) {
                        Ok(p) => p,
                        Err(r) => {
                            self.refuse(&r).await;
                            return Flow::End;
                        }
                    };
                (
                    partner.negotiation(),
                    resolve::partner_targets(&from, partner.proxy_fqdn.as_ref()).await,
                )
            }
            Side::Internal => match self.shared.config().hosted_domain(&from) {
                Some(h) => (
                    INTERNAL_SETTINGS,
                    resolve::internal_targets(&h.internal_server).await,
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
        let verdict = outbound::verify_key(
            &self.shared,
            &targets,
            &to,
            &from,
            &self.stream_id,
            &key,
            self.side == Side::Internal,
        )
        .await;
        match verdict {
            Ok(true) => {
                if let Err(r) = self.admit_domain(&from, method) {
                    self.refuse(&r).await;
                    return Flow::End;
                }
                if self
                    .conn
                    .send(&negotiation::db_result_response(
                        &to,
                        &from,
                        &DialbackType::Valid,
                    ))
                    .await
                    .is_err()
                {
                    return Flow::End;
                }
                Flow::Continue
            }
            Ok(false) => {
                warn!(side = %self.side, domain = %from, "dialback key invalid");
                self.shared.metrics.refused(self.side, "dialback_invalid");
                let _ = self
                    .conn
                    .send(&negotiation::db_result_response(
                        &to,
                        &from,
                        &DialbackType::Invalid,
                    ))
                    .await;
                Flow::Continue
            }
            Err(why) => {
                warn!(side = %self.side, domain = %from, error = %why, "dialback verification failed");
                self.shared
                    .metrics
                    .refused(self.side, "dialback_unverified");
                let err = fedgate_xmpp::StanzaError::new(
                    fedgate_xmpp::StanzaErrorCondition::RemoteServerNotFound,
                );
                let _ = self
                    .conn
                    .send(&negotiation::db_result_response(
                        &to,
                        &from,
                        &DialbackType::Error(err),
                    ))
                    .await;
                Flow::Continue
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
        let policy = self.shared.policy();
        let authoritative = match self.side {
            Side::External => self.shared.is_hosted(to),
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

    async fn on_stanza(&mut self, e: Element) -> Flow {
        let policy = self.shared.policy();
        let shared = self.shared.clone();
        let is_target = |d: &str| match self.side {
            Side::External => shared.is_hosted(d),
            Side::Internal => policy.partner(d).is_some(),
        };
        let verdict = enforce::stanza_verdict(
            self.side,
            &self.authenticated,
            e.attr("from"),
            e.attr("to"),
            &is_target,
        );
        match verdict {
            StanzaVerdict::Route { from, to } => {
                self.last_stanza = Instant::now();
                if policy.settings.enable_logging_all_message_bodies {
                    debug!(side = %self.side, %from, %to, stanza = %String::from_utf8_lossy(&e.to_bytes()), "relaying");
                } else {
                    debug!(side = %self.side, %from, %to, kind = %e.name, "relaying");
                }
                let out = match self.side {
                    Side::External => Side::Internal,
                    Side::Internal => Side::External,
                };
                if let Some(e) = crate::access::apply(&self.shared, self.side, &from, &to, e).await
                {
                    outbound::route_paced(&self.shared, out, &from, &to, e).await;
                }
                Flow::Continue
            }
            StanzaVerdict::Refuse(r) => {
                self.refuse(&r).await;
                Flow::End
            }
        }
    }
}
