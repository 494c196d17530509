//! Gateway-wide limits and timers at runtime, and the refusals they cause as an admin sees them
//! in `/metrics` (fetched over HTTP): the gateway's ConnectionLimit over all partners, the
//! PartnerConnectionLimit for a partner without its own ConnectionLimit, StreamInactivityTimeout
//! set live while streams run, dialback that cannot be verified, improper addressing.

mod common;

use std::time::{Duration, Instant};

use common::*;
use fedgate_model::{SaslNegotiation as S, TlsNegotiation as Tls};
use fedgate_xmpp::{Element, Event, StreamErrorCondition as C, ns};

#[tokio::test]
async fn gateway_connection_limit_and_the_partner_connection_limit_fallback() {
    let dir = tempfile::tempdir().unwrap();
    let auth = authoritative_server(PARTNER_SECRET).await;
    let store = open_store(dir.path());
    for d in ["partner.example", "second.example", "third.example"] {
        // No ConnectionLimit on the records: the gateway's PartnerConnectionLimit applies.
        add_partner(
            store.as_ref(),
            d,
            Tls::NotSupported,
            S::NotSupported,
            true,
            Some(auth),
        );
    }
    let (gw, _stanzas) = start(
        dir.path(),
        "[settings]\nconnection_limit = 2\npartner_connection_limit = 1\n",
    )
    .await;
    let mut first = dialback_request(&gw, "partner.example").await;
    expect_valid(&mut first).await;
    // The partner's second connection: over PartnerConnectionLimit 1.
    let mut again = dialback_request(&gw, "partner.example").await;
    let e = expect_condition(&mut again, C::PolicyViolation).await;
    assert!(e.text.contains("(limit 1)"), "{e:?}");
    assert_eq!(
        wait_refusals(&gw, "external", "partner_connection_limit", 1).await,
        1
    );
    // Another partner: the second connection of the gateway, admitted.
    let mut second = dialback_request(&gw, "second.example").await;
    expect_valid(&mut second).await;
    // A third partner: over the gateway's ConnectionLimit 2.
    let mut third = dialback_request(&gw, "third.example").await;
    let e = expect_condition(&mut third, C::ResourceConstraint).await;
    assert!(e.text.contains("(limit 2)"), "{e:?}");
    assert_eq!(
        wait_refusals(&gw, "external", "connection_limit", 1).await,
        1
    );
    let m = scrape(&gw).await;
    assert_eq!(
        sample(
            &m,
            "fedgate_refusals_total",
            &[("side", "external"), ("reason", "partner_connection_limit")]
        ),
        Some(1),
        "{m}"
    );
    // Four connections were accepted (the refused ones too); two partner streams are live.
    assert_eq!(
        sample(&m, "fedgate_connections_accepted_total", &[]),
        Some(4),
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            "fedgate_streams",
            &[
                ("side", "external"),
                ("direction", "inbound"),
                ("authenticated", "true")
            ]
        ),
        Some(2),
        "{m}"
    );
    // The admitted streams still work.
    for (p, from) in [
        (&mut first, "partner.example"),
        (&mut second, "second.example"),
    ] {
        p.send_el(&message(&format!("a@{from}"), "bob@corp.example", "x"))
            .await;
    }
    gw.shutdown(Duration::from_secs(5)).await;
}

/// Read `p` until it gets a stream error (the gateway closed it) or `deadline` passes.
async fn closed_by_gateway(p: &mut Peer, deadline: Instant) -> Option<fedgate_xmpp::StreamError> {
    while Instant::now() < deadline {
        match p.next().await {
            Ok(Event::Element { element, .. }) if element.is("error", ns::STREAMS) => {
                return fedgate_xmpp::StreamError::from_element(&element);
            }
            Ok(_) => {}
            Err(e) if e == "timeout" => {}
            Err(e) => panic!("the stream ended without a stream error: {e}"),
        }
    }
    None
}

