//! Outbound failover across a partner's SRV targets (RFC 2782 order, issue 13 item 5): the
//! gateway asks a fake DNS server (`[dns] servers`), a target that refuses the connection (a
//! closed port) is logged once and the next one in the plan is tried, and the stanza still
//! reaches the partner's server.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use common::dns::*;
use common::*;
use fedgate_xmpp::ns;
use hickory_resolver::proto::rr::RecordType;

/// A loopback port nobody listens on (bound, then let go).
fn closed_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// The zone of `domain`: `_xmpp-server._tcp` answers `srv` (priority, weight, port, target
/// label), each target label under `domain` is 127.0.0.1, everything else there is empty.
fn zone(
    domain: &'static str,
    srv_records: Vec<(u16, u16, u16, &'static str)>,
) -> impl Fn(&str, RecordType) -> Answer + Send + Sync + 'static {
    move |n: &str, t: RecordType| {
        let service = format!("_xmpp-server._tcp.{domain}");
        if n == service && t == RecordType::SRV {
            return found(
                srv_records
                    .iter()
                    .map(|&(p, w, port, label)| srv(n, p, w, port, &format!("{label}.{domain}")))
                    .collect(),
            );
        }
        let is_target = srv_records
            .iter()
            .any(|&(_, _, _, label)| n == format!("{label}.{domain}"));
        if is_target && t == RecordType::A {
            return found(vec![a(n, Ipv4Addr::LOCALHOST.octets())]);
        }
        if n.ends_with(domain) {
            no_data()
        } else {
            nxdomain()
        }
    }
}

/// A gateway (the fake DNS server its resolver) with `partner.example` (dialback, no proxy:
/// found by SRV) and an internal server stream for corp.example → partner.example.
async fn gateway_with(
    dir: &std::path::Path,
    dns: &FakeDns,
    partner_gw: Option<&tokio::sync::mpsc::UnboundedSender<SocketAddr>>,
) -> (
    fedgate_gateway::Gateway,
    tokio::sync::mpsc::UnboundedReceiver<fedgate_xmpp::Element>,
    Peer,
) {
    add_dialback_partner(open_store(dir).as_ref(), "partner.example", None);
    let (gw, internal_stanzas) = start(dir, &dns.config()).await;
    if let Some(tx) = partner_gw {
        tx.send(gw.external_addr).unwrap();
    }
    let mut p = Peer::connect(gw.internal_addr).await;
    p.dialback("corp.example", "partner.example", INTERNAL_SECRET)
        .await
        .unwrap();
    (gw, internal_stanzas, p)
}

const TRYING_NEXT: &str = "outbound target unreachable; trying the next one";

/// Sends a message to the partner on `p` and waits for the partner's server to get it.
async fn delivered(
    p: &mut Peer,
    partner_stanzas: &mut tokio::sync::mpsc::UnboundedReceiver<fedgate_xmpp::Element>,
    body: &str,
) {
    p.send_el(&message(
        "bob@corp.example/x",
        "alice@partner.example",
        body,
    ))
    .await;
    let got = tokio::time::timeout(T, partner_stanzas.recv())
        .await
        .expect("the partner's server got the stanza in time")
        .expect("a stanza");
    assert_eq!(got.attr("to"), Some("alice@partner.example"));
    assert_eq!(
        got.child("body", ns::SERVER).map(|b| b.text()),
        Some(body.to_owned())
    );
}

