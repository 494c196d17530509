//! The metrics listener: Prometheus text at `/metrics` (streams by side and direction, stanzas
//! relayed and bounced, refusals by reason, whether the store can be read, this node's name) and
//! JSON at `/status` (the node's name, the live streams, the refusals by side and reason, the store's availability), over a minimal HTTP/1.0 responder (GET only, one request per connection, bounded request size).

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
    out.push_str("# HELP fedgate_stanzas_dropped_total Refused stanzas dropped without an answer to their sender (unsolicited, contact_request_limited, bounce_rate_limited, ...), by side and reason.\n# TYPE fedgate_stanzas_dropped_total counter\n");
    for ((side, reason), n) in m.drops() {
        let _ = writeln!(
            out,
            "fedgate_stanzas_dropped_total{{side=\"{side}\",reason=\"{reason}\"}} {n}"
        );
    }
    let (requests, paths, budgets) = shared.sessions().len();
    let _ = write!(
        out,
        "# HELP fedgate_sessions PublicUnverified session state: pending requests, directed-presence paths, remote users with a contact-request budget in use.\n# TYPE fedgate_sessions gauge\n\
         fedgate_sessions{{kind=\"requests\"}} {requests}\nfedgate_sessions{{kind=\"paths\"}} {paths}\nfedgate_sessions{{kind=\"contact_budgets\"}} {budgets}\n\
         # HELP fedgate_session_table_full_total Session changes not recorded because the table was at its bound.\n# TYPE fedgate_session_table_full_total counter\nfedgate_session_table_full_total {}\n",
        m.session_table_full.load(Ordering::Relaxed),
    );
    out.push_str("# HELP fedgate_refusals_total Refused or closed streams and refused stanzas (user_not_enabled, not_authorised), by side and reason.\n# TYPE fedgate_refusals_total counter\n");
    for ((side, reason), n) in m.refusals() {
        let _ = writeln!(
            out,
            "fedgate_refusals_total{{side=\"{side}\",reason=\"{reason}\"}} {n}"
        );
    }
    if let Some(d) = shared.internal_dns() {
        let _ = write!(
            out,
            "# HELP fedgate_internal_dns_rewrites_total [internal_dns] file rewrites (written and reloaded) after partner list changes.\n# TYPE fedgate_internal_dns_rewrites_total counter\nfedgate_internal_dns_rewrites_total {}\n\
             # HELP fedgate_internal_dns_failures_total Failed [internal_dns] attempts (writing the file or the reload command).\n# TYPE fedgate_internal_dns_failures_total counter\nfedgate_internal_dns_failures_total {}\n\
             # HELP fedgate_internal_dns_ok 1 when the last [internal_dns] attempt succeeded.\n# TYPE fedgate_internal_dns_ok gauge\nfedgate_internal_dns_ok {}\n",
            d.rewrites,
            d.failures,
            u8::from(d.ok),
        );
    }
    let (written, suppressed) = shared.refusal_log.counts();
    let _ = write!(
        out,
        "# HELP fedgate_refusal_log_lines_total Refusal log lines written, and left out by the rate limit (per source before authentication, per peer after).\n# TYPE fedgate_refusal_log_lines_total counter\n\
         fedgate_refusal_log_lines_total{{outcome=\"written\"}} {written}\n\
         fedgate_refusal_log_lines_total{{outcome=\"suppressed\"}} {suppressed}\n",
    );
    let _ = write!(
        out,
        "# HELP fedgate_store_available Whether the last store call (policy refresh, heartbeat) succeeded (0: relaying on the last policy read).\n# TYPE fedgate_store_available gauge\nfedgate_store_available {}\n",
        u8::from(m.store_error().is_none())
    );
    let _ = write!(
        out,
        "# HELP fedgate_lease_fallbacks_total Stream admissions decided on this node's own streams because no stream lease could be taken (store unavailable or this node not alive in it).\n# TYPE fedgate_lease_fallbacks_total counter\nfedgate_lease_fallbacks_total {}\n",
        m.lease_fallbacks.load(Ordering::Relaxed)
    );
    // The node name is validated to letters, digits, '-', '_', '.': nothing to escape.
    let _ = write!(
        out,
        "# HELP fedgate_node_info This node of the pool sharing the store: its name and fedgate version.\n# TYPE fedgate_node_info gauge\nfedgate_node_info{{node=\"{}\",version=\"{}\"}} 1\n",
        shared.node_name,
        crate::cluster::VERSION,
    );
    render_partner_health(shared, &mut out);
    out
}

