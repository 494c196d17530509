//! Dialback requests beyond a domain's verification slots wait in its bounded queue: a partner
//! that opens many streams at once has them all authenticated; a flood of requests for one
//! domain causes at most slots + queue callbacks to its authoritative server, the rest refused
//! `dialback_busy`; a waiting request whose stream closes leaves the queue. Concurrent requests
//! for one domain pair share one callback connection, each key still verified on its own.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use fedgate_gateway::admission::{VERIFICATIONS_PER_DOMAIN, WAITING_PER_DOMAIN};
use fedgate_gateway::dialback::{check_key, dialback_key};
use fedgate_model::TlsNegotiation as Tls;
use fedgate_xmpp::negotiation::{self, DialbackType};
use fedgate_xmpp::{Event, StanzaErrorCondition, StreamHeader, ns};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// What the fake authoritative server got: connections and `db:verify` elements.
#[derive(Default)]
struct Seen {
    connections: AtomicUsize,
    verifies: AtomicUsize,
}

impl Seen {
    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
    fn verifies(&self) -> usize {
        self.verifies.load(Ordering::SeqCst)
    }
}

/// An authoritative server (keys made with [`PARTNER_SECRET`] are valid) that counts the
/// connections and `db:verify` it gets (as they arrive) and answers them once `gate` is open,
/// each after `delay`.
async fn authoritative(delay: Duration, gate: watch::Receiver<bool>) -> (SocketAddr, Arc<Seen>) {
    authoritative_closing(delay, gate, false).await
}

/// [`authoritative`], closing each connection after its first answer when `close_after_one`.
async fn authoritative_closing(
    delay: Duration,
    gate: watch::Receiver<bool>,
    close_after_one: bool,
) -> (SocketAddr, Arc<Seen>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let counts = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            counts.connections.fetch_add(1, Ordering::SeqCst);
            let (mut gate, counts) = (gate.clone(), counts.clone());
            tokio::spawn(async move {
                let mut p = Peer::new(Box::new(tcp));
                let h = p.header().await;
                let mut out = Vec::new();
                StreamHeader::responding(h.to.clone().unwrap_or_default(), h.from, "auth-q", true)
                    .write_to(&mut out);
                negotiation::stream_features(negotiation::TlsOffer::None, false, true)
                    .write_to(&mut out);
                p.send(out).await;
                let mut backlog = Vec::new();
                'conn: loop {
                    tokio::select! {
                        ev = p.next() => match ev {
                            Ok(Event::Element { element, .. }) => {
                                if element.is("verify", ns::DIALBACK) {
                                    counts.verifies.fetch_add(1, Ordering::SeqCst);
                                    backlog.push(element);
                                }
                            }
                            Ok(_) => {}
                            Err(_) => break,
                        },
                        _ = async { gate.wait_for(|open| *open).await.is_ok() }, if !backlog.is_empty() => {
                            for element in std::mem::take(&mut backlog) {
                                tokio::time::sleep(delay).await;
                                let (from, to, id) = (
                                    element.attr("from").unwrap_or(""),
                                    element.attr("to").unwrap_or(""),
                                    element.attr("id").unwrap_or(""),
                                );
                                let v = if check_key(PARTNER_SECRET, from, to, id, &element.text()) {
                                    DialbackType::Valid
                                } else {
                                    DialbackType::Invalid
                                };
                                p.send_el(&negotiation::db_verify_response(to, from, id, &v))
                                    .await;
                                if close_after_one {
                                    break 'conn;
                                }
                            }
                        }
                    }
                }
            });
        }
    });
    (addr, seen)
}

/// A gateway whose partner `domain` (dialback on) is verified by `auth`, with room for many
/// unauthenticated connections from the loopback address.
async fn gateway(
    dir: &std::path::Path,
    domain: &str,
    auth: SocketAddr,
) -> (
    fedgate_gateway::Gateway,
    tokio::sync::mpsc::UnboundedReceiver<fedgate_xmpp::Element>,
) {
    add_partner(
        open_store(dir).as_ref(),
        domain,
        Tls::Optional,
        fedgate_model::SaslNegotiation::NotSupported,
        true,
        Some(auth),
    );
    let (internal, gw_tx, stanzas) = internal_server().await;
    let mut cfg = config(dir, internal, "");
    cfg.limits.connections_per_ip_before_auth = 500;
    cfg.limits.connections_per_block_before_auth = 500;
    let gw = common::start_gateway(cfg).await.unwrap();
    gw_tx.send(gw.internal_addr).unwrap();
    (gw, stanzas)
}

