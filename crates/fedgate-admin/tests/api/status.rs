//! Health, live streams, the audit log's parameters, `/metrics`, unknown routes, and a real
//! loopback server.

use std::sync::Arc;

use axum::http::Method;
use fedgate_admin::StreamsSource;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::Api;

#[tokio::test]
async fn health_needs_no_token() {
    let api = Api::new();
    let r = api
        .send(Method::GET, "/api/v1/health", None, &[], None)
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["Status"], "ok");
    assert!(
        r.body["Revision"].as_u64().unwrap() >= 2,
        "token creations count"
    );
}

struct TwoStreams;

impl StreamsSource for TwoStreams {
    fn streams(&self) -> Vec<serde_json::Value> {
        vec![
            json!({"Partner": "fabrikam.com", "Direction": "inbound"}),
            json!({"Partner": "contoso.com", "Direction": "outbound"}),
        ]
    }
}

#[tokio::test]
async fn streams_come_from_the_source() {
    let api = Api::new();
    assert_eq!(api.get("/api/v1/streams").await.body, json!([]));
    let api = Api::with(|s| s.with_streams(Arc::new(TwoStreams)));
    let r = api.get("/api/v1/streams").await;
    assert_eq!(r.body.as_array().unwrap().len(), 2);
    assert_eq!(r.body[1]["Partner"], "contoso.com");
}

