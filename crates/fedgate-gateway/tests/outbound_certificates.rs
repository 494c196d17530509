//! Outbound streams judge the partner's certificate: for a partner whose settings allow only
//! SASL EXTERNAL, a certificate from an untrusted issuer, or a trusted one for another name,
//! means no stream at all (the stanza is bounced, nothing is sent to the partner); a valid one
//! carries the stanza. The fake partner server offers STARTTLS and SASL EXTERNAL and reports
//! what the gateway sent it.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use fedgate_model::{SaslNegotiation as S, TlsNegotiation as Tls};
use fedgate_xmpp::negotiation::{self, TlsOffer};
use fedgate_xmpp::{Element, Event, StreamHeader, ns};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

struct Ca {
    pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

fn ca(name: &str) -> Ca {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.distinguished_name.push(rcgen::DnType::CommonName, name);
    let cert = p.self_signed(&key).unwrap();
    Ca {
        pem: cert.pem(),
        issuer: rcgen::Issuer::new(p, key),
    }
}

/// A leaf for `domain` issued by `ca`: (certificate PEM, key PEM).
fn leaf_pem(ca: &Ca, domain: &str) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(vec![domain.to_owned()]).unwrap();
    p.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let cert = p.signed_by(&key, &ca.issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// What the fake partner server saw from the gateway.
#[derive(Debug, PartialEq)]
enum Seen {
    SaslAuth,
    Stanza(String),
}

/// A partner server for partner.example: STARTTLS required, then SASL EXTERNAL offered (any
/// attempt succeeds); reports SASL attempts and stanzas.
async fn tls_partner(
    cert_pem: String,
    key_pem: String,
) -> (SocketAddr, mpsc::UnboundedReceiver<Seen>) {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                let mut plain = Peer::from_tcp(tcp);
                let respond = |h: &StreamHeader, id: &str, features: Element| {
                    let mut out = Vec::new();
                    StreamHeader::responding(
                        h.to.clone().unwrap_or_default(),
                        h.from.clone(),
                        id,
                        true,
                    )
                    .write_to(&mut out);
                    features.write_to(&mut out);
                    out
                };
                let h = plain.header().await;
                plain
                    .send(respond(
                        &h,
                        "p-1",
                        negotiation::stream_features(TlsOffer::Required, false, false),
                    ))
                    .await;
                let e = plain.element().await;
                assert!(e.is("starttls", ns::TLS), "{e:?}");
                plain.send_el(&negotiation::proceed()).await;
                let tcp = plain.into_io();
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut p = Peer::new(Box::new(tls));
                let Ok(Event::StreamOpen(h)) = p.next().await else {
                    return;
                };
                p.send(respond(
                    &h,
                    "p-2",
                    negotiation::stream_features(TlsOffer::None, true, false),
                ))
                .await;
                while let Ok(ev) = p.next().await {
                    match ev {
                        Event::Element { element, .. } if element.is("auth", ns::SASL) => {
                            let _ = tx.send(Seen::SaslAuth);
                            p.send_el(&negotiation::sasl_success()).await;
                            p.parser.reset();
                        }
                        Event::StreamOpen(h) => {
                            p.send(respond(
                                &h,
                                "p-3",
                                negotiation::stream_features(TlsOffer::None, false, false),
                            ))
                            .await;
                        }
                        Event::Element { element, .. } if element.is("message", ns::SERVER) => {
                            let _ =
                                tx.send(Seen::Stanza(element.attr("to").unwrap_or("").to_owned()));
                        }
                        _ => {}
                    }
                }
            });
        }
    });
    (addr, rx)
}

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
    let gw = fedgate_gateway::Gateway::start(fedgate_gateway::Config::load(&path).unwrap())
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
