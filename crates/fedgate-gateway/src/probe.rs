//! The partner test (`Test-CsXmppAllowedPartner`, `POST /api/v1/partners/{identity}/test`): the
//! network steps of an outbound stream to a partner, each timed and reported, from the
//! gateway's point of view — its resolver, its certificate for the hosted domain it speaks as,
//! its trust anchors and its dialback secret.
//!
//! Steps: resolution (every record seen); TCP connect to each target in order until one
//! answers; the peer's stream header and features; STARTTLS or Direct TLS (version, cipher
//! suite, ALPN); the peer's certificate; SASL EXTERNAL with our certificate; and a dialback round
//! trip on a second connection to the same target (the partner's server calls back the hosted
//! domain, and the gateway of this deployment that answers checks the key with the shared
//! secret). What the steps found goes to [`fedgate_model::probe::assess`] for the verdict.
//!
//! The gateway test (`Test-CsXmppGatewayConfiguration`, [`test_gateway`]) takes the same steps
//! towards this gateway's own external listeners, for each hosted domain as partners see it
//! (resolution of the domain, its addresses compared with the listeners, stream, TLS and the
//! certificate presented for it), and goes to [`fedgate_model::gateway_test`] for the verdict.
//!
//! Edge rules: every step is bounded in time ([`STEP_TIMEOUT`], connects by the outbound
//! connect timeout, at most [`MAX_CONNECT_ATTEMPTS`] targets); reads are bounded by the
//! connection's codec limits as on any stream; what the peer sends is only described (escaped
//! by `Debug`), never trusted or unwrapped. The probe registers no stream and routes no stanza.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fedgate_model::gateway_test::{
    self, DomainFindings, DomainReport, GatewayReport, Listener, ListenerFindings, Published,
    TargetMatch,
};
use fedgate_model::probe::{self, Attempt, Findings, Report, Step, TlsOutcome};
use fedgate_model::{AuthMethod, Domain, InvalidValue, NegotiationSettings, XmppAllowedPartner};
use fedgate_xmpp::negotiation::{self, Features, TlsOffer};
use fedgate_xmpp::{Element, StreamHeader, ns};
use tokio::net::TcpStream;
use tracing::info;

use crate::conn::{Conn, Counters};
use crate::log_limit::Wire;
use crate::outbound::{self, CONNECT_TIMEOUT};
use crate::resolve::{Lookup, Target};
use crate::state::Shared;

/// Each network step (a handshake, an answer awaited) gets this long.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// Resolution in all (both DNS stages) gets this long.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(15);
/// The dialback round trip (the partner's callback included) gets this long.
pub const DIALBACK_TIMEOUT: Duration = Duration::from_secs(20);
/// At most this many targets are tried.
pub const MAX_CONNECT_ATTEMPTS: usize = 8;

/// Whether a gateway of this deployment can answer the partner's dialback callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Callback {
    /// Yes (the test runs inside `fedgate serve`): the round trip is tested.
    Answered,
    /// No: the round trip is reported as not tested, with this reason.
    NotAnswered(String),
}

/// The hosted domain the test speaks as: `from` when it is one, else the first hosted domain.
/// An unknown `from` names the parameter and the allowed values.
pub fn choose_from(shared: &Shared, from: Option<&str>) -> Result<String, InvalidValue> {
    match from {
        None => shared
            .config()
            .hosted
            .first()
            .map(|h| h.domain.to_string())
            .ok_or_else(|| InvalidValue::new("From", "The gateway has no hosted domain.")),
        Some(f) => hosted_named(shared, "From", f),
    }
}

/// The hosted domain `text` names (case and a final dot aside), or the invalid value of
/// `parameter` listing the hosted domains.
pub fn hosted_named(shared: &Shared, parameter: &str, text: &str) -> Result<String, InvalidValue> {
    if let Some(h) = shared.snapshot().hosted(text.trim().trim_end_matches('.')) {
        return Ok(h.domain.to_string());
    }
    let config = shared.config();
    let hosted: Vec<String> = config.hosted.iter().map(|h| h.domain.to_string()).collect();
    Err(InvalidValue::new(
        parameter,
        format!(
            "\"{text}\" is not a hosted domain of this gateway. Allowed values: {}.",
            hosted.join(", ")
        ),
    ))
}