/// `fedgate_partner_last_success_timestamp_seconds{partner,direction}` and
/// `fedgate_partner_certificate_expiry_timestamp_seconds{partner}` (the latest not-after seen
/// on either direction). Partner identities are domain names: nothing to escape.
fn render_partner_health(shared: &Shared, out: &mut String) {
    let views = shared.health.views();
    out.push_str("# HELP fedgate_partner_last_success_timestamp_seconds When a stream with the partner last came up, by direction.\n# TYPE fedgate_partner_last_success_timestamp_seconds gauge\n");
    for v in &views {
        if let Some(s) = &v.last_success {
            let _ = writeln!(
                out,
                "fedgate_partner_last_success_timestamp_seconds{{partner=\"{}\",direction=\"{}\"}} {}",
                v.partner,
                v.direction.name(),
                s.at
            );
        }
    }
    out.push_str("# HELP fedgate_partner_certificate_expiry_timestamp_seconds The not-after of the partner's certificate last seen.\n# TYPE fedgate_partner_certificate_expiry_timestamp_seconds gauge\n");
    let mut expiry: std::collections::BTreeMap<&str, i64> = std::collections::BTreeMap::new();
    for v in &views {
        if let Some(t) = v.certificate_not_after {
            let e = expiry.entry(v.partner.as_str()).or_insert(t);
            *e = (*e).max(t);
        }
    }
    for (partner, t) in expiry {
        let _ = writeln!(
            out,
            "fedgate_partner_certificate_expiry_timestamp_seconds{{partner=\"{partner}\"}} {t}"
        );
    }
    out.push_str("# HELP fedgate_certificate_expiry_timestamp_seconds The not-after of the certificate this gateway presents for a hosted domain.\n# TYPE fedgate_certificate_expiry_timestamp_seconds gauge\n");
    for (domain, t) in shared.tls.hosted_not_after() {
        let _ = writeln!(
            out,
            "fedgate_certificate_expiry_timestamp_seconds{{domain=\"{domain}\"}} {t}"
        );
    }
}

/// JSON for `/status`.
pub fn render_status(shared: &Shared) -> String {
    let store_error = shared.metrics.store_error();
    serde_json::json!({
        "node": shared.node_name,
        "streams": shared.registry.status(),
        "refusals": shared.metrics.refusal_status(),
        "store": { "available": store_error.is_none(), "error": store_error },
        "internal_dns": shared.internal_dns(),
        "partner_health": shared.health.views(),
    })
    .to_string()
}

async fn answer(
    shared: Arc<Shared>,
    mut tcp: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
) -> std::io::Result<()> {
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
        // The live streams name partners and addresses: loopback only (the admin API serves
        // them to authenticated users anywhere).
        "/status" if !status_allowed(peer.ip()) => (
            "403 Forbidden",
            "text/plain",
            "/status is served to loopback addresses only; use the admin API's /api/v1/streams\n"
                .to_owned(),
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
    // At most this many requests at once; more wait in the listen backlog.
    let slots = Arc::new(tokio::sync::Semaphore::new(METRICS_CONNECTIONS));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let Ok((tcp, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let s = shared.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let _ = tokio::time::timeout(Duration::from_secs(5), answer(s, tcp, peer)).await;
        });
    }
}

/// Whether `/status` is served to `peer`: loopback addresses only (also IPv4-mapped).
pub fn status_allowed(peer: std::net::IpAddr) -> bool {
    match peer {
        std::net::IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or(v6.is_loopback(), |v4| v4.is_loopback()),
        v4 => v4.is_loopback(),
    }
}

/// Requests the metrics listener answers at once.
pub const METRICS_CONNECTIONS: usize = 32;

#[cfg(test)]
mod tests {
    use super::status_allowed;

    #[test]
    fn status_is_for_loopback_only() {
        for ok in ["127.0.0.1", "127.0.5.22", "::1", "::ffff:127.0.0.1"] {
            assert!(status_allowed(ok.parse().unwrap()), "{ok}");
        }
        for no in [
            "192.0.2.1",
            "10.0.0.1",
            "2001:db8::1",
            "::ffff:192.0.2.1",
            "0.0.0.0",
        ] {
            assert!(!status_allowed(no.parse().unwrap()), "{no}");
        }
    }
}
