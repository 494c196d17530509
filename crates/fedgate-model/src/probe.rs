//! Partner diagnostics (`Test-CsXmppAllowedPartner`): the report's shape and its verdict.
//!
//! The probe in the gateway crate (`fedgate_gateway::probe`) does the network steps and fills
//! [`Findings`]; [`assess`] — a pure function over the partner's [`NegotiationSettings`], the
//! findings and the current time — says which authentication method each direction will use, or
//! exactly why none can, and what deserves a warning. The sentences are the user's: each names
//! the partner, the setting or the server, and what to do where there is something to do.

use serde::Serialize;

use crate::choice::{SaslNegotiation, TlsNegotiation};
use crate::negotiation::{AuthMethod, NegotiationSettings};

/// A certificate that expires within this many days gives a warning.
pub const EXPIRY_WARNING_DAYS: i64 = 14;

/// One step of the test as reported: its name, whether it succeeded (`None`: not run), what
/// it saw, and how long it took.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Step {
    pub step: String,
    pub ok: Option<bool>,
    pub detail: String,
    pub ms: u64,
}

/// The partner's certificate as the probe saw it (the end-entity certificate of the chain).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CertificateInfo {
    pub subject: String,
    pub dns_names: Vec<String>,
    pub xmpp_addrs: Vec<String>,
    pub issuer: String,
    /// RFC 3339, UTC.
    pub not_before: String,
    /// RFC 3339, UTC.
    pub not_after: String,
    #[serde(skip)]
    pub not_before_unix: i64,
    #[serde(skip)]
    pub not_after_unix: i64,
    /// The chain validates against the gateway's trust anchors for partners (now).
    pub trusted: bool,
    /// A DNS or XmppAddr name matches the partner's domain.
    pub valid_for_domain: bool,
    /// `serverAuth`, `clientAuth`, … (empty: the certificate has no such extension).
    pub extended_key_usage: Vec<String>,
}

/// What an attempt (SASL EXTERNAL, the dialback round trip) came to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Attempt {
    /// Not attempted (the step's detail says why, e.g. not offered).
    #[default]
    NotTried,
    Accepted,
    /// Refused or failed, with the reason (a SASL condition, a dialback error, …).
    Refused(String),
    /// Could not be tested here (e.g. no gateway answers the partner's dialback callback).
    NotTested(String),
}

/// The TLS step's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum TlsOutcome {
    #[default]
    NotTried,
    Up,
    Failed(String),
}

/// What the probe found, step by step (plain data; filled by the gateway's probe).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Findings {
    /// The hosted domain the test speaks as.
    pub from: String,
    /// How many targets (address, port) resolution gave.
    pub targets: usize,
    /// The SRV target host names seen (both services), lowercase, without the final dot.
    pub srv_hosts: Vec<String>,
    /// The target connected to (`address:port`), if any.
    pub connected: Option<String>,
    /// The last connection error when no target could be reached.
    pub connect_error: Option<String>,
    /// The target connected to is a Direct TLS one (`_xmpps-server`).
    pub direct_tls: bool,
    /// Why the peer's stream header or features could not be read, if so.
    pub stream_error: Option<String>,
    pub starttls_offered: bool,
    pub tls: TlsOutcome,
    pub certificate: Option<CertificateInfo>,
    pub sasl_external_offered: bool,
    pub sasl_external: Attempt,
    pub dialback_offered: bool,
    pub dialback: Attempt,
    /// Peers can be expected to trust the certificate we present as `from`.
    pub our_certificate_trusted: bool,
    /// The certificate we present as `from` has the serverAuth purpose but not clientAuth.
    pub our_certificate_server_auth_only: bool,
}

/// The overall result: `Ok` and `Warning` mean streams can be set up (exit code 0), `Fail`
/// that they cannot (exit code 1).
///
/// Ordered from best to worst (`Ok < Warning < Fail`): the worst of several is their `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Verdict {
    Ok,
    Warning,
    Fail,
}

