//! Issue 29: a remote that refuses our certificate for SASL EXTERNAL (as ejabberd before 25.07
//! refuses a serverAuth-only certificate with `<not-authorized/>`), a partner or an internal
//! server. Where the settings allow dialback, the stanza still arrives by dialback, which the
//! fake remote really verifies (it asks the gateway's listener with `db:verify`, as a real server
//! dials back); otherwise the bounce says why and `/metrics` counts the refusal. The log names
//! the method and the reason.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use common::*;
use fedgate_model::{SaslNegotiation as S, TlsNegotiation as Tls};
use fedgate_xmpp::negotiation::{self, DialbackType, SaslCondition, TlsOffer};
use fedgate_xmpp::{Element, Event, StreamHeader, ns};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// A serverAuth-only leaf for `domain` (as public CAs issue them since 2026): (cert, key) PEM.
fn server_auth_leaf(ca: &Ca, domain: &str) -> (String, String) {
    leaf_pem_with(ca, domain, |p| {
        p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth]
    })
}

/// What the fake remote server saw, per connection (numbered from 1).
#[derive(Debug, PartialEq)]
enum Seen {
    SaslAuth(u32),
    /// A `db:result` and whether the gateway's listener confirmed its key.
    Dialback(u32, bool),
    Stanza(u32, String),
}

/// How the fake remote behaves after TLS.
#[derive(Clone, Copy)]
struct Remote {
    /// Offer dialback after TLS (the XEP-0220 feature and `xmlns:db`) next to EXTERNAL.
    dialback_after_tls: bool,
    /// End the stream right after the SASL failure (RFC 6120 §6.4.5 allows it).
    close_after_failure: bool,
}

/// A fake XMPP server for one domain: STARTTLS required, then SASL EXTERNAL offered and every
/// attempt refused with `<not-authorized/>` and ejabberd's text; a `db:result` is verified by
/// asking the gateway listener in `verify_at` (`db:verify`) and answered with the verdict.
async fn refusing_server(
    cert: (String, String),
    remote: Remote,
    verify_at: Arc<OnceLock<SocketAddr>>,
) -> (SocketAddr, mpsc::UnboundedReceiver<Seen>) {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert.0.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(cert.1.as_bytes()).unwrap();
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
        let mut n = 0;
        while let Ok((tcp, _)) = l.accept().await {
            n += 1;
            let (acceptor, tx, verify_at) = (acceptor.clone(), tx.clone(), verify_at.clone());
            tokio::spawn(async move {
                let respond = |h: &StreamHeader, id: &str, dialback: bool, features: Element| {
                    let mut out = Vec::new();
                    StreamHeader::responding(
                        h.to.clone().unwrap_or_default(),
                        h.from.clone(),
                        id,
                        dialback,
                    )
                    .write_to(&mut out);
                    features.write_to(&mut out);
                    out
                };
                let mut plain = Peer::from_tcp(tcp);
                let h = plain.header().await;
                plain
                    .send(respond(
                        &h,
                        &format!("pre-{n}"),
                        remote.dialback_after_tls,
                        negotiation::stream_features(TlsOffer::Required, false, false),
                    ))
                    .await;
                let e = plain.element().await;
                assert!(e.is("starttls", ns::TLS), "{e:?}");
                plain.send_el(&negotiation::proceed()).await;
                let Ok(tls) = acceptor.accept(plain.into_io()).await else {
                    return;
                };
                let mut p = Peer::new(Box::new(tls));
                let Ok(Event::StreamOpen(h)) = p.next().await else {
                    return;
                };
                let id = format!("tls-{n}");
                p.send(respond(
                    &h,
                    &id,
                    remote.dialback_after_tls,
                    negotiation::stream_features(TlsOffer::None, true, remote.dialback_after_tls),
                ))
                .await;
                while let Ok(ev) = p.next().await {
                    let Event::Element { element, .. } = ev else {
                        continue;
                    };
                    if element.is("auth", ns::SASL) {
                        let _ = tx.send(Seen::SaslAuth(n));
                        p.send_el(&negotiation::sasl_failure(
                            SaslCondition::NotAuthorized,
                            Some("unsupported certificate purpose"),
                        ))
                        .await;
                        if remote.close_after_failure {
                            p.send(fedgate_xmpp::STREAM_CLOSE).await;
                            return;
                        }
                    } else if element.is("result", ns::DIALBACK) {
                        let from = element.attr("from").unwrap_or("").to_owned();
                        let to = element.attr("to").unwrap_or("").to_owned();
                        // Dial back: ask the authoritative server of `from` (the gateway).
                        let gw = *verify_at.get().expect("the gateway's address");
                        let mut v = Peer::connect(gw).await;
                        v.open(&to, &from).await;
                        v.send_el(&negotiation::db_verify_request(
                            &to,
                            &from,
                            &id,
                            &element.text(),
                        ))
                        .await;
                        let answer = v.element().await;
                        let verdict =
                            negotiation::dialback_type(&answer).unwrap_or(DialbackType::Invalid);
                        let _ = tx.send(Seen::Dialback(n, verdict == DialbackType::Valid));
                        if remote.dialback_after_tls {
                            p.send_el(&negotiation::db_result_response(&to, &from, &verdict))
                                .await;
                        } else {
                            // No `xmlns:db` in our header: the dialback namespace is declared
                            // on the element.
                            let t = if verdict == DialbackType::Valid {
                                "valid"
                            } else {
                                "invalid"
                            };
                            p.send(format!(
                                "<result xmlns='{}' from='{to}' to='{from}' type='{t}'/>",
                                ns::DIALBACK
                            ))
                            .await;
                        }
                    } else if element.is("message", ns::SERVER) {
                        let to = element.attr("to").unwrap_or("").to_owned();
                        let _ = tx.send(Seen::Stanza(n, to));
                    }
                }
            });
        }
    });
    (addr, rx)
}

