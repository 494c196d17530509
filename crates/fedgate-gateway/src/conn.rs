//! One s2s connection's stream, owned whole: the transport (TCP, or TLS in either role), the
//! TLS upgrade (the client handshake, [`Conn::start_tls_client`], and the server's,
//! [`Conn::accept_tls`]: the only places a stream turns TLS), the stream restart after STARTTLS
//! and SASL ([`Conn::restart`]), the framing (the stream parser of fedgate-xmpp on the read side,
//! serialization and timed writes on the write side, whether our stream header went out) and
//! byte accounting. Its state is private: callers read it through accessors. No policy here:
//! callers decide what to do with each [`Event`], when to upgrade and how long to wait for it.
//!
//! Most streams are idle most of the time, so an idle stream keeps no read buffer and no parser
//! scratch. A plain stream reads into a small array inside the [`Conn`] (the probe,
//! [`READ_PROBE`] bytes: a stream header, a dialback key, a keepalive) and allocates a read
//! buffer only when a read fills it; TLS streams read from rustls' own buffer of decrypted bytes.
//! When a read finds nothing to read and nothing has arrived for [`IDLE_RELEASE`], the read
//! buffer and the parser's scratch are freed. A busy stream keeps its buffers (no reallocation
//! per stanza). The write buffer that batches are serialized into ([`Conn::send_filled`]) is kept
//! between writes the same way and freed once nothing was written for [`IDLE_RELEASE`].

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use fedgate_xmpp::{Element, Event, Limits, StreamError, StreamHeader, StreamParser};
use tokio::io::{AsyncBufRead, AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// How long the closing write of a stream (a stream error, `</stream:stream>`) may take: the
/// stream is ending, so a peer that does not take it is not waited for.
pub const CLOSE_WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// The limits of one connection: the codec's, and how long one write may stall.
#[derive(Debug, Clone)]
pub struct ConnLimits {
    pub codec: Limits,
    /// A write that cannot finish within this is a peer that stopped reading: the write fails
    /// and the connection writes nothing more (`[limits] write_stall_timeout`, at most
    /// KeepAliveInterval).
    pub write_stall: Duration,
}

/// The transport under a stream (private: it changes only by the TLS upgrades).
enum Io {
    Plain(TcpStream),
    TlsServer(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    TlsClient(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    /// Transient, while upgrading.
    Gone,
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Io::Plain($s) => $e,
            Io::TlsServer($s) => $e,
            Io::TlsClient($s) => $e,
            Io::Gone => Poll::Ready(Err(io::Error::new(io::ErrorKind::NotConnected, "gone"))),
        }
    };
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        delegate!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => Pin::new(s).poll_write(cx, buf))
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => Pin::new(s).poll_flush(cx))
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => Pin::new(s).poll_shutdown(cx))
    }
}

/// A stream's read buffer (allocated when a read fills the probe) starts this small…
pub const READ_BUF_MIN: usize = 2 * 1024;
/// …and doubles, up to this, each time a read fills it.
pub const READ_BUF_MAX: usize = 16 * 1024;
/// A stream that received nothing for this long and has nothing to read is idle: its read
/// buffer and parser scratch are freed (see the module documentation). The check runs when a
/// read finds nothing, so the stream loops, which call [`Conn::next_event`] again at least once
/// a second (their ticks), free them within about a second more.
pub const IDLE_RELEASE: Duration = Duration::from_millis(500);
/// Bytes a plain stream without a read buffer (new, or idle) reads at once, into an array inside
/// the [`Conn`]: stream headers, dialback elements and keepalives fit, so an idle dialback
/// stream never allocates a read buffer; a read that fills it allocates one.
pub const READ_PROBE: usize = 512;

/// The most plaintext a TLS stream hands rustls at once, and rustls' limit on encrypted bytes
/// waiting for the socket (set to this at the upgrades; rustls' default is the same). A write is
/// given to rustls in parts of at most this size, each flushed before the next
/// (`write_flushed`), so rustls always has room for a whole part: it cuts it into full 16 KiB
/// records and hands them to the socket in one vectored write (when the socket takes them). A
/// larger write in one piece would make rustls encrypt the rest in pieces the size of what a slow
/// socket took meanwhile: small records. Outbound batches
/// ([`crate::outbound::WRITE_BATCH_BYTES`]) fit in one part.
pub const TLS_WRITE_CHUNK: usize = 64 * 1024;

/// Write `bytes` whole and flush, in parts of at most [`TLS_WRITE_CHUNK`] (see there): on TLS,
/// every record but a part's last is full, and a part the socket takes whole goes out in one
/// vectored write. The same on a plain stream (one `send` per part).
async fn write_flushed<W: AsyncWrite + Unpin>(io: &mut W, bytes: &[u8]) -> io::Result<()> {
    for part in bytes.chunks(TLS_WRITE_CHUNK) {
        io.write_all(part).await?;
        io.flush().await?;
    }
    if bytes.is_empty() {
        io.flush().await?;
    }
    Ok(())
}