/// The steps as they are taken.
#[derive(Default)]
struct Steps(Vec<Step>);

impl Steps {
    fn push(&mut self, step: &str, started: Instant, ok: Option<bool>, detail: impl Into<String>) {
        self.0.push(Step {
            step: step.to_owned(),
            ok,
            detail: detail.into(),
            ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        });
    }
}

/// Test `domain` as the gateway would reach it, speaking as hosted domain `from` (see
/// [`choose_from`]). A listed partner is tested with its settings; another domain with the
/// default settings of a new partner.
pub async fn test_partner(
    shared: &Arc<Shared>,
    domain: &Domain,
    from: &str,
    callback: Callback,
) -> Report {
    let snapshot = shared.snapshot();
    let listed = snapshot.partner(domain.as_str()).cloned();
    let partner = listed
        .clone()
        .unwrap_or_else(|| Arc::new(XmppAllowedPartner::new(domain.clone())));
    let settings = partner.negotiation();
    let remote = domain.as_str();
    let our_purposes = shared.tls.presented_key_usages(from);
    let mut f = Findings {
        from: from.to_owned(),
        our_certificate_trusted: shared.tls.presents_trusted(from, false),
        our_certificate_server_auth_only: probe::server_auth_only(&our_purposes),
        ..Findings::default()
    };
    let mut steps = Steps::default();
    run_steps(
        shared,
        remote,
        from,
        settings,
        partner.proxy_fqdn.as_ref(),
        callback,
        &mut f,
        &mut steps,
    )
    .await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let a = probe::assess(remote, settings, &f, now);
    info!(partner = %remote, from, verdict = ?a.verdict, outbound = ?a.methods.outbound, "partner test");
    Report {
        identity: partner.identity.to_string(),
        listed: listed.is_some(),
        from: from.to_owned(),
        steps: steps.0,
        certificate: f.certificate,
        methods: a.methods,
        verdict: a.verdict,
        problems: a.problems,
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_steps(
    shared: &Arc<Shared>,
    remote: &str,
    from: &str,
    settings: NegotiationSettings,
    proxy: Option<&fedgate_model::ProxyTarget>,
    callback: Callback,
    f: &mut Findings,
    steps: &mut Steps,
) {
    // Resolution.
    let t = Instant::now();
    let Ok(lookup) = tokio::time::timeout(
        RESOLVE_TIMEOUT,
        shared.resolver.partner_lookup(remote, proxy),
    )
    .await
    else {
        steps.push("Resolve", t, Some(false), "DNS did not answer in time");
        return;
    };
    f.targets = lookup.targets.len().min(MAX_CONNECT_ATTEMPTS);
    f.srv_hosts = lookup.srv_hosts.clone();
    steps.push(
        "Resolve",
        t,
        Some(!lookup.targets.is_empty()),
        describe_lookup(&lookup),
    );
    // TCP, to each target in order until one answers.
    let mut connected = None;
    for target in lookup.targets.iter().take(MAX_CONNECT_ATTEMPTS) {
        let t = Instant::now();
        match connect(target).await {
            Ok(tcp) => {
                steps.push("Connect", t, Some(true), describe_target(target));
                connected = Some((*target, tcp));
                break;
            }
            Err(e) => {
                steps.push("Connect", t, Some(false), e.clone());
                f.connect_error = Some(e);
            }
        }
    }
    let Some((target, tcp)) = connected else {
        return;
    };
    f.connected = Some(target.addr.to_string());
    f.direct_tls = target.direct_tls;
    // The stream: TLS, certificate, features.
    let Some((mut conn, _)) =
        open_stream(shared, tcp, target, Some(from), remote, settings, f, steps).await
    else {
        return;
    };
    // SASL EXTERNAL with our certificate.
    let t = Instant::now();
    if !conn.is_tls() {
        steps.push(
            "SASL EXTERNAL",
            t,
            None,
            "not tried: SASL EXTERNAL needs TLS",
        );
    } else if !f.sasl_external_offered {
        steps.push("SASL EXTERNAL", t, None, "not offered");
    } else {
        let result = tokio::time::timeout(STEP_TIMEOUT, sasl_external(&mut conn, from)).await;
        f.sasl_external = match result {
            Ok(a) => a,
            Err(_) => Attempt::Refused("no answer in time".into()),
        };
        let (ok, detail) = match &f.sasl_external {
            Attempt::Accepted => (
                Some(true),
                format!("accepted with our certificate for '{from}'"),
            ),
            Attempt::Refused(why) => (
                Some(false),
                format!("refused our certificate for '{from}': {why}"),
            ),
            _ => (None, String::new()),
        };
        steps.push("SASL EXTERNAL", t, ok, detail);
    }
    conn.close().await;
    // Dialback, on a second connection to the same target.
    let t = Instant::now();
    let allows_dialback = settings
        .allowed_methods()
        .iter()
        .any(|m| *m != AuthMethod::SaslExternal);
    if !allows_dialback {
        steps.push(
            "Dialback",
            t,
            None,
            "not tested: the partner's settings allow no dialback",
        );
        return;
    }
    if let Callback::NotAnswered(why) = callback {
        steps.push("Dialback", t, None, format!("not tested: {why}"));
        f.dialback = Attempt::NotTested(why);
        return;
    }
    let result = tokio::time::timeout(
        DIALBACK_TIMEOUT,
        dialback_round_trip(shared, target, from, remote, settings),
    )
    .await
    .unwrap_or_else(|_| Err("no answer in time".into()));
    let detail = match &result {
        Ok(method) => format!(
            "{method}: valid; '{remote}' called back '{from}' and this gateway confirmed the key"
        ),
        Err(e) => e.clone(),
    };
    steps.push("Dialback", t, Some(result.is_ok()), detail);
    f.dialback = match result {
        Ok(_) => Attempt::Accepted,
        Err(e) => Attempt::Refused(e),
    };
}

/// The Resolve step's detail: every record seen, then the targets in connection order.
fn describe_lookup(lookup: &Lookup) -> String {
    let order: Vec<String> = lookup.targets.iter().map(describe_target).collect();
    format!(
        "{}; targets in order: {}",
        lookup.records.join("; "),
        if order.is_empty() {
            "none".to_owned()
        } else {
            order.join(", ")
        }
    )
}

fn describe_target(t: &Target) -> String {
    format!(
        "{} ({})",
        t.addr,
        if t.direct_tls {
            "Direct TLS"
        } else {
            "STARTTLS"
        }
    )
}

async fn connect(target: &Target) -> Result<TcpStream, String> {
    match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target.addr)).await {
        Ok(Ok(tcp)) => {
            let _ = tcp.set_nodelay(true);
            Ok(tcp)
        }
        Ok(Err(e)) => Err(format!("{}: {e}", target.addr)),
        Err(_) => Err(format!("{}: connect timed out", target.addr)),
    }
}

