//! The gateway test (`Test-CsXmppGatewayConfiguration`): each hosted domain as partners see it.
//!
//! The gateway crate (`fedgate_gateway::probe::test_gateway`) resolves the domain as a partner
//! would, connects to the gateway's own external listeners as a partner would and fills
//! [`DomainFindings`]; the decisions here are pure: [`match_target`] says whether a published
//! address (from an SRV or A/AAAA record) reaches one of this gateway's listeners, and
//! [`assess_domain`] gives the verdict and the sentences from everything found. The step,
//! certificate and verdict types, and the certificate sentences, are the partner test's
//! ([`crate::probe`]).

use std::net::{IpAddr, SocketAddr};

use serde::Serialize;

use crate::probe::{
    self, CertificateInfo, Step, TlsOutcome, Verdict, Whose, certificate_problem, expiry_warning,
};

/// One of this gateway's external listeners (as bound, or as configured when none runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listener {
    pub addr: SocketAddr,
    /// The Direct TLS listener (`_xmpps-server`); else the STARTTLS one (`_xmpp-server`).
    pub direct_tls: bool,
}

impl std::fmt::Display for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = if self.direct_tls {
            "Direct TLS"
        } else {
            "STARTTLS"
        };
        write!(f, "{} ({kind})", self.addr)
    }
}

/// An address partners are given for a hosted domain by DNS, and by which record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    pub addr: SocketAddr,
    /// From a `_xmpps-server` SRV record (partners start TLS at once).
    pub direct_tls: bool,
    /// From an SRV record; else the domain's own A/AAAA record (no SRV record gave a target).
    pub via_srv: bool,
}

impl Published {
    fn record(&self, domain: &str) -> String {
        match (self.via_srv, self.direct_tls) {
            (true, false) => format!("The SRV record for {domain}"),
            (true, true) => format!("The Direct TLS SRV record (_xmpps-server) for {domain}"),
            (false, _) => format!("The A/AAAA record of {domain} (no SRV record)"),
        }
    }
}

/// Whether a published address reaches this gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetMatch {
    /// It is one of the listeners' address and port.
    Listener(Listener),
    /// The port matches a listener whose address cannot be compared (it listens on every
    /// address, or on a private one that a NAT may forward to); the note says so.
    PortOnly(String),
    /// It does not reach this gateway: the sentence says where it points and where the gateway
    /// listens.
    Elsewhere(String),
}

/// Private (RFC 1918, shared RFC 6598, unique-local) addresses: a gateway listening on one is
/// often reached through a NAT, so a public address in DNS cannot be compared with it.
fn private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_private() || (o[0] == 100 && (64..128).contains(&o[1]))
        }
        IpAddr::V6(v6) => (v6.segments()[0] & 0xfe00) == 0xfc00,
    }
}

/// Whether `target` (published for `domain`) reaches one of `listeners`: the same kind
/// (STARTTLS or Direct TLS) and address and port; a listener on `0.0.0.0` (IPv4) or `::` (both)
/// matches by port and says the address cannot be checked; a listener on a private address
/// matches a public address by port and says a NAT may forward it. Pure.
pub fn match_target(domain: &str, target: &Published, listeners: &[Listener]) -> TargetMatch {
    let same_kind: Vec<&Listener> = listeners
        .iter()
        .filter(|l| l.direct_tls == target.direct_tls)
        .collect();
    let (addr, record) = (target.addr, target.record(domain));
    if same_kind.is_empty() {
        return TargetMatch::Elsewhere(if target.direct_tls {
            format!(
                "{record} points at {addr}, but this gateway has no Direct TLS listener (external_listener.direct_tls_listen)."
            )
        } else {
            format!("{record} points at {addr}, but this gateway has no STARTTLS listener.")
        });
    }
    if let Some(l) = same_kind.iter().find(|l| l.addr == addr) {
        return TargetMatch::Listener(**l);
    }
    for l in &same_kind {
        if l.addr.port() != addr.port() {
            continue;
        }
        let ip = l.addr.ip();
        if ip.is_unspecified() && (ip.is_ipv6() || addr.is_ipv4()) {
            return TargetMatch::PortOnly(format!(
                "{addr}: the port of listener {l}; it listens on every address, so whether {} is one of this host's cannot be checked",
                addr.ip()
            ));
        }
        if private(ip) && !private(addr.ip()) && !addr.ip().is_loopback() {
            return TargetMatch::PortOnly(format!(
                "{addr}: the port of listener {l}; it listens on a private address, so whether a NAT forwards {} to it cannot be checked",
                addr.ip()
            ));
        }
    }
    let ours: Vec<String> = same_kind.iter().map(|l| l.addr.to_string()).collect();
    TargetMatch::Elsewhere(format!(
        "{record} points at {addr}, but this gateway listens on {}.",
        ours.join(" and ")
    ))
}

