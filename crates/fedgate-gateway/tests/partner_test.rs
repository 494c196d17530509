//! The partner test (`Test-CsXmppAllowedPartner`) against fake partner servers, run inside a
//! running gateway: a healthy dialback partner (the round trip goes through the gateway's own
//! `db:verify` answer), partners whose certificate is for another name, from an untrusted CA,
//! expired or about to expire, a partner that must use TLS but offers no STARTTLS, and one
//! that cannot be reached. Each asserts the verdict, the method and the sentence a user reads.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use fedgate_gateway::Gateway;
use fedgate_gateway::probe::{self, Callback};
use fedgate_model::probe::{Report, Verdict};
use fedgate_model::{AuthMethod, Domain, SaslNegotiation as S, TlsNegotiation as Tls};

fn partner() -> Domain {
    Domain::parse("partner.example").unwrap()
}

async fn test(gw: &Gateway) -> Report {
    probe::test_partner(&gw.shared, &partner(), "corp.example", Callback::Answered).await
}

fn step<'r>(r: &'r Report, name: &str) -> &'r fedgate_model::probe::Step {
    r.steps
        .iter()
        .find(|s| s.step == name)
        .unwrap_or_else(|| panic!("no step {name}: {r:#?}"))
}

fn step_names(r: &Report) -> Vec<&str> {
    r.steps.iter().map(|s| s.step.as_str()).collect()
}

/// A gateway in `dir` whose partner.example (these settings, no SASL, dialback on) is a fake
/// server without TLS that verifies dialback keys by calling the gateway back; returns the
/// gateway and the partner server's address.
async fn with_dialback_partner(dir: &std::path::Path, tls: Tls) -> (Gateway, SocketAddr) {
    let (partner_addr, partner_calls_back, _stanzas) = receiving_server(PARTNER_SECRET).await;
    add_partner(
        open_store(dir).as_ref(),
        "partner.example",
        tls,
        S::NotSupported,
        true,
        Some(partner_addr),
    );
    let (gw, _internal) = start(dir, "").await;
    // (The fake partner starts accepting once it knows where to call back.)
    partner_calls_back.send(gw.external_addr).unwrap();
    (gw, partner_addr)
}