#[tokio::test]
async fn stream_inactivity_timeout_set_live_closes_only_the_stream_without_stanzas() {
    let dir = tempfile::tempdir().unwrap();
    let (gw, mut stanzas) = start_with_dialback_partner(dir.path(), Tls::NotSupported, "").await;
    let store = open_store(dir.path());
    let mut talker = dialback_peer(&gw).await;
    let mut silent = dialback_peer(&gw).await;
    let authenticated = Instant::now();
    // Set-CsXmppGatewayConfiguration -StreamInactivityTimeout 10, while both streams run.
    let mut settings = store.gateway_configuration().unwrap();
    assert_eq!(settings.stream_inactivity_timeout, 600);
    settings.stream_inactivity_timeout = 10;
    store
        .set_gateway_configuration(&settings, &audit())
        .unwrap();
    wait_policy_current(&gw, store.as_ref()).await;
    // One stream sends a stanza every 2 s, the other nothing (KeepAliveInterval is 300 s, so
    // only the inactivity timer can close it).
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let chatter = tokio::spawn(async move {
        let mut n = 0;
        loop {
            n += 1;
            talker
                .send_el(&message(
                    "alice@partner.example",
                    "bob@corp.example",
                    &format!("tick {n}"),
                ))
                .await;
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                _ = &mut stop_rx => return talker,
            }
        }
    });
    let e = closed_by_gateway(&mut silent, Instant::now() + Duration::from_secs(30))
        .await
        .expect("a stream without stanzas for StreamInactivityTimeout (10 s) was not closed");
    let after = authenticated.elapsed();
    assert_eq!(e.condition, C::ConnectionTimeout, "{e:?}");
    assert!(e.text.contains("No stanza for 10 s"), "{e:?}");
    assert!(
        after >= Duration::from_secs(9),
        "closed after {after:?}, before the timeout"
    );
    assert_eq!(
        wait_refusals(&gw, "external", "inactivity_timeout", 1).await,
        1
    );
    // The stream that carried stanzas is still up and relaying.
    let _ = stop_tx.send(());
    let mut talker = chatter.await.unwrap();
    while stanzas.try_recv().is_ok() {}
    talker
        .send_el(&message(
            "alice@partner.example",
            "bob@corp.example",
            "still here",
        ))
        .await;
    let got = loop {
        let got = tokio::time::timeout(T, stanzas.recv())
            .await
            .unwrap()
            .unwrap();
        if got.child("body", ns::SERVER).map(|b| b.text()).as_deref() == Some("still here") {
            break got;
        }
    };
    assert_eq!(got.attr("to"), Some("bob@corp.example"));
    assert_eq!(refusals(&gw, "external", "inactivity_timeout").await, 1);
    gw.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn dialback_that_cannot_be_verified_is_answered_with_an_error_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    // The partner's authoritative server is down.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    add_dialback_partner(
        open_store(dir.path()).as_ref(),
        "partner.example",
        Some(dead),
    );
    let (gw, _stanzas) = start(dir.path(), "").await;
    let mut p = Peer::connect(gw.external_addr).await;
    let r = p
        .dialback("partner.example", "corp.example", PARTNER_SECRET)
        .await;
    let err = r.expect_err("dialback with an unreachable authoritative server succeeded");
    assert!(
        err.contains("Error") && err.contains("RemoteServerNotFound"),
        "{err}"
    );
    assert_eq!(
        wait_refusals(&gw, "external", "dialback_unverified", 1).await,
        1
    );
    assert_eq!(refusals(&gw, "external", "dialback_invalid").await, 0);
    gw.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn improper_addressing_closes_the_stream_and_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (gw, _stanzas) = start_with_dialback_partner(dir.path(), Tls::NotSupported, "").await;
    // A stanza without 'to' on an authenticated stream.
    let mut p = dialback_peer(&gw).await;
    let no_to = Element::new("message", ns::SERVER)
        .with_attr("from", "alice@partner.example")
        .with_child(Element::new("body", ns::SERVER).with_text("to whom?"));
    p.send_el(&no_to).await;
    expect_condition(&mut p, C::ImproperAddressing).await;
    assert_eq!(
        wait_refusals(&gw, "external", "improper_addressing", 1).await,
        1
    );
    // A dialback request without 'to'.
    let mut q = Peer::connect(gw.external_addr).await;
    q.open("partner.example", "corp.example").await;
    q.send(b"<db:result from='partner.example'>abc</db:result>")
        .await;
    expect_condition(&mut q, C::ImproperAddressing).await;
    assert_eq!(
        wait_refusals(&gw, "external", "improper_addressing", 2).await,
        2
    );
    gw.shutdown(Duration::from_secs(5)).await;
}