/// The authentication methods the test expects.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Methods {
    /// What this gateway's streams to the partner will use (`None`: none can be set up).
    pub outbound: Option<AuthMethod>,
    /// What the partner's streams to this gateway may use, as far as can be told from here
    /// (the partner's settings allow them and its server showed it can).
    pub inbound: Vec<AuthMethod>,
}

/// The verdict, the methods and the problems (failures first, then warnings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessment {
    pub verdict: Verdict,
    pub methods: Methods,
    pub problems: Vec<String>,
}

/// The whole report of one test, as `--output json` and the REST API give it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Report {
    pub identity: String,
    /// The partner is on the allowed-partners list (else tested with the default settings).
    pub listed: bool,
    /// The hosted domain the test spoke as.
    pub from: String,
    pub steps: Vec<Step>,
    pub certificate: Option<CertificateInfo>,
    pub methods: Methods,
    pub verdict: Verdict,
    pub problems: Vec<String>,
}

/// `2026-12-07T12:00:00Z` from seconds since 1970 (earlier times as 1970-01-01T00:00:00Z).
pub fn format_utc(unix: i64) -> String {
    let unix = unix.max(0) as u64;
    let days = unix / 86_400;
    let secs = unix % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Whether a certificate name (`*.example.com` allowed, one label) covers `host`.
pub(crate) fn name_covers(name: &str, host: &str) -> bool {
    let (name, host) = (name.to_ascii_lowercase(), host.to_ascii_lowercase());
    match name.strip_prefix("*.") {
        Some(rest) => host
            .split_once('.')
            .is_some_and(|(label, parent)| !label.is_empty() && parent == rest),
        None => name == host,
    }
}

pub(crate) fn names_of(c: &CertificateInfo) -> String {
    let names: Vec<&str> = c
        .dns_names
        .iter()
        .chain(&c.xmpp_addrs)
        .map(String::as_str)
        .collect();
    if names.is_empty() {
        "it has no DNS or XmppAddr name".to_owned()
    } else {
        format!("its names are {}", names.join(", "))
    }
}

/// Whose certificate a sentence is about: a partner's (the partner test) or the one this
/// gateway presents for a hosted domain (the gateway test).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Whose {
    Partner,
    Own,
}

impl Whose {
    fn subject(self, domain: &str) -> String {
        match self {
            Whose::Partner => format!("The certificate of '{domain}'"),
            Whose::Own => format!("The certificate this gateway presents for '{domain}'"),
        }
    }
}

/// Why a certificate cannot authenticate `domain` (`None`: it can), as a sentence.
pub(crate) fn certificate_problem(
    whose: Whose,
    domain: &str,
    cert: Option<&CertificateInfo>,
    now: i64,
) -> Option<String> {
    let Some(c) = cert else {
        return Some(match whose {
            Whose::Partner => format!("The server of '{domain}' presented no certificate."),
            Whose::Own => format!("This gateway presented no certificate for '{domain}'."),
        });
    };
    let subject = whose.subject(domain);
    if now > c.not_after_unix {
        return Some(format!("{subject} expired on {}.", c.not_after));
    }
    if now < c.not_before_unix {
        return Some(format!("{subject} is not valid before {}.", c.not_before));
    }
    if !c.trusted {
        return Some(match whose {
            Whose::Partner => format!(
                "{subject} (issuer: {}) does not chain to the gateway's trust anchors for partners ([tls] ca_files, system_roots).",
                c.issuer
            ),
            Whose::Own => format!(
                "{subject} (issuer: {}) does not chain to the public roots or to the configured trust anchors ([tls] system_roots, ca_files): partners will not trust it.",
                c.issuer
            ),
        });
    }
    if !c.valid_for_domain {
        return Some(format!(
            "{subject} is not valid for '{domain}': {}.",
            names_of(c)
        ));
    }
    None
}