/// Writes a gateway config for corp.example with a certificate from `ca` (trusted for
/// partners), `extra` appended, and load it.
fn write_config(dir: &std::path::Path, ca: &Ca, internal: SocketAddr, extra: &str) -> Config {
    let (cert, key) = server_auth_leaf(ca, "corp.example");
    std::fs::write(dir.join("ca.pem"), &ca.pem).unwrap();
    std::fs::write(dir.join("corp.pem"), cert).unwrap();
    std::fs::write(dir.join("corp.key"), key).unwrap();
    let text = format!(
        "store = \"sqlite:fedgate.db\"\nmetrics_listen = \"127.0.0.1:0\"\n[internal_listener]\nlisten = \"127.0.0.1:0\"\n\
         [external_listener]\nlisten = \"127.0.0.1:0\"\n[[hosted_domain]]\ndomain = \"corp.example\"\n\
         internal_server = \"{internal}\"\ncertificate = \"corp.pem\"\nkey = \"corp.key\"\n\
         [tls]\nsystem_roots = false\nca_files = [\"ca.pem\"]\n{extra}"
    );
    let path = dir.join("fedgate.toml");
    std::fs::write(&path, text).unwrap();
    Config::load(&path).unwrap()
}

type Config = fedgate_gateway::Config;

/// What became of one message from bob@corp.example to alice@partner.example.
struct Outcome {
    bounce: Option<Element>,
    seen: Vec<Seen>,
    metrics: String,
}

