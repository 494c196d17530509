//! Hostile peers against a running gateway: dialback used as an amplifier, endless SASL
//! attempts, stream headers that would forge log lines, strangers on the internal listener, and
//! the pre-authentication limits. Each closes only the offending connection.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use fedgate_model::TlsNegotiation as Tls;
use fedgate_xmpp::negotiation::{self, DialbackType};
use fedgate_xmpp::{Event, StreamErrorCondition as C, StreamHeader, ns};
use tokio::net::TcpListener;

/// A partner's authoritative server that counts the connections it gets and answers each
/// `db:verify` after `delay` (valid for keys made with [`PARTNER_SECRET`]).
async fn counting_authoritative_server(delay: Duration) -> (SocketAddr, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut p = Peer::new(Box::new(tcp));
                let h = p.header().await;
                let mut out = Vec::new();
                StreamHeader::responding(h.to.clone().unwrap_or_default(), h.from, "auth-c", true)
                    .write_to(&mut out);
                negotiation::stream_features(negotiation::TlsOffer::None, false, true)
                    .write_to(&mut out);
                p.send(out).await;
                while let Ok(Event::Element { element, .. }) = p.next().await {
                    if element.is("verify", ns::DIALBACK) {
                        tokio::time::sleep(delay).await;
                        let (from, to, id) = (
                            element.attr("from").unwrap_or(""),
                            element.attr("to").unwrap_or(""),
                            element.attr("id").unwrap_or(""),
                        );
                        let ok = fedgate_gateway::dialback::check_key(
                            PARTNER_SECRET,
                            from,
                            to,
                            id,
                            &element.text(),
                        );
                        let v = if ok {
                            DialbackType::Valid
                        } else {
                            DialbackType::Invalid
                        };
                        p.send_el(&negotiation::db_verify_response(to, from, id, &v))
                            .await;
                    }
                }
            });
        }
    });
    (addr, count)
}

async fn metrics(gw: &fedgate_gateway::Gateway) -> String {
    scrape(gw).await
}