/// Open our stream on `tcp` (with `from` = `local` when given) and read the peer's header and
/// features element.
async fn exchange_headers(
    conn: &mut Conn,
    local: Option<&str>,
    remote: &str,
) -> Result<(StreamHeader, Element), String> {
    let header = StreamHeader {
        from: local.map(str::to_owned),
        ..StreamHeader::initiating("", remote, true)
    };
    let exchange = async {
        conn.send_header(&header).await.map_err(|e| e.to_string())?;
        let header = outbound::expect_header(conn)
            .await
            .map_err(|e| e.to_string())?;
        let features = outbound::expect_element(conn)
            .await
            .map_err(|e| e.to_string())?;
        if !features.is("features", ns::STREAMS) {
            return Err(format!(
                "expected <stream:features/>, got <{:?}/>",
                features.name
            ));
        }
        Ok((header, features))
    };
    tokio::time::timeout(STEP_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| Err("no stream header and features in time".into()))
}

fn describe_stream(h: &StreamHeader, features: &Features, header_dialback: bool) -> String {
    let mut offered = Vec::new();
    match features.starttls {
        TlsOffer::Required => offered.push("STARTTLS (required)".to_owned()),
        TlsOffer::Optional => offered.push("STARTTLS".to_owned()),
        TlsOffer::None => {}
    }
    if !features.sasl_mechanisms.is_empty() {
        offered.push(format!("SASL {:?}", features.sasl_mechanisms));
    }
    if features.dialback {
        offered.push("dialback".into());
    }
    format!(
        "from {:?}, id {:?}, version {:?}{}; features: {}",
        Wire(h.from.as_deref().unwrap_or("-")),
        Wire(h.id.as_deref().unwrap_or("-")),
        Wire(h.version.as_deref().unwrap_or("-")),
        if header_dialback { ", xmlns:db" } else { "" },
        if offered.is_empty() {
            "none".to_owned()
        } else {
            offered.join(", ")
        }
    )
}