#[tokio::test]
async fn cluster_nodes_are_read_from_the_store_by_readers_and_admins() {
    use fedgate_store::{NodeHeartbeat, Store};
    let api = Api::new();
    assert_eq!(api.get("/api/v1/cluster/nodes").await.body, json!([]));
    for (node, inbound) in [("edge2", 0), ("edge1", 3)] {
        api.store
            .heartbeat(
                &NodeHeartbeat {
                    node: node.into(),
                    starting: true,
                    version: "0.1.0".into(),
                    address: Some("192.0.2.1:5269".into()),
                    inbound_streams: inbound,
                    outbound_streams: 1,
                },
                fedgate_store::cluster::LEASE_TTL,
            )
            .unwrap();
    }
    for token in [api.reader.clone(), api.admin.clone()] {
        let r = api
            .send(
                Method::GET,
                "/api/v1/cluster/nodes",
                Some(&token),
                &[],
                None,
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let nodes = r.body.as_array().unwrap();
        assert_eq!(nodes.len(), 2, "{}", r.body);
        assert_eq!(nodes[0]["Node"], "edge1", "by name");
        assert_eq!(nodes[0]["Alive"], true);
        assert_eq!(nodes[0]["InboundStreams"], 3);
        assert_eq!(nodes[0]["OutboundStreams"], 1);
        assert_eq!(nodes[0]["Leases"], 0);
        assert_eq!(nodes[0]["Version"], "0.1.0");
        assert_eq!(nodes[0]["Address"], "192.0.2.1:5269");
        assert!(nodes[0]["SecondsSinceHeartbeat"].as_f64().unwrap() < 5.0);
        assert!(nodes[0]["StartedAt"].as_str().unwrap().ends_with('Z'));
        assert_eq!(nodes[1]["Node"], "edge2");
    }
    api.send(Method::GET, "/api/v1/cluster/nodes", None, &[], None)
        .await
        .error(401, None);
}

#[tokio::test]
async fn audit_log_filters_and_limits() {
    let api = Api::new();
    for d in ["a.com", "b.com", "c.com"] {
        api.post("/api/v1/partners", json!({"Identity": d})).await;
    }
    let r = api.get("/api/v1/audit?limit=2").await;
    let entries = r.body.as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[1]["Target"], "c.com");
    let first = entries[0]["Id"].as_u64().unwrap();
    let r = api.get(&format!("/api/v1/audit?after={first}")).await;
    assert_eq!(r.body.as_array().unwrap().len(), 1);
    let r = api.get("/api/v1/audit?target=A.COM").await;
    assert_eq!(r.body.as_array().unwrap().len(), 1);
    for (q, p) in [
        ("limit=0", "limit"),
        ("limit=x", "limit"),
        ("after=-1", "after"),
    ] {
        api.get(&format!("/api/v1/audit?{q}"))
            .await
            .error(400, Some(p));
    }
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_status() {
    let api = Api::new();
    api.get("/api/v1/partners").await;
    api.get("/api/v1/partners").await;
    api.get("/api/v1/partners/nobody.com").await;
    api.send(Method::GET, "/api/v1/partners", None, &[], None)
        .await;
    api.get("/nowhere").await;
    // Made-up methods do not become label values.
    for m in ["FOOBAR", "X-EVIL-1", "X-EVIL-2"] {
        let method = Method::from_bytes(m.as_bytes()).unwrap();
        api.send(method.clone(), "/api/v1/partners", None, &[], None)
            .await;
        api.send(method, "/nowhere", None, &[], None).await;
    }
    let r = api.send(Method::GET, "/metrics", None, &[], None).await;
    assert_eq!(r.status, 200);
    assert!(
        r.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain"),
        "{:?}",
        r.headers
    );
    let text = r.body.as_str().unwrap();
    for line in [
        "fedgate_admin_requests_total{method=\"GET\",route=\"/api/v1/partners\",status=\"200\"} 2",
        "fedgate_admin_requests_total{method=\"GET\",route=\"/api/v1/partners\",status=\"401\"} 1",
        "fedgate_admin_requests_total{method=\"GET\",route=\"/api/v1/partners/{identity}\",status=\"404\"} 1",
        "fedgate_admin_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"} 1",
    ] {
        assert!(text.contains(line), "{line}\n{text}");
    }
    assert!(text.contains("# TYPE fedgate_admin_requests_total counter"));
    assert!(!text.contains("FOOBAR") && !text.contains("EVIL"), "{text}");
    assert!(text.contains("method=\"other\""), "{text}");
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_in_json() {
    let api = Api::new();
    let r = api.get("/api/v1/nothing").await;
    assert!(r.error(404, None).contains("/api/v1/nothing"));
    let r = api.call(Method::PUT, "/api/v1/partners", None).await;
    assert_eq!(r.status, 405);
    assert_eq!(r.body["error"]["code"], "method_not_allowed");
    let r = api.get("/api/v1/partners").await;
    assert_eq!(r.headers["cache-control"], "no-store");
    assert_eq!(r.headers["x-content-type-options"], "nosniff");
}

#[tokio::test]
async fn oversized_bodies_and_bad_paths_answer_in_json() {
    let api = Api::new();
    let token = api.admin.clone();
    let big = format!(
        "{{\"Identity\": \"a.com\", \"Description\": \"{}\"}}",
        "x".repeat(fedgate_admin::MAX_BODY_BYTES)
    );
    let r = api
        .send(
            Method::POST,
            "/api/v1/partners",
            Some(&token),
            &[],
            Some(big.into_bytes()),
        )
        .await;
    assert!(r.error(413, Some("body")).contains("body"));
    let r = api.get("/api/v1/partners/%FF%FE").await;
    r.error(400, Some("path"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_on_a_real_loopback_port() {
    let api = Api::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = api.router.clone();
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET /api/v1/partners HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        api.reader
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"Total\":0"), "{response}");
    server.abort();
}

/// Partner health as the gateway's records show it (the model's own types): fabrikam.com with
/// traffic, refusals and a failure, contoso.com quiet.
struct HealthRows;

const NOW: u64 = 1_800_000_000;

impl StreamsSource for HealthRows {
    fn streams(&self) -> Vec<serde_json::Value> {
        Vec::new()
    }

    fn partner_health(&self) -> Vec<serde_json::Value> {
        use fedgate_model::AuthMethod;
        use fedgate_model::health::{Direction, PartnerHealth};
        use fedgate_model::traffic::{PartnerTraffic, TrafficView};
        let mut traffic = PartnerTraffic::default();
        traffic.relayed(Direction::Inbound, NOW, 3);
        traffic.relayed(Direction::Outbound, NOW - 60, 2);
        traffic.refused("not_authorised", NOW);
        let mut h = PartnerHealth::default();
        h.succeeded(NOW - 10, AuthMethod::TcpDialback, None);
        h.failed(NOW, "outbound setup", "connection refused");
        h.certificate_not_after = Some(NOW as i64 + 86_400);
        let mut rows: Vec<_> = [Direction::Inbound, Direction::Outbound]
            .into_iter()
            .map(|d| h.view("fabrikam.com", d, NOW, traffic.view(NOW)))
            .collect();
        rows.push(PartnerHealth::default().view(
            "contoso.com",
            Direction::Inbound,
            NOW,
            TrafficView::quiet(NOW),
        ));
        rows.iter()
            .map(|r| serde_json::to_value(r).unwrap())
            .collect()
    }
}

#[tokio::test]
async fn partner_health_carries_each_partners_traffic_per_minute() {
    let api = Api::new();
    assert_eq!(api.get("/api/v1/partner-health").await.body, json!([]));
    let api = Api::with(|s| s.with_streams(Arc::new(HealthRows)));
    let all = api.get("/api/v1/partner-health").await;
    assert_eq!(all.status, 200);
    assert_eq!(all.body.as_array().unwrap().len(), 3);
    let r = api.get("/api/v1/partner-health?partner=FABRIKAM.COM").await;
    let rows = r.body.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{}", r.body);
    for row in rows {
        let t = &row["Traffic"];
        for key in ["Minutes", "Inbound", "Outbound"] {
            assert_eq!(t[key].as_array().unwrap().len(), 60, "{key}: {t}");
        }
        assert_eq!(t["Minutes"][59], NOW / 60 * 60);
        assert_eq!(t["Minutes"][0], NOW / 60 * 60 - 59 * 60);
        assert_eq!(
            (&t["Inbound"][59], &t["Outbound"][58]),
            (&json!(3), &json!(2))
        );
        assert_eq!(t["Refusals"], {
            let mut s = vec![0; 60];
            s[59] = 1;
            json!({ "not_authorised": s })
        });
        assert_eq!(row["LastFailure"]["Step"], "outbound setup");
    }
    let quiet = &all.body[2]["Traffic"];
    assert_eq!(quiet["Inbound"], json!(vec![0; 60]));
    assert_eq!(quiet["Refusals"], json!({}));
}

#[tokio::test]
async fn partner_health_rows_are_described_by_the_openapi_document() {
    let api = Api::with(|s| s.with_streams(Arc::new(HealthRows)));
    let doc = api
        .send(Method::GET, "/api/v1/openapi.json", None, &[], None)
        .await
        .body;
    let ok = &doc["paths"]["/api/v1/partner-health"]["get"]["responses"]["200"]["content"]["application/json"]
        ["schema"];
    assert_eq!(
        ok["items"]["$ref"], "#/components/schemas/PartnerHealth",
        "{ok}"
    );
    let schemas = &doc["components"]["schemas"];
    let keys = |v: &serde_json::Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    let row = &api.get("/api/v1/partner-health").await.body[0];
    assert_eq!(keys(&schemas["PartnerHealth"]["properties"]), keys(row));
    assert_eq!(
        keys(&schemas["PartnerTraffic"]["properties"]),
        keys(&row["Traffic"])
    );
    assert_eq!(
        keys(&schemas["HealthFailure"]["properties"]),
        keys(&row["LastFailure"])
    );
    assert_eq!(
        keys(&schemas["HealthSuccess"]["properties"]),
        keys(&row["LastSuccess"])
    );
    let minutes = &schemas["PartnerTraffic"]["properties"]["Minutes"];
    assert_eq!(
        (&minutes["minItems"], &minutes["maxItems"]),
        (&json!(60), &json!(60))
    );
}
