//! Integration tests: the real runtime on loopback ports, driven by in-repo fake peers.

mod common;

use std::time::Duration;

use common::*;
use fedgate_model::{SaslNegotiation as S, TlsNegotiation as Tls};
use fedgate_xmpp::{Event, StreamErrorCondition as C, ns};

/// Logs only when RUST_LOG is set (they go to stderr, which the test harness does not capture).
fn init() {
    if std::env::var_os("RUST_LOG").is_some() {
        fedgate_gateway::init_logging("info");
    }
}

#[tokio::test]
async fn unlisted_partner_is_refused_with_policy_violation() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let (gw, _stanzas) = start(dir.path(), "").await;
    let mut p = Peer::connect(gw.external_addr).await;
    p.send(br#"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' from='evil.example' to='corp.example' version='1.0'>"#).await;
    let e = expect_condition(&mut p, C::PolicyViolation).await;
    assert!(e.text.contains("evil.example"), "{e:?}");
    assert_eq!(wait_refusals(&gw, "external", "not_listed", 1).await, 1);
    gw.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn dialback_only_partner_reaches_the_internal_server() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let (gw, mut stanzas) = start_with_dialback_partner(dir.path(), Tls::NotSupported, "").await;
    let mut p = Peer::connect(gw.external_addr).await;
    let (_, features) = {
        // Features: no STARTTLS (TLS NotSupported), dialback offered.
        let mut probe = Peer::connect(gw.external_addr).await;
        probe.open("partner.example", "corp.example").await
    };
    assert!(
        features.child("starttls", ns::TLS).is_none(),
        "{features:?}"
    );
    p.dialback("partner.example", "corp.example", PARTNER_SECRET)
        .await
        .unwrap();
    p.send_el(&message(
        "alice@partner.example/pc",
        "bob@corp.example",
        "hello",
    ))
    .await;
    let got = tokio::time::timeout(T, stanzas.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(got.is("message", ns::SERVER));
    assert_eq!(got.attr("from"), Some("alice@partner.example/pc"));
    assert_eq!(got.text(), "");
    assert_eq!(
        got.children().next().map(|b| b.text()),
        Some("hello".into())
    );
    // The status page shows the stream.
    let status = fedgate_gateway::metrics::render_status(&gw.shared);
    assert!(
        status.contains("TcpDialback") && status.contains("partner.example"),
        "{status}"
    );
    gw.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn wrong_dialback_key_is_not_accepted() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let (gw, _stanzas) = start_with_dialback_partner(dir.path(), Tls::NotSupported, "").await;
    let mut p = Peer::connect(gw.external_addr).await;
    let r = p
        .dialback(
            "partner.example",
            "corp.example",
            "not-the-secret-at-all-xxxxxxxxxxxxx",
        )
        .await;
    assert_eq!(r, Err("Some(Invalid)".to_owned()));
    assert_eq!(
        wait_refusals(&gw, "external", "dialback_invalid", 1).await,
        1
    );
    // A stanza on the unauthenticated stream: not-authorized.
    p.send_el(&message("a@partner.example", "b@corp.example", "x"))
        .await;
    expect_condition(&mut p, C::NotAuthorized).await;
    gw.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn spoofed_from_is_refused_with_invalid_from() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let (gw, mut stanzas) = start_with_dialback_partner(dir.path(), Tls::NotSupported, "").await;
    let mut p = dialback_peer(&gw).await;
    p.send_el(&message(
        "mallory@other.example",
        "bob@corp.example",
        "spoof",
    ))
    .await;
    expect_condition(&mut p, C::InvalidFrom).await;
    // and a stanza to a domain the gateway does not host: host-unknown
    let mut p = dialback_peer(&gw).await;
    p.send_el(&message(
        "alice@partner.example",
        "bob@elsewhere.example",
        "x",
    ))
    .await;
    expect_condition(&mut p, C::HostUnknown).await;
    // Nothing was delivered: a later stanza on the same path to the internal server is the
    // first one it receives.
    let mut good = dialback_peer(&gw).await;
    good.send_el(&message(
        "alice@partner.example",
        "bob@corp.example",
        "marker",
    ))
    .await;
    let first = tokio::time::timeout(T, stanzas.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        first.child("body", ns::SERVER).map(|b| b.text()).as_deref(),
        Some("marker"),
        "{first:?}"
    );
    gw.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn garbage_and_oversized_input_close_only_that_stream() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let (gw, mut stanzas) = start_with_dialback_partner(dir.path(), Tls::NotSupported, "").await;
    let mut good = dialback_peer(&gw).await;

    let mut bad = Peer::connect(gw.external_addr).await;
    bad.open("partner.example", "corp.example").await;
    bad.send("<message><<<&&&</oops>").await;
    expect_condition(&mut bad, C::NotWellFormed).await;

    let mut big = Peer::connect(gw.external_addr).await;
    big.open("partner.example", "corp.example").await;
    big.send(format!(
        "<message from='a@partner.example' to='b@corp.example'><body>{}</body></message>",
        "x".repeat(20_000)
    ))
    .await;
    expect_condition(&mut big, C::PolicyViolation).await;

    let mut deep = Peer::connect(gw.external_addr).await;
    deep.open("partner.example", "corp.example").await;
    deep.send("<message>".to_owned() + &"<x>".repeat(40)).await;
    expect_condition(&mut deep, C::PolicyViolation).await;

    let mut client_ns = Peer::connect(gw.external_addr).await;
    client_ns
        .send(br#"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='corp.example' version='1.0'>"#)
        .await;
    expect_condition(&mut client_ns, C::InvalidNamespace).await;

    let mut dtd = Peer::connect(gw.external_addr).await;
    dtd.send("<?xml version='1.0'?><!DOCTYPE x [<!ENTITY a 'b'>]><stream:stream>")
        .await;
    let e = dtd.stream_error().await;
    assert_eq!(e.condition, C::RestrictedXml, "{e:?}");

    good.send_el(&message(
        "alice@partner.example",
        "bob@corp.example",
        "still here",
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
async fn removing_the_partner_closes_its_live_stream() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let auth = authoritative_server(PARTNER_SECRET).await;
    let store = open_store(dir.path());
    add_dialback_partner(store.as_ref(), "partner.example", Some(auth));
    let (gw, _stanzas) = start(dir.path(), "").await;
    let mut p = dialback_peer(&gw).await;
    let started = std::time::Instant::now();
    store
        .delete_partner(
            &fedgate_model::Domain::parse("partner.example").unwrap(),
            None,
            &audit(),
        )
        .unwrap();
    let e = expect_condition(&mut p, C::PolicyViolation).await;
    assert!(
        e.text.contains("no longer an allowed XMPP partner"),
        "{e:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // Counted by its own reason, not as a generic settings change.
    assert_eq!(
        wait_refusals(&gw, "external", "partner_removed", 1).await,
        1
    );
    assert_eq!(refusals(&gw, "external", "settings_changed").await, 0);
    gw.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn tls_required_partner_cannot_use_cleartext_dialback() {
    init();
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
    let (gw, _stanzas) = start(dir.path(), "").await;
    let mut p = Peer::connect(gw.external_addr).await;
    let (h, f) = p.open("partner.example", "corp.example").await;
    let starttls = f.child("starttls", ns::TLS).expect("STARTTLS offered");
    assert!(starttls.child("required", ns::TLS).is_some());
    assert!(f.child("dialback", ns::DIALBACK_FEATURE).is_none());
    let key = fedgate_gateway::dialback::dialback_key(
        PARTNER_SECRET,
        "corp.example",
        "partner.example",
        h.id.as_deref().unwrap(),
    );
    p.send_el(&fedgate_xmpp::negotiation::db_result_request(
        "partner.example",
        "corp.example",
        &key,
    ))
    .await;
    let e = expect_condition(&mut p, C::PolicyViolation).await;
    assert!(e.text.contains("TLS is required"), "{e:?}");
    gw.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn graceful_shutdown_sends_system_shutdown() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let (gw, _stanzas) = start(dir.path(), "").await;
    let mut p = Peer::connect(gw.internal_addr).await;
    // An open, not yet authenticated stream on the external side (no 'from' yet).
    let mut q = Peer::connect(gw.external_addr).await;
    q.send(br#"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' to='corp.example' version='1.0'>"#).await;
    q.header().await;
    q.element().await;
    p.send(br#"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' to='partner.example' version='1.0'>"#).await;
    // partner.example is not a partner: the internal server is refused with policy-violation.
    let e = expect_condition(&mut p, C::PolicyViolation).await;
    assert!(e.text.contains("partner.example"), "{e:?}");
    let down = tokio::spawn(gw.shutdown(Duration::from_secs(5)));
    let e = q.stream_error().await;
    assert_eq!(e.condition, C::SystemShutdown);
    down.await.unwrap();
    assert!(matches!(q.next().await, Err(_) | Ok(Event::StreamClose)));
}

#[tokio::test]
async fn user_without_xmpp_access_is_bounced_with_policy_violation() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let auth = authoritative_server(PARTNER_SECRET).await;
    let (partner_addr, partner_gw, mut partner_stanzas) = receiving_server(PARTNER_SECRET).await;
    let _ = auth;
    let store = open_store(dir.path());
    add_dialback_partner(store.as_ref(), "partner.example", Some(partner_addr));
    set_global_xmpp_access(store.as_ref(), false);
    let (gw, mut internal_stanzas) = start(dir.path(), "").await;
    partner_gw.send(gw.external_addr).unwrap();
    // Outbound: a local user without EnableXmppAccess -> bounced back to the internal server.
    let mut p = Peer::connect(gw.internal_addr).await;
    p.dialback("corp.example", "partner.example", INTERNAL_SECRET)
        .await
        .unwrap();
    p.send_el(&message("bob@corp.example/x", "alice@partner.example", "no").with_attr("id", "o1"))
        .await;
    let b = tokio::time::timeout(T, internal_stanzas.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (b.attr("type"), b.attr("id")),
        (Some("error"), Some("o1")),
        "{b:?}"
    );
    assert!(
        b.child("error", ns::SERVER)
            .and_then(|e| e.child("policy-violation", ns::STANZA_ERRORS))
            .is_some(),
        "{b:?}"
    );
    // An error is never answered with an error: dropped.
    p.send_el(
        &message("bob@corp.example/x", "alice@partner.example", "e").with_attr("type", "error"),
    )
    .await;
    // (Counted once processed: waiting for it keeps the counts below from racing the stream,
    // where a small write may wait out a delayed ACK.)
    wait_refusals(&gw, "internal", "user_not_enabled", 2).await;
    // Inbound: bounced back to the partner.
    let mut q = dialback_peer(&gw).await;
    q.send_el(&message("alice@partner.example/r", "bob@corp.example", "in").with_attr("id", "i1"))
        .await;
    let b = tokio::time::timeout(T, partner_stanzas.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (b.attr("type"), b.attr("id"), b.attr("to")),
        (Some("error"), Some("i1"), Some("alice@partner.example/r")),
        "{b:?}"
    );
    // Visible by reason: /status (what `fedgate status` prints) and /metrics.
    let status: serde_json::Value =
        serde_json::from_str(&fedgate_gateway::metrics::render_status(&gw.shared)).unwrap();
    for side in ["internal", "external"] {
        let row = status["refusals"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["side"] == side && r["reason"] == "user_not_enabled")
            .unwrap_or_else(|| panic!("no {side} user_not_enabled refusal in {status}"));
        assert!(row["count"].as_u64() >= Some(1), "{row}");
    }
    assert_eq!(refusals(&gw, "external", "user_not_enabled").await, 1);
    assert_eq!(refusals(&gw, "internal", "user_not_enabled").await, 2);
    // Two bounces (one each way); the error message was dropped, not bounced.
    let m = scrape(&gw).await;
    assert_eq!(
        sample(
            &m,
            "fedgate_stanzas_dropped_total",
            &[("side", "internal"), ("reason", "user_not_enabled")],
        ),
        Some(1),
        "{m}"
    );
    assert_eq!(
        sample(&m, "fedgate_stanzas_bounced_total", &[]),
        Some(2),
        "{m}"
    );
    // Enabled again (live): delivered, and it is the first stanza the local user gets (the
    // refused one never reached it).
    set_global_xmpp_access(store.as_ref(), true);
    wait_policy_current(&gw, store.as_ref()).await;
    q.send_el(&message(
        "alice@partner.example/r",
        "bob@corp.example",
        "now",
    ))
    .await;
    let got = tokio::time::timeout(T, internal_stanzas.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.attr("type"), Some("chat"), "{got:?}");
    assert_eq!(
        got.child("body", ns::SERVER).map(|b| b.text()).as_deref(),
        Some("now"),
        "{got:?}"
    );
    gw.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn public_unverified_partner_reaches_a_user_only_after_the_user_subscribed() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let (partner_addr, partner_gw, mut partner_stanzas) = receiving_server(PARTNER_SECRET).await;
    let store = open_store(dir.path());
    add_dialback_partner(store.as_ref(), "partner.example", Some(partner_addr));
    edit_partner(store.as_ref(), "partner.example", |p| {
        p.partner_type = fedgate_model::PartnerType::PublicUnverified;
    });
    let (gw, mut internal_stanzas) = start(dir.path(), "").await;
    partner_gw.send(gw.external_addr).unwrap();
    let mut q = dialback_peer(&gw).await;
    q.send_el(&message("alice@partner.example/r", "bob@corp.example", "hi").with_attr("id", "u1"))
        .await;
    let b = tokio::time::timeout(T, partner_stanzas.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (b.attr("type"), b.attr("id")),
        (Some("error"), Some("u1")),
        "{b:?}"
    );
    let status = fedgate_gateway::metrics::render_status(&gw.shared);
    assert!(
        status.contains(r#""reason":"not_authorised""#),
        "/status has no not_authorised refusal: {status}"
    );
    // bob subscribes to alice: recorded, and alice may now reach bob.
    let mut i = Peer::connect(gw.internal_addr).await;
    i.dialback("corp.example", "partner.example", INTERNAL_SECRET)
        .await
        .unwrap();
    i.send_el(
        &fedgate_xmpp::Element::new("presence", ns::SERVER)
            .with_attr("from", "bob@corp.example")
            .with_attr("to", "alice@partner.example")
            .with_attr("type", "subscribe"),
    )
    .await;
    let s = tokio::time::timeout(T, partner_stanzas.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.attr("type"), Some("subscribe"));
    q.send_el(&message(
        "alice@partner.example/r",
        "bob@corp.example",
        "hi again",
    ))
    .await;
    let got = tokio::time::timeout(T, internal_stanzas.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.attr("type"), Some("chat"), "{got:?}");
    gw.shutdown(Duration::from_secs(5)).await;
}

/// The key the gateway sends on its own outbound stream, for a known DialbackPassphrase and the
/// stream id the receiving server chose, equals the XEP-0185 key computed independently with
/// Python (`hmac.new(sha256(secret).hexdigest().encode(), b"partner.example corp.example
/// fake-id-1", sha256)`): the fake peers use the gateway's own key function, so without this a
/// bug shared by both sides would pass every other test.
#[tokio::test]
async fn outbound_dialback_key_matches_an_independent_computation() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let partner_addr = l.local_addr().unwrap();
    let (key_tx, mut key_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let mut p = Peer::new(Box::new(tcp));
        let h = p.header().await;
        let mut out = Vec::new();
        fedgate_xmpp::StreamHeader::responding(
            h.to.clone().unwrap_or_default(),
            h.from.clone(),
            "fake-id-1",
            true,
        )
        .write_to(&mut out);
        fedgate_xmpp::negotiation::stream_features(
            fedgate_xmpp::negotiation::TlsOffer::None,
            false,
            true,
        )
        .write_to(&mut out);
        p.send(out).await;
        let e = p.element().await;
        let _ = key_tx.send((
            e.attr("from").map(str::to_owned),
            e.attr("to").map(str::to_owned),
            e.text(),
        ));
    });
    let store = open_store(dir.path());
    add_dialback_partner(store.as_ref(), "partner.example", Some(partner_addr));
    let mut settings = store.gateway_configuration().unwrap();
    settings.dialback_passphrase = Some(fedgate_model::Secret::new(
        "the-gateway-passphrase-0123456789".to_owned(),
    ));
    store
        .set_gateway_configuration(&settings, &audit())
        .unwrap();
    let (gw, _internal) = start(dir.path(), "").await;
    let mut i = Peer::connect(gw.internal_addr).await;
    i.dialback("corp.example", "partner.example", INTERNAL_SECRET)
        .await
        .unwrap();
    i.send_el(&message("bob@corp.example", "alice@partner.example", "hi"))
        .await;
    let (from, to, key) = tokio::time::timeout(T, key_rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (from.as_deref(), to.as_deref()),
        (Some("corp.example"), Some("partner.example"))
    );
    assert_eq!(
        key.trim(),
        "44d24416561c1d672a63352b78d9a5363d09dfcf78efb410a9f089292c5cfe24"
    );
    gw.shutdown(Duration::from_secs(5)).await;
}

/// A stream's copy of the snapshot (what its stanzas are decided on) is the current one: the
/// same while none is published, the new one once one is.
#[tokio::test]
async fn a_streams_snapshot_follows_each_published_one() {
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let (gw, _internal) = start(dir.path(), "").await;
    let mut cache = fedgate_gateway::state::SnapshotCache::new(&gw.shared);
    let first = gw.shared.snapshot();
    assert!(Arc::ptr_eq(cache.current(&gw.shared), &first));
    assert!(Arc::ptr_eq(cache.current(&gw.shared), &first));
    gw.shared.update_snapshot(|s| {
        s.with_authorisations(fedgate_model::snapshot::Authorisations::new([]))
    });
    let second = gw.shared.snapshot();
    assert!(!Arc::ptr_eq(&first, &second));
    assert!(Arc::ptr_eq(cache.current(&gw.shared), &second));
}