/// Feed the parser what a TLS stream has decrypted (at most one record), taking it from rustls'
/// buffer.
fn fill_from<R: AsyncBufRead + Unpin>(
    r: &mut R,
    parser: &mut StreamParser,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    let data = ready!(Pin::new(&mut *r).poll_fill_buf(cx))?;
    let n = data.len();
    parser.feed(data);
    Pin::new(r).consume(n);
    Poll::Ready(Ok(n))
}

/// Why reading the next event failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("connection closed by the peer")]
    Eof,
    #[error("read failed: {0}")]
    Io(#[from] io::Error),
    /// The peer violated the protocol or a limit: send this stream error.
    #[error("{0}")]
    Stream(StreamError),
}

/// The error of a write after one was dropped half-way ([`Conn::write_cut`]).
fn cut_error() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "an earlier write was cut off")
}

/// Byte counters shared with the status page.
#[derive(Debug, Default)]
pub struct Counters {
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
}

/// Why a TLS upgrade ([`Conn::start_tls_client`], [`Conn::accept_tls`]) failed. After any of
/// them the connection has no transport: it can only be dropped.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    /// The stream is TLS already (or lost its transport in an earlier upgrade).
    #[error("not a plain stream")]
    NotPlain,
    /// The peer sent this many bytes after `<starttls/>` (an attack: they would be read as if
    /// they had come through TLS); no handshake was tried.
    #[error("{0} bytes sent after <starttls/>")]
    DataAfterStartTls(usize),
    /// The handshake failed.
    #[error(transparent)]
    Handshake(#[from] io::Error),
}

/// One connection: transport, parser and counters.
pub struct Conn {
    io: Io,
    parser: StreamParser,
    /// The read buffer of a plain stream, [`READ_BUF_MIN`]..=[`READ_BUF_MAX`] bytes, once a
    /// read filled the probe; empty (no allocation) before, while the stream is idle, and on
    /// TLS (which reads from rustls' buffer).
    buf: Vec<u8>,
    /// Where a plain stream's reads go while it has no read buffer.
    probe: [u8; READ_PROBE],
    /// When bytes last arrived.
    last_read: Instant,
    /// What [`Conn::send_filled`] serializes into: kept between writes, empty (no allocation)
    /// before the first and once the stream wrote nothing for [`IDLE_RELEASE`].
    write_buf: Vec<u8>,
    /// When [`Conn::send_filled`] last wrote.
    last_write: Instant,
    /// Whether the buffers were released since the last read.
    released: bool,
    /// [`IDLE_RELEASE`] (tests set 0).
    idle_after: Duration,
    counters: Arc<Counters>,
    /// Whether our stream header has been sent (so a stream error can be sent properly).
    header_sent: bool,
    write_stall: Duration,
    /// A write stalled (or was abandoned half-way): nothing more is written.
    stalled: bool,
    /// A write is under way: still set when its future was dropped half-way (the stream task
    /// heard a stop, [`crate::stop`]), which leaves the stream mid-element: then nothing more is
    /// written, as after a stall.
    writing: bool,
}

impl Conn {
    /// A plain stream on `tcp`; TLS comes by [`Conn::start_tls_client`] or [`Conn::accept_tls`]
    /// (right away for Direct TLS).
    pub fn new(tcp: TcpStream, limits: ConnLimits, counters: Arc<Counters>) -> Conn {
        Conn {
            io: Io::Plain(tcp),
            parser: StreamParser::new(limits.codec),
            buf: Vec::new(),
            probe: [0; READ_PROBE],
            last_read: Instant::now(),
            write_buf: Vec::new(),
            last_write: Instant::now(),
            released: false,
            idle_after: IDLE_RELEASE,
            counters,
            header_sent: false,
            write_stall: limits.write_stall,
            stalled: false,
            writing: false,
        }
    }

    /// Whether a write stalled (the peer stopped reading) or was abandoned: the stream can only
    /// be dropped.
    pub fn is_stalled(&self) -> bool {
        self.stalled
    }

    /// Whether a write was dropped half-way (see [`Conn::send_bytes`]); such a stream writes
    /// nothing more. Not a stall of the peer's: [`Conn::is_stalled`] does not count it.
    pub fn write_cut(&self) -> bool {
        self.writing
    }

    /// Give up the stream in the middle of a write (shutdown): nothing more is written.
    pub fn abandon(&mut self) {
        self.stalled = true;
    }