#[tokio::test]
async fn a_healthy_dialback_partner_is_ok_and_the_round_trip_is_answered_by_the_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let (gw, partner_addr) = with_dialback_partner(dir.path(), Tls::NotSupported).await;
    let r = test(&gw).await;
    assert_eq!(r.verdict, Verdict::Ok, "{r:#?}");
    assert!(r.problems.is_empty(), "{r:#?}");
    assert_eq!(r.methods.outbound, Some(AuthMethod::TcpDialback));
    assert_eq!(r.methods.inbound, [AuthMethod::TcpDialback]);
    assert!(r.listed);
    assert_eq!(r.from, "corp.example");
    assert_eq!(
        step_names(&r),
        [
            "Resolve",
            "Connect",
            "Stream",
            "STARTTLS",
            "SASL EXTERNAL",
            "Dialback"
        ]
    );
    assert!(
        step(&r, "Resolve")
            .detail
            .contains(&format!("ProxyFqdn {partner_addr}")),
        "{r:#?}"
    );
    assert_eq!(
        step(&r, "Connect").detail,
        format!("{partner_addr} (STARTTLS)")
    );
    let db = step(&r, "Dialback");
    assert_eq!(db.ok, Some(true), "{r:#?}");
    assert!(
        db.detail.contains("called back 'corp.example'"),
        "{}",
        db.detail
    );
    assert!(r.certificate.is_none());
    gw.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn without_a_gateway_to_answer_the_callback_the_round_trip_is_not_tested() {
    let dir = tempfile::tempdir().unwrap();
    let (gw, _) = with_dialback_partner(dir.path(), Tls::NotSupported).await;
    let r = probe::test_partner(
        &gw.shared,
        &partner(),
        "corp.example",
        Callback::NotAnswered("no gateway runs".into()),
    )
    .await;
    assert_eq!(r.verdict, Verdict::Warning, "{r:#?}");
    let db = step(&r, "Dialback");
    assert_eq!(
        (db.ok, db.detail.as_str()),
        (None, "not tested: no gateway runs")
    );
    assert_eq!(
        r.problems,
        [
            "Dialback over TCP (unencrypted) would be used with 'partner.example', but the dialback round trip was not tested: no gateway runs."
        ]
    );
    gw.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn tls_required_but_no_starttls_offered_fails_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let (gw, partner_addr) = with_dialback_partner(dir.path(), Tls::Required).await;
    let r = test(&gw).await;
    assert_eq!(r.verdict, Verdict::Fail, "{r:#?}");
    assert_eq!(r.methods.outbound, None);
    let tls = step(&r, "STARTTLS");
    assert_eq!((tls.ok, tls.detail.as_str()), (Some(false), "not offered"));
    assert_eq!(
        r.problems,
        [format!(
            "TlsNegotiation is Required for 'partner.example', but its server at {partner_addr} offers no STARTTLS (and no _xmpps-server Direct TLS target was reached)."
        )]
    );
    gw.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn an_unreachable_partner_fails_at_the_connect_step_with_its_error() {
    let dir = tempfile::tempdir().unwrap();
    let closed: SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    add_partner(
        open_store(dir.path()).as_ref(),
        "partner.example",
        Tls::Required,
        S::Optional,
        true,
        Some(closed),
    );
    let (gw, _internal) = start(dir.path(), "").await;
    let r = test(&gw).await;
    assert_eq!(r.verdict, Verdict::Fail, "{r:#?}");
    assert_eq!(step_names(&r), ["Resolve", "Connect"]);
    let c = step(&r, "Connect");
    assert_eq!(c.ok, Some(false));
    assert!(
        c.detail.starts_with(&closed.to_string()) && c.detail.contains("refused"),
        "{}",
        c.detail
    );
    assert_eq!(r.problems.len(), 1, "{r:#?}");
    assert!(
        r.problems[0].starts_with(
            "No server of 'partner.example' accepts connections: 1 address(es) tried, the last one failed with: "
        ),
        "{}",
        r.problems[0]
    );
    gw.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_valid_certificate_is_ok_with_sasl_external_and_described() {
    let dir = tempfile::tempdir().unwrap();
    let trusted = ca("trusted CA");
    let gw = start_tls_gateway(dir.path(), &trusted, leaf_pem(&trusted, "partner.example")).await;
    let r = test(&gw).await;
    assert_eq!(r.verdict, Verdict::Ok, "{r:#?}");
    assert_eq!(r.methods.outbound, Some(AuthMethod::SaslExternal));
    assert_eq!(r.methods.inbound, [AuthMethod::SaslExternal]);
    assert_eq!(
        step_names(&r),
        [
            "Resolve",
            "Connect",
            "Stream",
            "STARTTLS",
            "Certificate",
            "Stream (TLS)",
            "SASL EXTERNAL",
            "Dialback"
        ]
    );
    let tls = step(&r, "STARTTLS");
    assert!(tls.detail.starts_with("TLSv1."), "{}", tls.detail);
    assert!(tls.detail.contains("TLS"), "{}", tls.detail);
    assert_eq!(step(&r, "SASL EXTERNAL").ok, Some(true));
    let c = r.certificate.as_ref().expect("the certificate");
    assert!(c.trusted && c.valid_for_domain, "{c:#?}");
    assert_eq!(c.dns_names, ["partner.example"]);
    assert!(c.issuer.contains("trusted CA"), "{}", c.issuer);
    assert_eq!(c.extended_key_usage, ["serverAuth", "clientAuth"]);
    gw.shutdown(Duration::from_secs(5)).await;
}

/// The verdict and first problem for a partner presenting `partner_cert` (SASL Required, no
/// dialback: a certificate problem leaves no method).
async fn certificate_case(trusted: &Ca, partner_cert: (String, String)) -> Report {
    let dir = tempfile::tempdir().unwrap();
    let gw = start_tls_gateway(dir.path(), trusted, partner_cert).await;
    let r = test(&gw).await;
    gw.shutdown(Duration::from_secs(5)).await;
    r
}

#[tokio::test]
async fn a_certificate_for_another_name_fails() {
    let trusted = ca("trusted CA");
    let r = certificate_case(&trusted, leaf_pem(&trusted, "elsewhere.example")).await;
    assert_eq!(r.verdict, Verdict::Fail, "{r:#?}");
    assert_eq!(r.methods.outbound, None);
    let c = r.certificate.as_ref().unwrap();
    assert!(c.trusted && !c.valid_for_domain, "{c:#?}");
    assert_eq!(
        r.problems,
        [
            "The certificate of 'partner.example' is not valid for 'partner.example': its names are elsewhere.example. SASL EXTERNAL cannot authenticate it.",
            "No authentication method is left for 'partner.example': SupportDialbackNegotiation is False.",
        ]
    );
    assert_eq!(step(&r, "Certificate").ok, Some(false));
}

#[tokio::test]
async fn a_certificate_from_an_untrusted_ca_fails() {
    let trusted = ca("trusted CA");
    // (A terminal escape in its name is shown escaped, never as such.)
    let other = ca("some other CA\u{1b}[2J");
    let r = certificate_case(&trusted, leaf_pem(&other, "partner.example")).await;
    assert_eq!(r.verdict, Verdict::Fail, "{r:#?}");
    let c = r.certificate.as_ref().unwrap();
    assert!(!c.trusted && c.valid_for_domain, "{c:#?}");
    assert!(
        r.problems[0].starts_with("The certificate of 'partner.example' (issuer: CN=some other CA\\u{1b}[2J) does not chain to the gateway's trust anchors"),
        "{:?}",
        r.problems
    );
    assert!(!c.issuer.contains('\u{1b}') && !r.problems.concat().contains('\u{1b}'));
}

#[tokio::test]
async fn an_expired_certificate_fails_and_one_about_to_expire_warns() {
    let trusted = ca("trusted CA");
    let expired = leaf_pem_with(&trusted, "partner.example", |p| {
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2021, 1, 1);
    });
    let r = certificate_case(&trusted, expired).await;
    assert_eq!(r.verdict, Verdict::Fail, "{r:#?}");
    assert_eq!(
        r.problems[0],
        "The certificate of 'partner.example' expired on 2021-01-01T00:00:00Z. SASL EXTERNAL cannot authenticate it."
    );
    assert_eq!(
        r.certificate.as_ref().unwrap().not_after,
        "2021-01-01T00:00:00Z"
    );
    assert!(
        r.certificate.as_ref().unwrap().trusted,
        "an expired certificate from a trusted CA still chains to the anchors: {r:#?}"
    );
    let cert_step = step(&r, "Certificate");
    assert_eq!(cert_step.ok, Some(false), "{r:#?}");
    assert!(cert_step.detail.contains("NOT in date"), "{r:#?}");
    // The same expired certificate from a CA we do not trust is untrusted as well.
    let stranger = ca("stranger CA");
    let expired_elsewhere = leaf_pem_with(&stranger, "partner.example", |p| {
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2021, 1, 1);
    });
    let r2 = certificate_case(&trusted, expired_elsewhere).await;
    assert!(!r2.certificate.as_ref().unwrap().trusted, "{r2:#?}");
    assert_eq!(r2.verdict, Verdict::Fail);
    let soon = leaf_pem_with(&trusted, "partner.example", |p| {
        let now = std::time::SystemTime::now();
        p.not_before = (now - Duration::from_secs(86_400)).into();
        p.not_after = (now + Duration::from_secs(5 * 86_400 + 3600)).into();
    });
    let r = certificate_case(&trusted, soon).await;
    assert_eq!(r.verdict, Verdict::Warning, "{r:#?}");
    assert_eq!(r.methods.outbound, Some(AuthMethod::SaslExternal));
    assert_eq!(r.problems.len(), 1, "{r:#?}");
    assert!(
        r.problems[0].starts_with("The certificate of 'partner.example' expires on ")
            && r.problems[0].ends_with("(in 5 day(s))."),
        "{}",
        r.problems[0]
    );
}

