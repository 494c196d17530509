//! A partner that stops reading: the outbound stream is closed at the write-stall limit
//! (`[limits] write_stall_timeout`) without a second wait for the close, what was queued for it
//! is bounced at once with `<remote-server-timeout/>`, new streams to it wait (backoff) instead of
//! stalling again at once, and shutdown does not wait for it. An internal server that stops
//! reading: removing the partner whose stanzas wait for it closes the partner's stream and the
//! stream to the internal server at once, not after the write-stall limit.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::*;
use fedgate_gateway::Gateway;
use fedgate_xmpp::negotiation::{self, DialbackType};
use fedgate_xmpp::{
    Element, Event, Limits, StanzaErrorCondition, StreamErrorCondition as C, StreamHeader,
    StreamParser, ns,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
    add_dialback_partner(open_store(dir).as_ref(), "partner.example", Some(partner));
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

/// An internal server that accepts the gateway's streams, answers their dialback `valid` and
/// then reads nothing; each stream goes to the test, which holds it unread.
async fn unread_internal_server() -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<tokio::net::TcpStream>,
) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            let mut p = Peer::from_tcp(tcp);
            let h = p.header().await;
            let mut out = Vec::new();
            StreamHeader::responding(
                h.to.clone().unwrap_or_default(),
                h.from.clone(),
                "i-1",
                true,
            )
            .write_to(&mut out);
            negotiation::stream_features(negotiation::TlsOffer::None, false, true)
                .write_to(&mut out);
            p.send(out).await;
            while let Ok(ev) = p.next().await {
                if let Event::Element { element, .. } = ev
                    && element.is("result", ns::DIALBACK)
                {
                    let (from, to) = (element.attr("from").unwrap(), element.attr("to").unwrap());
                    p.send_el(&negotiation::db_result_response(
                        to,
                        from,
                        &DialbackType::Valid,
                    ))
                    .await;
                    break;
                }
            }
            let _ = tx.send(p.into_io_tcp().unwrap());
        }
    });
    (addr, rx)
}

/// The registry's byte count `f` of the streams `which` selects, polled until it stops growing
/// for a second (a stream stuck in a write, or one that stopped reading); panics if it never
/// grows or never stops.
async fn wait_stuck(
    gw: &Gateway,
    what: &str,
    which: impl Fn(&fedgate_gateway::state::StreamStatus) -> bool,
    f: impl Fn(&fedgate_gateway::state::StreamStatus) -> u64,
) -> u64 {
    let count = || {
        gw.shared
            .registry
            .status()
            .iter()
            .filter(|s| which(s))
            .map(&f)
            .sum::<u64>()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let (mut last, mut since) = (count(), Instant::now());
    loop {
        let now = count();
        if now != last {
            (last, since) = (now, Instant::now());
        } else if now > 0 && since.elapsed() >= Duration::from_secs(1) {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "{what} never got stuck ({now} bytes)"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn to_internal(s: &fedgate_gateway::state::StreamStatus) -> bool {
    s.local_domain.as_deref() == Some("partner.example") && s.auth_method.is_some()
}

fn from_partner(s: &fedgate_gateway::state::StreamStatus) -> bool {
    s.partner.as_deref() == Some("partner.example")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_the_partner_closes_its_streams_at_once_while_the_internal_server_reads_nothing() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_max_level(tracing::Level::INFO)
        .try_init();
    let dir = tempfile::tempdir().unwrap();
    let auth = authoritative_server(PARTNER_SECRET).await;
    let store = open_store(dir.path());
    add_dialback_partner(store.as_ref(), "partner.example", Some(auth));
    let (internal, mut held) = unread_internal_server().await;
    // The default write-stall limit (30 s): the Remove must not wait for it.
    let gw = common::start_gateway(config(dir.path(), internal, ""))
        .await
        .unwrap();
    let mut partner = dialback_peer(&gw).await;
    // The partner writes a burst from one task and reads what the gateway says on another.
    let parser = std::mem::replace(&mut partner.parser, StreamParser::new(Limits::default()));
    let (read, mut write) = partner.into_io_tcp().unwrap().into_split();
    let mut partner = Peer::new(Box::new(tokio::io::join(read, tokio::io::sink())));
    partner.parser = parser;
    let burst = message_burst("alice@partner.example", "bob@corp.example", 32);
    let writer = tokio::spawn(async move { write.write_all(&burst).await });
    // The stream to the internal server is stuck in a write, its queue is full, and the
    // partner's stream waits for room: it reads nothing more while the partner has more to send.
    wait_stuck(&gw, "the stream to the internal server", to_internal, |s| {
        s.bytes_out
    })
    .await;
    wait_stuck(&gw, "the partner's stream", from_partner, |s| s.bytes_in).await;
    assert!(
        !writer.is_finished(),
        "the whole burst was read: nothing waits"
    );
    let mut unread = held
        .recv()
        .await
        .expect("the gateway's stream to the internal server");
    let removed = Instant::now();
    store
        .delete_partner(
            &fedgate_model::Domain::parse("partner.example").unwrap(),
            None,
            &audit(),
        )
        .unwrap();
    // The partner's stream: <policy-violation/>, then the TCP connection closes.
    let e = partner.stream_error().await;
    assert_eq!(e.condition, C::PolicyViolation, "{e:?}");
    assert!(
        e.text.contains("no longer an allowed XMPP partner"),
        "{e:?}"
    );
    loop {
        match partner.next().await {
            Ok(Event::StreamClose) => {}
            Ok(other) => panic!("after the stream error: {other:?}"),
            Err(e) if e == "timeout" => panic!("the partner's connection stays open"),
            Err(_) => break,
        }
    }
    let closed = removed.elapsed();
    assert!(
        closed < Duration::from_secs(1),
        "the partner's stream closed {closed:?} after the Remove"
    );
    // The stream to the internal server is gone too, while the internal server still reads
    // nothing.
    wait_until("the stream to the internal server is closed", || {
        !gw.shared.registry.status().iter().any(to_internal)
    })
    .await;
    let gone = removed.elapsed();
    eprintln!("closed after the Remove: partner stream {closed:?}, internal stream {gone:?}");
    assert!(
        gone < Duration::from_secs(1),
        "the stream to the internal server closed {gone:?} after the Remove"
    );
    assert_eq!(
        wait_refusals(&gw, "external", "partner_removed", 1).await,
        1
    );
    // Its connection was closed: reading now drains what the gateway wrote, then ends.
    let mut rest = Vec::new();
    tokio::time::timeout(T, unread.read_to_end(&mut rest))
        .await
        .expect("the internal server's connection stays open")
        .ok();
    writer.abort();
    gw.shutdown(Duration::from_secs(5)).await;
}
