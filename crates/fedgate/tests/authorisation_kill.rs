//! A PublicUnverified authorisation survives the gateway being killed right after the stanza
//! that made it was forwarded (issue 25 item 5): the real `fedgate serve` binary, a fake internal
//! server and a fake partner server around it, SIGKILL, a restart on the same SQLite store.
//!
//! What this shows and what it does not: killing the process proves the authorisation was
//! committed to the store *before* the subscribe left the gateway (had the gateway forwarded
//! first and committed later, or kept the change only in memory, the kill would lose it while
//! the partner already has the subscription). It cannot show that the commit would survive an
//! OS crash or power loss: a killed process's writes are already in the kernel's page cache,
//! which outlives it whether or not they were fsynced. That part is the store's
//! `synchronous=FULL` for authorisation commits (`crates/fedgate-store/src/sqlite.rs`, its unit
//! test checks the setting), which no test here can pull the power on.

use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fedgate_gateway::dialback::{check_key, dialback_key};
use fedgate_model::{Domain, PartnerType, ProxyTarget, UserJid, XmppAllowedPartner};
use fedgate_store::{AuditContext, StoreUrl};
use fedgate_xmpp::negotiation::{self, DialbackType};
use fedgate_xmpp::{Element, Event, Limits, StreamHeader, StreamParser, ns};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const T: Duration = Duration::from_secs(15);
const PARTNER_SECRET: &str = "partner-secret-0123456789abcdef0123456789";
const INTERNAL_SECRET: &str = "internal-secret-0123456789abcdef0123456789";

/// One side of an XMPP stream over plain TCP.
struct Peer {
    tcp: TcpStream,
    parser: StreamParser,
    buf: Vec<u8>,
}

impl Peer {
    fn new(tcp: TcpStream) -> Peer {
        Peer {
            tcp,
            parser: StreamParser::new(Limits::default()),
            buf: vec![0; 8192],
        }
    }

    async fn connect(addr: SocketAddr) -> Peer {
        Peer::new(TcpStream::connect(addr).await.expect("connect"))
    }

    async fn send(&mut self, bytes: impl AsRef<[u8]>) {
        self.tcp.write_all(bytes.as_ref()).await.expect("write");
    }

    async fn send_el(&mut self, e: &Element) {
        self.send(e.to_bytes()).await
    }

    /// The next event other than whitespace; Err on EOF, timeout or a parse error.
    async fn next(&mut self) -> Result<Event, String> {
        tokio::time::timeout(T, async {
            loop {
                match self.parser.next_event() {
                    Ok(Some(Event::Whitespace(_))) => continue,
                    Ok(Some(ev)) => return Ok(ev),
                    Ok(None) => {}
                    Err(e) => return Err(format!("parse: {e}")),
                }
                let n = self
                    .tcp
                    .read(&mut self.buf)
                    .await
                    .map_err(|e| e.to_string())?;
                if n == 0 {
                    return Err("eof".into());
                }
                self.parser.feed(&self.buf[..n]);
            }
        })
        .await
        .map_err(|_| "timeout".to_owned())?
    }

    async fn element(&mut self) -> Element {
        match self.next().await {
            Ok(Event::Element { element, .. }) => element,
            other => panic!("expected an element, got {other:?}"),
        }
    }

    /// Open a stream as the initiating server; the receiving server's header and features.
    async fn open(&mut self, from: &str, to: &str) -> StreamHeader {
        let mut out = Vec::new();
        StreamHeader::initiating(from, to, true).write_to(&mut out);
        self.send(out).await;
        let h = match self.next().await {
            Ok(Event::StreamOpen(h)) => h,
            other => panic!("expected a stream header, got {other:?}"),
        };
        let f = self.element().await;
        assert!(f.is("features", ns::STREAMS), "{f:?}");
        h
    }

    /// Authenticate by dialback as `from` to `to`, the key computed with `secret`.
    async fn dialback(&mut self, from: &str, to: &str, secret: &str) {
        let h = self.open(from, to).await;
        let id = h.id.expect("stream id");
        self.send_el(&negotiation::db_result_request(
            from,
            to,
            &dialback_key(secret, to, from, &id),
        ))
        .await;
        let r = self.element().await;
        assert!(
            r.is("result", ns::DIALBACK)
                && negotiation::dialback_type(&r) == Some(DialbackType::Valid),
            "dialback as {from} refused: {r:?}"
        );
    }
}