#[tokio::test]
async fn two_hundred_dialback_requests_on_one_stream_cause_at_most_one_verification() {
    let dir = tempfile::tempdir().unwrap();
    let (auth, connections) = counting_authoritative_server(Duration::from_millis(300)).await;
    add_partner(
        open_store(dir.path()).as_ref(),
        "partner.example",
        Tls::Optional,
        fedgate_model::SaslNegotiation::NotSupported,
        true,
        Some(auth),
    );
    let (gw, mut stanzas) = start(dir.path(), "").await;
    let mut good = dialback_peer(&gw).await;
    assert_eq!(
        connections.load(Ordering::SeqCst),
        1,
        "the good stream's verification"
    );

    let mut attacker = Peer::connect(gw.external_addr).await;
    attacker.open("partner.example", "corp.example").await;
    let mut flood = Vec::new();
    for _ in 0..200 {
        negotiation::db_result_request("partner.example", "corp.example", "00ff")
            .write_to(&mut flood);
    }
    attacker.send(flood).await;
    let e = attacker.stream_error().await;
    assert_eq!(e.condition, C::NotAuthorized, "{e:?}");
    // Once no verification is in flight, none can still reach the authoritative server.
    wait_until("no dialback verification is in flight", || {
        gw.shared.dialback_slots.in_flight() == 0
    })
    .await;
    let attack = connections.load(Ordering::SeqCst) - 1;
    assert!(
        attack <= 1,
        "{attack} verification connections for one stream's flood"
    );
    let m = metrics(&gw).await;
    assert!(m.contains("reason=\"auth_failures\"} 1"), "{m}");
    assert!(m.contains("reason=\"dialback_duplicate\""), "{m}");

    // The good partner stream is still served.
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
async fn dialback_for_a_domain_that_may_not_use_it_does_no_network_work() {
    let dir = tempfile::tempdir().unwrap();
    let (auth, connections) = counting_authoritative_server(Duration::ZERO).await;
    // Listed, but dialback is not allowed: refused before any DNS or connection.
    add_partner(
        open_store(dir.path()).as_ref(),
        "partner.example",
        Tls::Required,
        fedgate_model::SaslNegotiation::Required,
        false,
        Some(auth),
    );
    let (gw, _stanzas) = start(dir.path(), "").await;
    let mut p = Peer::connect(gw.external_addr).await;
    p.send(br#"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' from='partner.example' to='corp.example' version='1.0'>"#).await;
    p.header().await;
    p.element().await;
    p.send_el(&negotiation::db_result_request(
        "partner.example",
        "corp.example",
        "00ff",
    ))
    .await;
    let e = p.stream_error().await;
    assert_eq!(e.condition, C::PolicyViolation, "{e:?}");
    assert_eq!(connections.load(Ordering::SeqCst), 0);
    gw.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn repeated_sasl_failures_close_the_stream() {
    let dir = tempfile::tempdir().unwrap();
    let (gw, _stanzas) = start_with_dialback_partner(dir.path(), Tls::Optional, "").await;
    let mut p = Peer::connect(gw.external_addr).await;
    p.open("partner.example", "corp.example").await;
    for attempt in 1..=fedgate_model::enforce::MAX_AUTH_FAILURES {
        p.send(b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGEAYg==</auth>")
            .await;
        let r = p.element().await;
        assert!(r.is("failure", ns::SASL), "attempt {attempt}: {r:?}");
    }
    let e = p.stream_error().await;
    assert_eq!(e.condition, C::NotAuthorized, "{e:?}");
    gw.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_header_that_would_forge_a_log_line_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (gw, _stanzas) = start_with_dialback_partner(dir.path(), Tls::Optional, "").await;
    let mut p = Peer::connect(gw.external_addr).await;
    p.send(br#"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' from='partner.example&#10;2026-12-01T00:00:00Z  INFO admin signed in' to='corp.example' version='1.0'>"#).await;
    let e = p.stream_error().await;
    assert_eq!(e.condition, C::InvalidFrom, "{e:?}");
    assert!(!e.text.contains('\n'), "{:?}", e.text);
    gw.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn the_internal_listener_refuses_addresses_that_are_no_internal_server() {
    let dir = tempfile::tempdir().unwrap();
    let (internal, gw_tx, _stanzas) = internal_server().await;
    let mut cfg = config(dir.path(), internal, "");
    cfg.internal_sources =
        fedgate_gateway::config::InternalSources::Networks(vec!["192.0.2.0/24".parse().unwrap()]);
    let gw = common::start_gateway(cfg).await.unwrap();
    gw_tx.send(gw.internal_addr).unwrap();
    let mut p = Peer::connect(gw.internal_addr).await;
    p.send(br#"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' from='corp.example' to='partner.example' version='1.0'>"#).await;
    // Closed at once, without a word (not even a stream header).
    let r = p.next().await;
    assert!(r.is_err(), "{r:?}");
    let m = metrics(&gw).await;
    assert!(
        m.contains("side=\"internal\",reason=\"source_not_allowed\"} 1"),
        "{m}"
    );
    gw.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn unauthenticated_streams_are_capped_in_all() {
    let dir = tempfile::tempdir().unwrap();
    let (internal, gw_tx, _stanzas) = internal_server().await;
    add_partner(
        open_store(dir.path()).as_ref(),
        "partner.example",
        Tls::Optional,
        fedgate_model::SaslNegotiation::NotSupported,
        true,
        None,
    );
    let mut cfg = config(dir.path(), internal, "");
    cfg.limits.max_unauthenticated_streams = 3;
    let gw = common::start_gateway(cfg).await.unwrap();
    gw_tx.send(gw.internal_addr).unwrap();
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut p = Peer::connect(gw.external_addr).await;
        p.open("partner.example", "corp.example").await;
        held.push(p);
    }
    let mut extra = Peer::connect(gw.external_addr).await;
    expect_condition(&mut extra, C::ResourceConstraint).await;
    // Places come back when connections end.
    drop(held.pop());
    let deadline = tokio::time::Instant::now() + T;
    while gw.shared.pre_auth.total() > 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the place was not given back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut again = Peer::connect(gw.external_addr).await;
    again.open("partner.example", "corp.example").await;
    let m = metrics(&gw).await;
    assert!(m.contains("reason=\"unauthenticated_streams\"} 1"), "{m}");
    gw.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn the_queue_of_a_stream_being_set_up_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    // An internal server that accepts TCP and never answers: the outbound stream stays in set-up.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = silent.accept().await {
            held.push(tcp);
        }
    });
    let auth = authoritative_server(PARTNER_SECRET).await;
    add_partner(
        open_store(dir.path()).as_ref(),
        "partner.example",
        Tls::Optional,
        fedgate_model::SaslNegotiation::NotSupported,
        true,
        Some(auth),
    );
    let mut cfg = config(dir.path(), silent_addr, "");
    cfg.limits.max_stanza_size = 262_144;
    let gw = common::start_gateway(cfg).await.unwrap();
    let mut p = dialback_peer(&gw).await;
    // 40 stanzas of 200 KiB: 8 MB, twice what a stream being set up may queue.
    let n = 40;
    let mut burst = Vec::new();
    for i in 0..n {
        let body = format!("m{i} {}", "x".repeat(200 * 1024));
        message("alice@partner.example", "bob@corp.example", &body).write_to(&mut burst);
    }
    let writer = tokio::spawn(async move {
        p.send(burst).await;
        p
    });
    let refused = |m: &str| {
        m.lines()
            .find(|l| l.contains("side=\"internal\",reason=\"setup_queue_full\""))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0)
    };
    // A received stanza holds its bytes as received (its wire form, forwarded as is); a body
    // that needs no decoding is a slice of them: about its body.
    let per = 200 * 1024;
    let fits = fedgate_gateway::outbound::SETUP_QUEUE_BYTES / per;
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let m = metrics(&gw).await;
        let got = refused(&m);
        // A stanza's heap size is a little over its body, so slightly fewer than `fits` wait.
        if got >= n - fits && got <= n - fits + 2 && writer.is_finished() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{got} refused, want about {}:\n{m}",
            n - fits
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    hold.abort();
    gw.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_flood_of_bounce_provoking_stanzas_gets_a_bounded_number_of_answers() {
    let dir = tempfile::tempdir().unwrap();
    let (gw, _stanzas) = start_with_dialback_partner(dir.path(), Tls::Optional, "").await;
    // Nobody may federate: every message to a local user is refused with a bounce.
    set_global_xmpp_access(open_store(dir.path()).as_ref(), false);
    let store = open_store(dir.path());
    let want = store.revision().unwrap();
    let deadline = tokio::time::Instant::now() + T;
    while gw.shared.snapshot().revision < want {
        assert!(
            tokio::time::Instant::now() < deadline,
            "policy not reloaded"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut p = dialback_peer(&gw).await;
    let n = 1000u64;
    let started = std::time::Instant::now();
    let mut flood = Vec::new();
    for i in 0..n {
        message(
            "alice@partner.example",
            "bob@corp.example",
            &format!("m{i}"),
        )
        .write_to(&mut flood);
    }
    p.send(flood).await;
    let count = |m: &str, what: &str| {
        m.lines()
            .find(|l| l.starts_with(what))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let deadline = tokio::time::Instant::now() + T;
    let (bounced, limited) = loop {
        let m = metrics(&gw).await;
        let limited = count(
            &m,
            "fedgate_refusals_total{side=\"external\",reason=\"bounce_rate_limited\"}",
        );
        let refused = count(
            &m,
            "fedgate_refusals_total{side=\"external\",reason=\"user_not_enabled\"}",
        );
        if refused == n {
            break (count(&m, "fedgate_stanzas_bounced_total"), limited);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{refused} of {n} refused:\n{m}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let budget = fedgate_gateway::access::BounceBudget::BURST
        + fedgate_gateway::access::BounceBudget::PER_SECOND * started.elapsed().as_secs_f64();
    assert!(
        bounced as f64 <= budget + 1.0,
        "{bounced} bounces, budget {budget}"
    );
    assert_eq!(
        bounced + limited,
        n,
        "each refused stanza is answered or counted as dropped"
    );
    gw.shutdown(Duration::from_secs(5)).await;
}