/// The TLS step's detail: version, cipher suite, ALPN.
fn describe_tls(conn: &Conn) -> String {
    if !conn.is_tls() {
        return "not TLS".into();
    }
    let suite = conn
        .cipher_suite()
        .map_or_else(|| "-".to_owned(), |s| format!("{s:?}"));
    let alpn = conn.alpn_protocol().map_or_else(
        || "none".to_owned(),
        |p| format!("{:?}", String::from_utf8_lossy(p)),
    );
    format!(
        "{}, {suite}, ALPN {alpn}",
        conn.tls_version().unwrap_or("TLS")
    )
}

/// Connect TLS (Direct TLS first, or STARTTLS when offered and the settings allow TLS), read
/// the features, judge the certificate; records the steps and findings. Returns the stream and
/// its id (of the last header), or `None` when it cannot go on (the findings say why).
///
/// `local`: the hosted domain the stream speaks as (the partner test); `None` for a stream that
/// names no `from` (the gateway test, to its own listener for hosted domain `remote`, which
/// would refuse its own domain as a partner): TLS then presents `remote`'s certificate, which
/// the listener does not check without a `from`.
#[allow(clippy::too_many_arguments)]
async fn open_stream(
    shared: &Arc<Shared>,
    tcp: TcpStream,
    target: Target,
    local: Option<&str>,
    remote: &str,
    settings: NegotiationSettings,
    f: &mut Findings,
    steps: &mut Steps,
) -> Option<(Conn, String)> {
    let tls_as = local.unwrap_or(remote);
    let mut conn = Conn::new(tcp, shared.limits(), Arc::new(Counters::default()));
    if target.direct_tls {
        let t = Instant::now();
        let tls = tokio::time::timeout(
            STEP_TIMEOUT,
            outbound::client_tls(shared, &mut conn, tls_as, remote, false, true),
        )
        .await
        .unwrap_or_else(|_| Err("Direct TLS handshake timed out".into()));
        match tls {
            Ok(()) => {
                steps.push("Direct TLS", t, Some(true), describe_tls(&conn));
                f.tls = TlsOutcome::Up;
                certificate_step(shared, &conn, remote, f, steps).await;
            }
            Err(e) => {
                steps.push("Direct TLS", t, Some(false), e.clone());
                f.tls = TlsOutcome::Failed(e);
                return None;
            }
        }
    }
    let t = Instant::now();
    let (header, features_el) = match exchange_headers(&mut conn, local, remote).await {
        Ok(x) => x,
        Err(e) => {
            steps.push("Stream", t, Some(false), e.clone());
            f.stream_error = Some(e);
            return None;
        }
    };
    let mut features = parse_features(&features_el);
    steps.push(
        "Stream",
        t,
        Some(true),
        describe_stream(&header, &features, header.dialback),
    );
    let mut header_dialback = header.dialback;
    let mut stream_id = header.id.clone().unwrap_or_default();
    if !conn.is_tls() {
        f.starttls_offered = features.starttls != TlsOffer::None;
        let t = Instant::now();
        if !f.starttls_offered {
            steps.push(
                "STARTTLS",
                t,
                Some(settings.tls != fedgate_model::TlsNegotiation::Required),
                "not offered",
            );
        } else if settings.tls == fedgate_model::TlsNegotiation::NotSupported {
            steps.push(
                "STARTTLS",
                t,
                None,
                "offered, not used: TlsNegotiation is NotSupported",
            );
        } else {
            let upgraded =
                tokio::time::timeout(STEP_TIMEOUT, starttls(shared, &mut conn, tls_as, remote))
                    .await
                    .unwrap_or_else(|_| Err("STARTTLS timed out".into()));
            if let Err(e) = upgraded {
                steps.push("STARTTLS", t, Some(false), e.clone());
                f.tls = TlsOutcome::Failed(e);
                return None;
            }
            steps.push("STARTTLS", t, Some(true), describe_tls(&conn));
            f.tls = TlsOutcome::Up;
            certificate_step(shared, &conn, remote, f, steps).await;
            let t = Instant::now();
            let (header, features_el) = match exchange_headers(&mut conn, local, remote).await {
                Ok(x) => x,
                Err(e) => {
                    steps.push("Stream (TLS)", t, Some(false), e.clone());
                    f.stream_error = Some(e);
                    return None;
                }
            };
            features = parse_features(&features_el);
            header_dialback = header.dialback;
            stream_id = header.id.clone().unwrap_or_default();
            steps.push(
                "Stream (TLS)",
                t,
                Some(true),
                describe_stream(&header, &features, header.dialback),
            );
        }
    }
    f.sasl_external_offered =
        conn.is_tls() && features.sasl_mechanisms.iter().any(|m| m == "EXTERNAL");
    f.dialback_offered = features.dialback || header_dialback;
    Some((conn, stream_id))
}