/// A fake XMPP server (the internal server or the partner's): accepts the gateway's streams and
/// verifies their dialback key through the gateway listener whose address arrives on the
/// returned sender (the newest one: a restarted gateway sends its own), answers `db:verify` for
/// its own domain with `secret` (the gateway verifying a stream from it), and hands every stanza
/// it receives to the test.
async fn fake_server(
    secret: &'static str,
) -> (
    SocketAddr,
    mpsc::UnboundedSender<SocketAddr>,
    mpsc::UnboundedReceiver<Element>,
) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("address");
    let (gw_tx, mut gw_rx) = mpsc::unbounded_channel::<SocketAddr>();
    let (st_tx, st_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut gw = gw_rx.recv().await.expect("gateway address");
        let mut n = 0;
        while let Ok((tcp, _)) = l.accept().await {
            while let Ok(a) = gw_rx.try_recv() {
                gw = a;
            }
            n += 1;
            let st_tx = st_tx.clone();
            tokio::spawn(async move {
                let mut p = Peer::new(tcp);
                let Ok(Event::StreamOpen(h)) = p.next().await else {
                    return;
                };
                let id = format!("fake-{n}");
                let mut out = Vec::new();
                StreamHeader::responding(
                    h.to.clone().unwrap_or_default(),
                    h.from.clone(),
                    id.clone(),
                    true,
                )
                .write_to(&mut out);
                negotiation::stream_features(negotiation::TlsOffer::None, false, true)
                    .write_to(&mut out);
                p.send(out).await;
                while let Ok(Event::Element { element, .. }) = p.next().await {
                    let (from, to) = (
                        element.attr("from").unwrap_or("").to_owned(),
                        element.attr("to").unwrap_or("").to_owned(),
                    );
                    if element.is("result", ns::DIALBACK) {
                        // Dial back: ask the gateway, the authoritative server of `from`.
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
                        let t =
                            negotiation::dialback_type(&answer).unwrap_or(DialbackType::Invalid);
                        p.send_el(&negotiation::db_result_response(&to, &from, &t))
                            .await;
                    } else if element.is("verify", ns::DIALBACK) {
                        let vid = element.attr("id").unwrap_or("");
                        let v = if check_key(secret, &from, &to, vid, &element.text()) {
                            DialbackType::Valid
                        } else {
                            DialbackType::Invalid
                        };
                        p.send_el(&negotiation::db_verify_response(&to, &from, vid, &v))
                            .await;
                    } else {
                        let _ = st_tx.send(element);
                    }
                }
            });
        }
    });
    (addr, gw_tx, st_rx)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A running `fedgate serve` in `dir` (its SQLite store `dir/fedgate.db`) on fresh ports.
struct Gateway {
    child: Child,
    internal: SocketAddr,
    external: SocketAddr,
    log: std::path::PathBuf,
}

