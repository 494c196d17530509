//! Partner health (issue 14, item 3, in memory): per partner and direction, the last stream
//! that came up (method, TLS) and the last that failed (step, reason), counts per hour, and the
//! partner certificate's not-after, in `/status` and as metrics.

mod common;

use std::time::Duration;

use common::*;
use fedgate_gateway::Gateway;
use fedgate_model::health::{Direction, HealthView};
use fedgate_model::{AuthMethod, SaslNegotiation as S, TlsNegotiation as Tls};

fn health(gw: &Gateway, direction: Direction) -> Option<HealthView> {
    gw.shared
        .health
        .views()
        .into_iter()
        .find(|v| v.partner == "partner.example" && v.direction == direction)
}

async fn wait_health(
    gw: &Gateway,
    direction: Direction,
    done: impl Fn(&HealthView) -> bool,
) -> HealthView {
    let deadline = std::time::Instant::now() + T;
    loop {
        if let Some(v) = health(gw, direction).filter(|v| done(v)) {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no such {direction:?} health: {:?}",
            gw.shared.health.views()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A message from bob at corp.example to alice at partner.example, through the internal side.
async fn send_to_partner(gw: &Gateway) -> Peer {
    let mut p = Peer::connect(gw.internal_addr).await;
    p.dialback("corp.example", "partner.example", INTERNAL_SECRET)
        .await
        .unwrap();
    p.send_el(&message(
        "bob@corp.example/x",
        "alice@partner.example",
        "hi",
    ))
    .await;
    p
}

/// A gateway in `dir` whose partner.example (TLS and SASL Optional, dialback) is at an address
/// where nothing listens; `extra` as in `config`. Returns the gateway and that address.
async fn with_unreachable_partner(
    dir: &std::path::Path,
    extra: &str,
) -> (Gateway, std::net::SocketAddr) {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    add_partner(
        open_store(dir).as_ref(),
        "partner.example",
        Tls::Optional,
        S::Optional,
        true,
        Some(closed),
    );
    let (gw, _internal) = start(dir, extra).await;
    (gw, closed)
}

#[tokio::test]
async fn streams_that_come_up_are_recorded_per_direction_with_method_and_shown() {
    let dir = tempfile::tempdir().unwrap();
    let (partner_addr, partner_calls_back, _stanzas) = receiving_server(PARTNER_SECRET).await;
    add_dialback_partner(
        open_store(dir.path()).as_ref(),
        "partner.example",
        Some(partner_addr),
    );
    let (gw, _internal) = start(dir.path(), "").await;
    partner_calls_back.send(gw.external_addr).unwrap();
    assert!(gw.shared.health.views().is_empty());
    let _p = send_to_partner(&gw).await;
    // The message counts in the partner's traffic (issue 14 item 4), added by the stream that
    // relayed it within a second (on its tick).
    let sum = |s: &[u32]| s.iter().sum::<u32>();
    let out = wait_health(&gw, Direction::Outbound, |v| {
        v.last_success.is_some() && sum(&v.traffic.outbound) > 0
    })
    .await;
    let s = out.last_success.as_ref().unwrap();
    assert_eq!(
        (s.method, s.tls_version.as_deref()),
        (AuthMethod::TcpDialback, None)
    );
    assert_eq!((out.streams_last_hour, out.streams_last_day), (1, 1));
    assert!(out.last_failure.is_none());
    // One stanza outbound.
    assert_eq!(
        (sum(&out.traffic.outbound), sum(&out.traffic.inbound)),
        (1, 0),
        "{out:?}"
    );
    // Inbound: the partner authenticates to the gateway by dialback.
    let _peer = {
        let mut p = Peer::connect(gw.external_addr).await;
        p.dialback("partner.example", "corp.example", PARTNER_SECRET)
            .await
            .unwrap();
        p
    };
    let inbound = wait_health(&gw, Direction::Inbound, |v| v.last_success.is_some()).await;
    assert_eq!(
        inbound.last_success.unwrap().method,
        AuthMethod::TcpDialback
    );
    // In /status (what `fedgate status` prints) and the metrics.
    let (status, body) = http_get_plain(gw.metrics_addr.unwrap(), "/status").await;
    assert!(status.contains(" 200 "), "{status}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let rows = v["partner_health"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{body}");
    assert_eq!(rows[0]["Direction"], "inbound");
    assert_eq!(rows[1]["LastSuccess"]["Method"], "TcpDialback");
    // Both rows carry the partner's traffic: 60 minutes, oldest first.
    for r in rows {
        let t = &r["Traffic"];
        for k in ["Minutes", "Inbound", "Outbound"] {
            assert_eq!(t[k].as_array().map(Vec::len), Some(60), "{k}: {body}");
        }
        assert!(t["Refusals"].is_object(), "{body}");
    }
    let table = fedgate_manage::status::render_table(&v);
    assert!(
        table.contains("PARTNER HEALTH") && table.contains("partner.example  outbound"),
        "{table}"
    );
    let m = scrape(&gw).await;
    let at = sample(
        &m,
        "fedgate_partner_last_success_timestamp_seconds",
        &[("partner", "partner.example"), ("direction", "outbound")],
    )
    .unwrap_or_else(|| panic!("{m}"));
    assert_eq!(at, out.last_success.unwrap().at);
    gw.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_failed_outbound_stream_is_recorded_with_its_step_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (gw, closed) = with_unreachable_partner(dir.path(), "").await;
    let _p = send_to_partner(&gw).await;
    let out = wait_health(&gw, Direction::Outbound, |v| v.last_failure.is_some()).await;
    let f = out.last_failure.unwrap();
    assert_eq!(f.step, "outbound setup");
    assert!(
        f.reason.contains(&closed.to_string()) && f.reason.contains("refused"),
        "{}",
        f.reason
    );
    assert_eq!((out.failures_last_hour, out.streams_last_hour), (1, 0));
    assert!(out.last_success.is_none());
    gw.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn the_partner_certificate_expiry_is_a_metric() {
    let dir = tempfile::tempdir().unwrap();
    let trusted = ca("trusted CA");
    let partner_cert = leaf_pem_with(&trusted, "partner.example", |p| {
        p.not_after = rcgen::date_time_ymd(2040, 1, 1);
    });
    let gw = start_tls_gateway(dir.path(), &trusted, partner_cert).await;
    let _p = send_to_partner(&gw).await;
    let out = wait_health(&gw, Direction::Outbound, |v| v.last_success.is_some()).await;
    assert_eq!(out.last_success.unwrap().method, AuthMethod::SaslExternal);
    // 2040-01-01T00:00:00Z
    assert_eq!(out.certificate_not_after, Some(2_208_988_800));
    let m = scrape(&gw).await;
    assert_eq!(
        sample(
            &m,
            "fedgate_partner_certificate_expiry_timestamp_seconds",
            &[("partner", "partner.example")],
        ),
        Some(2_208_988_800),
        "{m}"
    );
    // Our own certificate for corp.example (issued by the test CA with rcgen's default validity).
    assert_eq!(
        sample(
            &m,
            "fedgate_certificate_expiry_timestamp_seconds",
            &[("domain", "corp.example")],
        ),
        Some(
            rcgen::CertificateParams::default()
                .not_after
                .unix_timestamp() as u64
        ),
        "{m}"
    );
    gw.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn health_is_kept_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (gw, _) = with_unreachable_partner(dir.path(), "").await;
    let _p = send_to_partner(&gw).await;
    let before = wait_health(&gw, Direction::Outbound, |v| v.last_failure.is_some()).await;
    gw.shutdown(Duration::from_secs(5)).await;
    // Saved at shutdown (the periodic save is every 30 s), read back at the next start.
    assert_eq!(open_store(dir.path()).partner_health().unwrap().len(), 1);
    let (gw, _internal) = start(dir.path(), "").await;
    let after = health(&gw, Direction::Outbound).expect("the record came back");
    assert_eq!(after.last_failure, before.last_failure);
    assert_eq!(after.failures_last_hour, 1);
    gw.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn the_rest_api_shows_partner_health_to_readers() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let reader = fedgate_admin::tokens::create(
        store.as_ref(),
        "monitor",
        fedgate_store::TokenRole::Reader,
        "test",
    )
    .unwrap()
    .1;
    let (gw, _) = with_unreachable_partner(
        dir.path(),
        "[admin]\nlisten = \"127.0.0.1:0\"\ntls = false\n",
    )
    .await;
    let _p = send_to_partner(&gw).await;
    wait_health(&gw, Direction::Outbound, |v| v.last_failure.is_some()).await;
    let get = |path: &str| {
        let (addr, path, reader) = (gw.admin_addr.unwrap(), path.to_owned(), reader.clone());
        async move {
            let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let request = format!(
                "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {reader}\r\nConnection: close\r\n\r\n"
            );
            tcp.write_all(request.as_bytes()).await.unwrap();
            let mut response = String::new();
            tcp.read_to_string(&mut response).await.unwrap();
            assert!(response.starts_with("HTTP/1.1 200"), "{response}");
            let body = &response[response.find("\r\n\r\n").unwrap() + 4..];
            serde_json::from_str::<serde_json::Value>(body).unwrap()
        }
    };
    let rows = get("/api/v1/partner-health?partner=partner.example").await;
    assert_eq!(rows.as_array().unwrap().len(), 1, "{rows}");
    assert_eq!(rows[0]["Direction"], "outbound");
    assert_eq!(rows[0]["LastFailure"]["Step"], "outbound setup");
    let none = get("/api/v1/partner-health?partner=other.example").await;
    assert_eq!(none, serde_json::json!([]));
    gw.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn refusals_on_the_partners_stream_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (gw, _internal) = start_with_dialback_partner(dir.path(), Tls::NotSupported, "").await;
    // Local users may not federate: the partner's message to bob is refused.
    let store = open_store(dir.path());
    set_global_xmpp_access(store.as_ref(), false);
    wait_policy_current(&gw, store.as_ref()).await;
    let mut p = dialback_peer(&gw).await;
    p.send_el(&message(
        "alice@partner.example/x",
        "bob@corp.example",
        "hi",
    ))
    .await;
    // (The bounce goes back to the partner on an outbound stream.)
    let v = wait_health(&gw, Direction::Inbound, |v| v.refusals_last_hour == 1).await;
    assert_eq!((v.refusals_last_day, v.streams_last_hour), (1, 1));
    // And in the partner's traffic, by reason; nothing was forwarded.
    let refused: Vec<(&str, u32)> = v
        .traffic
        .refusals
        .iter()
        .map(|(r, s)| (*r, s.iter().sum()))
        .collect();
    assert_eq!(refused, [("user_not_enabled", 1)], "{v:?}");
    assert_eq!(v.traffic.inbound.iter().sum::<u32>(), 0);
    gw.shutdown(Duration::from_secs(5)).await;
}
