//! Framing of one s2s connection: the transport (TCP, or TLS after STARTTLS, either role), the
//! stream parser of fedgate-xmpp on the read side, serialization and timed writes on the write
//! side, byte accounting. No policy here: callers decide what to do with each [`Event`].

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use fedgate_xmpp::{Element, Event, Limits, StreamError, StreamHeader, StreamParser};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
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

/// The transport under a stream.
pub enum Io {
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

/// A stream's read buffer starts this small (most streams are idle most of the time: this is
/// most of an idle stream's memory)…
pub const READ_BUF_MIN: usize = 2 * 1024;
/// …and doubles, up to this, each time a read fills it.
pub const READ_BUF_MAX: usize = 16 * 1024;

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

/// Byte counters shared with the status page.
#[derive(Debug, Default)]
pub struct Counters {
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
}

/// One connection: transport, parser and counters.
pub struct Conn {
    pub io: Io,
    pub parser: StreamParser,
    buf: Vec<u8>,
    pub counters: Arc<Counters>,
    /// Whether our stream header has been sent (so a stream error can be sent properly).
    pub header_sent: bool,
    write_stall: Duration,
    /// A write stalled (or was abandoned half-way): nothing more is written.
    stalled: bool,
}

impl Conn {
    pub fn new(io: Io, limits: ConnLimits, counters: Arc<Counters>) -> Conn {
        Conn {
            io,
            parser: StreamParser::new(limits.codec),
            buf: vec![0; READ_BUF_MIN],
            counters,
            header_sent: false,
            write_stall: limits.write_stall,
            stalled: false,
        }
    }

    /// Whether a write stalled (the peer stopped reading) or was abandoned: the stream can only
    /// be dropped.
    pub fn is_stalled(&self) -> bool {
        self.stalled
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
            let n = self.io.read(&mut self.buf).await?;
            if n == 0 {
                return Err(ReadError::Eof);
            }
            if n == self.buf.len() && self.buf.len() < READ_BUF_MAX {
                // A busy stream: read more per call from now on.
                self.buf.resize(self.buf.len() * 2, 0);
            }
            self.counters
                .bytes_in
                .fetch_add(n as u64, Ordering::Relaxed);
            self.parser.feed(&self.buf[..n]);
        }
    }

    /// Write bytes; a write that stalls for the write-stall limit fails with `TimedOut` and
    /// marks the connection stalled (see [`Conn::is_stalled`]).
    pub async fn send_bytes(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.send_within(bytes, self.write_stall).await
    }

    async fn send_within(&mut self, bytes: &[u8], limit: Duration) -> io::Result<()> {
        if self.stalled {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "an earlier write stalled",
            ));
        }
        match tokio::time::timeout(limit, async {
            self.io.write_all(bytes).await?;
            self.io.flush().await
        })
        .await
        {
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

    pub async fn send_header(&mut self, header: &StreamHeader) -> io::Result<()> {
        let mut out = Vec::new();
        header.write_to(&mut out);
        self.header_sent = true;
        self.send_bytes(&out).await
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
        let limit = CLOSE_WRITE_TIMEOUT.min(self.write_stall);
        if self.send_within(last, limit).await.is_ok() {
            let _ = tokio::time::timeout(limit, self.io.shutdown()).await;
        }
    }

    /// Whether the transport is TLS, and its protocol version name.
    pub fn tls_version(&self) -> Option<&'static str> {
        let v = match &self.io {
            Io::TlsServer(s) => s.get_ref().1.protocol_version(),
            Io::TlsClient(s) => s.get_ref().1.protocol_version(),
            _ => return None,
        };
        Some(match v {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
            _ => "TLS",
        })
    }

    /// The peer's certificate chain (after TLS).
    pub fn peer_certificates(&self) -> Vec<rustls_pki_types::CertificateDer<'static>> {
        let certs = match &self.io {
            Io::TlsServer(s) => s.get_ref().1.peer_certificates(),
            Io::TlsClient(s) => s.get_ref().1.peer_certificates(),
            _ => None,
        };
        certs
            .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
            .unwrap_or_default()
    }

    pub fn is_tls(&self) -> bool {
        matches!(self.io, Io::TlsServer(_) | Io::TlsClient(_))
    }

    /// Take the plain TCP stream out for a TLS upgrade; the parser restarts for the new stream.
    /// Returns the number of bytes the peer sent after `<starttls/>`/`<proceed/>` (an attack).
    pub fn take_plain(&mut self) -> Option<(TcpStream, usize)> {
        match std::mem::replace(&mut self.io, Io::Gone) {
            Io::Plain(tcp) => {
                let discarded = self.parser.reset();
                self.header_sent = false;
                Some((tcp, discarded))
            }
            other => {
                self.io = other;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fedgate_xmpp::ns;

    #[tokio::test]
    async fn the_read_buffer_starts_small_and_grows_on_a_busy_stream() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (server, _) = l.accept().await.unwrap();
        let mut conn = Conn::new(
            Io::Plain(server),
            ConnLimits {
                codec: Limits::default(),
                write_stall: Duration::from_secs(30),
            },
            Arc::new(Counters::default()),
        );
        assert_eq!(conn.buf.len(), READ_BUF_MIN);
        let mut out = Vec::new();
        StreamHeader::initiating("partner.example", "corp.example", true).write_to(&mut out);
        client.write_all(&out).await.unwrap();
        assert!(matches!(
            conn.next_event().await.unwrap(),
            Event::StreamOpen(_)
        ));
        // A short exchange leaves it small.
        assert_eq!(conn.buf.len(), READ_BUF_MIN);
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

    #[tokio::test]
    async fn a_peer_that_stops_reading_stalls_the_connection_which_then_writes_nothing() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _silent = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (server, _) = l.accept().await.unwrap();
        let counters = Arc::new(Counters::default());
        let mut conn = Conn::new(
            Io::Plain(server),
            ConnLimits {
                codec: Limits::default(),
                write_stall: Duration::from_millis(300),
            },
            counters.clone(),
        );
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
}