/// `n` streams from `from`, opened (header and features read) before any dialback request.
async fn open_streams(gw: &fedgate_gateway::Gateway, from: &str, n: usize) -> Vec<(Peer, String)> {
    let mut peers = Vec::new();
    for _ in 0..n {
        let mut p = Peer::connect(gw.external_addr).await;
        let (h, _) = p.open(from, "corp.example").await;
        peers.push((p, h.id.expect("stream id")));
    }
    peers
}

/// Send each stream's dialback request, its key made with `secret`.
async fn request_all(peers: &mut [(Peer, String)], from: &str, secret: &str) {
    for (p, id) in peers.iter_mut() {
        let key = dialback_key(secret, "corp.example", from, id);
        p.send_el(&negotiation::db_result_request(from, "corp.example", &key))
            .await;
    }
}

fn slots_idle(gw: &fedgate_gateway::Gateway) -> bool {
    gw.shared.dialback_slots.in_flight() == 0 && gw.shared.dialback_slots.waiting() == 0
}

#[tokio::test]
async fn one_partner_opens_twenty_streams_at_once_and_all_authenticate() {
    let dir = tempfile::tempdir().unwrap();
    let (_open, gate) = watch::channel(true);
    let (auth, seen) = authoritative(Duration::from_millis(50), gate).await;
    let (gw, mut stanzas) = gateway(dir.path(), "partner.example", auth).await;
    let mut peers = open_streams(&gw, "partner.example", 20).await;
    request_all(&mut peers, "partner.example", PARTNER_SECRET).await;
    // More than the domain's slots at once: the rest wait rather than being refused.
    wait_until("requests wait for a slot", || {
        gw.shared.dialback_slots.waiting() > 0
    })
    .await;
    assert!(gw.shared.dialback_slots.in_flight() <= VERIFICATIONS_PER_DOMAIN);
    for (p, _) in peers.iter_mut() {
        expect_valid(p).await;
    }
    wait_until("no verification in flight or waiting", || slots_idle(&gw)).await;
    assert_eq!(refusals(&gw, "external", "dialback_busy").await, 0);
    // Every key verified on its own, all on one shared callback connection.
    assert_eq!(seen.verifies(), 20);
    assert_eq!(seen.connections(), 1, "one callback for the domain pair");
    // Each stream is authenticated: a stanza on the last one is relayed.
    let (last, _) = peers.last_mut().unwrap();
    last.send_el(&message("alice@partner.example", "bob@corp.example", "hi"))
        .await;
    let got = tokio::time::timeout(T, stanzas.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.attr("to"), Some("bob@corp.example"));
    gw.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_flood_of_two_hundred_requests_causes_at_most_the_bounded_callbacks() {
    let dir = tempfile::tempdir().unwrap();
    let (open, gate) = watch::channel(false);
    let (auth, seen) = authoritative(Duration::ZERO, gate).await;
    let (gw, _stanzas) = gateway(dir.path(), "stranger.example", auth).await;
    let mut peers = open_streams(&gw, "stranger.example", 200).await;
    // Keys its authoritative server will not vouch for.
    request_all(
        &mut peers,
        "stranger.example",
        "not-the-secret-of-anyone-here",
    )
    .await;
    let bound = VERIFICATIONS_PER_DOMAIN as usize + WAITING_PER_DOMAIN;
    let excess = (200 - bound) as u64;
    // While the first verifications hang: the slots are taken, the queue full, the rest refused.
    assert_eq!(
        wait_refusals(&gw, "external", "dialback_busy", excess).await,
        excess
    );
    wait_until(
        "the slots' verifications reached the authoritative server",
        || seen.verifies() == VERIFICATIONS_PER_DOMAIN as usize,
    )
    .await;
    assert_eq!(seen.connections(), 1, "the slots share one callback");
    assert_eq!(gw.shared.dialback_slots.waiting(), WAITING_PER_DOMAIN);
    open.send(true).unwrap();
    let (mut busy, mut invalid) = (0, 0);
    for (p, _) in peers.iter_mut() {
        let r = p.element().await;
        assert!(r.is("result", ns::DIALBACK), "{r:?}");
        match negotiation::dialback_type(&r) {
            Some(DialbackType::Invalid) => invalid += 1,
            Some(DialbackType::Error(e)) => {
                assert_eq!(
                    e.condition,
                    StanzaErrorCondition::ResourceConstraint,
                    "{e:?}"
                );
                busy += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((invalid, busy), (bound, 200 - bound));
    wait_until("no verification in flight or waiting", || slots_idle(&gw)).await;
    assert_eq!(seen.verifies(), bound, "one db:verify per admitted request");
    // Waiters take over the slots as answers come, on the connection still open (a second
    // only if the first went idle for LINGER in between).
    let callbacks = seen.connections();
    assert!(
        callbacks <= 2,
        "{callbacks} callback connections for 200 requests"
    );
    gw.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_waiting_request_whose_stream_closes_leaves_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let (open, gate) = watch::channel(false);
    let (auth, seen) = authoritative(Duration::ZERO, gate).await;
    let (gw, _stanzas) = gateway(dir.path(), "partner.example", auth).await;
    let n = VERIFICATIONS_PER_DOMAIN as usize;
    let mut holding = open_streams(&gw, "partner.example", n).await;
    request_all(&mut holding, "partner.example", PARTNER_SECRET).await;
    wait_until("the slots are taken", || seen.verifies() == n).await;
    let mut waiting = open_streams(&gw, "partner.example", 2).await;
    request_all(&mut waiting, "partner.example", PARTNER_SECRET).await;
    wait_until("two requests wait", || {
        gw.shared.dialback_slots.waiting() == 2
    })
    .await;
    // The first waiter's peer goes away: its place in the queue is given up.
    let (gone, _) = waiting.remove(0);
    drop(gone);
    wait_until("the closed stream's request left the queue", || {
        gw.shared.dialback_slots.waiting() == 1
    })
    .await;
    open.send(true).unwrap();
    for (p, _) in holding.iter_mut().chain(waiting.iter_mut()) {
        expect_valid(p).await;
    }
    wait_until("no verification in flight or waiting", || slots_idle(&gw)).await;
    assert_eq!(
        seen.verifies(),
        n + 1,
        "no verification for the request whose stream closed"
    );
    assert_eq!(seen.connections(), 1);
    gw.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn an_authoritative_server_that_closes_after_each_answer_still_verifies_every_key() {
    let dir = tempfile::tempdir().unwrap();
    let (_open, gate) = watch::channel(true);
    let (auth, seen) = authoritative_closing(Duration::from_millis(20), gate, true).await;
    let (gw, _stanzas) = gateway(dir.path(), "partner.example", auth).await;
    let mut peers = open_streams(&gw, "partner.example", 8).await;
    request_all(&mut peers, "partner.example", PARTNER_SECRET).await;
    for (p, _) in peers.iter_mut() {
        expect_valid(p).await;
    }
    wait_until("no verification in flight or waiting", || slots_idle(&gw)).await;
    assert!(
        seen.connections() >= 2,
        "the requests left went on a new connection"
    );
    gw.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn streams_that_close_and_reopen_cannot_pile_questions_on_the_authoritative_server() {
    let dir = tempfile::tempdir().unwrap();
    let (open, gate) = watch::channel(false);
    let (auth, seen) = authoritative(Duration::ZERO, gate).await;
    let (gw, _stanzas) = gateway(dir.path(), "partner.example", auth).await;
    let n = VERIFICATIONS_PER_DOMAIN as usize;
    let mut first = open_streams(&gw, "partner.example", n).await;
    request_all(&mut first, "partner.example", PARTNER_SECRET).await;
    wait_until("the first questions are out", || seen.verifies() == n).await;
    // Their streams close: the slots are free, the questions still out.
    drop(first);
    wait_until("the slots are free", || {
        gw.shared.dialback_slots.in_flight() == 0
    })
    .await;
    let mut second = open_streams(&gw, "partner.example", n).await;
    request_all(&mut second, "partner.example", PARTNER_SECRET).await;
    wait_until("the second requests hold the slots", || {
        gw.shared.dialback_slots.in_flight() == n as u32
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        seen.verifies(),
        n,
        "no more questions while {n} are unanswered"
    );
    open.send(true).unwrap();
    for (p, _) in second.iter_mut() {
        expect_valid(p).await;
    }
    assert_eq!(seen.verifies(), 2 * n);
    assert_eq!(seen.connections(), 1);
    wait_until("no verification in flight or waiting", || slots_idle(&gw)).await;
    gw.shutdown(Duration::from_secs(5)).await;
}
