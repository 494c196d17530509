//! The gateway's enforcement decisions (docs/architecture.md, "Where each rule lives"), as pure
//! functions over plain data: which streams are admitted, what is offered during negotiation, which
//! authentication is accepted, whether a stanza may pass, when a live stream must be closed. The
//! runtime gathers the facts, calls these functions and carries out the answer; it never
//! re-decides.

use std::fmt;

use crate::choice::{SaslNegotiation, TlsNegotiation};
use crate::domain::Domain;
use crate::negotiation::{AuthMethod, NegotiationSettings};
use crate::partner::XmppAllowedPartner;

/// Which listener / which side of the gateway a stream belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Side {
    /// Towards the organisation's own servers (hosted domains).
    Internal,
    /// Towards partners (the Internet).
    External,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Internal => "internal",
            Side::External => "external",
        })
    }
}

/// The stream error a refusal is answered with (names as in RFC 6120 §4.9.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Condition {
    PolicyViolation,
    ResourceConstraint,
    NotAuthorized,
    InvalidFrom,
    HostUnknown,
    ImproperAddressing,
    ConnectionTimeout,
}

impl Condition {
    pub fn name(self) -> &'static str {
        match self {
            Condition::PolicyViolation => "policy-violation",
            Condition::ResourceConstraint => "resource-constraint",
            Condition::NotAuthorized => "not-authorized",
            Condition::InvalidFrom => "invalid-from",
            Condition::HostUnknown => "host-unknown",
            Condition::ImproperAddressing => "improper-addressing",
            Condition::ConnectionTimeout => "connection-timeout",
        }
    }
}

/// Why something was refused: the stream error to send, a stable reason label (metrics), and a
/// text for the peer and the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub condition: Condition,
    /// Stable, low-cardinality label, e.g. `not_listed`.
    pub reason: &'static str,
    pub text: String,
}

impl Refusal {
    fn new(condition: Condition, reason: &'static str, text: impl Into<String>) -> Refusal {
        Refusal {
            condition,
            reason,
            text: text.into(),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.condition.name(),
            self.reason,
            self.text
        )
    }
}

/// A stream with a remote domain is allowed only if a partner owns the domain.
pub fn partner_admission<'p>(
    domain: &str,
    partner: Option<&'p XmppAllowedPartner>,
) -> Result<&'p XmppAllowedPartner, Refusal> {
    partner.ok_or_else(|| {
        Refusal::new(
            Condition::PolicyViolation,
            "not_listed",
            format!("The domain '{domain}' is not an allowed XMPP partner of this gateway."),
        )
    })
}

/// Whether a stream (or a dialback request) may address `to` on this side: on the external
/// side `to` must be a hosted domain (`host-unknown` otherwise); on the internal side it must be
/// an allowed partner domain (`policy-violation` naming the domain otherwise).
pub fn target_admission(side: Side, to: &str, served: bool) -> Result<(), Refusal> {
    if served {
        return Ok(());
    }
    Err(match side {
        Side::External => Refusal::new(
            Condition::HostUnknown,
            "unknown_target",
            format!("'{to}' is not a domain hosted by this gateway."),
        ),
        Side::Internal => Refusal::new(
            Condition::PolicyViolation,
            "not_listed",
            format!("The domain '{to}' is not an allowed XMPP partner of this gateway."),
        ),
    })
}

/// Connection counts at the moment a connection asks to be admitted (not counting itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConnectionCounts {
    /// Authenticated connections with this partner, both directions.
    pub partner: u32,
    /// Connections with all partners together.
    pub total: u32,
}

/// The partner's own ConnectionLimit, else the gateway's PartnerConnectionLimit; the
/// gateway's ConnectionLimit over all partners.
pub fn connection_admission(
    partner: &XmppAllowedPartner,
    partner_connection_limit: u32,
    connection_limit: u32,
    counts: ConnectionCounts,
) -> Result<(), Refusal> {
    let limit = partner.connection_limit.unwrap_or(partner_connection_limit);
    if counts.partner >= limit {
        return Err(Refusal::new(
            Condition::PolicyViolation,
            "partner_connection_limit",
            format!(
                "The partner '{}' already has {} connections (limit {limit}).",
                partner.identity, counts.partner
            ),
        ));
    }
    if counts.total >= connection_limit {
        return Err(Refusal::new(
            Condition::ResourceConstraint,
            "connection_limit",
            format!(
                "The gateway already has {} partner connections (limit {connection_limit}).",
                counts.total
            ),
        ));
    }
    Ok(())
}

/// After a limit was lowered: how many of a partner's `live` authenticated connections exceed its
/// limit now (the newest are to be closed), with the refusal to close them with.
pub fn excess_connections(
    partner: &XmppAllowedPartner,
    partner_connection_limit: u32,
    live: usize,
) -> Option<(usize, Refusal)> {
    let limit = partner.connection_limit.unwrap_or(partner_connection_limit) as usize;
    (live > limit).then(|| {
        (
            live - limit,
            Refusal::new(
                Condition::PolicyViolation,
                "partner_connection_limit",
                format!(
                    "The connection limit of the partner '{}' was lowered to {limit}.",
                    partner.identity
                ),
            ),
        )
    })
}

/// The address block a connection's source belongs to for pre-authentication limits: IPv4 /24,
/// IPv6 /64 (an IPv4-mapped IPv6 address counts as its IPv4 address). One host rarely owns more
/// than such a block, so limits per block stop an attacker who rotates addresses within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressBlock {
    V4([u8; 3]),
    V6([u16; 4]),
}

impl AddressBlock {
    pub fn of(ip: std::net::IpAddr) -> AddressBlock {
        match ip {
            std::net::IpAddr::V4(v4) => {
                let [a, b, c, _] = v4.octets();
                AddressBlock::V4([a, b, c])
            }
            std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => AddressBlock::of(std::net::IpAddr::V4(v4)),
                None => {
                    let s = v6.segments();
                    AddressBlock::V6([s[0], s[1], s[2], s[3]])
                }
            },
        }
    }
}

/// Unauthenticated connections at the moment one more asks to be admitted (not counting it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PreAuthCounts {
    /// From the same address.
    pub address: u32,
    /// From the same [`AddressBlock`].
    pub block: u32,
    /// From anywhere, on both listeners.
    pub total: u32,
}

/// The pre-authentication limits (config `[limits]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PreAuthLimits {
    pub per_address: u32,
    pub per_block: u32,
    pub total: u32,
}

/// Whether one more unauthenticated connection is admitted: per address, per address block
/// (IPv4 /24, IPv6 /64) and in all. Checked at accept, before any TLS handshake or other work.
pub fn pre_auth_admission(counts: PreAuthCounts, limits: PreAuthLimits) -> Result<(), Refusal> {
    let over = |reason: &'static str, what: &str, limit: u32| {
        Err(Refusal::new(
            Condition::ResourceConstraint,
            reason,
            format!("Too many unauthenticated connections {what} (limit {limit})."),
        ))
    };
    if counts.address >= limits.per_address {
        return over(
            "connections_per_ip",
            "from this address",
            limits.per_address,
        );
    }
    if counts.block >= limits.per_block {
        return over(
            "connections_per_block",
            "from this address block",
            limits.per_block,
        );
    }
    if counts.total >= limits.total {
        return over("unauthenticated_streams", "to this gateway", limits.total);
    }
    Ok(())
}