/// The warning for a certificate that expires within [`EXPIRY_WARNING_DAYS`], if so.
pub(crate) fn expiry_warning(
    whose: Whose,
    domain: &str,
    c: &CertificateInfo,
    now: i64,
) -> Option<String> {
    let days_left = (c.not_after_unix - now) / 86_400;
    (days_left < EXPIRY_WARNING_DAYS).then(|| {
        format!(
            "{} expires on {} (in {days_left} day(s)).",
            whose.subject(domain),
            c.not_after
        )
    })
}

/// Whether a certificate's extended key usages (as in [`CertificateInfo::extended_key_usage`])
/// allow serverAuth but not clientAuth: partners that authenticate the holder by SASL EXTERNAL
/// on its outbound streams may refuse it.
pub fn server_auth_only(purposes: &[String]) -> bool {
    purposes.iter().any(|p| p == "serverAuth")
        && !purposes.iter().any(|p| p == "clientAuth" || p == "any")
}

/// The verdict of a test of `domain` with the partner's `settings` from what the probe found,
/// at `now` (seconds since 1970). Pure: see the module documentation.
pub fn assess(domain: &str, settings: NegotiationSettings, f: &Findings, now: i64) -> Assessment {
    let mut fails: Vec<String> = Vec::new();
    let mut warnings: Vec<String> = Vec::new();
    let fail = |why: String| Assessment {
        verdict: Verdict::Fail,
        methods: Methods::default(),
        problems: vec![why],
    };
    if f.targets == 0 {
        return fail(format!(
            "No server found for '{domain}': no _xmpp-server or _xmpps-server SRV record and no A or AAAA record gives an address (or the ProxyFqdn has none)."
        ));
    }
    let Some(addr) = &f.connected else {
        return fail(format!(
            "No server of '{domain}' accepts connections: {} address(es) tried, the last one failed with: {}.",
            f.targets,
            f.connect_error.as_deref().unwrap_or("no error recorded")
        ));
    };
    if let Some(e) = &f.stream_error {
        return fail(format!(
            "The server at {addr} did not open an XMPP stream for '{domain}': {e}."
        ));
    }
    if let TlsOutcome::Failed(e) = &f.tls {
        return fail(format!(
            "The TLS handshake with '{domain}' at {addr} failed: {e}."
        ));
    }
    let tls_up = f.tls == TlsOutcome::Up;
    if !tls_up && settings.tls == TlsNegotiation::Required {
        return fail(format!(
            "TlsNegotiation is Required for '{domain}', but its server at {addr} offers no STARTTLS{}.",
            if f.direct_tls {
                ""
            } else {
                " (and no _xmpps-server Direct TLS target was reached)"
            }
        ));
    }
    let allowed = settings.allowed_methods();
    let cert_problem = if tls_up {
        certificate_problem(Whose::Partner, domain, f.certificate.as_ref(), now)
    } else {
        None
    };
    // Warnings about a certificate that works today.
    if let (true, None, Some(c)) = (tls_up, &cert_problem, &f.certificate) {
        warnings.extend(expiry_warning(Whose::Partner, domain, c, now));
        for host in &f.srv_hosts {
            let covered = c
                .dns_names
                .iter()
                .chain(&c.xmpp_addrs)
                .any(|n| name_covers(n, host));
            if !covered {
                warnings.push(format!(
                    "The certificate of '{domain}' does not name its SRV target '{host}': fedgate checks the domain, as XEP-0178 asks, but servers that check the SRV target will refuse it."
                ));
            }
        }
    }
    // Outbound: the strongest method that worked and the settings allow, as the gateway's
    // own outbound negotiation would choose it.
    let sasl_ok = tls_up
        && allowed.contains(&AuthMethod::SaslExternal)
        && f.sasl_external == Attempt::Accepted
        && cert_problem.is_none();
    let dialback_method = if tls_up {
        AuthMethod::TlsDialback
    } else {
        AuthMethod::TcpDialback
    };
    let dialback_allowed = allowed.contains(&dialback_method);
    // Why SASL EXTERNAL is not used (only when the settings allow it).
    let mut sasl_why: Option<String> = None;
    if !sasl_ok && tls_up && allowed.contains(&AuthMethod::SaslExternal) {
        sasl_why = Some(if let Some(p) = &cert_problem {
            format!("{p} SASL EXTERNAL cannot authenticate it.")
        } else if !f.sasl_external_offered {
            format!("The server of '{domain}' does not offer SASL EXTERNAL.")
        } else if !f.our_certificate_trusted {
            format!(
                "This gateway's certificate for '{}' is not from a trusted CA (self-signed or generated), so '{domain}' cannot accept it for SASL EXTERNAL.",
                f.from
            )
        } else {
            match &f.sasl_external {
                Attempt::Refused(c) if f.our_certificate_server_auth_only => format!(
                    "'{domain}' refused this gateway's certificate for SASL EXTERNAL ({c}); the certificate for '{}' has the serverAuth purpose only, which servers such as ejabberd before 25.07 refuse.",
                    f.from
                ),
                Attempt::Refused(c) => format!(
                    "'{domain}' refused this gateway's certificate for SASL EXTERNAL ({c})."
                ),
                Attempt::NotTested(why) => {
                    format!("SASL EXTERNAL with '{domain}' was not tested: {why}.")
                }
                _ => format!("SASL EXTERNAL with '{domain}' did not succeed."),
            }
        });
    }
    let outbound = if sasl_ok {
        Some(AuthMethod::SaslExternal)
    } else if dialback_allowed {
        match &f.dialback {
            Attempt::Accepted => Some(dialback_method),
            Attempt::NotTested(why) => {
                warnings.push(format!(
                    "{dialback_method} would be used with '{domain}', but the dialback round trip was not tested: {why}."
                ));
                Some(dialback_method)
            }
            Attempt::Refused(e) => {
                fails.push(format!("Dialback with '{domain}' failed: {e}."));
                None
            }
            Attempt::NotTried => {
                fails.push(format!(
                    "Dialback with '{domain}' was not tried: its server offers it on neither stream."
                ));
                None
            }
        }
    } else {
        None
    };
    match (&outbound, sasl_why) {
        // Fell back to dialback: say why SASL EXTERNAL was not used.
        (Some(_), Some(why)) => {
            warnings.insert(0, format!("{why} {dialback_method} is used instead."))
        }
        (None, Some(why)) => fails.insert(0, why),
        _ => {}
    }
    if outbound.is_none() {
        // Why dialback is not an option, when the settings say so.
        let why_not_dialback = if !settings.dialback {
            Some("SupportDialbackNegotiation is False")
        } else if tls_up && settings.sasl == SaslNegotiation::Required {
            Some("SaslNegotiation is Required, so dialback is not used over TLS")
        } else if !dialback_allowed {
            Some("the settings allow no dialback on this stream")
        } else {
            None
        };
        if let Some(why) = why_not_dialback {
            fails.push(format!(
                "No authentication method is left for '{domain}': {why}."
            ));
        }
        if fails.is_empty() {
            fails.push(format!(
                "No authentication method allowed by the settings of '{domain}' succeeded."
            ));
        }
    }
    if outbound.is_some() && !tls_up && settings.tls == TlsNegotiation::Optional {
        warnings.push(format!(
            "Streams with '{domain}' will not be encrypted: its server offers no STARTTLS."
        ));
    }
    // Inbound, as far as can be told: what the settings allow and the partner showed it can do.
    let mut inbound = Vec::new();
    if tls_up && allowed.contains(&AuthMethod::SaslExternal) && cert_problem.is_none() {
        inbound.push(AuthMethod::SaslExternal);
    }
    let speaks_dialback = f.dialback_offered || f.dialback == Attempt::Accepted;
    if speaks_dialback {
        for m in [AuthMethod::TlsDialback, AuthMethod::TcpDialback] {
            if allowed.contains(&m) && (m == AuthMethod::TcpDialback || tls_up) {
                inbound.push(m);
            }
        }
    }
    let verdict = if outbound.is_none() || !fails.is_empty() {
        Verdict::Fail
    } else if !warnings.is_empty() {
        Verdict::Warning
    } else {
        Verdict::Ok
    };
    fails.extend(warnings);
    Assessment {
        verdict,
        methods: Methods { outbound, inbound },
        problems: fails,
    }
}

