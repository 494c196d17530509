//! Outbound streams judge the partner's certificate: for a partner whose settings allow only
//! SASL EXTERNAL, a certificate from an untrusted issuer, or a trusted one for another name,
//! means no stream at all (the stanza is bounced, nothing is sent to the partner); a valid one
//! carries the stanza. The fake partner server offers STARTTLS and SASL EXTERNAL and reports
//! what the gateway sent it.

mod common;

use std::time::Duration;

use common::*;
use fedgate_model::{SaslNegotiation as S, TlsNegotiation as Tls};
use fedgate_xmpp::{Element, ns};

/// A gateway for corp.example with a certificate from `trusted` (which it also trusts for
/// partners), partner.example (TLS and SASL Required, no dialback) served by a fake partner
/// presenting `partner_cert`. Sends one message from the internal side and returns what the
/// internal server got back (if anything within the deadline) and what the partner saw.
async fn send_through(
    trusted: &Ca,
    partner_cert: (String, String),
) -> (Option<Element>, Vec<Seen>) {
    let dir = tempfile::tempdir().unwrap();
    let (corp_cert, corp_key) = leaf_pem(trusted, "corp.example");
    std::fs::write(dir.path().join("ca.pem"), &trusted.pem).unwrap();
    std::fs::write(dir.path().join("corp.pem"), corp_cert).unwrap();
    std::fs::write(dir.path().join("corp.key"), corp_key).unwrap();
    let (partner_addr, mut seen) = tls_partner(partner_cert.0, partner_cert.1).await;
    add_partner(
        open_store(dir.path()).as_ref(),
        "partner.example",
        Tls::Required,
        S::Required,
        false,
        Some(partner_addr),
    );
    let (internal, gw_tx, mut internal_stanzas) = internal_server().await;
    let text = format!(
        "store = \"sqlite:fedgate.db\"\nmetrics_listen = \"127.0.0.1:0\"\n[internal_listener]\nlisten = \"127.0.0.1:0\"\n\
         [external_listener]\nlisten = \"127.0.0.1:0\"\n[[hosted_domain]]\ndomain = \"corp.example\"\n\
         internal_server = \"{internal}\"\ncertificate = \"corp.pem\"\nkey = \"corp.key\"\n\
         [tls]\nsystem_roots = false\nca_files = [\"ca.pem\"]\n"
    );
    let path = dir.path().join("fedgate.toml");
    std::fs::write(&path, text).unwrap();
    let gw = common::start_gateway(fedgate_gateway::Config::load(&path).unwrap())
        .await
        .unwrap();
    gw_tx.send(gw.internal_addr).unwrap();
    let mut p = Peer::connect(gw.internal_addr).await;
    p.dialback("corp.example", "partner.example", INTERNAL_SECRET)
        .await
        .unwrap();
    p.send_el(
        &message(
            "bob@corp.example/x",
            "alice@partner.example",
            "secret plans",
        )
        .with_attr("id", "c1"),
    )
    .await;
    // Either the partner gets the stanza or the internal server gets a bounce.
    let mut log = Vec::new();
    let mut bounce = None;
    let deadline = tokio::time::Instant::now() + T;
    loop {
        tokio::select! {
            s = seen.recv() => match s {
                Some(s) => {
                    let done = matches!(s, Seen::Stanza(_));
                    log.push(s);
                    if done { break; }
                }
                None => break,
            },
            b = internal_stanzas.recv() => { bounce = b; break; }
            _ = tokio::time::sleep_until(deadline) => break,
        }
    }
    while let Ok(s) = seen.try_recv() {
        log.push(s);
    }
    let m = scrape(&gw).await;
    if bounce.is_some() {
        assert_eq!(
            sample(&m, "fedgate_stanzas_bounced_total", &[]),
            Some(1),
            "{m}"
        );
    }
    gw.shutdown(Duration::from_secs(5)).await;
    (bounce, log)
}

fn assert_bounced(bounce: Option<Element>, seen: &[Seen], what: &str) {
    let b = bounce.unwrap_or_else(|| panic!("{what}: no bounce; the partner saw {seen:?}"));
    assert_eq!(
        (b.attr("type"), b.attr("id")),
        (Some("error"), Some("c1")),
        "{b:?}"
    );
    assert!(
        b.child("error", ns::SERVER)
            .and_then(|e| e.child("remote-server-not-found", ns::STANZA_ERRORS))
            .is_some(),
        "{what}: {b:?}"
    );
    assert!(
        seen.is_empty(),
        "{what}: the gateway authenticated or sent to the partner: {seen:?}"
    );
}

#[tokio::test]
async fn a_valid_partner_certificate_carries_the_stanza_over_sasl_external() {
    let trusted = ca("trusted CA");
    let (bounce, seen) = send_through(&trusted, leaf_pem(&trusted, "partner.example")).await;
    assert!(bounce.is_none(), "bounced: {bounce:?}");
    assert_eq!(
        seen,
        [Seen::SaslAuth, Seen::Stanza("alice@partner.example".into())]
    );
}

#[tokio::test]
async fn a_partner_certificate_from_an_untrusted_issuer_gets_no_stream() {
    let trusted = ca("trusted CA");
    let other = ca("some other CA");
    let (bounce, seen) = send_through(&trusted, leaf_pem(&other, "partner.example")).await;
    assert_bounced(bounce, &seen, "untrusted issuer");
}

#[tokio::test]
async fn a_trusted_partner_certificate_for_another_name_gets_no_stream() {
    let trusted = ca("trusted CA");
    let (bounce, seen) = send_through(&trusted, leaf_pem(&trusted, "elsewhere.example")).await;
    assert_bounced(bounce, &seen, "name mismatch");
}