/// Failed authentication attempts (invalid or unverifiable dialback keys, refused SASL EXTERNAL,
/// repeated requests) one stream may make before it is closed: a peer with a real key or
/// certificate needs one try per domain, so a few more cover honest retries.
pub const MAX_AUTH_FAILURES: u32 = 3;

/// Domains one stream may authenticate or have in verification at once (XEP-0220 §2.4
/// multiplexing; real servers use a handful).
pub const MAX_DOMAINS_PER_STREAM: usize = 32;

/// After another failed authentication attempt on a stream (`failures` now counts it): close the
/// stream with `<not-authorized/>` once [`MAX_AUTH_FAILURES`] is reached.
pub fn auth_failure_verdict(failures: u32) -> Option<Refusal> {
    (failures >= MAX_AUTH_FAILURES).then(|| {
        Refusal::new(
            Condition::NotAuthorized,
            "auth_failures",
            format!("Too many failed authentication attempts on this stream ({failures})."),
        )
    })
}

/// What to do with a `<db:result/>` request for `domain` on a stream, given the domains the
/// stream has authenticated and those whose verification is in flight. Decided before any DNS
/// or network work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DialbackRequest {
    /// Already authenticated on this stream: answer valid without verifying again.
    AlreadyAuthenticated,
    /// Start one verification.
    Verify,
    /// Answer with a dialback error (not a stream error) and count a failed attempt: a
    /// verification for the domain is in flight already, or the stream has too many domains.
    Reject(Refusal),
}

/// See [`DialbackRequest`]: one verification in flight per (stream, domain), at most
/// [`MAX_DOMAINS_PER_STREAM`] domains per stream.
pub fn dialback_request(
    domain: &str,
    authenticated: &[String],
    pending: &[String],
) -> DialbackRequest {
    if authenticated.iter().any(|d| d == domain) {
        return DialbackRequest::AlreadyAuthenticated;
    }
    if pending.iter().any(|d| d == domain) {
        return DialbackRequest::Reject(Refusal::new(
            Condition::PolicyViolation,
            "dialback_duplicate",
            format!(
                "A dialback verification for '{domain}' is already in progress on this stream."
            ),
        ));
    }
    if authenticated.len() + pending.len() >= MAX_DOMAINS_PER_STREAM {
        return DialbackRequest::Reject(Refusal::new(
            Condition::ResourceConstraint,
            "dialback_domains",
            format!("Too many domains on one stream (limit {MAX_DOMAINS_PER_STREAM})."),
        ));
    }
    DialbackRequest::Verify
}

/// STARTTLS offer in stream features.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsOffer {
    None,
    Optional,
    Required,
}

/// What the receiving side offers in `<stream:features/>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offer {
    pub starttls: TlsOffer,
    pub sasl_external: bool,
    pub dialback: bool,
}

/// The settings used for the organisation's own servers on the internal side: TLS when both
/// sides can, SASL EXTERNAL when certificates allow, dialback otherwise.
pub const INTERNAL_SETTINGS: NegotiationSettings = NegotiationSettings {
    tls: TlsNegotiation::Optional,
    sasl: SaslNegotiation::Optional,
    dialback: true,
};

/// The settings used before the peer domain is known (a header without `from`): offer what any
/// partner might use; the decision is taken when the peer names its domain.
pub const UNKNOWN_PEER_SETTINGS: NegotiationSettings = INTERNAL_SETTINGS;

/// The features offered, from the peer's settings, whether TLS is already active, whether
/// we can do TLS at all, and whether the peer's certificate validated for its domain.
pub fn features_offer(
    settings: NegotiationSettings,
    tls_active: bool,
    tls_available: bool,
    peer_cert_valid: bool,
) -> Offer {
    let methods = settings.allowed_methods();
    if !tls_active {
        let tls_possible = tls_available && settings.tls != TlsNegotiation::NotSupported;
        let cleartext_ok = methods.contains(&AuthMethod::TcpDialback);
        Offer {
            starttls: match (tls_possible, cleartext_ok) {
                (false, _) => TlsOffer::None,
                (true, true) => TlsOffer::Optional,
                (true, false) => TlsOffer::Required,
            },
            sasl_external: false,
            dialback: cleartext_ok,
        }
    } else {
        Offer {
            starttls: TlsOffer::None,
            sasl_external: peer_cert_valid && methods.contains(&AuthMethod::SaslExternal),
            dialback: methods.contains(&AuthMethod::TlsDialback),
        }
    }
}

/// Whether STARTTLS may be accepted (the peer asks for it).
pub fn starttls_admission(
    settings: NegotiationSettings,
    tls_available: bool,
) -> Result<(), Refusal> {
    if !tls_available || settings.tls == TlsNegotiation::NotSupported {
        return Err(Refusal::new(
            Condition::PolicyViolation,
            "tls_not_supported",
            "TLS is not supported with this domain.",
        ));
    }
    Ok(())
}

/// Whether a dialback request may be accepted on this stream, and as which method.
pub fn dialback_admission(
    domain: &str,
    settings: NegotiationSettings,
    tls_active: bool,
) -> Result<AuthMethod, Refusal> {
    let method = if tls_active {
        AuthMethod::TlsDialback
    } else {
        AuthMethod::TcpDialback
    };
    if settings.allowed_methods().contains(&method) {
        Ok(method)
    } else {
        let why = if !settings.dialback {
            "dialback is not allowed"
        } else if !tls_active && settings.tls == TlsNegotiation::Required {
            "TLS is required"
        } else {
            "SASL EXTERNAL is required"
        };
        Err(Refusal::new(
            Condition::PolicyViolation,
            "method_not_allowed",
            format!("Dialback for '{domain}' refused: {why}."),
        ))
    }
}

/// The outcome of checking a peer certificate for a domain (done by the TLS layer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertCheck {
    /// No certificate presented.
    Absent,
    /// Chain does not validate against the trust anchors.
    Untrusted,
    /// Chain valid, but no DNS/XmppAddr name matches the domain.
    NameMismatch,
    /// Chain and name valid.
    Valid,
}