    /// The next event from the peer. Cancel safe: bytes read are fed to the parser at once.
    pub async fn next_event(&mut self) -> Result<Event, ReadError> {
        loop {
            match self.parser.next_event() {
                Ok(Some(ev)) => return Ok(ev),
                Ok(None) => {}
                Err(e) => return Err(ReadError::Stream(e)),
            }
            std::future::poll_fn(|cx| self.poll_fill(cx)).await?;
        }
    }

    /// One read, fed to the parser. Plain TCP reads into the read buffer, or into the probe
    /// when there is none; TLS feeds the parser from rustls' own buffer of decrypted bytes (no
    /// buffer of ours, one copy less). A read that finds nothing after [`IDLE_RELEASE`] without
    /// data releases the buffers ([`Conn::release_idle`]), and one that finds nothing after
    /// [`IDLE_RELEASE`] without a write of [`Conn::send_filled`] frees the write buffer.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ReadError>> {
        let polled = match &mut self.io {
            Io::TlsServer(s) => fill_from(&mut **s, &mut self.parser, cx),
            Io::TlsClient(s) => fill_from(&mut **s, &mut self.parser, cx),
            Io::Plain(_) | Io::Gone => self.poll_read_plain(cx),
        };
        let n = match polled {
            Poll::Pending => {
                if !self.released && self.last_read.elapsed() >= self.idle_after {
                    self.release_idle();
                }
                if self.write_buf.capacity() > 0 && self.last_write.elapsed() >= self.idle_after {
                    self.write_buf = Vec::new();
                }
                return Poll::Pending;
            }
            Poll::Ready(r) => r?,
        };
        if n == 0 {
            return Poll::Ready(Err(ReadError::Eof));
        }
        self.counters
            .bytes_in
            .fetch_add(n as u64, Ordering::Relaxed);
        self.last_read = Instant::now();
        self.released = false;
        Poll::Ready(Ok(()))
    }

    /// A plain read fed to the parser: into the read buffer, or the probe when there is none.
    fn poll_read_plain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.buf.is_empty() {
            let mut rb = ReadBuf::new(&mut self.probe);
            ready!(Pin::new(&mut self.io).poll_read(cx, &mut rb))?;
            let n = rb.filled().len();
            self.parser.feed(&self.probe[..n]);
            if n == READ_PROBE {
                // More than a header or a keepalive: a real buffer for what follows.
                self.buf = vec![0; READ_BUF_MIN];
            }
            Poll::Ready(Ok(n))
        } else {
            let mut rb = ReadBuf::new(&mut self.buf);
            ready!(Pin::new(&mut self.io).poll_read(cx, &mut rb))?;
            let n = rb.filled().len();
            self.parser.feed(&self.buf[..n]);
            if n == self.buf.len() && self.buf.len() < READ_BUF_MAX {
                // A busy stream: read more per call from now on.
                self.buf.resize(self.buf.len() * 2, 0);
            }
            Poll::Ready(Ok(n))
        }
    }

    /// Free the read buffer and the parser's scratch ([`StreamParser::release_idle`]); the
    /// next read goes into the probe. Done by [`Conn::next_event`] when the stream is idle.
    pub fn release_idle(&mut self) {
        self.buf = Vec::new();
        self.parser.release_idle();
        self.released = true;
    }

    /// Heap bytes held for reading: the read buffer's and the parser's
    /// ([`StreamParser::held_capacity`]).
    pub fn read_capacity(&self) -> usize {
        self.buf.capacity() + self.parser.held_capacity()
    }

    /// Heap bytes held for writing: the write buffer of [`Conn::send_filled`].
    pub fn write_capacity(&self) -> usize {
        self.write_buf.capacity()
    }

    /// Write what `fill` puts into the stream's write buffer (given empty), as
    /// [`Conn::send_bytes`]; returns what `fill` returned. The buffer is kept between writes, so
    /// a busy stream allocates nothing per write once it holds its largest batch; it is freed
    /// when a read finds nothing and nothing was written for [`IDLE_RELEASE`] (the stream loops
    /// poll [`Conn::next_event`] at least once a second).
    pub async fn send_filled<R>(&mut self, fill: impl FnOnce(&mut Vec<u8>) -> R) -> io::Result<R> {
        let mut out = std::mem::take(&mut self.write_buf);
        out.clear();
        let r = fill(&mut out);
        let sent = self.send_bytes(&out).await;
        self.write_buf = out;
        self.last_write = Instant::now();
        sent.map(|()| r)
    }

    /// Write bytes; a write that stalls for the write-stall limit fails with `TimedOut` and
    /// marks the connection stalled (see [`Conn::is_stalled`]). Dropped before it finished (a
    /// stop heard while it waited, [`crate::stop`]), it leaves the connection writing nothing
    /// more ([`Conn::write_cut`]): the peer may have half an element.
    pub async fn send_bytes(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.writing {
            return Err(cut_error());
        }
        self.writing = true;
        let r = self.send_within(bytes, self.write_stall).await;
        self.writing = false;
        r
    }

    async fn send_within(&mut self, bytes: &[u8], limit: Duration) -> io::Result<()> {
        if self.stalled {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "an earlier write stalled",
            ));
        }
        match tokio::time::timeout(limit, write_flushed(&mut self.io, bytes)).await {
            Ok(r) => {
                r?;
                self.counters
                    .bytes_out
                    .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                Ok(())
            }
            Err(_) => {
                self.stalled = true;
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "the peer stopped reading: a write stalled for {} s",
                        limit.as_secs_f32()
                    ),
                ))
            }
        }
    }

    pub async fn send(&mut self, element: &Element) -> io::Result<()> {
        self.send_bytes(&element.to_bytes()).await
    }

    /// Send our stream header (it counts as sent from now on, see [`Conn::header_sent`]).
    pub async fn send_header(&mut self, header: &StreamHeader) -> io::Result<()> {
        self.send_header_with(header, None).await
    }

    /// Send our stream header and, in the same write, `features` (the receiving side's
    /// `<stream:features/>`).
    pub async fn send_header_with(
        &mut self,
        header: &StreamHeader,
        features: Option<&Element>,
    ) -> io::Result<()> {
        let mut out = Vec::new();
        header.write_to(&mut out);
        if let Some(f) = features {
            f.write_to(&mut out);
        }
        self.header_sent = true;
        self.send_bytes(&out).await
    }

    /// Whether our stream header of the current stream has been sent.
    pub fn header_sent(&self) -> bool {
        self.header_sent
    }

    /// The parser of the current stream, to look at (tests measure what it holds).
    pub fn parser(&self) -> &StreamParser {
        &self.parser
    }

    /// Send a stream error and close the stream (best effort, at most [`CLOSE_WRITE_TIMEOUT`];
    /// nothing is written after a stalled write).
    pub async fn fail(&mut self, error: &StreamError, our_header: Option<&StreamHeader>) {
        let mut out = Vec::new();
        if !self.header_sent {
            if let Some(h) = our_header {
                h.write_to(&mut out);
            }
        }
        out.extend_from_slice(&error.to_xml());
        fedgate_xmpp::write_stream_close(&mut out);
        self.close_with(&out).await;
    }

    /// Close the stream normally (bounded as [`Conn::fail`]).
    pub async fn close(&mut self) {
        self.close_with(fedgate_xmpp::STREAM_CLOSE).await;
    }

    async fn close_with(&mut self, last: &[u8]) {
        if self.writing {
            return;
        }
        let limit = CLOSE_WRITE_TIMEOUT.min(self.write_stall);
        if self.send_within(last, limit).await.is_ok() {
            let _ = tokio::time::timeout(limit, self.io.shutdown()).await;
        }
    }

    /// The TLS state both roles share (version, cipher suite, ALPN, peer certificates); `None`
    /// on a plain stream.
    fn tls_state(&self) -> Option<&rustls::CommonState> {
        let state: &rustls::CommonState = match &self.io {
            Io::TlsServer(s) => s.get_ref().1,
            Io::TlsClient(s) => s.get_ref().1,
            Io::Plain(_) | Io::Gone => return None,
        };
        Some(state)
    }

    /// Whether the transport is TLS, and its protocol version name.
    pub fn tls_version(&self) -> Option<&'static str> {
        let v = self.tls_state()?.protocol_version();
        Some(match v {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
            _ => "TLS",
        })
    }

    /// The TLS cipher suite negotiated, if any.
    pub fn cipher_suite(&self) -> Option<rustls::CipherSuite> {
        self.tls_state()?
            .negotiated_cipher_suite()
            .map(|s| s.suite())
    }

    /// The ALPN protocol negotiated, if any.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.tls_state()?.alpn_protocol()
    }

    /// The peer's certificate chain (after TLS).
    pub fn peer_certificates(&self) -> Vec<rustls_pki_types::CertificateDer<'static>> {
        self.tls_state()
            .and_then(|s| s.peer_certificates())
            .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
            .unwrap_or_default()
    }

    pub fn is_tls(&self) -> bool {
        matches!(self.io, Io::TlsServer(_) | Io::TlsClient(_))
    }

    /// Start a new stream on the same transport (after SASL `<success/>`, and by the TLS
    /// upgrades): the parser expects a new stream header and our header counts as not sent.
    /// Returns the number of bytes the peer sent that were not parsed yet (discarded).
    pub fn restart(&mut self) -> usize {
        self.header_sent = false;
        self.parser.reset()
    }

    /// Take the plain TCP stream out for a TLS upgrade and restart the stream
    /// ([`Conn::restart`]); returns the stream and the bytes discarded.
    fn take_plain(&mut self) -> Result<(TcpStream, usize), UpgradeError> {
        match std::mem::replace(&mut self.io, Io::Gone) {
            Io::Plain(tcp) => {
                let discarded = self.restart();
                // TLS needs no read buffer of ours.
                self.buf = Vec::new();
                Ok((tcp, discarded))
            }
            other => {
                self.io = other;
                Err(UpgradeError::NotPlain)
            }
        }
    }

    /// Upgrade a plain stream to TLS as the client (Direct TLS at once, or after STARTTLS's
    /// `<proceed/>`), `server_name` for SNI; the stream restarts. Bytes the peer sent after
    /// `<proceed/>` are discarded. Not bounded in time: the caller bounds it (a cancelled
    /// upgrade leaves the connection without a transport).
    pub async fn start_tls_client(
        &mut self,
        config: Arc<rustls::ClientConfig>,
        server_name: rustls_pki_types::ServerName<'static>,
    ) -> Result<(), UpgradeError> {
        let (tcp, _) = self.take_plain()?;
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(server_name, tcp)
            .await?;
        let mut tls = Box::new(tls);
        tls.get_mut().1.set_buffer_limit(Some(TLS_WRITE_CHUNK));
        self.io = Io::TlsClient(tls);
        Ok(())
    }

    /// Upgrade a plain stream to TLS as the server (Direct TLS at once, or after our
    /// `<proceed/>`); the stream restarts. A peer that sent anything after `<starttls/>` gets
    /// no handshake ([`UpgradeError::DataAfterStartTls`]). Not bounded in time: the caller
    /// bounds it (a cancelled upgrade leaves the connection without a transport).
    pub async fn accept_tls(
        &mut self,
        config: Arc<rustls::ServerConfig>,
    ) -> Result<(), UpgradeError> {
        let (tcp, discarded) = self.take_plain()?;
        if discarded > 0 {
            return Err(UpgradeError::DataAfterStartTls(discarded));
        }
        let mut tls = Box::new(tokio_rustls::TlsAcceptor::from(config).accept(tcp).await?);
        tls.get_mut().1.set_buffer_limit(Some(TLS_WRITE_CHUNK));
        self.io = Io::TlsServer(tls);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fedgate_xmpp::ns;

    #[tokio::test]
    async fn the_read_buffer_is_allocated_when_the_probe_fills_and_grows_on_a_busy_stream() {
        let (mut client, mut conn) = pair(Duration::from_secs(30), Arc::default()).await;
        conn.idle_after = Duration::from_secs(3600);
        assert_eq!(conn.buf.capacity(), 0);
        let mut out = Vec::new();
        StreamHeader::initiating("partner.example", "corp.example", true).write_to(&mut out);
        assert!(out.len() < READ_PROBE);
        client.write_all(&out).await.unwrap();
        assert!(matches!(
            conn.next_event().await.unwrap(),
            Event::StreamOpen(_)
        ));
        // A stream header fits the probe: still no read buffer.
        assert_eq!(conn.buf.capacity(), 0);
        let body = "x".repeat(100 * 1024);
        let big = Element::new("message", ns::SERVER)
            .with_attr("to", "bob@corp.example")
            .with_child(Element::new("body", ns::SERVER).with_text(body.clone()));
        let bytes = big.to_bytes();
        let writer = tokio::spawn(async move {
            client.write_all(&bytes).await.unwrap();
            client
        });
        match conn.next_event().await.unwrap() {
            Event::Element { element, .. } => {
                assert_eq!(element.children().next().map(|b| b.text()), Some(body))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(conn.buf.len(), READ_BUF_MAX);
        let _client = writer.await.unwrap();
    }

    /// A connected pair: the peer's socket and a fresh Conn on the other end.
    async fn pair(write_stall: Duration, counters: Arc<Counters>) -> (TcpStream, Conn) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let peer = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (server, _) = l.accept().await.unwrap();
        let limits = ConnLimits {
            codec: Limits::default(),
            write_stall,
        };
        (peer, Conn::new(server, limits, counters))
    }

    /// A connected pair: the peer's socket and a Conn on the other end that has read the
    /// peer's stream header; the Conn never counts as idle until a test says so.
    async fn opened() -> (TcpStream, Conn) {
        let (mut client, mut conn) = pair(Duration::from_secs(30), Arc::default()).await;
        conn.idle_after = Duration::from_secs(3600);
        let mut out = Vec::new();
        StreamHeader::initiating("partner.example", "corp.example", true).write_to(&mut out);
        client.write_all(&out).await.unwrap();
        assert!(matches!(
            conn.next_event().await.unwrap(),
            Event::StreamOpen(_)
        ));
        (client, conn)
    }

    /// Poll `next_event` once (it finds nothing to read): what an idle stream's loop does.
    async fn poll_once(conn: &mut Conn) {
        tokio::select! {
            biased;
            ev = conn.next_event() => panic!("nothing was sent, got {ev:?}"),
            _ = std::future::ready(()) => {}
        }
    }

    fn message(body_len: usize) -> Element {
        Element::new("message", ns::SERVER)
            .with_attr("to", "bob@corp.example")
            .with_child(Element::new("body", ns::SERVER).with_text("x".repeat(body_len)))
    }

    async fn expect_body(conn: &mut Conn, len: usize) {
        match conn.next_event().await.unwrap() {
            Event::Element { element, .. } => {
                assert_eq!(element.children().next().map(|b| b.text().len()), Some(len))
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn after_a_large_stanza_an_idle_stream_gives_its_read_buffers_back() {
        let (mut client, mut conn) = opened().await;
        let bytes = message(60 * 1024).to_bytes();
        let writer = tokio::spawn(async move {
            client.write_all(&bytes).await.unwrap();
            client
        });
        expect_body(&mut conn, 60 * 1024).await;
        let mut client = writer.await.unwrap();
        // Consumed, but kept while the stream may be busy: a read that finds nothing before
        // IDLE_RELEASE keeps everything.
        let busy = conn.read_capacity();
        assert!(busy > 4 * 1024, "{busy}");
        poll_once(&mut conn).await;
        assert_eq!(conn.read_capacity(), busy);
        // Idle (nothing for IDLE_RELEASE, here 0): the next read that finds nothing frees both
        // the read buffer and the parser's buffers.
        conn.idle_after = Duration::ZERO;
        poll_once(&mut conn).await;
        assert_eq!(conn.buf.capacity(), 0);
        assert_eq!(conn.read_capacity(), 0);
        // The stream still works: small, then large stanzas.
        client.write_all(&message(10).to_bytes()).await.unwrap();
        expect_body(&mut conn, 10).await;
        let bytes = message(30 * 1024).to_bytes();
        let writer = tokio::spawn(async move {
            client.write_all(&bytes).await.unwrap();
            client
        });
        expect_body(&mut conn, 30 * 1024).await;
        let _client = writer.await.unwrap();
        poll_once(&mut conn).await;
        assert_eq!(conn.read_capacity(), 0);
    }

    #[tokio::test]
    async fn an_idle_stream_reads_keepalives_without_a_buffer_and_reallocates_for_a_stanza() {
        let (mut client, mut conn) = opened().await;
        conn.idle_after = Duration::ZERO;
        poll_once(&mut conn).await;
        assert_eq!(conn.read_capacity(), 0);
        client.write_all(b" ").await.unwrap();
        assert!(matches!(
            conn.next_event().await.unwrap(),
            Event::Whitespace(1)
        ));
        assert_eq!(conn.buf.capacity(), 0, "a keepalive fits the probe");
        // More than the probe: the first READ_PROBE bytes go through the probe, the rest
        // through a READ_BUF_MIN buffer, and the stanza arrives whole.
        conn.idle_after = Duration::from_secs(3600);
        client.write_all(&message(1000).to_bytes()).await.unwrap();
        expect_body(&mut conn, 1000).await;
        assert_eq!(conn.buf.len(), READ_BUF_MIN);
        assert_eq!(conn.counters.bytes_in.load(Ordering::Relaxed) as usize, {
            let mut h = Vec::new();
            StreamHeader::initiating("partner.example", "corp.example", true).write_to(&mut h);
            h.len() + 1 + message(1000).to_bytes().len()
        });
    }

    #[tokio::test]
    async fn a_write_dropped_half_way_leaves_the_connection_writing_nothing_more() {
        let (mut peer, mut conn) = pair(Duration::from_secs(30), Arc::default()).await;
        conn.send_bytes(b"<a/>").await.unwrap();
        assert!(!conn.write_cut());
        // More than the socket buffers hold: the write waits; the task stops waiting for it.
        let big = vec![b' '; 64 * 1024 * 1024];
        tokio::select! {
            biased;
            _ = conn.send_bytes(&big) => panic!("64 MiB fit the socket buffers"),
            _ = tokio::task::yield_now() => {}
        }
        assert!(conn.write_cut());
        assert!(!conn.is_stalled(), "a cut write is not the peer's stall");
        // No closing write after it, and later writes fail at once.
        conn.fail(
            &StreamError::new(fedgate_xmpp::StreamErrorCondition::PolicyViolation, "test"),
            None,
        )
        .await;
        assert_eq!(
            conn.send_bytes(b" ").await.unwrap_err().kind(),
            io::ErrorKind::BrokenPipe
        );
        // What the peer gets: the first write whole, then part of the cut one, never the error.
        drop(conn);
        let mut got = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut peer, &mut got)
            .await
            .unwrap();
        assert!(got.starts_with(b"<a/>"));
        assert!(got.len() < 4 + big.len());
        assert!(
            got[4..].iter().all(|b| *b == b' '),
            "only the cut write's bytes"
        );
    }

    #[tokio::test]
    async fn a_peer_that_stops_reading_stalls_the_connection_which_then_writes_nothing() {
        let counters = Arc::new(Counters::default());
        let (_silent, mut conn) = pair(Duration::from_millis(300), counters.clone()).await;
        // More than any socket buffers hold: the write stalls.
        let big = vec![b' '; 64 * 1024 * 1024];
        let e = conn.send_bytes(&big).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
        assert!(conn.is_stalled());
        // The closing writes are not tried (no second wait), and later writes fail at once.
        let started = std::time::Instant::now();
        conn.fail(
            &StreamError::new(
                fedgate_xmpp::StreamErrorCondition::ConnectionTimeout,
                "test",
            ),
            None,
        )
        .await;
        conn.close().await;
        assert_eq!(
            conn.send_bytes(b" ").await.unwrap_err().kind(),
            io::ErrorKind::BrokenPipe
        );
        assert!(started.elapsed() < Duration::from_millis(300));
    }

    /// The transport under a TLS client in the tests below (a duplex pipe to the server): keeps
    /// the bytes written after [`Wire::record`] and counts the writes (a vectored write is one,
    /// as `writev` is). A slow one takes at most `per_write` bytes per write and answers every
    /// other write "not now" (a peer reading slowly).
    struct Wire {
        io: tokio::io::DuplexStream,
        recording: bool,
        written: Vec<u8>,
        writes: usize,
        per_write: usize,
        refuse_next: bool,
    }

    impl Wire {
        fn record(&mut self, per_write: usize) {
            self.recording = true;
            self.written.clear();
            self.writes = 0;
            self.per_write = per_write;
        }

        /// The plaintext length of each application-data record written (TLS 1.3: the
        /// record's length less the AEAD tag and the inner content type).
        fn records(&self) -> Vec<usize> {
            let mut out = Vec::new();
            let mut at = 0;
            while at + 5 <= self.written.len() {
                assert_eq!(self.written[at], 23, "an application-data record");
                let len = u16::from_be_bytes([self.written[at + 3], self.written[at + 4]]) as usize;
                out.push(len - 16 - 1);
                at += 5 + len;
            }
            assert_eq!(at, self.written.len(), "whole records");
            out
        }
    }

    impl AsyncRead for Wire {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Pin::new(&mut self.io).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for Wire {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.poll_write_vectored(cx, &[io::IoSlice::new(buf)])
        }
        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            bufs: &[io::IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            if self.recording && self.per_write != usize::MAX {
                self.refuse_next = !self.refuse_next;
                if !self.refuse_next {
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
            }
            let mut take: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
            take.truncate(self.per_write);
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &take))?;
            if self.recording {
                self.writes += 1;
                self.written.extend_from_slice(&take[..n]);
            }
            Poll::Ready(Ok(n))
        }
        fn is_write_vectored(&self) -> bool {
            true
        }
        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.io).poll_flush(cx)
        }
        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.io).poll_shutdown(cx)
        }
    }

    /// A TLS 1.3 client over a [`Wire`] with its buffer limit set as the upgrades set it, and
    /// the server end (a self-signed certificate, trusted by the client).
    async fn tls_over_wire() -> (
        tokio_rustls::client::TlsStream<Wire>,
        tokio_rustls::server::TlsStream<tokio::io::DuplexStream>,
    ) {
        use rustls_pki_types::pem::PemObject;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let (cert, key) = crate::tls::self_signed("corp.example").unwrap();
        let cert = rustls_pki_types::CertificateDer::from_pem_slice(cert.as_bytes()).unwrap();
        let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let (a, b) = tokio::io::duplex(4 * 1024 * 1024);
        let wire = Wire {
            io: a,
            recording: false,
            written: Vec::new(),
            writes: 0,
            per_write: usize::MAX,
            refuse_next: false,
        };
        let name = rustls_pki_types::ServerName::try_from("corp.example").unwrap();
        let (c, s) = tokio::join!(
            tokio_rustls::TlsConnector::from(Arc::new(client)).connect(name, wire),
            tokio_rustls::TlsAcceptor::from(Arc::new(server)).accept(b)
        );
        let mut c = c.unwrap();
        c.get_mut().1.set_buffer_limit(Some(TLS_WRITE_CHUNK));
        (c, s.unwrap())
    }

    /// Write `batch` as a Conn writes it, check the server gets it whole, and return the
    /// plaintext length of each record and the number of writes to the socket.
    async fn records_of(batch: &[u8], per_write: usize) -> (Vec<usize>, usize) {
        let (mut client, mut server) = tls_over_wire().await;
        client.get_mut().0.record(per_write);
        let reader = tokio::spawn({
            let len = batch.len();
            async move {
                let mut got = vec![0; len];
                tokio::io::AsyncReadExt::read_exact(&mut server, &mut got)
                    .await
                    .unwrap();
                got
            }
        });
        write_flushed(&mut client, batch).await.unwrap();
        assert_eq!(reader.await.unwrap(), batch);
        let wire = client.get_ref().0;
        (wire.records(), wire.writes)
    }

    fn batch_of(stanzas: usize) -> Vec<u8> {
        let one = message(1000).to_bytes();
        one.iter()
            .copied()
            .cycle()
            .take(one.len() * stanzas)
            .collect()
    }

    #[tokio::test]
    async fn a_tls_batch_goes_out_in_full_records_and_one_write() {
        const FULL: usize = 16 * 1024;
        // A few stanzas: one record, one write.
        let small = batch_of(3);
        assert_eq!(records_of(&small, usize::MAX).await, (vec![small.len()], 1));
        // The largest batch an outbound stream writes (up to WRITE_BATCH_BYTES): full records,
        // all in one vectored write.
        let stanzas = crate::outbound::WRITE_BATCH_BYTES / message(1000).to_bytes().len();
        let big = batch_of(stanzas);
        assert!(big.len() <= TLS_WRITE_CHUNK && big.len() > 3 * FULL);
        let (records, writes) = records_of(&big, usize::MAX).await;
        assert_eq!(records, vec![FULL, FULL, FULL, big.len() - 3 * FULL]);
        assert_eq!(writes, 1);
    }

    #[tokio::test]
    async fn a_large_write_to_a_slow_peer_still_goes_out_in_full_records() {
        const FULL: usize = 16 * 1024;
        // 150 KiB (one large stanza, or a header and a stanza) to a socket that takes 5,000
        // bytes per write: every record full but the last of each TLS_WRITE_CHUNK part.
        let bytes = batch_of(150);
        let (records, writes) = records_of(&bytes, 5_000).await;
        let (mut want, mut want_writes) = (Vec::new(), 0);
        for part in bytes.chunks(TLS_WRITE_CHUNK) {
            let n = part.len().div_ceil(FULL);
            want.extend(std::iter::repeat_n(FULL, part.len() / FULL));
            if part.len() % FULL > 0 {
                want.push(part.len() % FULL);
            }
            // Each part takes as few writes as its bytes need (22 bytes of record overhead).
            want_writes += (part.len() + n * 22).div_ceil(5_000);
        }
        assert_eq!(records, want);
        assert_eq!(writes, want_writes);
    }

    #[tokio::test]
    async fn batches_reuse_the_write_buffer_and_an_idle_stream_gives_it_back() {
        let (mut peer, mut conn) = opened().await;
        assert_eq!(conn.write_capacity(), 0, "nothing before the first batch");
        let big = batch_of(60);
        let total = big.len() + 1000 + 10;
        let reader = tokio::spawn(async move {
            let mut got = vec![0; total];
            tokio::io::AsyncReadExt::read_exact(&mut peer, &mut got)
                .await
                .unwrap();
            got
        });
        assert_eq!(
            conn.send_filled(|out| {
                assert!(out.is_empty());
                out.extend_from_slice(&big);
                60
            })
            .await
            .unwrap(),
            60
        );
        let held = conn.write_capacity();
        assert!(held >= big.len(), "{held}");
        let at = conn.write_buf.as_ptr();
        // A smaller batch goes through the same buffer: no allocation.
        conn.send_filled(|out| {
            assert!(out.is_empty(), "given empty");
            out.extend_from_slice(&big[..1000])
        })
        .await
        .unwrap();
        assert_eq!((conn.write_capacity(), conn.write_buf.as_ptr()), (held, at));
        // Busy (written within IDLE_RELEASE): a read that finds nothing keeps it.
        poll_once(&mut conn).await;
        assert_eq!(conn.write_capacity(), held);
        // Nothing written for IDLE_RELEASE (here 0): the next read that finds nothing frees it.
        conn.idle_after = Duration::ZERO;
        poll_once(&mut conn).await;
        assert_eq!(conn.write_capacity(), 0);
        // The stream still writes, and the peer got every byte in order.
        conn.send_filled(|out| out.extend_from_slice(&big[..10]))
            .await
            .unwrap();
        let got = reader.await.unwrap();
        assert_eq!(&got[..big.len()], &big[..]);
        assert_eq!(&got[big.len()..big.len() + 1000], &big[..1000]);
        assert_eq!(&got[big.len() + 1000..], &big[..10]);
    }
}