fn parse_features(e: &Element) -> Features {
    Features::from_element(e).unwrap_or(Features {
        starttls: TlsOffer::None,
        sasl_mechanisms: Vec::new(),
        dialback: false,
    })
}

/// `<starttls/>`, `<proceed/>`, the handshake.
async fn starttls(
    shared: &Shared,
    conn: &mut Conn,
    local: &str,
    remote: &str,
) -> Result<(), String> {
    conn.send(&negotiation::starttls())
        .await
        .map_err(|e| e.to_string())?;
    let reply = outbound::expect_element(conn)
        .await
        .map_err(|e| e.to_string())?;
    if !reply.is("proceed", ns::TLS) {
        return Err(format!("STARTTLS answered with <{:?}/>", reply.name));
    }
    outbound::client_tls(shared, conn, local, remote, false, false).await
}

/// Describe the peer's certificate and record it.
async fn certificate_step(
    shared: &Arc<Shared>,
    conn: &Conn,
    remote: &str,
    f: &mut Findings,
    steps: &mut Steps,
) {
    let t = Instant::now();
    let chain = conn.peer_certificates();
    let described = shared.tls.describe_partner_chain(chain, remote).await;
    match &described {
        None => steps.push(
            "Certificate",
            t,
            Some(false),
            "no certificate presented, or it cannot be parsed",
        ),
        Some(c) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
            let in_date = (c.not_before_unix..=c.not_after_unix).contains(&now);
            let detail = format!(
                "subject {:?}; DNS names {:?}; XmppAddrs {:?}; issuer {:?}; valid {} to {} ({}); extended key usage {:?}; chains to our trust anchors: {}; valid for '{remote}': {}",
                c.subject,
                c.dns_names,
                c.xmpp_addrs,
                c.issuer,
                c.not_before,
                c.not_after,
                if in_date { "in date" } else { "NOT in date" },
                c.extended_key_usage,
                yes(c.trusted),
                yes(c.valid_for_domain),
            );
            steps.push(
                "Certificate",
                t,
                Some(in_date && c.trusted && c.valid_for_domain),
                detail,
            );
        }
    }
    f.certificate = described;
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// SASL EXTERNAL as `local` on a TLS stream.
async fn sasl_external(conn: &mut Conn, local: &str) -> Attempt {
    if let Err(e) = conn
        .send(&negotiation::sasl_auth_external(Some(local)))
        .await
    {
        return Attempt::Refused(e.to_string());
    }
    let reply = match outbound::expect_element(conn).await {
        Ok(r) => r,
        Err(e) => return Attempt::Refused(e.to_string()),
    };
    if reply.is("success", ns::SASL) {
        return Attempt::Accepted;
    }
    match negotiation::parse_sasl_failure(&reply) {
        Some((condition, _text)) => Attempt::Refused(
            condition
                .map(|c| c.name())
                .unwrap_or("no condition given")
                .to_owned(),
        ),
        None => Attempt::Refused(format!("answered with <{:?}/>", reply.name)),
    }
}

