//! A partner that stops reading: the outbound stream is closed at the write-stall limit
//! (`[limits] write_stall_timeout`) without a second wait for the close, what was queued for it
//! is bounced at once with `<remote-server-timeout/>`, new streams to it wait (backoff) instead of
//! stalling again at once, and shutdown does not wait for it.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::*;
use fedgate_gateway::Gateway;
use fedgate_model::{SaslNegotiation as S, TlsNegotiation as Tls};
use fedgate_xmpp::{Element, StanzaErrorCondition, ns};

/// A gateway whose partner `partner.example` accepts the outbound stream and then reads
/// nothing; returns the gateway, the stanzas the internal server receives, an authenticated
/// stream from the internal server, and how many connections the partner accepted.
async fn stalled_partner(
    dir: &std::path::Path,
    write_stall: Option<Duration>,
) -> (
    Gateway,
    tokio::sync::mpsc::UnboundedReceiver<Element>,
    Peer,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    let (partner, accepted) = stalled_server().await;
    add_partner(
        open_store(dir).as_ref(),
        "partner.example",
        Tls::NotSupported,
        S::NotSupported,
        true,
        Some(partner),
    );
    let (internal, gw_tx, stanzas) = internal_server().await;
    let mut cfg = config(dir, internal, "");
    if let Some(d) = write_stall {
        cfg.limits.write_stall_timeout = d;
    }
    let gw = common::start_gateway(cfg).await.unwrap();
    gw_tx.send(gw.internal_addr).unwrap();
    let mut i = Peer::connect(gw.internal_addr).await;
    i.dialback("corp.example", "partner.example", INTERNAL_SECRET)
        .await
        .unwrap();
    (gw, stanzas, i, accepted)
}

/// 32 MiB of messages from the internal side to the partner, sent by a task (it blocks while
/// the gateway pushes back).
fn burst(mut i: Peer) -> tokio::task::JoinHandle<Peer> {
    let burst = message_burst("bob@corp.example/pc", "alice@partner.example", 32);
    tokio::spawn(async move {
        i.send(burst).await;
        i
    })
}

fn is_timeout_bounce(e: &Element) -> bool {
    e.attr("type") == Some("error")
        && e.attr("from") == Some("alice@partner.example")
        && e.child("error", ns::SERVER).is_some_and(|err| {
            err.child(
                StanzaErrorCondition::RemoteServerTimeout.name(),
                ns::STANZA_ERRORS,
            )
            .is_some()
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partner_that_stops_reading_is_closed_at_the_limit_and_retried_after_a_wait() {
    let dir = tempfile::tempdir().unwrap();
    let (gw, mut stanzas, i, accepted) =
        stalled_partner(dir.path(), Some(Duration::from_secs(2))).await;
    let started = Instant::now();
    let writer = burst(i);
    // The first bounce comes once a write stalled for 2 s (not 30 s, and no second wait for
    // the closing write).
    let first = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let e = stanzas.recv().await.expect("the internal server is up");
            if is_timeout_bounce(&e) {
                return e;
            }
            assert_ne!(
                e.attr("type"),
                Some("chat"),
                "nothing is relayed back: {e:?}"
            );
        }
    })
    .await
    .expect("no <remote-server-timeout/> bounce within 20 s");
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "the first bounce took {:?}: {first:?}",
        started.elapsed()
    );
    assert_eq!(wait_refusals(&gw, "external", "write_stalled", 1).await, 1);
    // The rest of the burst is bounced at once without a new stream: the partner is waited
    // for (5 s after a first stall) instead of stalling the next stream again.
    wait_refusals(&gw, "external", "peer_stalled", 100).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    writer.abort();
    gw.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_does_not_wait_for_a_partner_that_stopped_reading() {
    let dir = tempfile::tempdir().unwrap();
    // The default write-stall limit (30 s): longer than the shutdown grace.
    let (gw, _stanzas, i, _accepted) = stalled_partner(dir.path(), None).await;
    let writer = burst(i);
    // Wait until the outbound stream to the partner is stuck in a write: its bytes out stop
    // growing.
    let written = || {
        gw.shared
            .registry
            .status()
            .iter()
            .filter(|s| s.domains.iter().any(|d| d == "partner.example") && s.auth_method.is_some())
            .map(|s| s.bytes_out)
            .sum::<u64>()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let (mut last, mut since) = (written(), Instant::now());
    loop {
        let now = written();
        if now != last {
            (last, since) = (now, Instant::now());
        } else if now > 0 && since.elapsed() >= Duration::from_secs(1) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the stream never stalled ({now} bytes)"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stopping = Instant::now();
    gw.shutdown(Duration::from_secs(10)).await;
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}: it waited for the stalled stream",
        stopping.elapsed()
    );
    writer.abort();
}
