//! Integration tests: STARTTLS, dialback over TLS, SASL EXTERNAL with a test CA, outbound
//! streams (internal server → partner), bounces, connection limits.

mod common;

use std::time::Duration;

use common::*;
use fedgate_model::{SaslNegotiation as S, TlsNegotiation as Tls};
use fedgate_xmpp::negotiation::{self, DialbackType};
use fedgate_xmpp::{StreamErrorCondition as C, ns};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A leaf for `domain` from `ca` (serverAuth and clientAuth) as rustls takes it.
fn leaf(ca: &Ca, domain: &str) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    let (cert, key) = leaf_pem(ca, domain);
    (
        CertificateDer::pem_slice_iter(cert.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap(),
        PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
    )
}

#[tokio::test]
async fn dialback_over_tls_with_optional_tls() {
    let dir = tempfile::tempdir().unwrap();
    let auth = authoritative_server(PARTNER_SECRET).await;
    add_partner(
        open_store(dir.path()).as_ref(),
        "partner.example",
        Tls::Optional,
        S::Optional,
        true,
        Some(auth),
    );
    let (gw, mut stanzas) = start(dir.path(), "").await;
    let mut p = Peer::connect(gw.external_addr).await;
    let (_, f) = p.open("partner.example", "corp.example").await;
    assert!(f.child("starttls", ns::TLS).is_some(), "{f:?}");
    p.send_el(&negotiation::starttls()).await;
    assert!(p.element().await.is("proceed", ns::TLS));
    p.upgrade_tls("corp.example", None).await;
    // No certificate: SASL EXTERNAL is not offered, dialback is.
    p.dialback("partner.example", "corp.example", PARTNER_SECRET)
        .await
        .unwrap();
    p.send_el(&message(
        "alice@partner.example",
        "bob@corp.example",
        "over tls",
    ))
    .await;
    let got = tokio::time::timeout(T, stanzas.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.attr("to"), Some("bob@corp.example"));
    let status = fedgate_gateway::metrics::render_status(&gw.shared);
    assert!(
        status.contains("TlsDialback") && status.contains("TLSv1.3"),
        "{status}"
    );
    gw.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn sasl_external_with_a_trusted_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca("fedgate test CA");
    std::fs::write(dir.path().join("ca.pem"), &ca.pem).unwrap();
    add_partner(
        open_store(dir.path()).as_ref(),
        "partner.example",
        Tls::Required,
        S::Required,
        false,
        None,
    );
    add_partner(
        open_store(dir.path()).as_ref(),
        "other.example",
        Tls::Required,
        S::Required,
        false,
        None,
    );
    let (gw, mut stanzas) = start(dir.path(), "ca_files = [\"ca.pem\"]").await;
    let mut p = Peer::connect(gw.external_addr).await;
    let (_, f) = p.open("partner.example", "corp.example").await;
    assert!(
        f.child("starttls", ns::TLS)
            .and_then(|s| s.child("required", ns::TLS))
            .is_some(),
        "{f:?}"
    );
    p.send_el(&negotiation::starttls()).await;
    assert!(p.element().await.is("proceed", ns::TLS));
    p.upgrade_tls("corp.example", Some(leaf(&ca, "partner.example")))
        .await;
    let (_, f) = p.open("partner.example", "corp.example").await;
    let mechs = negotiation::Features::from_element(&f)
        .unwrap()
        .sasl_mechanisms;
    assert_eq!(mechs, vec!["EXTERNAL".to_owned()], "{f:?}");
    assert!(f.child("dialback", ns::DIALBACK_FEATURE).is_none());
    p.send_el(&negotiation::sasl_auth_external(Some("partner.example")))
        .await;
    let r = p.element().await;
    assert!(r.is("success", ns::SASL), "{r:?}");
    p.parser.reset();
    p.open("partner.example", "corp.example").await;
    p.send_el(&message(
        "alice@partner.example",
        "bob@corp.example",
        "sasl",
    ))
    .await;
    let got = tokio::time::timeout(T, stanzas.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.attr("from"), Some("alice@partner.example"));
    let status = fedgate_gateway::metrics::render_status(&gw.shared);
    assert!(status.contains("SaslExternal"), "{status}");

    // A certificate for another domain: no EXTERNAL offered for partner.example, and an
    // attempt is refused with a SASL failure.
    let mut q = Peer::connect(gw.external_addr).await;
    q.open("partner.example", "corp.example").await;
    q.send_el(&negotiation::starttls()).await;
    assert!(q.element().await.is("proceed", ns::TLS));
    q.upgrade_tls("corp.example", Some(leaf(&ca, "other.example")))
        .await;
    let (_, f) = q.open("partner.example", "corp.example").await;
    assert!(
        negotiation::Features::from_element(&f)
            .unwrap()
            .sasl_mechanisms
            .is_empty(),
        "{f:?}"
    );
    q.send_el(&negotiation::sasl_auth_external(None)).await;
    let r = q.element().await;
    assert!(r.is("failure", ns::SASL), "{r:?}");
    gw.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn internal_server_reaches_the_partner_and_failures_bounce() {
    let dir = tempfile::tempdir().unwrap();
    // The partner's server: receives our outbound stream and dials back to the external listener.
    let (partner_addr, partner_gw, mut partner_stanzas) = receiving_server(PARTNER_SECRET).await;
    let store = open_store(dir.path());
    add_dialback_partner(store.as_ref(), "partner.example", Some(partner_addr));
    // A partner whose server is down.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    add_dialback_partner(store.as_ref(), "down.example", Some(dead));
    let (gw, mut internal_stanzas) = start(dir.path(), "").await;
    partner_gw.send(gw.external_addr).unwrap();

    // The internal server (corp.example) connects to the internal listener as corp.example.
    let mut p = Peer::connect(gw.internal_addr).await;
    p.dialback("corp.example", "partner.example", INTERNAL_SECRET)
        .await
        .unwrap();
    p.send_el(&message(
        "bob@corp.example/x",
        "alice@partner.example",
        "outbound",
    ))
    .await;
    let got = tokio::time::timeout(T, partner_stanzas.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.attr("from"), Some("bob@corp.example/x"));
    assert_eq!(got.attr("to"), Some("alice@partner.example"));

    // To a partner whose server is unreachable: bounced back to the internal server.
    let mut q = Peer::connect(gw.internal_addr).await;
    q.dialback("corp.example", "down.example", INTERNAL_SECRET)
        .await
        .unwrap();
    q.send_el(&message("bob@corp.example/x", "carol@down.example", "lost").with_attr("id", "m1"))
        .await;
    let bounce = tokio::time::timeout(T, internal_stanzas.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(bounce.attr("type"), Some("error"), "{bounce:?}");
    assert_eq!(bounce.attr("id"), Some("m1"));
    assert_eq!(bounce.attr("to"), Some("bob@corp.example/x"));
    let err = bounce.child("error", ns::SERVER).expect("error child");
    assert!(
        err.child("remote-server-not-found", ns::STANZA_ERRORS)
            .is_some(),
        "{bounce:?}"
    );
    let m = scrape(&gw).await;
    assert_eq!(
        sample(&m, "fedgate_stanzas_bounced_total", &[]),
        Some(1),
        "{m}"
    );
    // Relayed: the message to the partner and the bounce to the internal server.
    assert_eq!(
        sample(&m, "fedgate_stanzas_relayed_total", &[]),
        Some(2),
        "{m}"
    );

    // The internal side may not address a domain that is not a partner.
    p.send_el(&message("bob@corp.example", "eve@evil.example", "no"))
        .await;
    expect_condition(&mut p, C::HostUnknown).await;
    gw.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn partner_connection_limit_refuses_the_next_stream() {
    let dir = tempfile::tempdir().unwrap();
    let auth = authoritative_server(PARTNER_SECRET).await;
    let store = open_store(dir.path());
    add_dialback_partner(store.as_ref(), "partner.example", Some(auth));
    edit_partner(store.as_ref(), "partner.example", |p| {
        p.connection_limit = Some(1);
    });
    let (gw, _st) = start(dir.path(), "").await;
    let _a = dialback_peer(&gw).await;
    let mut b = Peer::connect(gw.external_addr).await;
    let (h, _) = b.open("partner.example", "corp.example").await;
    let key = fedgate_gateway::dialback::dialback_key(
        PARTNER_SECRET,
        "corp.example",
        "partner.example",
        h.id.as_deref().unwrap(),
    );
    b.send_el(&negotiation::db_result_request(
        "partner.example",
        "corp.example",
        &key,
    ))
    .await;
    let e = expect_condition(&mut b, C::PolicyViolation).await;
    assert!(e.text.contains("limit 1"), "{e:?}");
    assert_eq!(
        wait_refusals(&gw, "external", "partner_connection_limit", 1).await,
        1
    );
    assert_eq!(refusals(&gw, "external", "connection_limit").await, 0);
    let _ = DialbackType::Valid;
    gw.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn unauthenticated_stream_is_closed_after_the_establishment_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let auth = authoritative_server(PARTNER_SECRET).await;
    add_dialback_partner(
        open_store(dir.path()).as_ref(),
        "partner.example",
        Some(auth),
    );
    let (gw, _st) = start(
        dir.path(),
        "[settings]\nkeep_alive_interval = 10\nstream_establishment_timeout = 2\n",
    )
    .await;
    let mut idle = Peer::connect(gw.external_addr).await;
    idle.open("partner.example", "corp.example").await;
    let started = std::time::Instant::now();
    expect_condition(&mut idle, C::ConnectionTimeout).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    gw.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn lowering_the_connection_limit_closes_the_newest_streams() {
    let dir = tempfile::tempdir().unwrap();
    let auth = authoritative_server(PARTNER_SECRET).await;
    let store = open_store(dir.path());
    add_dialback_partner(store.as_ref(), "partner.example", Some(auth));
    let (gw, mut stanzas) = start(dir.path(), "").await;
    let mut old = dialback_peer(&gw).await;
    let mut new = dialback_peer(&gw).await;
    edit_partner(store.as_ref(), "partner.example", |p| {
        p.connection_limit = Some(1);
    });
    let e = expect_condition(&mut new, C::PolicyViolation).await;
    assert!(e.text.contains("lowered to 1"), "{e:?}");
    assert_eq!(
        wait_refusals(&gw, "external", "partner_connection_limit", 1).await,
        1
    );
    old.send_el(&message(
        "alice@partner.example",
        "bob@corp.example",
        "kept",
    ))
    .await;
    let got = tokio::time::timeout(T, stanzas.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.attr("to"), Some("bob@corp.example"));
    gw.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn direct_tls_listener_accepts_tls_first_streams() {
    let dir = tempfile::tempdir().unwrap();
    let auth = authoritative_server(PARTNER_SECRET).await;
    add_partner(
        open_store(dir.path()).as_ref(),
        "partner.example",
        Tls::Required,
        S::Optional,
        true,
        Some(auth),
    );
    let (internal, gw_tx, mut stanzas) = internal_server().await;
    let mut cfg = config(dir.path(), internal, "");
    cfg.direct_tls_listen = Some("127.0.0.1:0".parse().unwrap());
    let gw = common::start_gateway(cfg).await.unwrap();
    gw_tx.send(gw.internal_addr).unwrap();
    let mut p = Peer::connect(gw.direct_tls_addr.unwrap()).await;
    p.upgrade_tls("corp.example", None).await;
    // TLS is active from the start: no STARTTLS offered, dialback over TLS allowed.
    p.dialback("partner.example", "corp.example", PARTNER_SECRET)
        .await
        .unwrap();
    p.send_el(&message(
        "alice@partner.example",
        "bob@corp.example",
        "direct",
    ))
    .await;
    let got = tokio::time::timeout(T, stanzas.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.attr("to"), Some("bob@corp.example"));
    gw.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn unauthenticated_connections_per_ip_are_limited() {
    let dir = tempfile::tempdir().unwrap();
    let (internal, gw_tx, _stanzas) = internal_server().await;
    let mut cfg = config(dir.path(), internal, "");
    cfg.limits.connections_per_ip_before_auth = 2;
    let gw = common::start_gateway(cfg).await.unwrap();
    gw_tx.send(gw.internal_addr).unwrap();
    let mut a = Peer::connect(gw.external_addr).await;
    let mut b = Peer::connect(gw.external_addr).await;
    // Both are admitted (counted) once the gateway has accepted them.
    wait_until("the gateway holds both connections", || {
        gw.shared.pre_auth.total() == 2
    })
    .await;
    let mut c = Peer::connect(gw.external_addr).await;
    expect_condition(&mut c, C::ResourceConstraint).await;
    // The first two are still served.
    a.send(br#"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' to='corp.example' version='1.0'>"#).await;
    a.header().await;
    b.send(br#"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' to='corp.example' version='1.0'>"#).await;
    b.header().await;
    assert_eq!(refusals(&gw, "external", "connections_per_ip").await, 1);
    gw.shutdown(Duration::from_secs(5)).await;
}

/// On the internal listener, as `corp.example` with a certificate from `ca`: whether SASL
/// EXTERNAL is offered, and whether an attempt succeeds.
async fn internal_sasl_external(gw: &fedgate_gateway::Gateway, ca: &Ca) -> (bool, bool) {
    let mut p = Peer::connect(gw.internal_addr).await;
    p.open("corp.example", "partner.example").await;
    p.send_el(&negotiation::starttls()).await;
    assert!(p.element().await.is("proceed", ns::TLS));
    p.upgrade_tls("partner.example", Some(leaf(ca, "corp.example")))
        .await;
    let (_, f) = p.open("corp.example", "partner.example").await;
    let offered = negotiation::Features::from_element(&f)
        .unwrap()
        .sasl_mechanisms
        .contains(&"EXTERNAL".to_owned());
    p.send_el(&negotiation::sasl_auth_external(Some("corp.example")))
        .await;
    let r = p.element().await;
    (offered, r.is("success", ns::SASL))
}

#[tokio::test]
async fn a_certificate_trusted_for_partners_never_authenticates_an_internal_server() {
    let ca = ca("fedgate test CA");
    // The CA is a partners' anchor ([tls]) only: an internal-side client presenting a
    // certificate for the hosted domain from it is not an internal server.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), &ca.pem).unwrap();
    add_partner(
        open_store(dir.path()).as_ref(),
        "partner.example",
        Tls::Optional,
        S::Optional,
        true,
        None,
    );
    let (gw, _stanzas) = start(dir.path(), "ca_files = [\"ca.pem\"]").await;
    assert_eq!(internal_sasl_external(&gw, &ca).await, (false, false));
    gw.shutdown(Duration::from_secs(5)).await;

    // The same CA named as an internal anchor ([internal_tls] ca_files): it authenticates.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), &ca.pem).unwrap();
    add_partner(
        open_store(dir.path()).as_ref(),
        "partner.example",
        Tls::Optional,
        S::Optional,
        true,
        None,
    );
    let (gw, _stanzas) = start(dir.path(), "[internal_tls]\nca_files = [\"ca.pem\"]").await;
    assert_eq!(internal_sasl_external(&gw, &ca).await, (true, true));
    gw.shutdown(Duration::from_secs(5)).await;
}