/// `POST /api/v1/partners/{identity}/test` on the admin listener of a running gateway runs
/// this probe, the dialback round trip included; a reader token may not.
#[tokio::test]
async fn the_rest_api_runs_the_test_inside_the_gateway_for_admins_only() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let (partner_addr, partner_calls_back, _stanzas) = receiving_server(PARTNER_SECRET).await;
    let store = open_store(dir.path());
    add_dialback_partner(store.as_ref(), "partner.example", Some(partner_addr));
    let token = |name: &str, role| {
        fedgate_admin::tokens::create(store.as_ref(), name, role, "test")
            .unwrap()
            .1
    };
    let (admin, reader) = (
        token("ops", fedgate_store::TokenRole::Admin),
        token("monitor", fedgate_store::TokenRole::Reader),
    );
    let (gw, _internal) = start(
        dir.path(),
        "[admin]\nlisten = \"127.0.0.1:0\"\ntls = false\n",
    )
    .await;
    partner_calls_back.send(gw.external_addr).unwrap();
    let addr = gw.admin_addr.unwrap();
    let post = |token: String| async move {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!(
            "POST /api/v1/partners/partner.example/test HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        tcp.read_to_string(&mut response).await.unwrap();
        response
    };
    let response = post(reader).await;
    assert!(response.starts_with("HTTP/1.1 403"), "{response}");
    let response = post(admin).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let body: serde_json::Value =
        serde_json::from_str(&response[response.find("\r\n\r\n").unwrap() + 4..]).unwrap();
    assert_eq!(body["Verdict"], "Ok", "{body:#}");
    assert_eq!(body["Methods"]["Outbound"], "TcpDialback", "{body:#}");
    let dialback = body["Steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Step"] == "Dialback")
        .unwrap();
    assert_eq!(dialback["Ok"], true, "{body:#}");
    gw.shutdown(Duration::from_secs(5)).await;
}
