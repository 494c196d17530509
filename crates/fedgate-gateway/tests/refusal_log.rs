//! The refusal log under a flood: before authentication a stranger is its source address, not
//! the domain it claims, so one address claiming a new domain on every connection writes as few
//! lines as one claiming the same domain; the rest are counted as left out.

mod common;

use std::time::Duration;

use common::*;
use fedgate_model::TlsNegotiation as Tls;
use fedgate_xmpp::StreamErrorCondition as C;

#[tokio::test]
async fn one_address_claiming_two_hundred_domains_writes_a_burst_of_lines() {
    let (log, _guard) = Log::capture();
    let dir = tempfile::tempdir().unwrap();
    let (gw, _stanzas) = start_with_dialback_partner(dir.path(), Tls::Optional, "").await;
    for i in 0..200 {
        let mut p = Peer::connect(gw.external_addr).await;
        let header = format!(
            "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' from='stranger{i}.example' to='corp.example' version='1.0'>"
        );
        p.send(header).await;
        expect_condition(&mut p, C::PolicyViolation).await;
    }
    wait_refusals(&gw, "external", "not_listed", 200).await;
    let lines = log.lines_with(&["refused:", "not_listed"]);
    assert_eq!(
        lines.len(),
        fedgate_gateway::log_limit::RefusalLog::BURST as usize,
        "{lines:#?}"
    );
    // Each line names the address and the domain claimed.
    assert!(
        lines
            .iter()
            .all(|l| l.contains("addr=127.0.0.1") && l.contains("claimed=stranger")),
        "{lines:#?}"
    );
    let m = scrape(&gw).await;
    let suppressed = sample(
        &m,
        "fedgate_refusal_log_lines_total",
        &[("outcome", "suppressed")],
    );
    assert_eq!(suppressed, Some(195), "{m}");

    // An authenticated partner's refusals are its own: the strangers did not use up its lines.
    let mut partner = dialback_peer(&gw).await;
    partner
        .send_el(&message(
            "bob@partner.example",
            "alice@elsewhere.example",
            "misaddressed",
        ))
        .await;
    expect_condition(&mut partner, C::HostUnknown).await;
    let lines = log.lines_with(&["refused:", "peer=partner.example"]);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    gw.shutdown(Duration::from_secs(5)).await;
}