/// What connecting to one listener as a partner showed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListenerFindings {
    /// The listener, as `address:port (STARTTLS|Direct TLS)`.
    pub listener: String,
    /// Why no stream could be opened (connection, stream header, TLS), if so.
    pub error: Option<String>,
    pub tls: TlsOutcome,
    pub certificate: Option<CertificateInfo>,
}

/// What the gateway test found for one hosted domain (plain data; filled by the gateway).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DomainFindings {
    /// DNS answered in time (else nothing about the records can be said).
    pub dns_answered: bool,
    /// Every address DNS gives partners, in their connection order.
    pub published: Vec<Published>,
    /// How each published address matched (same order as `published`).
    pub matches: Vec<TargetMatch>,
    /// Each external listener, connected to as a partner.
    pub listeners: Vec<ListenerFindings>,
}

/// The verdict and the sentences (failures first, then warnings) for one hosted domain, at
/// `now` (seconds since 1970). Pure.
///
/// - No published address: Fail. None reaches this gateway: Fail, each sentence. Some do,
///   others not: Warning, each sentence (they may be other gateways of this deployment).
/// - A listener that opens no stream: Fail; one without TLS: Warning.
/// - The certificate (the first one presented): not presented, expired, not yet valid, not
///   trusted, not naming the domain, or without the serverAuth purpose: Fail; expiring within
///   [`probe::EXPIRY_WARNING_DAYS`] days or serverAuth without clientAuth: Warning.
pub fn assess_domain(domain: &str, f: &DomainFindings, now: i64) -> (Verdict, Vec<String>) {
    let mut fails = Vec::new();
    let mut warnings = Vec::new();
    if !f.dns_answered {
        fails.push(format!(
            "DNS did not answer in time for '{domain}', so what partners find cannot be checked."
        ));
    } else if f.published.is_empty() {
        fails.push(format!(
            "Partners cannot find this gateway for '{domain}': there is no _xmpp-server or _xmpps-server SRV record and no A or AAAA record for it."
        ));
    } else {
        let elsewhere: Vec<&String> = f
            .matches
            .iter()
            .filter_map(|m| match m {
                TargetMatch::Elsewhere(s) => Some(s),
                _ => None,
            })
            .collect();
        if elsewhere.len() == f.matches.len() {
            fails.extend(elsewhere.into_iter().cloned());
        } else {
            warnings.extend(elsewhere.into_iter().map(|s| {
                format!("{s} Partners that try it first do not reach this gateway (unless it is another gateway of this deployment).")
            }));
        }
    }
    for l in &f.listeners {
        if let Some(e) = &l.error {
            fails.push(format!(
                "A partner cannot open a stream to '{domain}' on this gateway's listener {}: {e}.",
                l.listener
            ));
        } else if l.tls != TlsOutcome::Up {
            warnings.push(format!(
                "This gateway's listener {} offers no TLS for '{domain}': streams with partners are not encrypted, and partners that require TLS refuse them.",
                l.listener
            ));
        }
    }
    let tls_up = f.listeners.iter().any(|l| l.tls == TlsOutcome::Up);
    if tls_up {
        let cert = f.listeners.iter().find_map(|l| l.certificate.as_ref());
        let (cert_fails, cert_warnings) = certificate_verdict(domain, cert, now);
        fails.extend(cert_fails);
        warnings.extend(cert_warnings);
    }
    let verdict = if !fails.is_empty() {
        Verdict::Fail
    } else if !warnings.is_empty() {
        Verdict::Warning
    } else {
        Verdict::Ok
    };
    fails.extend(warnings);
    (verdict, fails)
}