/// Whether SASL EXTERNAL may succeed for `domain` (XEP-0178).
pub fn sasl_admission(
    domain: &str,
    settings: NegotiationSettings,
    tls_active: bool,
    cert: CertCheck,
) -> Result<AuthMethod, Refusal> {
    if !tls_active
        || !settings
            .allowed_methods()
            .contains(&AuthMethod::SaslExternal)
    {
        return Err(Refusal::new(
            Condition::PolicyViolation,
            "method_not_allowed",
            format!("SASL EXTERNAL for '{domain}' is not allowed here."),
        ));
    }
    match cert {
        CertCheck::Valid => Ok(AuthMethod::SaslExternal),
        CertCheck::Absent => Err(Refusal::new(
            Condition::NotAuthorized,
            "certificate_absent",
            format!("No certificate was presented for '{domain}'."),
        )),
        CertCheck::Untrusted => Err(Refusal::new(
            Condition::NotAuthorized,
            "certificate_untrusted",
            format!("The certificate for '{domain}' is not trusted."),
        )),
        CertCheck::NameMismatch => Err(Refusal::new(
            Condition::NotAuthorized,
            "certificate_name",
            format!("The certificate does not name '{domain}'."),
        )),
    }
}

/// What an initiating (outbound) stream does next after receiving features.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboundStep {
    StartTls,
    SaslExternal,
    Dialback(AuthMethod),
    Fail(&'static str),
}

/// What an initiating stream knows when it decides its next step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboundFacts {
    pub offered_starttls: bool,
    pub offered_sasl_external: bool,
    pub offered_dialback: bool,
    pub tls_active: bool,
    pub tls_available: bool,
    /// Whether the remote can be expected to trust the certificate we present.
    pub we_have_trusted_cert: bool,
    /// Whether the remote's certificate validated for its domain.
    pub remote_cert_valid: bool,
    /// Whether the remote refused our certificate for SASL EXTERNAL earlier on this stream's
    /// way (a new connection after [`after_external_refused`] said so): EXTERNAL is not tried
    /// again, and dialback is tried even where the remote offers EXTERNAL but not dialback.
    pub external_refused: bool,
}

/// Outbound: given the remote's features, our state and the partner's settings, the next
/// step. The strongest allowed method first, the weakest last.
pub fn outbound_step(settings: NegotiationSettings, facts: OutboundFacts) -> OutboundStep {
    let OutboundFacts {
        offered_starttls,
        offered_sasl_external,
        offered_dialback,
        tls_active,
        tls_available,
        we_have_trusted_cert,
        remote_cert_valid,
        external_refused,
    } = facts;
    let methods = settings.allowed_methods();
    if !tls_active {
        if offered_starttls && tls_available && settings.tls != TlsNegotiation::NotSupported {
            return OutboundStep::StartTls;
        }
        if methods.contains(&AuthMethod::TcpDialback) {
            // Pre-XEP-0220-feature servers do not announce dialback; try it anyway.
            return OutboundStep::Dialback(AuthMethod::TcpDialback);
        }
        return OutboundStep::Fail(if offered_starttls {
            "TLS required but not possible"
        } else {
            "the remote does not offer TLS, which is required"
        });
    }
    if offered_sasl_external
        && !external_refused
        && we_have_trusted_cert
        && remote_cert_valid
        && methods.contains(&AuthMethod::SaslExternal)
    {
        return OutboundStep::SaslExternal;
    }
    if methods.contains(&AuthMethod::TlsDialback)
        && (offered_dialback || !offered_sasl_external || external_refused)
    {
        return OutboundStep::Dialback(AuthMethod::TlsDialback);
    }
    OutboundStep::Fail("no authentication method allowed by the partner's settings is possible")
}

/// The metrics label of a remote refusing our certificate for SASL EXTERNAL (counted on every
/// refusal, whether dialback follows or not).
pub const SASL_EXTERNAL_REFUSED: &str = "sasl_external_refused";

/// What an outbound stream knows when the remote answered our SASL EXTERNAL with `<failure/>`
/// (which happens only inside TLS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExternalRefusedFacts<'a> {
    /// Which side the outbound stream is on.
    pub side: Side,
    /// The remote domain (a partner domain on the external side, a hosted domain on the
    /// internal side).
    pub remote: &'a str,
    /// The SASL condition's name from the failure (RFC 6120 §6.5, e.g. `not-authorized`), when
    /// it named a known one. The remote's free text is for the log only and not taken here.
    pub condition: Option<&'a str>,
    /// Whether the remote still offers dialback on this stream: the XEP-0220 stream feature
    /// `<dialback xmlns='urn:xmpp:features:dialback'/>` or `xmlns:db` in its stream header.
    pub dialback_offered: bool,
}

/// Why an outbound stream could not be set up, for the bounce of its queued stanzas
/// (`remote-server-not-found` carrying `text`) and the log; `reason` is a stable label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupFailure {
    pub reason: &'static str,
    pub text: String,
}

/// The next step after the remote refused SASL EXTERNAL (see [`after_external_refused`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterExternalRefused {
    /// Dialback with this method on the same stream (the remote still offers it).
    Dialback(AuthMethod),
    /// Close this stream and open a new connection that authenticates by dialback only
    /// ([`OutboundFacts::external_refused`] set, so [`outbound_step`] never tries EXTERNAL again).
    NewConnection,
    /// No method is left: bounce the queued stanzas with this.
    GiveUp(SetupFailure),
}

/// "The partner 'x' refused this gateway's certificate for SASL EXTERNAL (not-authorized)".
fn external_refused_by(side: Side, remote: &str, condition: Option<&str>) -> String {
    let who = match side {
        Side::External => format!("The partner '{remote}'"),
        Side::Internal => format!("The internal server of '{remote}'"),
    };
    let condition = condition.unwrap_or("no condition given");
    format!("{who} refused this gateway's certificate for SASL EXTERNAL ({condition})")
}

/// Outbound, after the remote refused our certificate for SASL EXTERNAL (e.g. ejabberd
/// before 25.07 insists on the clientAuth purpose, which certificates from public CAs no longer
/// carry): go on with dialback when the settings allow it (dialback on, SaslNegotiation not
/// Required) — on the same stream when the remote still offers dialback there, else on a new
/// connection — otherwise give up with a text naming the remote and the reason.
pub fn after_external_refused(
    settings: NegotiationSettings,
    facts: ExternalRefusedFacts<'_>,
) -> AfterExternalRefused {
    let ExternalRefusedFacts {
        side,
        remote,
        condition,
        dialback_offered,
    } = facts;
    let not_allowed = if !settings.dialback {
        Some("SupportDialbackNegotiation is False")
    } else if settings.sasl == SaslNegotiation::Required {
        Some("SaslNegotiation is Required")
    } else {
        None
    };
    if let Some(why) = not_allowed {
        let refused = external_refused_by(side, remote, condition);
        let text = match side {
            Side::External => format!("{refused}; its settings do not allow dialback ({why})."),
            Side::Internal => format!("{refused}; dialback is not allowed ({why})."),
        };
        return AfterExternalRefused::GiveUp(SetupFailure {
            reason: SASL_EXTERNAL_REFUSED,
            text,
        });
    }
    // SASL runs only inside TLS, so dialback on this stream is dialback over TLS.
    if dialback_offered
        && settings
            .allowed_methods()
            .contains(&AuthMethod::TlsDialback)
    {
        AfterExternalRefused::Dialback(AuthMethod::TlsDialback)
    } else {
        AfterExternalRefused::NewConnection
    }
}