/// A new connection to `target`, TLS as on the first one (when the settings allow it), then
/// dialback with our key; the partner's server verifies it by calling back `local`.
async fn dialback_round_trip(
    shared: &Arc<Shared>,
    target: Target,
    local: &str,
    remote: &str,
    settings: NegotiationSettings,
) -> Result<AuthMethod, String> {
    let tcp = connect(&target).await?;
    let (mut scratch_f, mut scratch_steps) = (Findings::default(), Steps::default());
    let conn = open_stream(
        shared,
        tcp,
        target,
        Some(local),
        remote,
        settings,
        &mut scratch_f,
        &mut scratch_steps,
    )
    .await;
    let Some((mut conn, stream_id)) = conn else {
        let why = scratch_steps
            .0
            .last()
            .map_or_else(|| "the stream failed".to_owned(), |s| s.detail.clone());
        return Err(format!("the second connection failed: {why}"));
    };
    let method = if conn.is_tls() {
        AuthMethod::TlsDialback
    } else {
        AuthMethod::TcpDialback
    };
    let result = outbound::dialback(shared, &mut conn, local, remote, &stream_id, method)
        .await
        .map(|()| method)
        .map_err(|e| format!("{method}: {e}"));
    conn.close().await;
    result
}

/// This gateway's external listeners: the STARTTLS one and the Direct TLS one if any.
pub fn listeners(external: SocketAddr, direct_tls: Option<SocketAddr>) -> Vec<Listener> {
    std::iter::once(Listener {
        addr: external,
        direct_tls: false,
    })
    .chain(direct_tls.map(|addr| Listener {
        addr,
        direct_tls: true,
    }))
    .collect()
}

/// Where to connect to a listener from this host: its address, or loopback for an unspecified
/// one (`0.0.0.0`, `::`).
pub fn reachable(listen: SocketAddr) -> SocketAddr {
    let mut addr = listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    addr
}

/// The gateway test (`Test-CsXmppGatewayConfiguration`, `POST
/// /api/v1/gateway-configuration/test`): `domain` (a hosted domain; an unknown one names
/// `Domain` and the hosted domains) or every hosted domain, each as partners see it — its SRV
/// and A/AAAA records compared with `listeners`, then a stream to each listener as a partner
/// opens it (no `from`, so nothing is authenticated or charged), its TLS and the certificate
/// presented for the domain. Verdicts by [`gateway_test::assess_domain`].
pub async fn test_gateway(
    shared: &Arc<Shared>,
    listeners: &[Listener],
    domain: Option<&str>,
) -> Result<GatewayReport, InvalidValue> {
    let domains: Vec<String> = match domain {
        Some(d) => vec![hosted_named(shared, "Domain", d)?],
        None => shared
            .config()
            .hosted
            .iter()
            .map(|h| h.domain.to_string())
            .collect(),
    };
    let mut reports = Vec::new();
    for d in &domains {
        reports.push(test_hosted(shared, listeners, d).await);
    }
    let report = GatewayReport::new(listeners, reports);
    info!(domains = ?domains, verdict = ?report.verdict, "gateway test");
    Ok(report)
}

