//! Relaying many stanzas at once: batched writes and bounded outbound queues (the inbound stream
//! waits for room) keep every stanza, in order.

mod common;

use std::time::Duration;

use common::*;
use fedgate_gateway::outbound::QUEUE_CREDITS;
use fedgate_model::TlsNegotiation as Tls;
use fedgate_xmpp::ns;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_larger_than_the_queue_arrives_complete_and_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (gw, mut stanzas) = start_with_dialback_partner(dir.path(), Tls::NotSupported, "").await;
    let mut p = dialback_peer(&gw).await;
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
    // The counter moves after each batch write returns, which can be just after the receiver
    // has read the batch: wait for it to catch up.
    let expected = format!("fedgate_stanzas_relayed_total {n}\n");
    // Polled until counted, with the tests' generous deadline (not 100 tries of 20 ms).
    let deadline = std::time::Instant::now() + T;
    loop {
        let relayed = scrape(&gw).await;
        if relayed.contains(&expected) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{relayed}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    gw.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_does_not_read_stops_the_sender_instead_of_filling_the_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let auth = authoritative_server(PARTNER_SECRET).await;
    add_dialback_partner(
        open_store(dir.path()).as_ref(),
        "partner.example",
        Some(auth),
    );
    let (internal, _accepted) = stalled_server().await;
    let gw = common::start_gateway(config(dir.path(), internal, ""))
        .await
        .unwrap();
    let mut p = dialback_peer(&gw).await;
    // 64 MiB of stanzas: far more than the socket buffers on the way plus the queue's credits.
    let burst = message_burst("alice@partner.example/pc", "bob@corp.example", 64);
    let writer = tokio::spawn(async move {
        p.send(burst).await;
        p
    });
    // With backpressure the gateway stops reading from the partner: the bytes it has read
    // stop growing while the writer still has most of the burst to send. Without it the
    // gateway reads everything (however slow the machine) and the writer finishes. Poll until
    // the count has not moved for a second, with a generous deadline.
    let read_in = || {
        gw.shared
            .registry
            .status()
            .iter()
            .filter(|s| s.partner.as_deref() == Some("partner.example"))
            .map(|s| s.bytes_in)
            .sum::<u64>()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let (mut last, mut since) = (read_in(), std::time::Instant::now());
    loop {
        assert!(
            !writer.is_finished(),
            "the gateway took 64 MiB from a partner while its target read nothing (read {})",
            read_in()
        );
        let now = read_in();
        if now != last {
            (last, since) = (now, std::time::Instant::now());
        } else if since.elapsed() >= Duration::from_secs(1) && now > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the gateway kept reading from the partner: {now} bytes"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(last < 48 * 1024 * 1024, "{last}");
    // The relayed count over HTTP: the target read nothing after its dialback, so almost
    // nothing was relayed.
    let m = scrape(&gw).await;
    let relayed = sample(&m, "fedgate_stanzas_relayed_total", &[]).unwrap_or(0);
    assert!(relayed * 900 < 48 * 1024 * 1024, "{m}");
    writer.abort();
    gw.shutdown(Duration::from_secs(5)).await;
}
