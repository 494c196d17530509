//! Hostile input the other gateway tests do not cover: TLS garbage after `<proceed/>`, and streams
//! that end in the middle of a stanza. Each closes only the offending connection; a good partner
//! stream keeps working.

mod common;

use std::time::Duration;

use common::*;
use fedgate_model::TlsNegotiation as Tls;
use fedgate_xmpp::ns;

/// A good, authenticated partner stream, and the gateway.
async fn gateway_with_a_good_stream(
    dir: &std::path::Path,
) -> (
    fedgate_gateway::runtime::Gateway,
    tokio::sync::mpsc::UnboundedReceiver<fedgate_xmpp::Element>,
    Peer,
) {
    let (gw, stanzas) = start_with_dialback_partner(dir, Tls::Optional, "").await;
    let good = dialback_peer(&gw).await;
    (gw, stanzas, good)
}

async fn still_serves(
    good: &mut Peer,
    stanzas: &mut tokio::sync::mpsc::UnboundedReceiver<fedgate_xmpp::Element>,
    body: &str,
) {
    good.send_el(&message("alice@partner.example", "bob@corp.example", body))
        .await;
    let got = tokio::time::timeout(T, stanzas.recv())
        .await
        .expect("the good stream still works")
        .unwrap();
    assert_eq!(got.attr("to"), Some("bob@corp.example"));
}

#[tokio::test]
async fn tls_garbage_after_proceed_closes_only_that_connection() {
    let dir = tempfile::tempdir().unwrap();
    let (gw, mut stanzas, mut good) = gateway_with_a_good_stream(dir.path()).await;

    let mut bad = Peer::connect(gw.external_addr).await;
    let (_, features) = bad.open("partner.example", "corp.example").await;
    assert!(
        features.child("starttls", ns::TLS).is_some(),
        "{features:?}"
    );
    bad.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        .await;
    let proceed = bad.element().await;
    assert_eq!(proceed.name, "proceed");
    // Not a TLS ClientHello: a record of the wrong type and length, then noise.
    let mut garbage = vec![0x17, 0x03, 0x01, 0xff, 0xff];
    garbage.extend((0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    bad.send(&garbage).await;
    let closed = tokio::time::timeout(T, async {
        loop {
            if bad.next().await.is_err() {
                return;
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the gateway closes a connection that sends TLS garbage"
    );
    assert_eq!(wait_refusals(&gw, "external", "tls_handshake", 1).await, 1);

    still_serves(&mut good, &mut stanzas, "after TLS garbage").await;
    gw.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn streams_that_end_mid_stanza_close_only_themselves() {
    let dir = tempfile::tempdir().unwrap();
    let (gw, mut stanzas, mut good) = gateway_with_a_good_stream(dir.path()).await;

    // Unauthenticated: a header and half a stanza, then the TCP connection ends.
    let mut half = Peer::connect(gw.external_addr).await;
    half.open("partner.example", "corp.example").await;
    half.send("<message from='a@partner.example' to='b@corp.example'><body>half")
        .await;
    drop(half);
    // Authenticated: the same after dialback; nothing of the half stanza is delivered.
    let mut cut = dialback_peer(&gw).await;
    cut.send("<message from='a@partner.example' to='b@corp.example'><body>never complete")
        .await;
    drop(cut);
    // Only a header, never closed: a dangling stream.
    let mut dangling = Peer::connect(gw.external_addr).await;
    dangling
        .send("<?xml version='1.0'?><stream:stream xmlns='jabber:server'")
        .await;
    drop(dangling);

    still_serves(&mut good, &mut stanzas, "after cut streams").await;
    let extra = tokio::time::timeout(Duration::from_millis(300), stanzas.recv()).await;
    assert!(extra.is_err(), "no half stanza was delivered: {extra:?}");
    gw.shutdown(Duration::from_secs(5)).await;
}