/// The certificate this gateway presents for `domain`, judged as a partner would: `(failures,
/// warnings)`, as sentences. Pure.
pub fn certificate_verdict(
    domain: &str,
    cert: Option<&CertificateInfo>,
    now: i64,
) -> (Vec<String>, Vec<String>) {
    if let Some(p) = certificate_problem(Whose::Own, domain, cert, now) {
        return (vec![p], Vec::new());
    }
    let Some(c) = cert else {
        return (Vec::new(), Vec::new());
    };
    let (mut fails, mut warnings) = (Vec::new(), Vec::new());
    let purposes = &c.extended_key_usage;
    if !purposes.is_empty() && !purposes.iter().any(|p| p == "serverAuth" || p == "any") {
        fails.push(format!(
            "The certificate this gateway presents for '{domain}' lacks the serverAuth purpose (its purposes: {}): partners refuse it for this gateway's listener.",
            purposes.join(", ")
        ));
    }
    warnings.extend(expiry_warning(Whose::Own, domain, c, now));
    if probe::server_auth_only(purposes) {
        warnings.push(format!(
            "The certificate this gateway presents for '{domain}' has the serverAuth purpose but not clientAuth: partners that authenticate this gateway by SASL EXTERNAL on its outbound streams need clientAuth and refuse it (ejabberd before 25.07, for one); dialback is used with them instead where their settings allow it."
        ));
    }
    (fails, warnings)
}

/// The test of one hosted domain, as `--output json` and the REST API give it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DomainReport {
    pub domain: String,
    pub steps: Vec<Step>,
    /// The certificate presented for the domain (null: no TLS stream was set up).
    pub certificate: Option<CertificateInfo>,
    /// Which trust anchors the certificate chains to: `system roots` or a `[tls] ca_files`
    /// file (null: none).
    pub trust_anchor: Option<String>,
    pub verdict: Verdict,
    pub problems: Vec<String>,
}

/// The whole gateway test: the overall verdict (the worst of the domains'), the listeners
/// tested, and one report per hosted domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GatewayReport {
    pub verdict: Verdict,
    /// The external listeners compared with DNS and connected to (`address:port (kind)`).
    pub listeners: Vec<String>,
    pub domains: Vec<DomainReport>,
}