/// A certificate that passes every check at `now` (valid 30 days before to 60 days after, from
/// a trusted `CN=Test CA`, serverAuth and clientAuth), for DNS names `names` (the first is the
/// subject's CN): the tests' starting point.
#[cfg(test)]
pub(crate) fn good_cert_for(names: &[&str], now: i64) -> CertificateInfo {
    const DAY: i64 = 86_400;
    CertificateInfo {
        subject: format!("CN={}", names.first().copied().unwrap_or_default()),
        dns_names: names.iter().map(|n| (*n).to_owned()).collect(),
        issuer: "CN=Test CA".into(),
        not_before: format_utc(now - 30 * DAY),
        not_after: format_utc(now + 60 * DAY),
        not_before_unix: now - 30 * DAY,
        not_after_unix: now + 60 * DAY,
        trusted: true,
        valid_for_domain: true,
        extended_key_usage: vec!["serverAuth".into(), "clientAuth".into()],
        ..CertificateInfo::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::choice::{SaslNegotiation as S, TlsNegotiation as T};

    const NOW: i64 = 1_800_000_000; // 2027-01-15
    const DAY: i64 = 86_400;

    fn settings(tls: T, sasl: S, dialback: bool) -> NegotiationSettings {
        NegotiationSettings {
            tls,
            sasl,
            dialback,
        }
    }

    fn good_cert() -> CertificateInfo {
        good_cert_for(&["partner.example", "*.partner.example"], NOW)
    }

    /// A partner whose server did everything right over TLS.
    fn healthy() -> Findings {
        Findings {
            from: "corp.example".into(),
            targets: 1,
            srv_hosts: vec!["xmpp.partner.example".into()],
            connected: Some("192.0.2.1:5269".into()),
            starttls_offered: true,
            tls: TlsOutcome::Up,
            certificate: Some(good_cert()),
            sasl_external_offered: true,
            sasl_external: Attempt::Accepted,
            dialback_offered: true,
            dialback: Attempt::Accepted,
            our_certificate_trusted: true,
            ..Findings::default()
        }
    }

    fn run(s: NegotiationSettings, f: &Findings) -> Assessment {
        assess("partner.example", s, f, NOW)
    }

    fn defaults() -> NegotiationSettings {
        settings(T::Required, S::Required, true)
    }

    #[test]
    fn healthy_partner_is_ok_with_sasl_external_both_ways() {
        let a = run(defaults(), &healthy());
        assert_eq!(a.verdict, Verdict::Ok, "{:?}", a.problems);
        assert!(a.problems.is_empty());
        assert_eq!(a.methods.outbound, Some(AuthMethod::SaslExternal));
        assert_eq!(a.methods.inbound, vec![AuthMethod::SaslExternal]);
        let a = run(settings(T::Required, S::Optional, true), &healthy());
        assert_eq!(a.methods.outbound, Some(AuthMethod::SaslExternal));
        assert_eq!(
            a.methods.inbound,
            vec![AuthMethod::SaslExternal, AuthMethod::TlsDialback]
        );
    }

    #[test]
    fn dialback_only_partner_over_cleartext_is_ok() {
        let f = Findings {
            from: "corp.example".into(),
            targets: 1,
            connected: Some("127.0.0.1:5269".into()),
            dialback_offered: true,
            dialback: Attempt::Accepted,
            ..Findings::default()
        };
        let a = run(settings(T::NotSupported, S::NotSupported, true), &f);
        assert_eq!(a.verdict, Verdict::Ok, "{:?}", a.problems);
        assert_eq!(a.methods.outbound, Some(AuthMethod::TcpDialback));
        assert_eq!(a.methods.inbound, vec![AuthMethod::TcpDialback]);
        // TLS Optional: it works, but unencrypted deserves a warning.
        let a = run(settings(T::Optional, S::NotSupported, true), &f);
        assert_eq!(a.verdict, Verdict::Warning);
        assert_eq!(
            a.problems,
            [
                "Streams with 'partner.example' will not be encrypted: its server offers no STARTTLS."
            ]
        );
    }

    #[test]
    fn nothing_resolved_or_reachable_or_no_stream() {
        let mut f = healthy();
        f.targets = 0;
        let a = run(defaults(), &f);
        assert_eq!(a.verdict, Verdict::Fail);
        assert!(a.problems[0].starts_with("No server found for 'partner.example'"));
        let f = Findings {
            targets: 2,
            connect_error: Some("127.0.0.1:1: Connection refused (os error 111)".into()),
            ..Findings::default()
        };
        let a = run(defaults(), &f);
        assert_eq!(a.verdict, Verdict::Fail);
        assert_eq!(
            a.problems,
            [
                "No server of 'partner.example' accepts connections: 2 address(es) tried, the last one failed with: 127.0.0.1:1: Connection refused (os error 111)."
            ]
        );
        assert_eq!(a.methods, Methods::default());
        let mut f = healthy();
        f.stream_error = Some("the connection closed".into());
        let a = run(defaults(), &f);
        assert_eq!(
            a.problems,
            [
                "The server at 192.0.2.1:5269 did not open an XMPP stream for 'partner.example': the connection closed."
            ]
        );
    }

    #[test]
    fn tls_required_without_starttls_fails_naming_it() {
        let f = Findings {
            targets: 1,
            connected: Some("192.0.2.1:5269".into()),
            dialback_offered: true,
            dialback: Attempt::Accepted,
            ..Findings::default()
        };
        let a = run(settings(T::Required, S::Optional, true), &f);
        assert_eq!(a.verdict, Verdict::Fail);
        assert_eq!(
            a.problems,
            [
                "TlsNegotiation is Required for 'partner.example', but its server at 192.0.2.1:5269 offers no STARTTLS (and no _xmpps-server Direct TLS target was reached)."
            ]
        );
        let mut f = healthy();
        f.tls = TlsOutcome::Failed("peer sent no certificates".into());
        let a = run(defaults(), &f);
        assert_eq!(
            a.problems,
            [
                "The TLS handshake with 'partner.example' at 192.0.2.1:5269 failed: peer sent no certificates."
            ]
        );
    }

    #[test]
    fn certificate_problems_fail_when_sasl_is_required_and_warn_when_dialback_follows() {
        type Change = fn(&mut CertificateInfo);
        let cases: [(Change, &str); 4] = [
            (
                |c| {
                    c.not_after_unix = NOW - DAY;
                    c.not_after = format_utc(NOW - DAY);
                    c.trusted = false;
                },
                "The certificate of 'partner.example' expired on 2027-01-14T08:00:00Z.",
            ),
            (
                |c| c.trusted = false,
                "The certificate of 'partner.example' (issuer: CN=Test CA) does not chain to the gateway's trust anchors for partners ([tls] ca_files, system_roots).",
            ),
            (
                |c| {
                    c.valid_for_domain = false;
                    c.dns_names = vec!["other.example".into()];
                },
                "The certificate of 'partner.example' is not valid for 'partner.example': its names are other.example.",
            ),
            (
                |c| {
                    c.not_before_unix = NOW + DAY;
                    c.not_before = format_utc(NOW + DAY);
                },
                "The certificate of 'partner.example' is not valid before 2027-01-16T08:00:00Z.",
            ),
        ];
        for (change, sentence) in cases {
            let mut f = healthy();
            f.srv_hosts.clear();
            change(f.certificate.as_mut().unwrap());
            // SASL Required (the default): no method is left.
            let a = run(defaults(), &f);
            assert_eq!(a.verdict, Verdict::Fail, "{sentence}");
            assert_eq!(a.methods.outbound, None);
            assert_eq!(
                a.problems,
                [
                    format!("{sentence} SASL EXTERNAL cannot authenticate it."),
                    "No authentication method is left for 'partner.example': SaslNegotiation is Required, so dialback is not used over TLS.".to_owned(),
                ]
            );
            // SASL Optional with dialback: it works by dialback, with a warning.
            let a = run(settings(T::Required, S::Optional, true), &f);
            assert_eq!(a.verdict, Verdict::Warning, "{sentence}");
            assert_eq!(a.methods.outbound, Some(AuthMethod::TlsDialback));
            assert_eq!(
                a.problems,
                [format!(
                    "{sentence} SASL EXTERNAL cannot authenticate it. Dialback over TLS is used instead."
                )]
            );
            assert!(!a.methods.inbound.contains(&AuthMethod::SaslExternal));
        }
    }

    #[test]
    fn certificate_expiring_soon_and_srv_target_not_named_are_warnings() {
        let mut f = healthy();
        let c = f.certificate.as_mut().unwrap();
        c.not_after_unix = NOW + 3 * DAY + 5;
        c.not_after = format_utc(c.not_after_unix);
        c.dns_names = vec!["partner.example".into()];
        let a = run(defaults(), &f);
        assert_eq!(a.verdict, Verdict::Warning);
        assert_eq!(a.methods.outbound, Some(AuthMethod::SaslExternal));
        assert_eq!(
            a.problems,
            [
                "The certificate of 'partner.example' expires on 2027-01-18T08:00:05Z (in 3 day(s)).",
                "The certificate of 'partner.example' does not name its SRV target 'xmpp.partner.example': fedgate checks the domain, as XEP-0178 asks, but servers that check the SRV target will refuse it.",
            ]
        );
        // A wildcard covers one label only.
        assert!(name_covers("*.partner.example", "xmpp.partner.example"));
        assert!(!name_covers("*.partner.example", "a.b.partner.example"));
        assert!(!name_covers("*.partner.example", "partner.example"));
    }

    #[test]
    fn refused_sasl_external_names_the_condition_and_a_server_auth_only_certificate() {
        let mut f = healthy();
        f.sasl_external = Attempt::Refused("not-authorized".into());
        f.our_certificate_server_auth_only = true;
        let a = run(defaults(), &f);
        assert_eq!(a.verdict, Verdict::Fail);
        assert_eq!(
            a.problems[0],
            "'partner.example' refused this gateway's certificate for SASL EXTERNAL (not-authorized); the certificate for 'corp.example' has the serverAuth purpose only, which servers such as ejabberd before 25.07 refuse."
        );
        f.our_certificate_server_auth_only = false;
        let a = run(settings(T::Required, S::Optional, true), &f);
        assert_eq!(a.verdict, Verdict::Warning);
        assert_eq!(a.methods.outbound, Some(AuthMethod::TlsDialback));
        assert_eq!(
            a.problems,
            [
                "'partner.example' refused this gateway's certificate for SASL EXTERNAL (not-authorized). Dialback over TLS is used instead."
            ]
        );
    }

    #[test]
    fn sasl_not_offered_or_our_certificate_untrusted() {
        let mut f = healthy();
        f.sasl_external_offered = false;
        f.sasl_external = Attempt::NotTried;
        let a = run(defaults(), &f);
        assert_eq!(
            a.problems[0],
            "The server of 'partner.example' does not offer SASL EXTERNAL."
        );
        let mut f = healthy();
        f.our_certificate_trusted = false;
        f.sasl_external = Attempt::NotTried;
        let a = run(defaults(), &f);
        assert_eq!(
            a.problems[0],
            "This gateway's certificate for 'corp.example' is not from a trusted CA (self-signed or generated), so 'partner.example' cannot accept it for SASL EXTERNAL."
        );
    }

    #[test]
    fn dialback_failed_not_offered_not_allowed_or_not_tested() {
        let mut f = healthy();
        f.sasl_external_offered = false;
        f.sasl_external = Attempt::NotTried;
        f.dialback = Attempt::Refused("the partner answered invalid".into());
        let s = settings(T::Required, S::Optional, true);
        let a = run(s, &f);
        assert_eq!(a.verdict, Verdict::Fail);
        assert_eq!(
            a.problems,
            [
                "The server of 'partner.example' does not offer SASL EXTERNAL.",
                "Dialback with 'partner.example' failed: the partner answered invalid.",
            ]
        );
        f.dialback = Attempt::NotTested("no gateway answers its callback".into());
        let a = run(s, &f);
        assert_eq!(a.verdict, Verdict::Warning);
        assert_eq!(a.methods.outbound, Some(AuthMethod::TlsDialback));
        assert_eq!(
            a.problems[1],
            "Dialback over TLS would be used with 'partner.example', but the dialback round trip was not tested: no gateway answers its callback."
        );
        f.dialback = Attempt::Accepted;
        let a = run(settings(T::Required, S::Optional, false), &f);
        assert_eq!(a.verdict, Verdict::Fail);
        assert_eq!(
            a.problems,
            [
                "The server of 'partner.example' does not offer SASL EXTERNAL.",
                "No authentication method is left for 'partner.example': SupportDialbackNegotiation is False.",
            ]
        );
        f.dialback = Attempt::NotTried;
        f.dialback_offered = false;
        let a = run(s, &f);
        assert_eq!(
            a.problems[1],
            "Dialback with 'partner.example' was not tried: its server offers it on neither stream."
        );
    }

    #[test]
    fn utc_formatting() {
        assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_utc(-5), "1970-01-01T00:00:00Z");
        assert_eq!(format_utc(1_709_251_199), "2024-02-29T23:59:59Z");
        assert_eq!(format_utc(NOW), "2027-01-15T08:00:00Z");
    }

    #[test]
    fn report_json_has_the_documented_keys() {
        let a = run(defaults(), &healthy());
        let r = Report {
            identity: "partner.example".into(),
            listed: true,
            from: "corp.example".into(),
            steps: vec![Step {
                step: "Resolve".into(),
                ok: Some(true),
                detail: "x".into(),
                ms: 3,
            }],
            certificate: Some(good_cert()),
            methods: a.methods,
            verdict: a.verdict,
            problems: a.problems,
        };
        let v = serde_json::to_value(&r).unwrap();
        for k in [
            "Identity",
            "Steps",
            "Certificate",
            "Methods",
            "Verdict",
            "Problems",
        ] {
            assert!(v.get(k).is_some(), "{k}: {v}");
        }
        assert_eq!(v["Verdict"], "Ok");
        assert_eq!(v["Methods"]["Outbound"], "SaslExternal");
        assert_eq!(v["Steps"][0]["Ok"], true);
        assert_eq!(v["Steps"][0]["Ms"], 3);
        let c = &v["Certificate"];
        for k in [
            "Subject",
            "DnsNames",
            "XmppAddrs",
            "Issuer",
            "NotAfter",
            "Trusted",
            "ValidForDomain",
            "ExtendedKeyUsage",
        ] {
            assert!(c.get(k).is_some(), "{k}: {c}");
        }
        assert!(c.get("NotAfterUnix").is_none());
    }
}