/// A gateway whose partner.example (settings as given) is served by a [`refusing_server`]
/// with a certificate valid for it (so the gateway, with a trusted certificate itself, tries
/// SASL EXTERNAL first); one message is sent from the internal side.
async fn send_to_refusing_partner(tls: Tls, sasl: S, dialback: bool, remote: Remote) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca("issue 29 CA");
    let verify_at = Arc::new(OnceLock::new());
    let (partner_addr, mut seen) = refusing_server(
        server_auth_leaf(&ca, "partner.example"),
        remote,
        verify_at.clone(),
    )
    .await;
    add_partner(
        open_store(dir.path()).as_ref(),
        "partner.example",
        tls,
        sasl,
        dialback,
        Some(partner_addr),
    );
    let (internal, gw_tx, mut internal_stanzas) = internal_server().await;
    let gw = common::start_gateway(write_config(dir.path(), &ca, internal, ""))
        .await
        .unwrap();
    gw_tx.send(gw.internal_addr).unwrap();
    verify_at.set(gw.external_addr).unwrap();
    let mut p = Peer::connect(gw.internal_addr).await;
    p.dialback("corp.example", "partner.example", INTERNAL_SECRET)
        .await
        .unwrap();
    p.send_el(
        &message("bob@corp.example/x", "alice@partner.example", "hello").with_attr("id", "m1"),
    )
    .await;
    let mut log = Vec::new();
    let mut bounce = None;
    let deadline = tokio::time::Instant::now() + T;
    loop {
        tokio::select! {
            s = seen.recv() => match s {
                Some(s) => {
                    let done = matches!(s, Seen::Stanza(..));
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
    let metrics = scrape(&gw).await;
    gw.shutdown(Duration::from_secs(5)).await;
    Outcome {
        bounce,
        seen: log,
        metrics,
    }
}

fn refusals(metrics: &str, side: &str) -> Option<u64> {
    sample(
        metrics,
        "fedgate_refusals_total",
        &[("side", side), ("reason", "sasl_external_refused")],
    )
}

#[tokio::test]
async fn refused_external_goes_on_with_dialback_on_the_same_stream() {
    let (log, _guard) = Log::capture();
    let o = send_to_refusing_partner(
        Tls::Required,
        S::Optional,
        true,
        Remote {
            dialback_after_tls: true,
            close_after_failure: false,
        },
    )
    .await;
    assert!(
        o.bounce.is_none(),
        "bounced: {:?}\n{}",
        o.bounce,
        log.text()
    );
    // One connection: EXTERNAL refused, dialback verified by the partner, then the message.
    assert_eq!(
        o.seen,
        [
            Seen::SaslAuth(1),
            Seen::Dialback(1, true),
            Seen::Stanza(1, "alice@partner.example".into())
        ]
    );
    assert_eq!(refusals(&o.metrics, "external"), Some(1), "{}", o.metrics);
    let refused = log.line("the remote refused our certificate for SASL EXTERNAL");
    for what in [
        "remote=\"partner.example\"",
        "not-authorized",
        "unsupported certificate purpose",
        "Dialback over TLS on the same stream",
        "reason=\"sasl_external_refused\"",
    ] {
        assert!(refused.contains(what), "{what:?} not in {refused}");
    }
    let up = log.line("outbound stream established");
    assert!(
        up.contains("method=Dialback over TLS") && up.contains("unsupported certificate purpose"),
        "{up}"
    );
}

#[tokio::test]
async fn refused_external_goes_on_with_dialback_on_a_new_connection_when_not_offered() {
    let (log, _guard) = Log::capture();
    let o = send_to_refusing_partner(
        Tls::Optional,
        S::Optional,
        true,
        Remote {
            dialback_after_tls: false,
            close_after_failure: false,
        },
    )
    .await;
    assert!(
        o.bounce.is_none(),
        "bounced: {:?}\n{}",
        o.bounce,
        log.text()
    );
    // EXTERNAL on the first connection only; dialback (verified) on the second.
    assert_eq!(
        o.seen,
        [
            Seen::SaslAuth(1),
            Seen::Dialback(2, true),
            Seen::Stanza(2, "alice@partner.example".into())
        ]
    );
    assert_eq!(refusals(&o.metrics, "external"), Some(1), "{}", o.metrics);
    let refused = log.line("the remote refused our certificate for SASL EXTERNAL");
    assert!(
        refused.contains("dialback on a new connection") && refused.contains("not-authorized"),
        "{refused}"
    );
    assert!(
        log.line("outbound stream established")
            .contains("method=Dialback over TLS"),
        "{}",
        log.text()
    );
}

#[tokio::test]
async fn a_remote_that_ends_the_stream_after_refusing_external_gets_dialback_on_a_new_connection() {
    let (log, _guard) = Log::capture();
    let o = send_to_refusing_partner(
        Tls::Required,
        S::Optional,
        true,
        Remote {
            dialback_after_tls: true,
            close_after_failure: true,
        },
    )
    .await;
    assert!(
        o.bounce.is_none(),
        "bounced: {:?}\n{}",
        o.bounce,
        log.text()
    );
    assert_eq!(
        o.seen,
        [
            Seen::SaslAuth(1),
            Seen::Dialback(2, true),
            Seen::Stanza(2, "alice@partner.example".into())
        ]
    );
    assert_eq!(refusals(&o.metrics, "external"), Some(1), "{}", o.metrics);
    let closed = log.line("the remote closed the stream after refusing SASL EXTERNAL");
    assert!(closed.contains("NewConnection"), "{closed}");
}

#[tokio::test]
async fn refused_external_with_sasl_required_bounces_with_the_reason() {
    let (log, _guard) = Log::capture();
    let o = send_to_refusing_partner(
        Tls::Required,
        S::Required,
        true,
        Remote {
            dialback_after_tls: true,
            close_after_failure: false,
        },
    )
    .await;
    let b = o
        .bounce
        .unwrap_or_else(|| panic!("no bounce; the partner saw {:?}", o.seen));
    assert_eq!(
        (b.attr("type"), b.attr("id"), b.attr("to")),
        (Some("error"), Some("m1"), Some("bob@corp.example/x")),
        "{b:?}"
    );
    let error = b.child("error", ns::SERVER).expect("an error");
    assert!(
        error
            .child("remote-server-not-found", ns::STANZA_ERRORS)
            .is_some(),
        "{b:?}"
    );
    let text = error
        .child("text", ns::STANZA_ERRORS)
        .map(|t| t.text())
        .unwrap_or_default();
    assert_eq!(
        text,
        "The partner 'partner.example' refused this gateway's certificate for SASL EXTERNAL \
         (not-authorized); its settings do not allow dialback (SaslNegotiation is Required)."
    );
    // No dialback was tried, nothing was delivered.
    assert_eq!(o.seen, [Seen::SaslAuth(1)]);
    assert_eq!(refusals(&o.metrics, "external"), Some(1), "{}", o.metrics);
    assert_eq!(
        sample(&o.metrics, "fedgate_stanzas_bounced_total", &[]),
        Some(1)
    );
    assert!(
        log.line("the remote refused our certificate for SASL EXTERNAL")
            .contains("none, bouncing"),
        "{}",
        log.text()
    );
    assert!(
        log.line("outbound stream failed")
            .contains("SaslNegotiation is Required"),
        "{}",
        log.text()
    );
}

#[tokio::test]
async fn an_internal_server_refusing_our_certificate_gets_dialback() {
    let (log, _guard) = Log::capture();
    let dir = tempfile::tempdir().unwrap();
    // The internal CA mints the certificates the gateway presents as partner domains (so it
    // tries SASL EXTERNAL towards the internal server) and is the anchor for the internal
    // server's certificate.
    let internal_ca = ca("issue 29 CA");
    std::fs::write(dir.path().join("ica.pem"), &internal_ca.pem).unwrap();
    std::fs::write(dir.path().join("ica.key"), &internal_ca.key_pem).unwrap();
    let verify_at = Arc::new(OnceLock::new());
    let (internal, mut seen) = refusing_server(
        server_auth_leaf(&internal_ca, "corp.example"),
        Remote {
            dialback_after_tls: true,
            close_after_failure: false,
        },
        verify_at.clone(),
    )
    .await;
    let auth = authoritative_server(PARTNER_SECRET).await;
    add_dialback_partner(
        open_store(dir.path()).as_ref(),
        "partner.example",
        Some(auth),
    );
    let partners_ca = ca("issue 29 CA");
    let gw = common::start_gateway(write_config(
        dir.path(),
        &partners_ca,
        internal,
        "[internal_tls]\nca_certificate = \"ica.pem\"\nca_key = \"ica.key\"\n",
    ))
    .await
    .unwrap();
    verify_at.set(gw.internal_addr).unwrap();
    let mut p = dialback_peer(&gw).await;
    p.send_el(&message("alice@partner.example", "bob@corp.example", "hi"))
        .await;
    let mut got = Vec::new();
    while !matches!(got.last(), Some(Seen::Stanza(..))) {
        match tokio::time::timeout(T, seen.recv()).await {
            Ok(Some(s)) => got.push(s),
            other => panic!("{other:?} after {got:?}\n{}", log.text()),
        }
    }
    assert_eq!(
        got,
        [
            Seen::SaslAuth(1),
            Seen::Dialback(1, true),
            Seen::Stanza(1, "bob@corp.example".into())
        ],
        "{}",
        log.text()
    );
    let m = scrape(&gw).await;
    assert_eq!(refusals(&m, "internal"), Some(1), "{m}");
    let refused = log.line("the remote refused our certificate for SASL EXTERNAL");
    for what in [
        "side=internal",
        "remote=\"corp.example\"",
        "unsupported certificate purpose",
        "Dialback over TLS on the same stream",
    ] {
        assert!(refused.contains(what), "{what:?} not in {refused}");
    }
    gw.shutdown(Duration::from_secs(5)).await;
}

/// The other direction: a partner presenting a serverAuth-only certificate as its TLS client
/// certificate is offered SASL EXTERNAL and authenticated by it.
#[tokio::test]
async fn a_partner_with_a_server_auth_only_certificate_authenticates_by_sasl_external() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca("issue 29 CA");
    add_partner(
        open_store(dir.path()).as_ref(),
        "partner.example",
        Tls::Required,
        S::Required,
        false,
        None,
    );
    let (internal, gw_tx, mut stanzas) = internal_server().await;
    let gw = common::start_gateway(write_config(dir.path(), &ca, internal, ""))
        .await
        .unwrap();
    gw_tx.send(gw.internal_addr).unwrap();
    let (cert, key) = server_auth_leaf(&ca, "partner.example");
    let chain = CertificateDer::pem_slice_iter(cert.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    let mut p = Peer::connect(gw.external_addr).await;
    p.open("partner.example", "corp.example").await;
    p.send_el(&negotiation::starttls()).await;
    assert!(p.element().await.is("proceed", ns::TLS));
    p.upgrade_tls("corp.example", Some((chain, key))).await;
    let (_, f) = p.open("partner.example", "corp.example").await;
    let mechanisms = negotiation::Features::from_element(&f)
        .unwrap()
        .sasl_mechanisms;
    assert_eq!(mechanisms, ["EXTERNAL"], "{f:?}");
    p.send_el(&negotiation::sasl_auth_external(Some("partner.example")))
        .await;
    let r = p.element().await;
    assert!(r.is("success", ns::SASL), "{r:?}");
    p.parser.reset();
    p.open("partner.example", "corp.example").await;
    p.send_el(&message("alice@partner.example", "bob@corp.example", "hi"))
        .await;
    let got = tokio::time::timeout(T, stanzas.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.attr("to"), Some("bob@corp.example"));
    gw.shutdown(Duration::from_secs(5)).await;
}
