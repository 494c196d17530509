//! The metrics listener: Prometheus text at `/metrics` (streams by side and direction, stanzas
//! relayed and bounced, refusals by reason) and JSON at `/status` (the live streams and the
//! refusals by side and reason), over a minimal HTTP/1.0 responder (GET only, one request per connection, bounded request size).

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::state::{Direction, Shared};

/// Prometheus exposition text.
pub fn render_metrics(shared: &Shared) -> String {
    let mut out = String::new();
    let mut counts = std::collections::BTreeMap::new();
    shared.registry.for_each(|_, e| {
        let dir = match e.direction {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        };
        *counts
            .entry((e.side.to_string(), dir, e.authenticated))
            .or_insert(0u64) += 1;
    });
    out.push_str("# HELP fedgate_streams Live s2s streams.\n# TYPE fedgate_streams gauge\n");
    for ((side, dir, auth), n) in counts {
        let _ = writeln!(
            out,
            "fedgate_streams{{side=\"{side}\",direction=\"{dir}\",authenticated=\"{auth}\"}} {n}"
        );
    }
    let m = &shared.metrics;
    let _ = write!(
        out,
        "# HELP fedgate_stanzas_relayed_total Stanzas written to an outbound stream.\n# TYPE fedgate_stanzas_relayed_total counter\nfedgate_stanzas_relayed_total {}\n\
         # HELP fedgate_stanzas_bounced_total Stanzas bounced with an error.\n# TYPE fedgate_stanzas_bounced_total counter\nfedgate_stanzas_bounced_total {}\n\
         # HELP fedgate_connections_accepted_total Accepted TCP connections.\n# TYPE fedgate_connections_accepted_total counter\nfedgate_connections_accepted_total {}\n",
        m.stanzas_relayed.load(Ordering::Relaxed),
        m.stanzas_bounced.load(Ordering::Relaxed),
        m.streams_accepted.load(Ordering::Relaxed),
    );
    out.push_str("# HELP fedgate_refusals_total Refused or closed streams and refused stanzas (user_not_enabled, not_authorised), by side and reason.\n# TYPE fedgate_refusals_total counter\n");
    for ((side, reason), n) in m.refusals() {
        let _ = writeln!(
            out,
            "fedgate_refusals_total{{side=\"{side}\",reason=\"{reason}\"}} {n}"
        );
    }
    out
}

/// JSON for `/status`.
pub fn render_status(shared: &Shared) -> String {
    serde_json::json!({
        "streams": shared.registry.status(),
        "refusals": shared.metrics.refusal_status(),
    })
    .to_string()
}

async fn answer(shared: Arc<Shared>, mut tcp: tokio::net::TcpStream) -> std::io::Result<()> {
    let mut buf = vec![0u8; 4096];
    let mut len = 0;
    while !buf[..len].windows(4).any(|w| w == b"\r\n\r\n")
        && !buf[..len].windows(2).any(|w| w == b"\n\n")
    {
        if len == buf.len() {
            return Ok(());
        }
        let n = tcp.read(&mut buf[len..]).await?;
        if n == 0 {
            break;
        }
        len += n;
    }
    let request = String::from_utf8_lossy(&buf[..len]);
    let path = request.split_whitespace().nth(1).unwrap_or("/");
    let (status, ctype, body) = match path {
        "/metrics" => (
            "200 OK",
            "text/plain; version=0.0.4",
            render_metrics(&shared),
        ),
        "/status" => ("200 OK", "application/json", render_status(&shared)),
        _ => (
            "404 Not Found",
            "text/plain",
            "not found: try /metrics or /status\n".to_owned(),
        ),
    };
    let head = format!(
        "HTTP/1.0 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    tcp.write_all(head.as_bytes()).await?;
    tcp.write_all(body.as_bytes()).await?;
    tcp.shutdown().await
}

/// Serve the metrics listener until the task is aborted.
pub async fn serve(shared: Arc<Shared>, listener: TcpListener) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let s = shared.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(5), answer(s, tcp)).await;
        });
    }
}
