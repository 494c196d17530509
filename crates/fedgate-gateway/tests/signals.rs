//! `fedgate serve`'s signals, delivered for real (kill(2) to this process, which runs
//! [`fedgate_gateway::serve`]): SIGHUP re-reads the config file, and a new certificate is what
//! a partner sees on s2s STARTTLS; SIGINT closes live streams with `<system-shutdown/>` and
//! serve returns Ok (the binary then exits 0). Its own test binary: the signals go to the whole
//! process.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use fedgate_xmpp::{StreamErrorCondition as C, ns};
use tokio::signal::unix::{SignalKind, signal};

fn write_certificate(dir: &Path, label: &str) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["corp.example".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, label);
    let cert = params.self_signed(&key).unwrap();
    std::fs::write(dir.join("corp.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("corp.key"), key.serialize_pem()).unwrap();
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The common name of the certificate the gateway presents on s2s STARTTLS at `addr`.
async fn starttls_common_name(addr: SocketAddr) -> Option<String> {
    let tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
    let mut p = Peer::from_tcp(tcp);
    p.send(br#"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' to='corp.example' version='1.0'>"#).await;
    p.header().await;
    let f = p.element().await;
    assert!(f.child("starttls", ns::TLS).is_some(), "{f:?}");
    p.send_el(&fedgate_xmpp::negotiation::starttls()).await;
    assert!(p.element().await.is("proceed", ns::TLS));
    let tcp = match p.into_io_tcp() {
        Some(t) => t,
        None => return None,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NoVerify))
        .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from("corp.example").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .ok()?;
    let der = tls.get_ref().1.peer_certificates()?[0].clone();
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    let cn = cert.subject().iter_common_name().next()?.as_str().ok()?;
    Some(cn.to_owned())
}

#[allow(unsafe_code)] // libc::kill
fn kill(sig: libc::c_int) {
    // SAFETY: kill(2) on our own pid with a signal whose handler tokio has installed.
    assert_eq!(unsafe { libc::kill(libc::getpid(), sig) }, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_starttls_certificate_and_sigint_shuts_down_cleanly() {
    // Our own listeners first: from here on the signals are caught, never fatal to the test.
    let mut hup = signal(SignalKind::hangup()).unwrap();
    let mut int = signal(SignalKind::interrupt()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_certificate(dir.path(), "first certificate");
    let auth = authoritative_server(PARTNER_SECRET).await;
    add_partner(
        open_store(dir.path()).as_ref(),
        "partner.example",
        fedgate_model::TlsNegotiation::Optional,
        fedgate_model::SaslNegotiation::Optional,
        true,
        Some(auth),
    );
    let external: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let config = format!(
        "store = \"sqlite:fedgate.db\"\n[internal_listener]\nlisten = \"127.0.0.1:{}\"\n[external_listener]\nlisten = \"{external}\"\n\
         [[hosted_domain]]\ndomain = \"corp.example\"\ninternal_server = \"127.0.0.1:9\"\ncertificate = \"corp.pem\"\nkey = \"corp.key\"\n\
         [tls]\nsystem_roots = false\n",
        free_port()
    );
    let path = dir.path().join("fedgate.toml");
    std::fs::write(&path, &config).unwrap();
    let serve = tokio::spawn(fedgate_gateway::serve(
        fedgate_gateway::Config::load(&path).unwrap(),
    ));
    let deadline = Instant::now() + T;
    let first = loop {
        if let Some(cn) = starttls_common_name(external).await {
            break cn;
        }
        assert!(Instant::now() < deadline, "the gateway did not come up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(first, "first certificate");
    // A live, authenticated partner stream, to see what SIGINT does to it.
    let mut live = Peer::connect(external).await;
    live.dialback("partner.example", "corp.example", PARTNER_SECRET)
        .await
        .unwrap();

    // SIGHUP after replacing the certificate files: new STARTTLS handshakes get the new one.
    // (Sent again until seen: a signal that arrived before serve() installed its handler only
    // reached ours.)
    write_certificate(dir.path(), "second certificate");
    let deadline = Instant::now() + T;
    loop {
        kill(libc::SIGHUP);
        hup.recv().await;
        let seen = tokio::time::timeout(Duration::from_secs(1), async {
            loop {
                if starttls_common_name(external).await.as_deref() == Some("second certificate") {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        if seen.is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "SIGHUP did not bring the new certificate to STARTTLS"
        );
    }
    assert!(!serve.is_finished(), "SIGHUP stopped the gateway");

    // SIGINT: the live stream is closed with <system-shutdown/> and serve returns Ok.
    kill(libc::SIGINT);
    int.recv().await;
    let e = live.stream_error().await;
    assert_eq!(e.condition, C::SystemShutdown, "{e:?}");
    let result = tokio::time::timeout(Duration::from_secs(15), serve)
        .await
        .expect("serve returns after SIGINT")
        .unwrap();
    assert!(result.is_ok(), "{result:?}");
    assert!(
        tokio::net::TcpStream::connect(external).await.is_err(),
        "the gateway still accepts after SIGINT"
    );
}