impl GatewayReport {
    /// The report of `domains`, with the worst verdict of them (Ok when there are none).
    pub fn new(listeners: &[Listener], domains: Vec<DomainReport>) -> GatewayReport {
        GatewayReport {
            verdict: domains
                .iter()
                .map(|d| d.verdict)
                .max()
                .unwrap_or(Verdict::Ok),
            listeners: listeners.iter().map(Listener::to_string).collect(),
            domains,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::format_utc;

    const NOW: i64 = 1_800_000_000; // 2027-01-15
    const DAY: i64 = 86_400;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn starttls(s: &str) -> Listener {
        Listener {
            addr: sa(s),
            direct_tls: false,
        }
    }

    fn srv(s: &str) -> Published {
        Published {
            addr: sa(s),
            direct_tls: false,
            via_srv: true,
        }
    }

    fn good_cert() -> CertificateInfo {
        probe::good_cert_for(&["corp.example"], NOW)
    }

    fn healthy() -> DomainFindings {
        let listener = starttls("203.0.113.5:5269");
        let published = vec![srv("203.0.113.5:5269")];
        DomainFindings {
            dns_answered: true,
            matches: published
                .iter()
                .map(|p| match_target("corp.example", p, &[listener]))
                .collect(),
            published,
            listeners: vec![ListenerFindings {
                listener: listener.to_string(),
                error: None,
                tls: TlsOutcome::Up,
                certificate: Some(good_cert()),
            }],
        }
    }

    fn run(f: &DomainFindings) -> (Verdict, Vec<String>) {
        assess_domain("corp.example", f, NOW)
    }

    #[test]
    fn srv_pointing_at_the_listener_matches_and_elsewhere_gives_the_sentence() {
        let ours = [starttls("203.0.113.5:5269")];
        let t = srv("203.0.113.5:5269");
        assert_eq!(
            match_target("corp.example", &t, &ours),
            TargetMatch::Listener(ours[0])
        );
        let t = srv("198.51.100.7:5269");
        assert_eq!(
            match_target("corp.example", &t, &ours),
            TargetMatch::Elsewhere(
                "The SRV record for corp.example points at 198.51.100.7:5269, but this gateway listens on 203.0.113.5:5269.".into()
            )
        );
        // The right address on another port is elsewhere too.
        assert!(matches!(
            match_target("corp.example", &srv("203.0.113.5:5270"), &ours),
            TargetMatch::Elsewhere(_)
        ));
        // Direct TLS targets are compared with the Direct TLS listener only.
        let direct = Published {
            addr: sa("203.0.113.5:5269"),
            direct_tls: true,
            via_srv: true,
        };
        assert_eq!(
            match_target("corp.example", &direct, &ours),
            TargetMatch::Elsewhere(
                "The Direct TLS SRV record (_xmpps-server) for corp.example points at 203.0.113.5:5269, but this gateway has no Direct TLS listener (external_listener.direct_tls_listen).".into()
            )
        );
        let a = Published {
            via_srv: false,
            ..srv("198.51.100.7:5269")
        };
        assert_eq!(
            match_target("corp.example", &a, &ours),
            TargetMatch::Elsewhere(
                "The A/AAAA record of corp.example (no SRV record) points at 198.51.100.7:5269, but this gateway listens on 203.0.113.5:5269.".into()
            )
        );
    }

    #[test]
    fn wildcard_listen_compares_the_port_and_says_the_address_cannot_be_checked() {
        let any4 = [starttls("0.0.0.0:5269")];
        match match_target("corp.example", &srv("198.51.100.7:5269"), &any4) {
            TargetMatch::PortOnly(note) => {
                assert!(note.contains("cannot be checked"), "{note}")
            }
            other => panic!("{other:?}"),
        }
        // 0.0.0.0 is IPv4 only; :: takes both.
        assert!(matches!(
            match_target("corp.example", &srv("[2001:db8::1]:5269"), &any4),
            TargetMatch::Elsewhere(_)
        ));
        assert!(matches!(
            match_target(
                "corp.example",
                &srv("198.51.100.7:5269"),
                &[starttls("[::]:5269")]
            ),
            TargetMatch::PortOnly(_)
        ));
        assert_eq!(
            match_target("corp.example", &srv("198.51.100.7:5222"), &any4),
            TargetMatch::Elsewhere(
                "The SRV record for corp.example points at 198.51.100.7:5222, but this gateway listens on 0.0.0.0:5269.".into()
            )
        );
        // A private listen address behind a NAT: the port only.
        assert!(matches!(
            match_target(
                "corp.example",
                &srv("198.51.100.7:5269"),
                &[starttls("10.0.0.5:5269")]
            ),
            TargetMatch::PortOnly(_)
        ));
    }

    #[test]
    fn healthy_domain_is_ok() {
        assert_eq!(run(&healthy()), (Verdict::Ok, vec![]));
    }

    #[test]
    fn no_record_or_every_record_elsewhere_fails_some_elsewhere_warns() {
        let mut f = healthy();
        f.published.clear();
        f.matches.clear();
        let (v, p) = run(&f);
        assert_eq!(v, Verdict::Fail);
        assert!(
            p[0].starts_with("Partners cannot find this gateway for 'corp.example'"),
            "{p:?}"
        );
        let mut f = healthy();
        f.matches = vec![TargetMatch::Elsewhere("The SRV record … elsewhere.".into())];
        assert_eq!(
            run(&f),
            (Verdict::Fail, vec!["The SRV record … elsewhere.".into()])
        );
        f.published.push(srv("203.0.113.5:5269"));
        f.matches.push(TargetMatch::PortOnly("note".into()));
        let (v, p) = run(&f);
        assert_eq!(v, Verdict::Warning);
        assert!(p[0].starts_with("The SRV record … elsewhere. Partners that try it first"));
    }

    #[test]
    fn listener_without_stream_fails_and_without_tls_warns() {
        let mut f = healthy();
        f.listeners[0].error = Some("127.0.0.1:5269: Connection refused".into());
        f.listeners[0].tls = TlsOutcome::NotTried;
        let (v, p) = run(&f);
        assert_eq!(v, Verdict::Fail);
        assert_eq!(
            p,
            [
                "A partner cannot open a stream to 'corp.example' on this gateway's listener 203.0.113.5:5269 (STARTTLS): 127.0.0.1:5269: Connection refused."
            ]
        );
        let mut f = healthy();
        f.listeners[0].tls = TlsOutcome::NotTried;
        f.listeners[0].certificate = None;
        let (v, p) = run(&f);
        assert_eq!(v, Verdict::Warning);
        assert!(p[0].contains("offers no TLS for 'corp.example'"), "{p:?}");
    }

    #[test]
    fn certificate_not_covering_the_domain_fails_naming_its_names() {
        let mut f = healthy();
        let c = f.listeners[0].certificate.as_mut().unwrap();
        c.valid_for_domain = false;
        c.dns_names = vec!["other.example".into()];
        assert_eq!(
            run(&f),
            (
                Verdict::Fail,
                vec!["The certificate this gateway presents for 'corp.example' is not valid for 'corp.example': its names are other.example.".into()]
            )
        );
        f.listeners[0].certificate = None;
        assert_eq!(
            run(&f).1,
            ["This gateway presented no certificate for 'corp.example'."]
        );
    }

    #[test]
    fn untrusted_or_expired_certificate_fails() {
        let mut c = good_cert();
        c.trusted = false;
        let (fails, _) = certificate_verdict("corp.example", Some(&c), NOW);
        assert_eq!(
            fails,
            [
                "The certificate this gateway presents for 'corp.example' (issuer: CN=Test CA) does not chain to the public roots or to the configured trust anchors ([tls] system_roots, ca_files): partners will not trust it."
            ]
        );
        let mut c = good_cert();
        c.not_after_unix = NOW - DAY;
        c.not_after = format_utc(NOW - DAY);
        let (fails, _) = certificate_verdict("corp.example", Some(&c), NOW);
        assert_eq!(
            fails,
            [
                "The certificate this gateway presents for 'corp.example' expired on 2027-01-14T08:00:00Z."
            ]
        );
    }

    #[test]
    fn expiring_within_14_days_warns() {
        let mut c = good_cert();
        c.not_after_unix = NOW + 5 * DAY + 1;
        c.not_after = format_utc(c.not_after_unix);
        assert_eq!(
            certificate_verdict("corp.example", Some(&c), NOW),
            (
                vec![],
                vec!["The certificate this gateway presents for 'corp.example' expires on 2027-01-20T08:00:01Z (in 5 day(s)).".into()]
            )
        );
        c.not_after_unix = NOW + 14 * DAY + 1;
        assert_eq!(
            certificate_verdict("corp.example", Some(&c), NOW),
            (vec![], vec![])
        );
    }

    #[test]
    fn server_auth_only_warns_client_auth_only_fails_no_extension_is_fine() {
        let mut c = good_cert();
        c.extended_key_usage = vec!["serverAuth".into()];
        let (fails, warnings) = certificate_verdict("corp.example", Some(&c), NOW);
        assert!(fails.is_empty());
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].contains("has the serverAuth purpose but not clientAuth")
                && warnings[0].contains("SASL EXTERNAL")
                && warnings[0].contains("dialback"),
            "{warnings:?}"
        );
        c.extended_key_usage = vec!["clientAuth".into()];
        let (fails, _) = certificate_verdict("corp.example", Some(&c), NOW);
        assert_eq!(
            fails,
            [
                "The certificate this gateway presents for 'corp.example' lacks the serverAuth purpose (its purposes: clientAuth): partners refuse it for this gateway's listener."
            ]
        );
        c.extended_key_usage = vec![];
        assert_eq!(
            certificate_verdict("corp.example", Some(&c), NOW),
            (vec![], vec![])
        );
    }

    #[test]
    fn overall_verdict_is_the_worst_and_json_has_the_documented_keys() {
        let domain = |verdict| DomainReport {
            domain: "corp.example".into(),
            steps: vec![],
            certificate: Some(good_cert()),
            trust_anchor: Some("system roots".into()),
            verdict,
            problems: vec![],
        };
        let ours = [starttls("203.0.113.5:5269")];
        let r = GatewayReport::new(&ours, vec![domain(Verdict::Ok), domain(Verdict::Warning)]);
        assert_eq!(r.verdict, Verdict::Warning);
        assert_eq!(GatewayReport::new(&ours, vec![]).verdict, Verdict::Ok);
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["Verdict"], "Warning");
        assert_eq!(v["Listeners"][0], "203.0.113.5:5269 (STARTTLS)");
        let d = &v["Domains"][0];
        for k in [
            "Domain",
            "Steps",
            "Certificate",
            "TrustAnchor",
            "Verdict",
            "Problems",
        ] {
            assert!(d.get(k).is_some(), "{k}: {d}");
        }
        assert_eq!(d["Certificate"]["ValidForDomain"], true);
    }
}