/// [`test_gateway`] for one hosted domain.
async fn test_hosted(shared: &Arc<Shared>, listeners: &[Listener], domain: &str) -> DomainReport {
    let mut steps = Steps::default();
    let mut f = DomainFindings::default();
    let t = Instant::now();
    match tokio::time::timeout(
        RESOLVE_TIMEOUT,
        shared.resolver.partner_lookup(domain, None),
    )
    .await
    {
        Err(_) => steps.push("Resolve", t, Some(false), "DNS did not answer in time"),
        Ok(lookup) => {
            f.dns_answered = true;
            steps.push(
                "Resolve",
                t,
                Some(!lookup.targets.is_empty()),
                describe_lookup(&lookup),
            );
            let t = Instant::now();
            f.published = lookup
                .targets
                .iter()
                .map(|t| Published {
                    addr: t.addr,
                    direct_tls: t.direct_tls,
                    via_srv: !lookup.srv_hosts.is_empty(),
                })
                .collect();
            f.matches = f
                .published
                .iter()
                .map(|p| gateway_test::match_target(domain, p, listeners))
                .collect();
            let seen: Vec<String> = f
                .matches
                .iter()
                .map(|m| match m {
                    TargetMatch::Listener(l) => format!("{}: this gateway's listener", l),
                    TargetMatch::PortOnly(note) => note.clone(),
                    TargetMatch::Elsewhere(why) => why.clone(),
                })
                .collect();
            let ok = f
                .matches
                .iter()
                .any(|m| !matches!(m, TargetMatch::Elsewhere(_)));
            steps.push(
                "Points here",
                t,
                Some(ok),
                if seen.is_empty() {
                    "no address published".to_owned()
                } else {
                    seen.join("; ")
                },
            );
        }
    }
    let settings = NegotiationSettings {
        tls: fedgate_model::TlsNegotiation::Required,
        sasl: fedgate_model::SaslNegotiation::Optional,
        dialback: true,
    };
    let mut trust_anchor = None;
    for l in listeners {
        let target = Target {
            addr: reachable(l.addr),
            direct_tls: l.direct_tls,
        };
        let mut seen = ListenerFindings {
            listener: l.to_string(),
            ..ListenerFindings::default()
        };
        let t = Instant::now();
        match connect(&target).await {
            Err(e) => {
                steps.push("Connect", t, Some(false), e.clone());
                seen.error = Some(e);
            }
            Ok(tcp) => {
                steps.push("Connect", t, Some(true), describe_target(&target));
                let mut pf = Findings::default();
                let stream = open_stream(
                    shared, tcp, target, None, domain, settings, &mut pf, &mut steps,
                )
                .await;
                if let Some((mut conn, _)) = stream {
                    if conn.is_tls() && trust_anchor.is_none() {
                        trust_anchor = shared.tls.trust_anchor_of(conn.peer_certificates()).await;
                    }
                    conn.close().await;
                }
                seen.error = match (&pf.stream_error, &pf.tls) {
                    (Some(e), _) | (None, TlsOutcome::Failed(e)) => Some(e.clone()),
                    _ => None,
                };
                seen.tls = pf.tls;
                seen.certificate = pf.certificate;
            }
        }
        f.listeners.push(seen);
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let (verdict, problems) = gateway_test::assess_domain(domain, &f, now);
    DomainReport {
        domain: domain.to_owned(),
        steps: steps.0,
        certificate: f.listeners.iter().find_map(|l| l.certificate.clone()),
        trust_anchor,
        verdict,
        problems,
    }
}
