//! `fedgate serve`'s signals, delivered for real (kill(2) to this process, which runs
//! [`fedgate_gateway::serve`]): SIGHUP re-reads the config file, and a new certificate is what
//! a partner sees on s2s STARTTLS; SIGINT closes live streams with `<system-shutdown/>` and
//! serve returns Ok (the binary then exits 0); SIGTERM while a stream is stuck writing to a peer
//! that reads nothing returns well within the shutdown grace. Its own test binary: the signals go
//! to the whole process (its tests take turns, [`SIGNALS`]).

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use fedgate_xmpp::{StreamErrorCondition as C, ns};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
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

/// `N` distinct free loopback ports (bound together, so no two are the same).
fn free_ports<const N: usize>() -> [u16; N] {
    let held: Vec<_> = (0..N)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    std::array::from_fn(|i| held[i].local_addr().unwrap().port())
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

/// Held by each test while it sends signals: every serve() of the process hears them.
static SIGNALS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A config for a gateway in `dir` whose external listener is `external` (the internal one on a
/// free port, its internal server nowhere); `top` and `hosted_extra` are added to the top level
/// and to the hosted domain.
fn write_config(
    dir: &Path,
    internal: u16,
    external: SocketAddr,
    top: &str,
    hosted_extra: &str,
) -> std::path::PathBuf {
    let config = format!(
        "{top}store = \"sqlite:fedgate.db\"\n[internal_listener]\nlisten = \"127.0.0.1:{internal}\"\n[external_listener]\nlisten = \"{external}\"\n\
         [[hosted_domain]]\ndomain = \"corp.example\"\ninternal_server = \"127.0.0.1:9\"\n{hosted_extra}\
         [tls]\nsystem_roots = false\n"
    );
    let path = dir.join("fedgate.toml");
    std::fs::write(&path, &config).unwrap();
    path
}

#[allow(unsafe_code)] // libc::kill
fn kill(sig: libc::c_int) {
    // SAFETY: kill(2) on our own pid with a signal whose handler tokio has installed.
    assert_eq!(unsafe { libc::kill(libc::getpid(), sig) }, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_starttls_certificate_and_sigint_shuts_down_cleanly() {
    let _turn = SIGNALS.lock().await;
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
    let [internal, external] = free_ports();
    let external: SocketAddr = format!("127.0.0.1:{external}").parse().unwrap();
    let path = write_config(
        dir.path(),
        internal,
        external,
        "",
        "certificate = \"corp.pem\"\nkey = \"corp.key\"\n",
    );
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_a_write_is_stuck_returns_well_within_the_grace() {
    let _turn = SIGNALS.lock().await;
    let mut term = signal(SignalKind::terminate()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let [internal, external, metrics] = free_ports();
    let external: SocketAddr = format!("127.0.0.1:{external}").parse().unwrap();
    let metrics: SocketAddr = format!("127.0.0.1:{metrics}").parse().unwrap();
    let path = write_config(
        dir.path(),
        internal,
        external,
        &format!("metrics_listen = \"{metrics}\"\n"),
        "",
    );
    // As `fedgate serve` runs it: /status served, to see the stream's bytes.
    let serve = tokio::spawn(fedgate_gateway::serve_with(
        fedgate_gateway::Config::load(&path).unwrap(),
        Some(Arc::new(AdminPlane)),
    ));
    // Small socket buffers on the peer's side: its writes follow the gateway's reads closely,
    // and the gateway's answers fill what is between them soon.
    let deadline = Instant::now() + T;
    let tcp = loop {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_send_buffer_size(4096).unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        if let Ok(tcp) = socket.connect(external).await {
            break tcp;
        }
        assert!(Instant::now() < deadline, "the gateway did not come up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // A peer that asks for db:verify answers and never reads them: the gateway's answers fill
    // the socket buffers and its write waits (the write-stall limit is 30 s, the grace 10 s).
    let (mut read, mut write) = tcp.into_split();
    let mut requests = br#"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' to='corp.example' version='1.0'>"#.to_vec();
    let one = fedgate_xmpp::negotiation::db_verify_request(
        "partner.example",
        "corp.example",
        "some-stream-id",
        &"0".repeat(64),
    )
    .to_bytes();
    let n = 32 * 1024 * 1024 / one.len();
    requests.extend(one.iter().copied().cycle().take(one.len() * n));
    let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let progress = sent.clone();
    let writer = tokio::spawn(async move {
        for chunk in requests.chunks(4 * 1024) {
            if write.write_all(chunk).await.is_err() {
                break;
            }
            progress.fetch_add(chunk.len(), std::sync::atomic::Ordering::SeqCst);
        }
    });
    // Stuck: for a second the gateway has written nothing more (/status) and read no more
    // requests, since it is waiting to write.
    let written = async || {
        let (_, status) = http_get_plain(metrics, "/status").await;
        let status: serde_json::Value = serde_json::from_str(&status).unwrap();
        status["streams"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["bytes_out"].as_u64().unwrap())
            .sum::<u64>()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let (mut last, mut since) = ((0, 0), Instant::now());
    loop {
        let now = (
            sent.load(std::sync::atomic::Ordering::SeqCst),
            written().await,
        );
        if now != last {
            (last, since) = (now, Instant::now());
        } else if now.0 > 0 && now.1 > 0 && since.elapsed() >= Duration::from_secs(1) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the gateway never stopped reading"
        );
        assert!(
            !writer.is_finished(),
            "every request was read: nothing is stuck"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stopping = Instant::now();
    kill(libc::SIGTERM);
    term.recv().await;
    let result = tokio::time::timeout(Duration::from_secs(15), serve)
        .await
        .expect("serve returns after SIGTERM")
        .unwrap();
    assert!(result.is_ok(), "{result:?}");
    // The grace is 10 s; the stuck write gets 2 s (CLOSE_WRITE_TIMEOUT) to finish, then the
    // stream is dropped without a closing write.
    let took = stopping.elapsed();
    eprintln!("serve returned {took:?} after SIGTERM");
    assert!(
        took < Duration::from_secs(6),
        "serve returned {took:?} after SIGTERM: it waited for the stuck stream until the grace ran out"
    );
    // The peer's connection is closed: reading drains the answers written, then ends.
    let mut rest = Vec::new();
    let drained = tokio::time::timeout(T, read.read_to_end(&mut rest)).await;
    assert!(
        drained.is_ok(),
        "the peer's connection stays open after serve returned"
    );
    writer.abort();
}