/// The bounce after the remote refused SASL EXTERNAL and the dialback that followed did not
/// succeed either. The text names the remote and the refusal but not the dialback failure's
/// details (addresses, the remote's words): those go to the log, the bounce may go to the
/// other side of the gateway.
pub fn dialback_after_external_failed(
    side: Side,
    remote: &str,
    condition: Option<&str>,
) -> SetupFailure {
    SetupFailure {
        reason: SASL_EXTERNAL_REFUSED,
        text: format!(
            "{}, and dialback did not succeed either.",
            external_refused_by(side, remote, condition)
        ),
    }
}

/// The verdict on one stanza received on an authenticated inbound stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StanzaVerdict {
    /// Route it from `from` domain to `to` domain (normalised; a domain in normal form of up to
    /// 22 bytes, nearly all, is kept inline: no allocation on the common path).
    Route { from: Domain, to: Domain },
    /// Drop it and close the stream with this error.
    Refuse(Refusal),
}

/// The domain of an address (its [`Parts`](crate::jid::Parts)), normalised as hosted and partner
/// domains are ([`Domain::parse`]: case, IDNA/UTS-46, so `ｃｏｒｐ.example` is `corp.example`, as
/// the internal servers' nameprep has it). A text that is no valid domain is `Err` with the text
/// lowercased, for the refusal: it matches no authenticated, hosted or partner domain (those are
/// all [`Domain`]s), so the stanza is refused.
fn domain_of(address: &crate::jid::Parts<'_>) -> Result<Domain, String> {
    Domain::parse(address.domain)
        .map_err(|_| address.domain.trim_end_matches('.').to_ascii_lowercase())
}

/// The text of a [`domain_of`] result, for a refusal.
fn domain_text(d: &Result<Domain, String>) -> &str {
    match d {
        Ok(d) => d.as_str(),
        Err(text) => text,
    }
}

/// A stanza's `from` domain must be one the stream authenticated; its `to` domain must be
/// a valid target for this side (a hosted domain on the external side, a fronted partner domain
/// on the internal side: `is_target`). `authenticated` holds the (lowercase) domains the stream
/// authenticated; an empty list means the stream is not authenticated yet. A routed stanza's
/// domains are [`Domain`]s: an address whose domain is no valid domain name is refused (no
/// stream authenticates such a domain, and none is hosted or a partner's).
pub fn stanza_verdict(
    side: Side,
    authenticated: &[String],
    from: Option<&str>,
    to: Option<&str>,
    is_target: &dyn Fn(&str) -> bool,
) -> StanzaVerdict {
    stanza_verdict_parts(
        side,
        authenticated,
        from.map(crate::jid::split),
        to.map(crate::jid::split),
        is_target,
    )
}

/// [`stanza_verdict`] on addresses already [`split`](crate::jid::split): the route decision
/// splits each address once, for these rules and for its normalisation.
pub fn stanza_verdict_parts(
    side: Side,
    authenticated: &[String],
    from: Option<crate::jid::Parts<'_>>,
    to: Option<crate::jid::Parts<'_>>,
    is_target: &dyn Fn(&str) -> bool,
) -> StanzaVerdict {
    if authenticated.is_empty() {
        return StanzaVerdict::Refuse(Refusal::new(
            Condition::NotAuthorized,
            "not_authenticated",
            "Stanzas are not accepted before the stream is authenticated.",
        ));
    }
    let (Some(from), Some(to)) = (from, to) else {
        return StanzaVerdict::Refuse(Refusal::new(
            Condition::ImproperAddressing,
            "improper_addressing",
            "Server-to-server stanzas need both 'from' and 'to'.",
        ));
    };
    let from_domain = match domain_of(&from) {
        Ok(d)
            if authenticated
                .iter()
                .any(|a| a.as_bytes().eq_ignore_ascii_case(d.as_bytes())) =>
        {
            d
        }
        other => {
            return StanzaVerdict::Refuse(Refusal::new(
                Condition::InvalidFrom,
                "spoofed_from",
                format!(
                    "The sender domain '{}' is not authenticated on this stream.",
                    domain_text(&other)
                ),
            ));
        }
    };
    let to_domain = match domain_of(&to) {
        Ok(d) if is_target(d.as_str()) => d,
        other => {
            let what = match side {
                Side::External => "a domain hosted by this gateway",
                Side::Internal => "an allowed partner domain",
            };
            return StanzaVerdict::Refuse(Refusal::new(
                Condition::HostUnknown,
                "unknown_target",
                format!(
                    "The recipient domain '{}' is not {what}.",
                    domain_text(&other)
                ),
            ));
        }
    };
    StanzaVerdict::Route {
        from: from_domain,
        to: to_domain,
    }
}

/// Facts about a live, authenticated partner stream, for re-checking after a policy change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveStream {
    pub method: AuthMethod,
    pub tls_active: bool,
}

/// Whether a live stream with `domain` is still allowed after a change of the partner
/// list (`partner` is the current owner of the domain, if any).
pub fn still_allowed(
    domain: &str,
    partner: Option<&XmppAllowedPartner>,
    stream: LiveStream,
) -> Result<(), Refusal> {
    let p = partner_admission(domain, partner).map_err(|mut r| {
        r.reason = "partner_removed";
        r.text = format!("The domain '{domain}' is no longer an allowed XMPP partner.");
        r
    })?;
    let settings = p.negotiation();
    if !stream.tls_active && settings.tls == TlsNegotiation::Required {
        return Err(Refusal::new(
            Condition::PolicyViolation,
            "settings_changed",
            format!("TLS is now required with '{domain}'."),
        ));
    }
    if !settings.allowed_methods().contains(&stream.method) {
        return Err(Refusal::new(
            Condition::PolicyViolation,
            "settings_changed",
            format!(
                "{} is no longer allowed with '{domain}'.",
                stream.method.description()
            ),
        ));
    }
    Ok(())
}

/// Timers of one stream, in seconds since the respective event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamClock {
    pub since_open: u64,
    /// Since any byte was received.
    pub since_data: u64,
    /// Since the last stanza (or since authentication).
    pub since_stanza: u64,
    pub authenticated: bool,
}

/// The gateway-wide timeouts that apply to a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub keep_alive_interval: u64,
    pub stream_establishment_timeout: u64,
    pub stream_inactivity_timeout: u64,
}

/// Whether a stream must be closed now because of a timeout.
pub fn timeout_verdict(clock: StreamClock, t: Timeouts) -> Option<Refusal> {
    if !clock.authenticated && clock.since_open >= t.stream_establishment_timeout {
        return Some(Refusal::new(
            Condition::ConnectionTimeout,
            "establishment_timeout",
            format!(
                "The stream was not authenticated within {} s.",
                t.stream_establishment_timeout
            ),
        ));
    }
    if clock.since_data >= t.keep_alive_interval {
        return Some(Refusal::new(
            Condition::ConnectionTimeout,
            "keepalive_timeout",
            format!("Nothing received for {} s.", t.keep_alive_interval),
        ));
    }
    if clock.authenticated && clock.since_stanza >= t.stream_inactivity_timeout {
        return Some(Refusal::new(
            Condition::ConnectionTimeout,
            "inactivity_timeout",
            format!("No stanza for {} s.", t.stream_inactivity_timeout),
        ));
    }
    None
}

