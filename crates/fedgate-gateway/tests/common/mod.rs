//! In-repo fake XMPP peers for the integration tests, built on fedgate-xmpp + tokio: a generic
//! stream client, a partner's authoritative server (answers db:verify) and a fake internal
//! server (verifies the gateway's dialback through the gateway's internal listener and hands
//! received stanzas to the test).

#![allow(dead_code)]

pub mod dns;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use fedgate_gateway::dialback::{check_key, dialback_key};
use fedgate_gateway::{Config, Gateway};
use fedgate_model::{Domain, ProxyTarget, SaslNegotiation, TlsNegotiation, XmppAllowedPartner};
use fedgate_store::{AuditContext, Store, StoreUrl};
use fedgate_xmpp::negotiation::{self, DialbackType, TlsOffer};
use fedgate_xmpp::{
    Element, Event, Limits, StreamError, StreamErrorCondition, StreamHeader, StreamParser, ns,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

pub const T: Duration = Duration::from_secs(10);
pub const PARTNER_SECRET: &str = "partner-secret-0123456789abcdef0123456789";
pub const INTERNAL_SECRET: &str = "internal-secret-0123456789abcdef0123456789";

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// One client or server side of a stream.
pub struct Peer {
    pub io: Box<dyn Io>,
    tcp: Option<TcpStream>,
    pub parser: StreamParser,
    buf: Vec<u8>,
}

pub type ClientCert = (
    Vec<rustls_pki_types::CertificateDer<'static>>,
    rustls_pki_types::PrivateKeyDer<'static>,
);

impl Peer {
    pub fn new(io: Box<dyn Io>) -> Peer {
        Peer {
            io,
            tcp: None,
            parser: StreamParser::new(Limits::default()),
            buf: vec![0; 8192],
        }
    }
    /// A plain TCP peer that can later [`upgrade_tls`](Self::upgrade_tls).
    pub async fn connect(addr: SocketAddr) -> Peer {
        Peer::from_tcp(TcpStream::connect(addr).await.expect("connect"))
    }

    /// A plain TCP peer on a connected socket (e.g. one bound to a chosen source address).
    pub fn from_tcp(tcp: TcpStream) -> Peer {
        let mut p = Peer::new(Box::new(tokio::io::empty()));
        p.tcp = Some(tcp);
        p
    }

    /// The transport, for a caller that takes the stream over after negotiation (the bench).
    pub fn into_io(self) -> Box<dyn Io> {
        match self.tcp {
            Some(t) => Box::new(t),
            None => self.io,
        }
    }

    /// The plain TCP socket, for a caller that does its own TLS handshake after `<proceed/>`.
    pub fn into_io_tcp(self) -> Option<TcpStream> {
        self.tcp
    }

    /// STARTTLS as the initiating side (after `<proceed/>`), presenting `client_cert` if
    /// given; the server certificate is not checked (self-signed in these tests).
    pub async fn upgrade_tls(&mut self, server_name: &str, client_cert: Option<ClientCert>) {
        let tcp = self.tcp.take().expect("a plain TCP peer");
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let b = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(std::sync::Arc::new(NoVerify));
        let cfg = match client_cert {
            Some((chain, key)) => b.with_client_auth_cert(chain, key).unwrap(),
            None => b.with_no_client_auth(),
        };
        let name = rustls_pki_types::ServerName::try_from(server_name.to_owned()).unwrap();
        let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg))
            .connect(name, tcp)
            .await
            .expect("TLS handshake");
        self.io = Box::new(tls);
        self.parser.reset();
    }

    async fn read_some(&mut self) -> std::io::Result<usize> {
        match &mut self.tcp {
            Some(t) => t.read(&mut self.buf).await,
            None => self.io.read(&mut self.buf).await,
        }
    }
    pub async fn send(&mut self, bytes: impl AsRef<[u8]>) {
        match &mut self.tcp {
            Some(t) => t.write_all(bytes.as_ref()).await.expect("write"),
            None => {
                self.io.write_all(bytes.as_ref()).await.expect("write");
                self.io.flush().await.expect("flush");
            }
        }
    }
    pub async fn send_el(&mut self, e: &Element) {
        self.send(e.to_bytes()).await
    }
    /// Next event other than whitespace; Err on EOF/timeout/parse error.
    pub async fn next(&mut self) -> Result<Event, String> {
        tokio::time::timeout(T, async {
            loop {
                match self.parser.next_event() {
                    Ok(Some(Event::Whitespace(_))) => continue,
                    Ok(Some(ev)) => return Ok(ev),
                    Ok(None) => {}
                    Err(e) => return Err(format!("parse: {e}")),
                }
                let n = self.read_some().await.map_err(|e| e.to_string())?;
                if n == 0 {
                    return Err("eof".into());
                }
                self.parser.feed(&self.buf[..n]);
            }
        })
        .await
        .map_err(|_| "timeout".to_owned())?
    }
    pub async fn element(&mut self) -> Element {
        match self.next().await {
            Ok(Event::Element { element, .. }) => element,
            other => panic!("expected an element, got {other:?}"),
        }
    }
    pub async fn header(&mut self) -> StreamHeader {
        match self.next().await {
            Ok(Event::StreamOpen(h)) => h,
            other => panic!("expected a stream header, got {other:?}"),
        }
    }
    /// Open a stream as the initiating server; returns the receiving server's header and features.
    pub async fn open(&mut self, from: &str, to: &str) -> (StreamHeader, Element) {
        let mut out = Vec::new();
        StreamHeader::initiating(from, to, true).write_to(&mut out);
        self.send(out).await;
        let h = self.header().await;
        let f = self.element().await;
        assert!(f.is("features", ns::STREAMS), "{f:?}");
        (h, f)
    }
    /// Read until a stream error arrives; then expect the stream to close.
    pub async fn stream_error(&mut self) -> StreamError {
        loop {
            match self.next().await {
                Ok(Event::Element { element, .. }) if element.is("error", ns::STREAMS) => {
                    let e = StreamError::from_element(&element).expect("stream error");
                    match self.next().await {
                        Ok(Event::StreamClose) | Err(_) => {}
                        other => {
                            panic!("expected the stream to close after the error, got {other:?}")
                        }
                    }
                    return e;
                }
                Ok(Event::StreamOpen(_)) | Ok(Event::Element { .. }) => continue,
                other => panic!("expected a stream error, got {other:?}"),
            }
        }
    }
    /// Authenticate by dialback as `from` to `to` (the key computed with `secret`).
    pub async fn dialback(&mut self, from: &str, to: &str, secret: &str) -> Result<(), String> {
        let (h, f) = self.open(from, to).await;
        assert!(
            f.child("dialback", ns::DIALBACK_FEATURE).is_some(),
            "no dialback offered: {f:?}"
        );
        let id = h.id.expect("stream id");
        self.send_el(&negotiation::db_result_request(
            from,
            to,
            &dialback_key(secret, to, from, &id),
        ))
        .await;
        let r = self.element().await;
        assert!(r.is("result", ns::DIALBACK), "{r:?}");
        match negotiation::dialback_type(&r) {
            Some(DialbackType::Valid) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    }
}

