//! What the metrics listener shows: Prometheus text for `/metrics` (streams by side and
//! direction, stanzas relayed and bounced, refusals by reason, whether the store can be read,
//! this node's name) and JSON for `/status` (the node's name, the live streams, the refusals by
//! side and reason, the store's availability). The admin side serves them over HTTP
//! (`fedgate_admin::listener`).

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

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