/// How often to send a whitespace keepalive: well within KeepAliveInterval (a third of it,
/// at least 1 s), or never when the partner's EnableKeepAlive is off.
pub fn keepalive_period(enable_keep_alive: bool, keep_alive_interval: u64) -> Option<u64> {
    enable_keep_alive.then(|| (keep_alive_interval / 3).max(1))
}

/// The first wait after an outbound stream stalled (its peer stopped reading)…
pub const STALL_BACKOFF_FIRST: std::time::Duration = std::time::Duration::from_secs(5);
/// …doubled after each further stall in a row, up to this.
pub const STALL_BACKOFF_MAX: std::time::Duration = std::time::Duration::from_secs(300);

/// How long new outbound streams to a peer wait after the `stalls`-th stall in a row of its
/// streams (1 for the first): [`STALL_BACKOFF_FIRST`], doubling, at most [`STALL_BACKOFF_MAX`].
/// Meanwhile stanzas for the peer are bounced at once with `<remote-server-timeout/>`.
pub fn stall_backoff(stalls: u32) -> std::time::Duration {
    let doublings = stalls.saturating_sub(1).min(16);
    STALL_BACKOFF_FIRST
        .saturating_mul(1 << doublings)
        .min(STALL_BACKOFF_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Domain, DomainPattern};
    use SaslNegotiation as S;
    use TlsNegotiation as T;

    #[test]
    fn a_stalled_peer_is_retried_after_a_growing_bounded_wait() {
        let secs = |n| stall_backoff(n).as_secs();
        assert_eq!(
            [secs(0), secs(1), secs(2), secs(3), secs(4)],
            [5, 5, 10, 20, 40]
        );
        assert_eq!(secs(7), 300);
        assert_eq!(secs(u32::MAX), 300);
    }

    fn partner(tls: T, sasl: S, dialback: bool) -> XmppAllowedPartner {
        let mut p = XmppAllowedPartner::new(Domain::parse("partner.example").unwrap());
        p.tls_negotiation = tls;
        p.sasl_negotiation = sasl;
        p.support_dialback_negotiation = dialback;
        p.additional_domains = vec![DomainPattern::parse("*.partner.example").unwrap()];
        p
    }

    fn settings(tls: T, sasl: S, dialback: bool) -> NegotiationSettings {
        NegotiationSettings {
            tls,
            sasl,
            dialback,
        }
    }

    #[test]
    fn unlisted_domain_is_refused_with_its_name() {
        let r = partner_admission("evil.example", None).unwrap_err();
        assert_eq!(r.condition, Condition::PolicyViolation);
        assert_eq!(r.reason, "not_listed");
        assert!(r.text.contains("evil.example"));
        let p = partner(T::Required, S::Required, true);
        assert!(partner_admission("partner.example", Some(&p)).is_ok());
    }

    #[test]
    fn lowered_limits() {
        let mut p = partner(T::Required, S::Required, true);
        assert_eq!(excess_connections(&p, 20, 3), None);
        p.connection_limit = Some(1);
        let (n, r) = excess_connections(&p, 20, 3).unwrap();
        assert_eq!((n, r.condition), (2, Condition::PolicyViolation));
        assert!(r.text.contains("lowered to 1"));
        assert_eq!(excess_connections(&p, 20, 1), None);
        p.connection_limit = None;
        assert_eq!(excess_connections(&p, 2, 3).map(|x| x.0), Some(1));
    }

    #[test]
    fn stream_targets() {
        assert!(target_admission(Side::External, "corp.example", true).is_ok());
        assert!(target_admission(Side::Internal, "partner.example", true).is_ok());
        let r = target_admission(Side::External, "x.example", false).unwrap_err();
        assert_eq!(
            (r.condition, r.reason),
            (Condition::HostUnknown, "unknown_target")
        );
        let r = target_admission(Side::Internal, "x.example", false).unwrap_err();
        assert_eq!(
            (r.condition, r.reason),
            (Condition::PolicyViolation, "not_listed")
        );
        assert!(r.text.contains("x.example"));
    }

    #[test]
    fn connection_limits() {
        let mut p = partner(T::Required, S::Required, true);
        let c = |partner, total| ConnectionCounts { partner, total };
        assert!(connection_admission(&p, 2, 10, c(1, 5)).is_ok());
        let r = connection_admission(&p, 2, 10, c(2, 5)).unwrap_err();
        assert_eq!(
            (r.condition, r.reason),
            (Condition::PolicyViolation, "partner_connection_limit")
        );
        p.connection_limit = Some(5);
        assert!(connection_admission(&p, 2, 10, c(4, 5)).is_ok());
        assert!(connection_admission(&p, 2, 10, c(5, 5)).is_err());
        let r = connection_admission(&p, 2, 10, c(0, 10)).unwrap_err();
        assert_eq!(
            (r.condition, r.reason),
            (Condition::ResourceConstraint, "connection_limit")
        );
    }

    #[test]
    fn pre_auth_limits_per_address_block_and_in_all() {
        let limits = PreAuthLimits {
            per_address: 20,
            per_block: 50,
            total: 1000,
        };
        let c = |address, block, total| PreAuthCounts {
            address,
            block,
            total,
        };
        assert!(pre_auth_admission(c(19, 49, 999), limits).is_ok());
        for (counts, reason) in [
            (c(20, 20, 20), "connections_per_ip"),
            (c(1, 50, 50), "connections_per_block"),
            (c(1, 1, 1000), "unauthenticated_streams"),
        ] {
            let r = pre_auth_admission(counts, limits).unwrap_err();
            assert_eq!(
                (r.condition, r.reason),
                (Condition::ResourceConstraint, reason)
            );
        }
    }

    #[test]
    fn address_blocks_are_ipv4_24_and_ipv6_64() {
        let b = |s: &str| AddressBlock::of(s.parse().unwrap());
        assert_eq!(b("192.0.2.1"), b("192.0.2.254"));
        assert_ne!(b("192.0.2.1"), b("192.0.3.1"));
        assert_eq!(b("2001:db8:1:2::1"), b("2001:db8:1:2:ffff::9"));
        assert_ne!(b("2001:db8:1:2::1"), b("2001:db8:1:3::1"));
        // An IPv4-mapped address is its IPv4 address.
        assert_eq!(b("::ffff:192.0.2.7"), b("192.0.2.1"));
    }

    #[test]
    fn dialback_requests_one_in_flight_per_domain_and_bounded_domains() {
        let v = |d: &[&str]| d.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            dialback_request("a.example", &[], &[]),
            DialbackRequest::Verify
        );
        assert_eq!(
            dialback_request("a.example", &v(&["a.example"]), &[]),
            DialbackRequest::AlreadyAuthenticated
        );
        let DialbackRequest::Reject(r) = dialback_request("a.example", &[], &v(&["a.example"]))
        else {
            panic!("a second request while one is in flight must be rejected");
        };
        assert_eq!(r.reason, "dialback_duplicate");
        let many: Vec<String> = (0..MAX_DOMAINS_PER_STREAM)
            .map(|i| format!("d{i}.example"))
            .collect();
        let DialbackRequest::Reject(r) = dialback_request("new.example", &many, &[]) else {
            panic!("too many domains on one stream");
        };
        assert_eq!(r.reason, "dialback_domains");
        assert_eq!(
            dialback_request("b.example", &many[1..], &[]),
            DialbackRequest::Verify
        );
    }

    #[test]
    fn failed_attempts_close_the_stream_at_the_limit() {
        for f in 1..MAX_AUTH_FAILURES {
            assert_eq!(auth_failure_verdict(f), None);
        }
        let r = auth_failure_verdict(MAX_AUTH_FAILURES).unwrap();
        assert_eq!(
            (r.condition, r.reason),
            (Condition::NotAuthorized, "auth_failures")
        );
    }

    #[test]
    fn features_before_tls() {
        // Default partner: TLS required, SASL required.
        let o = features_offer(settings(T::Required, S::Required, true), false, true, false);
        assert_eq!(
            o,
            Offer {
                starttls: TlsOffer::Required,
                sasl_external: false,
                dialback: false
            }
        );
        // Optional TLS with dialback: TLS optional, cleartext dialback offered.
        let o = features_offer(settings(T::Optional, S::Optional, true), false, true, false);
        assert_eq!(
            o,
            Offer {
                starttls: TlsOffer::Optional,
                sasl_external: false,
                dialback: true
            }
        );
        // Dialback-only partner.
        let o = features_offer(
            settings(T::NotSupported, S::NotSupported, true),
            false,
            true,
            false,
        );
        assert_eq!(
            o,
            Offer {
                starttls: TlsOffer::None,
                sasl_external: false,
                dialback: true
            }
        );
        // TLS optional but no certificate available: no TLS offered.
        let o = features_offer(
            settings(T::Optional, S::Optional, true),
            false,
            false,
            false,
        );
        assert_eq!(o.starttls, TlsOffer::None);
        // TLS optional, SASL required: cleartext still allows dialback per allowed_methods.
        let o = features_offer(settings(T::Optional, S::Required, true), false, true, false);
        assert_eq!(
            o,
            Offer {
                starttls: TlsOffer::Optional,
                sasl_external: false,
                dialback: true
            }
        );
        // TLS optional, no dialback: TLS is the only way.
        let o = features_offer(
            settings(T::Optional, S::Optional, false),
            false,
            true,
            false,
        );
        assert_eq!(
            o,
            Offer {
                starttls: TlsOffer::Required,
                sasl_external: false,
                dialback: false
            }
        );
    }

    #[test]
    fn features_after_tls() {
        let s = settings(T::Required, S::Required, true);
        assert_eq!(
            features_offer(s, true, true, true),
            Offer {
                starttls: TlsOffer::None,
                sasl_external: true,
                dialback: false
            }
        );
        assert_eq!(
            features_offer(s, true, true, false),
            Offer {
                starttls: TlsOffer::None,
                sasl_external: false,
                dialback: false
            }
        );
        let s = settings(T::Required, S::Optional, true);
        assert_eq!(
            features_offer(s, true, true, false),
            Offer {
                starttls: TlsOffer::None,
                sasl_external: false,
                dialback: true
            }
        );
        assert_eq!(
            features_offer(s, true, true, true),
            Offer {
                starttls: TlsOffer::None,
                sasl_external: true,
                dialback: true
            }
        );
        let s = settings(T::Optional, S::NotSupported, true);
        assert_eq!(
            features_offer(s, true, true, true),
            Offer {
                starttls: TlsOffer::None,
                sasl_external: false,
                dialback: true
            }
        );
    }

    #[test]
    fn starttls_requests() {
        assert!(starttls_admission(settings(T::Optional, S::Optional, true), true).is_ok());
        assert!(
            starttls_admission(settings(T::NotSupported, S::NotSupported, true), true).is_err()
        );
        assert!(starttls_admission(settings(T::Required, S::Required, true), false).is_err());
    }

    #[test]
    fn dialback_requests() {
        let d = |s, tls| dialback_admission("partner.example", s, tls);
        assert_eq!(
            d(settings(T::NotSupported, S::NotSupported, true), false),
            Ok(AuthMethod::TcpDialback)
        );
        assert_eq!(
            d(settings(T::Optional, S::Optional, true), true),
            Ok(AuthMethod::TlsDialback)
        );
        assert_eq!(
            d(settings(T::Optional, S::Optional, true), false),
            Ok(AuthMethod::TcpDialback)
        );
        let r = d(settings(T::Required, S::Optional, true), false).unwrap_err();
        assert!(r.text.contains("TLS is required"), "{r}");
        let r = d(settings(T::Required, S::Required, true), true).unwrap_err();
        assert!(r.text.contains("SASL EXTERNAL is required"), "{r}");
        let r = d(settings(T::Required, S::Optional, false), true).unwrap_err();
        assert!(r.text.contains("dialback is not allowed"), "{r}");
        assert_eq!(r.condition, Condition::PolicyViolation);
    }

    #[test]
    fn sasl_requests() {
        let s = settings(T::Required, S::Required, false);
        assert_eq!(
            sasl_admission("p", s, true, CertCheck::Valid),
            Ok(AuthMethod::SaslExternal)
        );
        for (c, reason) in [
            (CertCheck::Absent, "certificate_absent"),
            (CertCheck::Untrusted, "certificate_untrusted"),
            (CertCheck::NameMismatch, "certificate_name"),
        ] {
            let r = sasl_admission("p", s, true, c).unwrap_err();
            assert_eq!((r.condition, r.reason), (Condition::NotAuthorized, reason));
        }
        assert_eq!(
            sasl_admission("p", s, false, CertCheck::Valid)
                .unwrap_err()
                .reason,
            "method_not_allowed"
        );
        let s = settings(T::Optional, S::NotSupported, true);
        assert!(sasl_admission("p", s, true, CertCheck::Valid).is_err());
    }

    #[test]
    fn outbound_steps() {
        let def = settings(T::Required, S::Required, true);
        assert_eq!(
            outbound_step(
                def,
                OutboundFacts {
                    offered_starttls: true,
                    offered_sasl_external: false,
                    offered_dialback: false,
                    tls_active: false,
                    tls_available: true,
                    we_have_trusted_cert: true,
                    remote_cert_valid: false,
                    external_refused: false
                }
            ),
            OutboundStep::StartTls
        );
        assert!(matches!(
            outbound_step(
                def,
                OutboundFacts {
                    offered_starttls: false,
                    offered_sasl_external: false,
                    offered_dialback: true,
                    tls_active: false,
                    tls_available: true,
                    we_have_trusted_cert: true,
                    remote_cert_valid: false,
                    external_refused: false
                }
            ),
            OutboundStep::Fail(_)
        ));
        assert_eq!(
            outbound_step(
                def,
                OutboundFacts {
                    offered_starttls: false,
                    offered_sasl_external: true,
                    offered_dialback: false,
                    tls_active: true,
                    tls_available: true,
                    we_have_trusted_cert: true,
                    remote_cert_valid: true,
                    external_refused: false
                }
            ),
            OutboundStep::SaslExternal
        );
        assert!(matches!(
            outbound_step(
                def,
                OutboundFacts {
                    offered_starttls: false,
                    offered_sasl_external: true,
                    offered_dialback: true,
                    tls_active: true,
                    tls_available: true,
                    we_have_trusted_cert: true,
                    remote_cert_valid: false,
                    external_refused: false
                }
            ),
            OutboundStep::Fail(_)
        ));
        let opt = settings(T::Optional, S::Optional, true);
        assert_eq!(
            outbound_step(
                opt,
                OutboundFacts {
                    offered_starttls: false,
                    offered_sasl_external: true,
                    offered_dialback: true,
                    tls_active: true,
                    tls_available: true,
                    we_have_trusted_cert: false,
                    remote_cert_valid: true,
                    external_refused: false
                }
            ),
            OutboundStep::Dialback(AuthMethod::TlsDialback)
        );
        assert_eq!(
            outbound_step(
                opt,
                OutboundFacts {
                    offered_starttls: false,
                    offered_sasl_external: false,
                    offered_dialback: false,
                    tls_active: false,
                    tls_available: true,
                    we_have_trusted_cert: false,
                    remote_cert_valid: false,
                    external_refused: false
                }
            ),
            OutboundStep::Dialback(AuthMethod::TcpDialback)
        );
        let db_only = settings(T::NotSupported, S::NotSupported, true);
        assert_eq!(
            outbound_step(
                db_only,
                OutboundFacts {
                    offered_starttls: true,
                    offered_sasl_external: false,
                    offered_dialback: true,
                    tls_active: false,
                    tls_available: true,
                    we_have_trusted_cert: true,
                    remote_cert_valid: false,
                    external_refused: false
                }
            ),
            OutboundStep::Dialback(AuthMethod::TcpDialback)
        );
    }

    fn refused(
        side: Side,
        condition: Option<&'static str>,
        offered: bool,
    ) -> ExternalRefusedFacts<'static> {
        ExternalRefusedFacts {
            side,
            remote: match side {
                Side::External => "partner.example",
                Side::Internal => "corp.example",
            },
            condition,
            dialback_offered: offered,
        }
    }

    #[test]
    fn after_external_refused_dialback_where_the_settings_allow_it() {
        let nr = Some("not-authorized");
        for s in [
            settings(T::Optional, S::Optional, true),
            settings(T::Required, S::Optional, true),
            settings(T::Required, S::NotSupported, true),
        ] {
            // The remote still offers dialback: on the same stream, over TLS.
            assert_eq!(
                after_external_refused(s, refused(Side::External, nr, true)),
                AfterExternalRefused::Dialback(AuthMethod::TlsDialback),
                "{s:?}"
            );
            // It does not: a new connection.
            assert_eq!(
                after_external_refused(s, refused(Side::External, nr, false)),
                AfterExternalRefused::NewConnection,
                "{s:?}"
            );
        }
        // The internal side's settings allow dialback: an internal server that refuses our
        // certificate gets dialback too.
        assert_eq!(
            after_external_refused(INTERNAL_SETTINGS, refused(Side::Internal, nr, true)),
            AfterExternalRefused::Dialback(AuthMethod::TlsDialback)
        );
        assert_eq!(
            after_external_refused(INTERNAL_SETTINGS, refused(Side::Internal, None, false)),
            AfterExternalRefused::NewConnection
        );
    }

    #[test]
    fn after_external_refused_gives_up_naming_the_partner_and_the_reason() {
        let give_up = |s, f| match after_external_refused(s, f) {
            AfterExternalRefused::GiveUp(f) => f,
            other => panic!("{s:?}: {other:?}"),
        };
        // SaslNegotiation Required: dialback never, even where the remote offers it.
        let f = give_up(
            settings(T::Required, S::Required, true),
            refused(Side::External, Some("not-authorized"), true),
        );
        assert_eq!(f.reason, SASL_EXTERNAL_REFUSED);
        assert_eq!(f.reason, "sasl_external_refused");
        assert_eq!(
            f.text,
            "The partner 'partner.example' refused this gateway's certificate for SASL EXTERNAL \
             (not-authorized); its settings do not allow dialback (SaslNegotiation is Required)."
        );
        // SASL Required with optional TLS: dialback over cleartext would be allowed on a
        // cleartext stream, but a refused certificate is no reason to drop TLS.
        let f = give_up(
            settings(T::Optional, S::Required, true),
            refused(Side::External, None, true),
        );
        assert!(f.text.contains("(no condition given)"), "{}", f.text);
        assert!(f.text.contains("SaslNegotiation is Required"), "{}", f.text);
        // Dialback off.
        let f = give_up(
            settings(T::Required, S::Optional, false),
            refused(Side::External, Some("not-authorized"), true),
        );
        assert!(
            f.text.ends_with(
                "its settings do not allow dialback (SupportDialbackNegotiation is False)."
            ),
            "{}",
            f.text
        );
        // The internal side says whose server it was.
        let f = give_up(
            settings(T::Required, S::Required, false),
            refused(Side::Internal, Some("not-authorized"), false),
        );
        assert!(
            f.text
                .starts_with("The internal server of 'corp.example' refused"),
            "{}",
            f.text
        );
    }

    #[test]
    fn dialback_failing_after_the_refusal_names_both() {
        let f = dialback_after_external_failed(
            Side::External,
            "partner.example",
            Some("not-authorized"),
        );
        assert_eq!(f.reason, SASL_EXTERNAL_REFUSED);
        assert_eq!(
            f.text,
            "The partner 'partner.example' refused this gateway's certificate for SASL EXTERNAL \
             (not-authorized), and dialback did not succeed either."
        );
    }

    #[test]
    fn a_new_connection_after_the_refusal_never_tries_external_again() {
        let opt = settings(T::Optional, S::Optional, true);
        let facts = |starttls, external, dialback, tls| OutboundFacts {
            offered_starttls: starttls,
            offered_sasl_external: external,
            offered_dialback: dialback,
            tls_active: tls,
            tls_available: true,
            we_have_trusted_cert: true,
            remote_cert_valid: true,
            external_refused: true,
        };
        // Still TLS first, then dialback over TLS, even where the remote offers EXTERNAL only.
        assert_eq!(
            outbound_step(opt, facts(true, false, false, false)),
            OutboundStep::StartTls
        );
        assert_eq!(
            outbound_step(opt, facts(false, true, false, true)),
            OutboundStep::Dialback(AuthMethod::TlsDialback)
        );
        assert_eq!(
            outbound_step(opt, facts(false, true, true, true)),
            OutboundStep::Dialback(AuthMethod::TlsDialback)
        );
        // Without the refusal the same facts choose EXTERNAL (the remote offers it, both
        // certificates are good).
        assert_eq!(
            outbound_step(
                opt,
                OutboundFacts {
                    external_refused: false,
                    ..facts(false, true, false, true)
                }
            ),
            OutboundStep::SaslExternal
        );
        // Whatever the remote offers, EXTERNAL is never the step again.
        for bits in 0..16u8 {
            let f = facts(bits & 1 != 0, bits & 2 != 0, bits & 4 != 0, bits & 8 != 0);
            for s in [
                opt,
                settings(T::Required, S::Optional, true),
                INTERNAL_SETTINGS,
            ] {
                assert_ne!(
                    outbound_step(s, f),
                    OutboundStep::SaslExternal,
                    "{s:?} {f:?}"
                );
            }
        }
    }

    #[test]
    fn stanzas() {
        let auth = vec!["partner.example".to_owned()];
        let hosted = |d: &str| d == "corp.example";
        let v = |a: &[String], f, t| stanza_verdict(Side::External, a, f, t, &hosted);
        let route = |from, to| StanzaVerdict::Route {
            from: Domain::parse(from).unwrap(),
            to: Domain::parse(to).unwrap(),
        };
        assert_eq!(
            v(&auth, Some("a@Partner.Example/r"), Some("b@corp.example")),
            route("partner.example", "corp.example")
        );
        let refusal = |x: StanzaVerdict| match x {
            StanzaVerdict::Refuse(r) => r,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            refusal(v(&[], Some("a@partner.example"), Some("b@corp.example"))).condition,
            Condition::NotAuthorized
        );
        assert_eq!(
            refusal(v(&auth, Some("a@evil.example"), Some("b@corp.example"))).condition,
            Condition::InvalidFrom
        );
        assert_eq!(
            refusal(v(&auth, Some("a@partner.example"), Some("b@other.example"))).condition,
            Condition::HostUnknown
        );
        assert_eq!(
            refusal(v(&auth, None, Some("b@corp.example"))).condition,
            Condition::ImproperAddressing
        );
        assert_eq!(
            refusal(v(&auth, Some("a@partner.example"), None)).condition,
            Condition::ImproperAddressing
        );
        // Variants of the hosted and the partner domain are those domains (normalised, not
        // refused as unknown and never routed as they came).
        for (from, to) in [
            ("a@ＰＡＲＴＮＥＲ.example", "b@ｃｏｒｐ.example"),
            ("a@partner\u{FF0E}example/r", "b@cor\u{00AD}p.example/r"),
            ("partner.example.", "CORP.EXAMPLE."),
        ] {
            assert_eq!(
                v(&auth, Some(from), Some(to)),
                route("partner.example", "corp.example"),
                "{from} -> {to}"
            );
        }
        assert_eq!(
            refusal(v(
                &auth,
                Some("a@partner.example"),
                Some("b@ｃｏｒｐ.other")
            ))
            .condition,
            Condition::HostUnknown
        );
        // a resource containing '@' does not confuse the domain
        assert_eq!(
            v(
                &auth,
                Some("partner.example/x@corp.example"),
                Some("corp.example")
            ),
            route("partner.example", "corp.example")
        );
        // An address whose domain is no domain name is refused, the text naming it lowercased.
        let r = refusal(v(&auth, Some("a@Bad_Domain/r"), Some("b@corp.example")));
        assert_eq!(
            (r.condition, r.text.as_str()),
            (
                Condition::InvalidFrom,
                "The sender domain 'bad_domain' is not authenticated on this stream."
            )
        );
        let r = refusal(v(&auth, Some("a@partner.example"), Some("b@Bad_Domain.")));
        assert_eq!(
            (r.condition, r.text.as_str()),
            (
                Condition::HostUnknown,
                "The recipient domain 'bad_domain' is not a domain hosted by this gateway."
            )
        );
        let internal = stanza_verdict(
            Side::Internal,
            &["corp.example".into()],
            Some("u@corp.example"),
            Some("x@partner.example"),
            &|d| d == "partner.example",
        );
        assert!(matches!(internal, StanzaVerdict::Route { .. }));
        let r = refusal(stanza_verdict(
            Side::Internal,
            &["corp.example".into()],
            Some("u@corp.example"),
            Some("x@evil.example"),
            &|d| d == "partner.example",
        ));
        assert!(r.text.contains("allowed partner"));
    }

    #[test]
    fn live_streams_after_changes() {
        let tcp = LiveStream {
            method: AuthMethod::TcpDialback,
            tls_active: false,
        };
        let tls_db = LiveStream {
            method: AuthMethod::TlsDialback,
            tls_active: true,
        };
        let sasl = LiveStream {
            method: AuthMethod::SaslExternal,
            tls_active: true,
        };
        let p = partner(T::NotSupported, S::NotSupported, true);
        assert!(still_allowed("partner.example", Some(&p), tcp).is_ok());
        assert_eq!(
            still_allowed("partner.example", None, tcp)
                .unwrap_err()
                .reason,
            "partner_removed"
        );
        let p = partner(T::Required, S::Optional, true);
        let r = still_allowed("partner.example", Some(&p), tcp).unwrap_err();
        assert!(r.text.contains("TLS is now required"));
        assert!(still_allowed("partner.example", Some(&p), tls_db).is_ok());
        let p = partner(T::Required, S::Required, true);
        assert!(still_allowed("partner.example", Some(&p), tls_db).is_err());
        assert!(still_allowed("partner.example", Some(&p), sasl).is_ok());
    }

    #[test]
    fn timeouts() {
        let t = Timeouts {
            keep_alive_interval: 300,
            stream_establishment_timeout: 60,
            stream_inactivity_timeout: 600,
        };
        let c = |open, data, stanza, auth| StreamClock {
            since_open: open,
            since_data: data,
            since_stanza: stanza,
            authenticated: auth,
        };
        assert_eq!(timeout_verdict(c(10, 1, 10, false), t), None);
        assert_eq!(
            timeout_verdict(c(60, 1, 60, false), t).unwrap().reason,
            "establishment_timeout"
        );
        assert_eq!(timeout_verdict(c(1000, 1, 10, true), t), None);
        assert_eq!(
            timeout_verdict(c(1000, 300, 10, true), t).unwrap().reason,
            "keepalive_timeout"
        );
        assert_eq!(
            timeout_verdict(c(1000, 5, 600, true), t).unwrap().reason,
            "inactivity_timeout"
        );
        assert_eq!(keepalive_period(true, 300), Some(100));
        assert_eq!(keepalive_period(true, 2), Some(1));
        assert_eq!(keepalive_period(false, 300), None);
    }
}