#[derive(Debug)]
pub struct NoVerify;

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &[rustls_pki_types::CertificateDer<'_>],
        _: &rustls_pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

pub fn message(from: &str, to: &str, body: &str) -> Element {
    Element::new("message", ns::SERVER)
        .with_attr("from", from)
        .with_attr("to", to)
        .with_attr("type", "chat")
        .with_child(Element::new("body", ns::SERVER).with_text(body))
}

/// Serve dialback verification for a domain whose secret is `secret` (a partner's
/// authoritative server). Returns its address.
pub async fn authoritative_server(secret: &'static str) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut p = Peer::new(Box::new(tcp));
                let h = p.header().await;
                let mut out = Vec::new();
                StreamHeader::responding(
                    h.to.clone().unwrap_or_default(),
                    h.from.clone(),
                    "auth-1",
                    true,
                )
                .write_to(&mut out);
                negotiation::stream_features(negotiation::TlsOffer::None, false, true)
                    .write_to(&mut out);
                p.send(out).await;
                while let Ok(Event::Element { element, .. }) = p.next().await {
                    if element.is("verify", ns::DIALBACK) {
                        let (from, to, id) = (
                            element.attr("from").unwrap_or(""),
                            element.attr("to").unwrap_or(""),
                            element.attr("id").unwrap_or(""),
                        );
                        let ok = check_key(secret, from, to, id, &element.text());
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
    addr
}

/// A fake internal XMPP server for `corp.example` (see [`receiving_server`]).
pub async fn internal_server() -> (
    SocketAddr,
    mpsc::UnboundedSender<SocketAddr>,
    mpsc::UnboundedReceiver<Element>,
) {
    receiving_server(INTERNAL_SECRET).await
}

/// A fake XMPP server: accepts the gateway's streams, verifies their dialback key through the
/// gateway listener whose address is sent later through the returned sender, answers
/// `db:verify` for its own domains with `secret`, and forwards every stanza it receives.
pub async fn receiving_server(
    secret: &'static str,
) -> (
    SocketAddr,
    mpsc::UnboundedSender<SocketAddr>,
    mpsc::UnboundedReceiver<Element>,
) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (gw_tx, mut gw_rx) = mpsc::unbounded_channel::<SocketAddr>();
    let (st_tx, st_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut gw = gw_rx.recv().await.expect("gateway address");
        let mut n = 0;
        while let Ok((tcp, _)) = l.accept().await {
            // A restarted gateway (a new address) is dialled back from its first connection on.
            while let Ok(a) = gw_rx.try_recv() {
                gw = a;
            }
            n += 1;
            let st_tx = st_tx.clone();
            tokio::spawn(async move {
                let mut p = Peer::new(Box::new(tcp));
                let h = p.header().await;
                let id = format!("internal-{n}");
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
                    if element.is("result", ns::DIALBACK) {
                        let from = element.attr("from").unwrap_or("").to_owned();
                        let to = element.attr("to").unwrap_or("").to_owned();
                        // Dial back: ask the "authoritative server" of `from` (the gateway).
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
                        let (from, to, vid) = (
                            element.attr("from").unwrap_or(""),
                            element.attr("to").unwrap_or(""),
                            element.attr("id").unwrap_or(""),
                        );
                        let ok = check_key(secret, from, to, vid, &element.text());
                        let v = if ok {
                            DialbackType::Valid
                        } else {
                            DialbackType::Invalid
                        };
                        p.send_el(&negotiation::db_verify_response(to, from, vid, &v))
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

pub fn add_partner(
    store: &dyn Store,
    domain: &str,
    tls: TlsNegotiation,
    sasl: SaslNegotiation,
    dialback: bool,
    proxy: Option<SocketAddr>,
) {
    let mut p = XmppAllowedPartner::new(Domain::parse(domain).unwrap());
    p.tls_negotiation = tls;
    p.sasl_negotiation = sasl;
    p.support_dialback_negotiation = dialback;
    // Federated, so PublicUnverified gating (tested on its own) does not interfere.
    p.partner_type = fedgate_model::PartnerType::Federated;
    p.proxy_fqdn = proxy.map(|a| ProxyTarget::parse(&a.to_string()).unwrap());
    store.create_partner(&p, &audit()).unwrap();
    // Users may federate (the default Global policy says no); tests of that policy turn it off.
    set_global_xmpp_access(store, true);
}

/// [`add_partner`] for the common case: a partner that authenticates by dialback over plain TCP
/// (TLS and SASL NotSupported).
pub fn add_dialback_partner(store: &dyn Store, domain: &str, proxy: Option<SocketAddr>) {
    add_partner(
        store,
        domain,
        TlsNegotiation::NotSupported,
        SaslNegotiation::NotSupported,
        true,
        proxy,
    );
}

/// Change a stored partner's record (it must exist) and write it back.
pub fn edit_partner(store: &dyn Store, domain: &str, change: impl FnOnce(&mut XmppAllowedPartner)) {
    let mut p = store
        .partner(&Domain::parse(domain).unwrap())
        .unwrap()
        .expect("the partner to change");
    change(&mut p.value);
    store.update_partner(&p.value, p.version, &audit()).unwrap();
}

/// Set EnableXmppAccess on the Global external access policy (default False: users can't federate).
pub fn set_global_xmpp_access(store: &dyn Store, enabled: bool) {
    let g = store
        .policy(&fedgate_model::PolicyScope::Global)
        .unwrap()
        .unwrap();
    let mut p = g.value;
    p.enable_xmpp_access = enabled;
    store.update_policy(&p, g.version, &audit()).unwrap();
}

pub fn audit() -> AuditContext {
    AuditContext {
        actor: "test".into(),
        command: "test".into(),
    }
}

pub fn open_store(dir: &Path) -> Box<dyn Store> {
    fedgate_store::open(&StoreUrl::Sqlite(dir.join("fedgate.db"))).unwrap()
}

/// Write a config into `dir` (listeners on free loopback ports) and parse it. `extra` follows
/// the `[tls]` table: bare keys (`ca_files = [..]`) land in it, `[settings]` etc. start new tables.
pub fn config(dir: &Path, internal_server: SocketAddr, extra: &str) -> Config {
    let text = format!(
        r#"
store = "sqlite:fedgate.db"
metrics_listen = "127.0.0.1:0"
[internal_listener]
listen = "127.0.0.1:0"
[external_listener]
listen = "127.0.0.1:0"
[[hosted_domain]]
domain = "corp.example"
internal_server = "{internal_server}"
[limits]
max_stanza_size = 8192
[tls]
system_roots = false
{extra}
"#
    );
    let path = dir.join("fedgate.toml");
    std::fs::write(&path, &text).unwrap();
    Config::load(&path).unwrap()
}

/// A gateway with a fake internal server; the store is in `dir`.
pub async fn start(dir: &Path, extra: &str) -> (Gateway, mpsc::UnboundedReceiver<Element>) {
    let (internal, gw_tx, stanzas) = internal_server().await;
    let gw = start_gateway(config(dir, internal, extra)).await.unwrap();
    gw_tx.send(gw.internal_addr).unwrap();
    (gw, stanzas)
}

/// A gateway in `dir` whose partner `partner.example` (TLS as given, SASL NotSupported, dialback
/// on) is verified by a fake authoritative server with [`PARTNER_SECRET`]; `extra` as in [`config`].
pub async fn start_with_dialback_partner(
    dir: &Path,
    tls: fedgate_model::TlsNegotiation,
    extra: &str,
) -> (Gateway, mpsc::UnboundedReceiver<Element>) {
    let auth = authoritative_server(PARTNER_SECRET).await;
    add_partner(
        open_store(dir).as_ref(),
        "partner.example",
        tls,
        fedgate_model::SaslNegotiation::NotSupported,
        true,
        Some(auth),
    );
    start(dir, extra).await
}

/// A stream from `partner.example` to the gateway's external listener, authenticated by dialback.
pub async fn dialback_peer(gw: &Gateway) -> Peer {
    let mut p = Peer::connect(gw.external_addr).await;
    p.dialback("partner.example", "corp.example", PARTNER_SECRET)
        .await
        .unwrap();
    p
}

/// Open a stream as `from` to the gateway's external listener and send a dialback request with
/// the right key ([`PARTNER_SECRET`]); the caller reads what the gateway answers.
pub async fn dialback_request(gw: &Gateway, from: &str) -> Peer {
    let mut p = Peer::connect(gw.external_addr).await;
    let (h, _) = p.open(from, "corp.example").await;
    let key = dialback_key(
        PARTNER_SECRET,
        "corp.example",
        from,
        h.id.as_deref().unwrap(),
    );
    p.send_el(&negotiation::db_result_request(from, "corp.example", &key))
        .await;
    p
}

/// The gateway's next element is a valid dialback result.
pub async fn expect_valid(p: &mut Peer) {
    let r = p.element().await;
    assert!(
        r.is("result", ns::DIALBACK) && negotiation::dialback_type(&r) == Some(DialbackType::Valid),
        "{r:?}"
    );
}

pub async fn expect_condition(peer: &mut Peer, c: StreamErrorCondition) -> StreamError {
    let e = peer.stream_error().await;
    assert_eq!(e.condition, c, "{e:?}");
    e
}

/// GET `path` from an HTTP listener (the metrics listener or a plain admin listener) as a
/// scraper would; returns the status line and the body.
pub async fn http_get_plain(addr: SocketAddr, path: &str) -> (String, String) {
    let mut tcp = TcpStream::connect(addr)
        .await
        .expect("connect to the HTTP listener");
    tcp.write_all(format!("GET {path} HTTP/1.0\r\nHost: fedgate\r\n\r\n").as_bytes())
        .await
        .expect("send the request");
    let mut response = Vec::new();
    tokio::time::timeout(T, tcp.read_to_end(&mut response))
        .await
        .expect("the HTTP listener answers in time")
        .expect("read the response");
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    let status = head.lines().next().unwrap_or("").to_owned();
    (status, body.to_owned())
}

/// The Prometheus text of the gateway's `metrics_listen`, fetched over HTTP.
pub async fn scrape(gw: &Gateway) -> String {
    let addr = gw
        .metrics_addr
        .expect("the test config has a metrics listener");
    let (status, body) = http_get_plain(addr, "/metrics").await;
    assert!(status.contains(" 200 "), "GET /metrics: {status}\n{body}");
    body
}

/// The value of one sample in Prometheus text: `name` with exactly these labels (in the order
/// the gateway writes them), or None when the sample is absent.
pub fn sample(metrics: &str, name: &str, labels: &[(&str, &str)]) -> Option<u64> {
    let series = if labels.is_empty() {
        name.to_owned()
    } else {
        let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        format!("{name}{{{}}}", l.join(","))
    };
    metrics.lines().find_map(|line| {
        let (s, v) = line.rsplit_once(' ')?;
        (s == series).then(|| v.parse().expect("a numeric sample"))
    })
}

/// `fedgate_refusals_total{side, reason}` from the gateway's `/metrics` over HTTP (0 if absent).
pub async fn refusals(gw: &Gateway, side: &str, reason: &str) -> u64 {
    let m = scrape(gw).await;
    sample(
        &m,
        "fedgate_refusals_total",
        &[("side", side), ("reason", reason)],
    )
    .unwrap_or(0)
}

/// Poll `/metrics` over HTTP until `fedgate_refusals_total{side, reason}` reaches `at_least`
/// (the count is taken when the refusal is logged, which may follow the peer's view by a hair);
/// panics with the metrics text after the deadline.
pub async fn wait_refusals(gw: &Gateway, side: &str, reason: &str, at_least: u64) -> u64 {
    let deadline = std::time::Instant::now() + T;
    loop {
        let m = scrape(gw).await;
        let n = sample(
            &m,
            "fedgate_refusals_total",
            &[("side", side), ("reason", reason)],
        )
        .unwrap_or(0);
        if n >= at_least {
            return n;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "/metrics never counted {at_least} {side}/{reason} refusal(s):\n{m}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Wait (polling, with a deadline) until `cond` holds; panics with `what` otherwise.
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + T;
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Wait until the running gateway has loaded the store's current revision (the policy poll
/// picked up the last change).
pub async fn wait_policy_current(gw: &Gateway, store: &dyn Store) {
    let revision = store.revision().unwrap();
    wait_until("the gateway loaded the store's last change", || {
        gw.shared.snapshot().revision >= revision
    })
    .await;
}

/// `mib` MiB of ~1 KiB messages from `from` to `to`, as one byte string to send at once: far more
/// than the socket buffers on the way and an outbound queue hold.
pub fn message_burst(from: &str, to: &str, mib: usize) -> Vec<u8> {
    let one = message(from, to, &"x".repeat(900)).to_bytes();
    one.iter()
        .copied()
        .cycle()
        .take(one.len() * mib * 1024)
        .collect()
}

/// A server (an internal server or a partner's receiving server) that accepts each stream of
/// the gateway, answers its dialback `valid` and then never reads again; counts the connections
/// it accepted.
pub async fn stalled_server() -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = l.accept().await {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut p = Peer::from_tcp(tcp);
            let h = p.header().await;
            let mut out = Vec::new();
            StreamHeader::responding(
                h.to.clone().unwrap_or_default(),
                h.from.clone(),
                "s-1",
                true,
            )
            .write_to(&mut out);
            negotiation::stream_features(negotiation::TlsOffer::None, false, true)
                .write_to(&mut out);
            p.send(out).await;
            while let Ok(ev) = p.next().await {
                if let Event::Element { element, .. } = ev
                    && element.is("result", ns::DIALBACK)
                {
                    let (from, to) = (
                        element.attr("from").unwrap_or("").to_owned(),
                        element.attr("to").unwrap_or("").to_owned(),
                    );
                    p.send_el(&negotiation::db_result_response(
                        &to,
                        &from,
                        &DialbackType::Valid,
                    ))
                    .await;
                    break;
                }
            }
            held.push(p);
        }
    });
    (addr, accepted)
}

// Certificates and a partner server with TLS (outbound certificate checks, the partner test).

/// A certificate authority for tests: its certificate and key (PEM) and what signs leaves.
pub struct Ca {
    pub pem: String,
    pub key_pem: String,
    pub issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}
/// A CA named `name`.
pub fn ca(name: &str) -> Ca {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.distinguished_name.push(rcgen::DnType::CommonName, name);
    let cert = p.self_signed(&key).unwrap();
    Ca {
        pem: cert.pem(),
        key_pem: key.serialize_pem(),
        issuer: rcgen::Issuer::new(p, key),
    }
}

/// A leaf for `domain` issued by `ca` (serverAuth and clientAuth): (certificate PEM, key PEM).
pub fn leaf_pem(ca: &Ca, domain: &str) -> (String, String) {
    leaf_pem_with(ca, domain, |_| {})
}

/// [`leaf_pem`] with its parameters changed by `change` (validity, purposes, …) first.
pub fn leaf_pem_with(
    ca: &Ca,
    domain: &str,
    change: impl FnOnce(&mut rcgen::CertificateParams),
) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(vec![domain.to_owned()]).unwrap();
    p.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    change(&mut p);
    let cert = p.signed_by(&key, &ca.issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// What the fake partner server saw from the gateway.
#[derive(Debug, PartialEq)]
pub enum Seen {
    SaslAuth,
    Stanza(String),
}

/// A partner server for partner.example: STARTTLS required, then SASL EXTERNAL offered (any
/// attempt succeeds); reports SASL attempts and stanzas.
pub async fn tls_partner(
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
/// partners) and partner.example (TLS and SASL Required, no dialback) served by a fake
/// partner that requires STARTTLS, then offers SASL EXTERNAL, presenting `partner_cert`.
pub async fn start_tls_gateway(
    dir: &std::path::Path,
    trusted: &Ca,
    partner_cert: (String, String),
) -> Gateway {
    let (corp_cert, corp_key) = leaf_pem(trusted, "corp.example");
    std::fs::write(dir.join("ca.pem"), &trusted.pem).unwrap();
    std::fs::write(dir.join("corp.pem"), corp_cert).unwrap();
    std::fs::write(dir.join("corp.key"), corp_key).unwrap();
    let (partner_addr, _seen) = tls_partner(partner_cert.0, partner_cert.1).await;
    add_partner(
        open_store(dir).as_ref(),
        "partner.example",
        fedgate_model::TlsNegotiation::Required,
        SaslNegotiation::Required,
        false,
        Some(partner_addr),
    );
    let (internal, gw_tx, _stanzas) = internal_server().await;
    let text = format!(
        "store = \"sqlite:fedgate.db\"\nmetrics_listen = \"127.0.0.1:0\"\n[internal_listener]\nlisten = \"127.0.0.1:0\"\n\
         [external_listener]\nlisten = \"127.0.0.1:0\"\n[[hosted_domain]]\ndomain = \"corp.example\"\n\
         internal_server = \"{internal}\"\ncertificate = \"corp.pem\"\nkey = \"corp.key\"\n\
         [tls]\nsystem_roots = false\nca_files = [\"ca.pem\"]\n"
    );
    let path = dir.join("fedgate.toml");
    std::fs::write(&path, text).unwrap();
    let gw = start_gateway(Config::load(&path).unwrap()).await.unwrap();
    gw_tx.send(gw.internal_addr).unwrap();
    gw
}

/// The gateway's log lines, captured for one test: [`Log::capture`] makes the capture the
/// default subscriber of the test's thread, where a current-thread runtime (`#[tokio::test]`)
/// runs the gateway's tasks too.
#[derive(Clone, Default)]
pub struct Log(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Log {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Log {
    /// Capture INFO and above until the guard is dropped.
    pub fn capture() -> (Log, tracing::subscriber::DefaultGuard) {
        let log = Log::default();
        let w = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || w.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        (log, tracing::subscriber::set_default(subscriber))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
    /// The one line holding `what`.
    pub fn line(&self, what: &str) -> String {
        let text = self.text();
        text.lines()
            .find(|l| l.contains(what))
            .unwrap_or_else(|| panic!("no log line with {what:?}:\n{text}"))
            .to_owned()
    }
    /// Every line holding all of `needles`.
    pub fn lines_with(&self, needles: &[&str]) -> Vec<String> {
        self.text()
            .lines()
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .map(str::to_owned)
            .collect()
    }
}

/// fedgate-admin serving the admin and metrics listeners, as the `fedgate` binary plugs it in.
pub struct AdminPlane;

impl fedgate_gateway::ControlPlane for AdminPlane {
    fn serve_admin(&self, site: fedgate_gateway::admin::AdminSite) -> fedgate_admin::BoxFuture<()> {
        let state = fedgate_admin::AdminState::new(site.store)
            .with_streams(site.streams)
            .with_tester(site.tester)
            .with_hosted_domains(site.hosted_domains);
        Box::pin(fedgate_admin::listener::serve(
            state,
            site.listener,
            site.tls,
            site.shutdown,
        ))
    }

    fn serve_metrics(
        &self,
        site: fedgate_gateway::admin::MetricsSite,
    ) -> fedgate_admin::BoxFuture<()> {
        Box::pin(fedgate_admin::listener::serve_metrics(
            site.source,
            site.listener,
        ))
    }
}

/// Start a gateway whose admin and metrics listeners are served, as `fedgate serve` does.
pub async fn start_gateway(config: Config) -> anyhow::Result<Gateway> {
    Gateway::start_with(config, Some(Arc::new(AdminPlane))).await
}