#[tokio::test]
async fn equal_priority_the_dead_target_drawn_first_is_skipped() {
    let (log, _guard) = Log::capture();
    let dir = tempfile::tempdir().unwrap();
    let (live, partner_gw, mut partner_stanzas) = receiving_server(PARTNER_SECRET).await;
    let dead = closed_port();
    // Same priority; the dead target's weight makes RFC 2782 draw it first in all but one
    // lookup in 65536 (the weight-0 live target is drawn first only when the pick is 0).
    let dns = FakeDns::start(
        zone(
            "partner.example",
            vec![
                (10, 65535, dead.port(), "dead"),
                (10, 0, live.port(), "live"),
            ],
        ),
        |_| true,
    )
    .await;
    let (gw, _internal, mut p) = gateway_with(dir.path(), &dns, Some(&partner_gw)).await;
    delivered(&mut p, &mut partner_stanzas, "via the other target").await;

    // The dead target was tried and logged once, with its address; the live one never failed.
    let failed = log.lines_with(&[TRYING_NEXT]);
    let dead_lines = log.lines_with(&[&dead.to_string()]);
    assert!(
        failed.len() <= 1 && dead_lines == failed,
        "failures: {failed:#?}\nlog:\n{}",
        log.text()
    );
    if let Some(line) = failed.first() {
        assert!(line.contains("refused"), "{line}");
    } else {
        // The 1-in-65536 draw put the live target first: nothing failed, nothing to skip.
        eprintln!("the live target was drawn first this time");
    }
    assert!(
        log.lines_with(&[&live.to_string(), "unreachable"])
            .is_empty()
    );
    assert_eq!(log.lines_with(&["outbound stream established"]).len(), 1);
    let q = dns.queries();
    assert!(
        q.iter()
            .any(|(n, t)| n == "_xmpp-server._tcp.partner.example" && *t == RecordType::SRV),
        "{q:?}"
    );
    gw.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn the_lower_priority_number_target_is_dead_the_next_priority_delivers() {
    let (log, _guard) = Log::capture();
    let dir = tempfile::tempdir().unwrap();
    let (live, partner_gw, mut partner_stanzas) = receiving_server(PARTNER_SECRET).await;
    let dead = closed_port();
    // Priority 5 comes first whatever the weights (the live one's are much higher).
    let dns = FakeDns::start(
        zone(
            "partner.example",
            vec![
                (10, 65535, live.port(), "live"),
                (5, 1, dead.port(), "dead"),
            ],
        ),
        |_| true,
    )
    .await;
    let (gw, _internal, mut p) = gateway_with(dir.path(), &dns, Some(&partner_gw)).await;
    delivered(&mut p, &mut partner_stanzas, "via priority 10").await;

    // Exactly one failure line, for the dead target, with why; nothing else names it.
    let failed = log.lines_with(&[TRYING_NEXT]);
    assert_eq!(failed.len(), 1, "log:\n{}", log.text());
    assert!(
        failed[0].contains(&format!("target={dead}")) && failed[0].contains("refused"),
        "{}",
        failed[0]
    );
    assert_eq!(log.lines_with(&[&dead.to_string()]), failed);
    assert_eq!(log.lines_with(&["outbound stream established"]).len(), 1);
    gw.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn every_target_dead_each_failure_logged_once_and_the_stanza_bounced() {
    let (log, _guard) = Log::capture();
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (closed_port(), closed_port());
    let dns = FakeDns::start(
        zone(
            "partner.example",
            vec![(5, 0, first.port(), "one"), (10, 0, second.port(), "two")],
        ),
        |_| true,
    )
    .await;
    let (gw, mut internal_stanzas, mut p) = gateway_with(dir.path(), &dns, None).await;
    p.send_el(
        &message("bob@corp.example/x", "alice@partner.example", "lost").with_attr("id", "m1"),
    )
    .await;
    let bounce = tokio::time::timeout(T, internal_stanzas.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(bounce.attr("id"), Some("m1"), "{bounce:?}");
    let err = bounce.child("error", ns::SERVER).expect("error child");
    assert!(
        err.child("remote-server-not-found", ns::STANZA_ERRORS)
            .is_some(),
        "{bounce:?}"
    );
    // The first in the failover line, the last in the line of the failed stream: once each.
    let first_lines = log.lines_with(&[&first.to_string()]);
    assert_eq!(first_lines.len(), 1, "log:\n{}", log.text());
    assert!(first_lines[0].contains(TRYING_NEXT), "{}", first_lines[0]);
    let second_lines = log.lines_with(&[&second.to_string()]);
    assert_eq!(second_lines.len(), 1, "log:\n{}", log.text());
    assert!(
        second_lines[0].contains("outbound stream failed"),
        "{}",
        second_lines[0]
    );
    gw.shutdown(Duration::from_secs(5)).await;
}