impl Gateway {
    async fn start(dir: &Path, internal_server: SocketAddr, run: &str) -> Gateway {
        let internal: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let external: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let config = dir.join(format!("fedgate-{run}.toml"));
        std::fs::write(
            &config,
            format!(
                "store = \"sqlite:fedgate.db\"\n[internal_listener]\nlisten = \"{internal}\"\n\
                 [external_listener]\nlisten = \"{external}\"\n[[hosted_domain]]\n\
                 domain = \"corp.example\"\ninternal_server = \"{internal_server}\"\n\
                 [tls]\nsystem_roots = false\n"
            ),
        )
        .expect("write the config");
        let log = dir.join(format!("gateway-{run}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_fedgate"))
            .current_dir(dir)
            .env_remove("FEDGATE_STORE")
            .env_remove("FEDGATE_CONFIG")
            .env("RUST_LOG", "info")
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start fedgate serve");
        let gw = Gateway {
            child,
            internal,
            external,
            log,
        };
        let deadline = Instant::now() + T;
        while TcpStream::connect(external).await.is_err() {
            assert!(
                Instant::now() < deadline,
                "the gateway never listened on {external}:\n{}",
                gw.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        gw
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL (what `Child::kill` sends on Unix): no shutdown, no flush, no handler runs.
    fn kill(mut self) {
        self.child.kill().expect("kill -9 the gateway");
        let status = self.child.wait().expect("wait for the gateway");
        assert_eq!(status.signal(), Some(9), "{status:?}\n{}", self.log());
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The next stanza `rx` receives, within the deadline.
async fn next(rx: &mut mpsc::UnboundedReceiver<Element>, what: &str, gw: &Gateway) -> Element {
    match tokio::time::timeout(T, rx.recv()).await {
        Ok(Some(e)) => e,
        _ => panic!("no {what}; gateway log:\n{}", gw.log()),
    }
}

fn message(from: &str, to: &str, id: &str) -> Element {
    Element::new("message", ns::SERVER)
        .with_attr("from", from)
        .with_attr("to", to)
        .with_attr("type", "chat")
        .with_attr("id", id)
        .with_child(Element::new("body", ns::SERVER).with_text("hi"))
}

/// The authorisations `fedgate authorisations` lists, as (local, remote) pairs.
fn listed_authorisations(dir: &Path) -> Vec<(String, String)> {
    let out = Command::new(env!("CARGO_BIN_EXE_fedgate"))
        .current_dir(dir)
        .env_remove("FEDGATE_STORE")
        .env_remove("FEDGATE_CONFIG")
        .args(["--output", "json", "authorisations"])
        .output()
        .expect("run fedgate authorisations");
    assert!(out.status.success(), "{out:?}");
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    list.as_array()
        .expect("a list")
        .iter()
        .map(|a| {
            (
                a["LocalUser"].as_str().unwrap_or("").to_owned(),
                a["RemoteUser"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authorisation_survives_sigkill_right_after_its_subscribe_was_forwarded() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (internal_addr, internal_gw, mut internal_stanzas) = fake_server(INTERNAL_SECRET).await;
    let (partner_addr, partner_gw, mut partner_stanzas) = fake_server(PARTNER_SECRET).await;
    {
        let store = fedgate_store::open(&StoreUrl::Sqlite(dir.path().join("fedgate.db")))
            .expect("open the store");
        let audit = AuditContext {
            actor: "test".into(),
            command: "test".into(),
        };
        let mut p = XmppAllowedPartner::new(Domain::parse("partner.example").expect("domain"));
        p.tls_negotiation = fedgate_model::TlsNegotiation::NotSupported;
        p.sasl_negotiation = fedgate_model::SaslNegotiation::NotSupported;
        p.support_dialback_negotiation = true;
        p.partner_type = PartnerType::PublicUnverified;
        p.proxy_fqdn = Some(ProxyTarget::parse(&partner_addr.to_string()).expect("target"));
        store.create_partner(&p, &audit).expect("add the partner");
        let g = store
            .policy(&fedgate_model::PolicyScope::Global)
            .expect("read the global policy")
            .expect("a global policy");
        let mut policy = g.value;
        policy.enable_xmpp_access = true;
        store
            .update_policy(&policy, g.version, &audit)
            .expect("let users federate");
    }

    let gw = Gateway::start(dir.path(), internal_addr, "1").await;
    internal_gw.send(gw.internal).expect("internal fake");
    partner_gw.send(gw.external).expect("partner fake");

    // alice subscribes to bob; the gateway records the authorisation and forwards the stanza.
    let mut alice_server = Peer::connect(gw.internal).await;
    alice_server
        .dialback("corp.example", "partner.example", INTERNAL_SECRET)
        .await;
    alice_server
        .send_el(
            &Element::new("presence", ns::SERVER)
                .with_attr("from", "alice@corp.example/r")
                .with_attr("to", "bob@partner.example")
                .with_attr("type", "subscribe"),
        )
        .await;
    let s = next(&mut partner_stanzas, "subscribe at the partner", &gw).await;
    assert_eq!(
        (s.name.as_str(), s.attr("type"), s.attr("to")),
        ("presence", Some("subscribe"), Some("bob@partner.example")),
        "{s:?}"
    );
    // The partner has the subscription: kill the gateway at once, no shutdown.
    gw.kill();
    drop(alice_server);

    // The authorisation is in the store, as the CLI lists it.
    assert_eq!(
        listed_authorisations(dir.path()),
        [(
            "alice@corp.example".to_owned(),
            "bob@partner.example".to_owned()
        )]
    );

    // A new gateway on the same store lets bob through to alice (nothing in memory survived
    // the kill: the stored authorisation is all that can let him in), and still refuses eve.
    let gw = Gateway::start(dir.path(), internal_addr, "2").await;
    internal_gw.send(gw.internal).expect("internal fake");
    partner_gw.send(gw.external).expect("partner fake");
    let mut bob_server = Peer::connect(gw.external).await;
    bob_server
        .dialback("partner.example", "corp.example", PARTNER_SECRET)
        .await;
    // eve's first: were she let through, her message would reach alice's server before bob's.
    bob_server
        .send_el(&message(
            "eve@partner.example/x",
            "alice@corp.example",
            "eve-1",
        ))
        .await;
    bob_server
        .send_el(
            &Element::new("presence", ns::SERVER)
                .with_attr("from", "bob@partner.example")
                .with_attr("to", "alice@corp.example")
                .with_attr("type", "subscribed"),
        )
        .await;
    bob_server
        .send_el(&message(
            "bob@partner.example/x",
            "alice@corp.example",
            "bob-1",
        ))
        .await;
    let first = next(&mut internal_stanzas, "bob's reply at alice's server", &gw).await;
    assert_eq!(
        (first.name.as_str(), first.attr("type"), first.attr("from")),
        ("presence", Some("subscribed"), Some("bob@partner.example")),
        "{first:?}"
    );
    let m = next(
        &mut internal_stanzas,
        "bob's message at alice's server",
        &gw,
    )
    .await;
    assert_eq!(
        (m.name.as_str(), m.attr("id"), m.attr("from")),
        ("message", Some("bob-1"), Some("bob@partner.example/x")),
        "{m:?}"
    );
    let alice = UserJid::parse("alice@corp.example").expect("jid");
    let store = fedgate_store::open(&StoreUrl::Sqlite(dir.path().join("fedgate.db")))
        .expect("open the store");
    assert!(
        store
            .is_authorised(&alice, &UserJid::parse("bob@partner.example").expect("jid"))
            .expect("read")
    );
    drop(gw);
}
