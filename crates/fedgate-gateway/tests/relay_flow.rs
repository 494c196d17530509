//! Relaying many stanzas at once: batched writes and bounded outbound queues (the inbound stream
//! waits for room) keep every stanza, in order.

mod common;

use std::time::Duration;

use common::*;
use fedgate_gateway::outbound::QUEUE_CREDITS;
use fedgate_model::{SaslNegotiation as S, TlsNegotiation as Tls};
use fedgate_xmpp::ns;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_larger_than_the_queue_arrives_complete_and_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let auth = authoritative_server(PARTNER_SECRET).await;
    add_partner(
        open_store(dir.path()).as_ref(),
        "partner.example",
        Tls::NotSupported,
        S::NotSupported,
        true,
        Some(auth),
    );
    let (gw, mut stanzas) = start(dir.path(), "").await;
    let mut p = Peer::connect(gw.external_addr).await;
    p.dialback("partner.example", "corp.example", PARTNER_SECRET)
        .await
        .unwrap();
    let n = QUEUE_CREDITS * 8;
    // All of them in one write: the gateway reads far ahead of what it can have written.
    let mut burst = Vec::new();
    for i in 0..n {
        message(
            "alice@partner.example/pc",
            "bob@corp.example",
            &format!("{i} {}", "x".repeat(900)),
        )
        .write_to(&mut burst);
    }
    let writer = tokio::spawn(async move {
        p.send(burst).await;
        p
    });
    for i in 0..n {
        let got = tokio::time::timeout(T, stanzas.recv())
            .await
            .unwrap_or_else(|_| panic!("stanza {i} did not arrive"))
            .unwrap();
        assert!(got.is("message", ns::SERVER));
        let body = got.children().next().map(|b| b.text()).unwrap_or_default();
        assert_eq!(body.split(' ').next(), Some(i.to_string().as_str()));
    }
    let _p = writer.await.unwrap();
    let relayed = fedgate_gateway::metrics::render_metrics(&gw.shared);
    assert!(
        relayed.contains(&format!("fedgate_stanzas_relayed_total {n}")),
        "{relayed}"
    );
    gw.shutdown(Duration::from_secs(5)).await;
}
