//! `fedgate status`: fetch `/status` from a running gateway's metrics listener and print the
//! live streams and the refusals by reason (partner not allowed, user not enabled, not
//! authorised, ...) as tables; `fedgate status --cluster`: the nodes of the pool as the store
//! lists them ([`render_cluster`]).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Fetch `/status` as JSON.
pub fn fetch(addr: SocketAddr) -> anyhow::Result<serde_json::Value> {
    let mut tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(3)).map_err(|e| {
        anyhow::anyhow!("cannot reach the gateway's metrics listener at {addr}: {e}")
    })?;
    tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
    tcp.write_all(b"GET /status HTTP/1.0\r\nHost: fedgate\r\n\r\n")?;
    let mut body = String::new();
    tcp.read_to_string(&mut body)?;
    let json = body
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .ok_or_else(|| anyhow::anyhow!("malformed HTTP answer from {addr}"))?;
    Ok(serde_json::from_str(json)?)
}

/// The table `fedgate status` prints.
pub fn render_table(status: &serde_json::Value) -> String {
    let mut rows = vec![[
        "PARTNER".to_owned(),
        "SIDE".into(),
        "DIRECTION".into(),
        "DOMAINS".into(),
        "AUTH".into(),
        "TLS".into(),
        "SINCE".into(),
        "BYTES IN".into(),
        "BYTES OUT".into(),
    ]];
    let empty = Vec::new();
    for s in status["streams"].as_array().unwrap_or(&empty) {
        let text = |k: &str| cell(&s[k]);
        let domains = s["domains"]
            .as_array()
            .map(|d| {
                d.iter()
                    .filter_map(|x| x.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default();
        let since = s["since"]
            .as_u64()
            .map(format_time)
            .unwrap_or_else(|| "-".into());
        rows.push([
            text("partner"),
            text("side"),
            text("direction"),
            if domains.is_empty() {
                "-".into()
            } else {
                domains
            },
            text("auth_method"),
            text("tls"),
            since,
            text("bytes_in"),
            text("bytes_out"),
        ]);
    }
    let mut out = String::new();
    // First, since it matters most: the gateway relays on an old policy while it lasts.
    if status["store"]["available"] == false {
        out.push_str(&format!(
            "STORE UNAVAILABLE (relaying on the last policy read): {}\n\n",
            cell(&status["store"]["error"])
        ));
    }
    out.push_str(&columns(&rows, "(no live streams)"));
    out.push('\n');
    out.push_str(&render_refusals(status));
    let d = &status["internal_dns"];
    if d.is_object() {
        let state = if d["ok"].as_bool() == Some(true) {
            "ok".to_owned()
        } else if d["failures"].as_u64().unwrap_or(0) > 0 {
            format!("FAILED: {}", cell(&d["last_error"]))
        } else {
            "not written yet".to_owned()
        };
        out.push_str(&format!(
            "\nInternal DNS file {}: {state} (revision {}, {} rewrites, {} failures)\n",
            cell(&d["file"]),
            cell(&d["revision"]),
            cell(&d["rewrites"]),
            cell(&d["failures"]),
        ));
    }
    out.push('\n');
    out.push_str(&render_health(status));
    out
}

/// The table `fedgate status --cluster` prints: every node that wrote a heartbeat to the store.
pub fn render_cluster(nodes: &[fedgate_store::NodeStatus]) -> String {
    let mut rows = vec![[
        "NODE".to_owned(),
        "STATE".into(),
        "LAST HEARTBEAT".into(),
        "STARTED".into(),
        "VERSION".into(),
        "ADDRESS".into(),
        "STREAMS IN".into(),
        "STREAMS OUT".into(),
        "LEASES".into(),
    ]];
    for n in nodes {
        rows.push([
            n.node.clone(),
            if n.alive { "alive" } else { "dead" }.into(),
            format!("{:.1} s ago", n.seconds_since_heartbeat.max(0.0)),
            n.started_at.clone(),
            n.version.clone(),
            n.address.clone().unwrap_or_else(|| "-".into()),
            n.inbound_streams.to_string(),
            n.outbound_streams.to_string(),
            n.leases.to_string(),
        ]);
    }
    columns(&rows, "(no node has written a heartbeat to this store)")
}

/// Partner health: per partner and direction, the last success and failure, streams and
/// failures in the last hour and day, the certificate's not-after last seen.
fn render_health(status: &serde_json::Value) -> String {
    let mut rows = vec![[
        "PARTNER HEALTH".to_owned(),
        "DIRECTION".into(),
        "LAST SUCCESS".into(),
        "LAST FAILURE".into(),
        "STREAMS 1H/24H".into(),
        "FAILURES 1H/24H".into(),
        "REFUSALS 1H/24H".into(),
        "CERT NOT AFTER".into(),
    ]];
    let empty = Vec::new();
    let time = |v: &serde_json::Value| v.as_u64().map_or_else(|| "-".into(), format_time);
    for h in status["partner_health"].as_array().unwrap_or(&empty) {
        let success = &h["LastSuccess"];
        let success = if success.is_null() {
            "-".to_owned()
        } else {
            format!(
                "{} {} {}",
                time(&success["At"]),
                cell(&success["Method"]),
                cell(&success["TlsVersion"])
            )
        };
        let failure = &h["LastFailure"];
        let failure = if failure.is_null() {
            "-".to_owned()
        } else {
            format!(
                "{} {}: {}",
                time(&failure["At"]),
                cell(&failure["Step"]),
                cell(&failure["Reason"])
            )
        };
        rows.push([
            cell(&h["Partner"]),
            cell(&h["Direction"]),
            success,
            failure,
            format!("{}/{}", h["StreamsLastHour"], h["StreamsLastDay"]),
            format!("{}/{}", h["FailuresLastHour"], h["FailuresLastDay"]),
            format!("{}/{}", h["RefusalsLastHour"], h["RefusalsLastDay"]),
            h["CertificateNotAfter"]
                .as_i64()
                .map_or_else(|| "-".into(), fedgate_model::probe::format_utc),
        ]);
    }
    columns(&rows, "(no partner streams yet)")
}

/// The refusals since the gateway started, by side and reason (partner not allowed, user not
/// enabled, not authorised, ...), as a table.
fn render_refusals(status: &serde_json::Value) -> String {
    let mut rows = vec![[
        "REFUSALS".to_owned(),
        "SIDE".into(),
        "COUNT".into(),
        "WHAT".into(),
    ]];
    let empty = Vec::new();
    for r in status["refusals"].as_array().unwrap_or(&empty) {
        let text = |k: &str| cell(&r[k]);
        rows.push([text("reason"), text("side"), text("count"), text("what")]);
    }
    columns(&rows, "(no refusals)")
}

/// A JSON value as a table cell: strings as they are, null as `-`.
fn cell(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(v) => v.clone(),
        serde_json::Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// Rows (the first is the header) as left-aligned columns two spaces apart; `empty` follows
/// the header when there are no other rows.
fn columns<const N: usize>(rows: &[[String; N]], empty: &str) -> String {
    let mut widths = [0usize; N];
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    if rows.len() == 1 {
        out.push_str(empty);
        out.push('\n');
    }
    out
}

fn format_time(unix: u64) -> String {
    fedgate_model::probe::format_utc(i64::try_from(unix).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_and_time() {
        assert_eq!(format_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_time(1_764_057_600), "2025-11-25T08:00:00Z");
        let v = serde_json::json!({"streams": [{"partner": "partner.example", "side": "External", "direction": "Inbound",
            "domains": ["partner.example"], "auth_method": "TcpDialback", "tls": null, "since": 0, "bytes_in": 10, "bytes_out": 20}]});
        let t = render_table(&v);
        assert!(
            t.contains("partner.example") && t.contains("TcpDialback") && t.contains("1970-01-01"),
            "{t}"
        );
        assert!(render_table(&serde_json::json!({"streams": []})).contains("no live streams"));
        assert!(render_table(&serde_json::json!({"streams": []})).contains("(no refusals)"));
        assert!(!t.contains("STORE"), "{t}");
    }

    #[test]
    fn cluster_nodes_as_a_table() {
        let node = |name: &str, alive: bool| fedgate_store::NodeStatus {
            node: name.into(),
            started_at: "2026-12-07T14:00:00.000Z".into(),
            last_heartbeat: "2026-12-07T14:10:00.000Z".into(),
            seconds_since_heartbeat: if alive { 1.5 } else { 42.0 },
            alive,
            version: "0.1.0".into(),
            address: alive.then(|| "192.0.2.1:5269".into()),
            inbound_streams: 3,
            outbound_streams: 1,
            leases: 4,
        };
        let t = render_cluster(&[node("edge1", true), node("edge2", false)]);
        let words = |n: &str| -> Vec<String> {
            t.lines()
                .find(|l| l.starts_with(n))
                .unwrap_or_else(|| panic!("no {n} row:\n{t}"))
                .split_whitespace()
                .map(str::to_owned)
                .collect()
        };
        assert!(t.starts_with("NODE"), "{t}");
        assert_eq!(
            words("edge1"),
            [
                "edge1",
                "alive",
                "1.5",
                "s",
                "ago",
                "2026-12-07T14:00:00.000Z",
                "0.1.0",
                "192.0.2.1:5269",
                "3",
                "1",
                "4"
            ]
        );
        assert_eq!(words("edge2")[1..3], ["dead", "42.0"]);
        assert!(render_cluster(&[]).contains("(no node has written a heartbeat"));
    }

    #[test]
    fn an_unavailable_store_is_said_first() {
        let v = serde_json::json!({"streams": [], "refusals": [],
            "store": {"available": false, "error": "cannot use PostgreSQL at db.example:5432: connection refused"}});
        let t = render_table(&v);
        assert!(
            t.starts_with("STORE UNAVAILABLE (relaying on the last policy read): cannot use PostgreSQL at db.example:5432"),
            "{t}"
        );
        let fine = serde_json::json!({"streams": [], "store": {"available": true, "error": null}});
        assert!(!render_table(&fine).contains("STORE"));
    }

    #[test]
    fn refusals_by_reason_are_shown() {
        let v = serde_json::json!({"streams": [], "refusals": [
            {"side": "External", "reason": "not_listed", "what": "stream: partner not allowed (not on the partner list)", "count": 3},
            {"side": "Internal", "reason": "user_not_enabled", "what": "stanza: local user not enabled for XMPP (external access policy)", "count": 2},
            {"side": "External", "reason": "not_authorised", "what": "stanza: not authorised by the local user (PublicUnverified partner)", "count": 1},
        ]});
        let t = render_table(&v);
        let line = |reason: &str| {
            t.lines()
                .find(|l| l.starts_with(reason))
                .unwrap_or_else(|| panic!("no {reason} row:\n{t}"))
                .split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert!(t.contains("REFUSALS"), "{t}");
        assert_eq!(line("not_listed"), "not_listed External 3");
        assert_eq!(line("user_not_enabled"), "user_not_enabled Internal 2");
        assert_eq!(line("not_authorised"), "not_authorised External 1");
        assert!(
            t.contains("partner not allowed") && t.contains("not authorised by the local user"),
            "{t}"
        );
        assert!(!t.contains("(no refusals)"), "{t}");
    }
}
