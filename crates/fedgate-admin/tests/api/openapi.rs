//! The OpenAPI document: served, parses, lists every route with its methods, and describes the
//! shapes the API really returns.

use axum::http::Method;
use fedgate_model::{Choice, PartnerType, SaslNegotiation, TlsNegotiation};
use serde_json::Value;

use crate::common::Api;

/// Every route and method of the router.
const ROUTES: &[(&str, &[&str])] = &[
    ("/api/v1/partners", &["get", "post"]),
    ("/api/v1/partners/{identity}", &["get", "patch", "delete"]),
    ("/api/v1/partners/{identity}/test", &["post"]),
    ("/api/v1/policies", &["get", "post"]),
    ("/api/v1/policies/{identity}", &["get", "patch", "delete"]),
    ("/api/v1/grants", &["get"]),
    ("/api/v1/grants/{user}", &["put"]),
    ("/api/v1/gateway-configuration", &["get", "patch"]),
    ("/api/v1/gateway-configuration/test", &["post"]),
    ("/api/v1/audit", &["get"]),
    ("/api/v1/streams", &["get"]),
    ("/api/v1/partner-health", &["get"]),
    ("/api/v1/cluster/nodes", &["get"]),
    ("/api/v1/negotiation", &["get"]),
    ("/api/v1/session", &["get", "post", "delete"]),
    ("/api/v1/health", &["get"]),
    ("/api/v1/openapi.json", &["get"]),
    ("/metrics", &["get"]),
];

const PUBLIC: &[&str] = &[
    "/api/v1/health",
    "/api/v1/openapi.json",
    "/metrics",
    "/api/v1/session",
];

async fn document() -> Value {
    let api = Api::new();
    let r = api
        .send(Method::GET, "/api/v1/openapi.json", None, &[], None)
        .await;
    assert_eq!(r.status, 200);
    r.body
}

#[tokio::test]
async fn lists_every_route_with_security_and_error_bodies() {
    let doc = document().await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = doc["paths"].as_object().unwrap();
    let mut listed: Vec<(String, String)> = paths
        .iter()
        .flat_map(|(p, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .filter(|k| *k != "parameters")
                .map(move |m| (p.clone(), m.clone()))
        })
        .collect();
    let mut expected: Vec<(String, String)> = ROUTES
        .iter()
        .flat_map(|(p, ms)| ms.iter().map(move |m| (p.to_string(), m.to_string())))
        .collect();
    listed.sort();
    expected.sort();
    assert_eq!(listed, expected);
    assert!(doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer");
    assert_eq!(doc["security"][0]["bearer"], serde_json::json!([]));
    for (path, methods) in ROUTES {
        for m in *methods {
            let op = &paths[*path][*m];
            let security = &op["security"];
            if PUBLIC.contains(path) {
                assert_eq!(security, &serde_json::json!([{}]), "{m} {path} is public");
            } else {
                assert!(security.is_null(), "{m} {path} uses the default (bearer)");
                assert!(
                    op["responses"]["401"].is_object(),
                    "{m} {path} documents 401"
                );
            }
            // Roles apply to token-protected changes; the public session routes have none.
            if *m != "get" && !PUBLIC.contains(path) {
                assert!(
                    op["responses"]["403"].is_object(),
                    "{m} {path} documents 403"
                );
                assert!(
                    op["responses"]["400"].is_object(),
                    "{m} {path} documents 400"
                );
            }
        }
    }
}

#[tokio::test]
async fn schemas_match_the_model() {
    let doc = document().await;
    let schemas = &doc["components"]["schemas"];
    let props: Vec<&str> = schemas["Partner"]["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(props, fedgate_model::partner::PARTNER_FIELDS.to_vec());
    let names = |schema: &str| -> Vec<String> {
        schemas[schema]["enum"]
            .as_array()
            .unwrap_or_else(|| panic!("{schema}: {}", schemas[schema]))
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    };
    let all = |items: &[&'static str]| items.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        names("PartnerType"),
        all(&PartnerType::ALL
            .iter()
            .map(|v| v.name())
            .collect::<Vec<_>>())
    );
    assert_eq!(
        names("TlsNegotiation"),
        all(&TlsNegotiation::ALL
            .iter()
            .map(|v| v.name())
            .collect::<Vec<_>>())
    );
    assert_eq!(
        names("SaslNegotiation"),
        all(&SaslNegotiation::ALL
            .iter()
            .map(|v| v.name())
            .collect::<Vec<_>>())
    );
    let gateway: Vec<&str> = schemas["XmppGatewayConfiguration"]["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(
        gateway,
        fedgate_model::gateway_settings::GATEWAY_FIELDS.to_vec()
    );
    let node: Vec<&str> = schemas["ClusterNode"]["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    let status = fedgate_store::NodeStatus {
        node: "edge1".into(),
        started_at: String::new(),
        last_heartbeat: String::new(),
        seconds_since_heartbeat: 0.0,
        alive: true,
        version: String::new(),
        address: None,
        inbound_streams: 0,
        outbound_streams: 0,
        leases: 0,
    };
    let served: Vec<String> = serde_json::to_value(&status)
        .unwrap()
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(node, served, "ClusterNode describes the store's NodeStatus");
    let error = &schemas["ErrorDetail"]["properties"];
    for key in ["code", "parameter", "message"] {
        assert!(error[key].is_object(), "{key}");
    }
    assert_eq!(
        schemas["GatewayInput"]["properties"]["DialbackPassphrase"]["writeOnly"],
        true
    );
}

/// The request schemas list exactly the fields the manage crate's conversions take, with the
/// gateway settings' ranges.
#[test]
fn input_schemas_match_the_parameter_tables() {
    use fedgate_manage::params::{GATEWAY_PARAMETERS, PARTNER_PARAMETERS, POLICY_PARAMETERS};
    let doc = serde_json::to_value(fedgate_admin::openapi()).unwrap();
    let schemas = &doc["components"]["schemas"];
    let props = |name: &str| -> Vec<String> {
        let schema = &schemas[name];
        assert_eq!(schema["additionalProperties"], false, "{name}");
        schema["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    };
    let names = |table: &[(&str, &str)], extra: &[&str]| -> Vec<String> {
        extra
            .iter()
            .chain(table.iter().map(|(n, _)| n))
            .map(|s| s.to_string())
            .collect()
    };
    assert_eq!(props("PartnerFieldsInput"), names(&PARTNER_PARAMETERS, &[]));
    assert_eq!(
        props("PartnerCreateInput"),
        names(&PARTNER_PARAMETERS, &["Identity", "Domain"])
    );
    assert_eq!(props("PolicyFieldsInput"), names(&POLICY_PARAMETERS, &[]));
    assert_eq!(
        props("PolicyCreateInput"),
        names(&POLICY_PARAMETERS, &["Identity"])
    );
    assert_eq!(
        props("GatewayInput"),
        names(&GATEWAY_PARAMETERS, &["Identity"])
    );
    for setting in fedgate_model::gateway_settings::NUMERIC_SETTINGS {
        let field = &schemas["GatewayInput"]["properties"][setting.name];
        assert_eq!(field["minimum"], setting.min, "{}", setting.name);
        assert_eq!(field["maximum"], setting.max, "{}", setting.name);
    }
}

#[test]
fn openapi_gives_the_document_without_a_server() {
    let doc = serde_json::to_value(fedgate_admin::openapi()).unwrap();
    assert!(doc["paths"]["/api/v1/partners"].is_object());
}

/// Every `(path, format, minimum, maximum)` of an integer schema in `value`.
fn integer_bounds(
    value: &Value,
    path: &str,
    out: &mut Vec<(String, String, Option<i128>, Option<i128>)>,
) {
    match value {
        Value::Object(map) => {
            if let Some(format) = map.get("format").and_then(Value::as_str) {
                let bound = |k: &str| {
                    let v = map.get(k)?;
                    v.as_i64()
                        .map(i128::from)
                        .or_else(|| v.as_u64().map(i128::from))
                };
                out.push((
                    path.to_owned(),
                    format.to_owned(),
                    bound("minimum"),
                    bound("maximum"),
                ));
            }
            for (key, child) in map {
                integer_bounds(child, &format!("{path}/{key}"), out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                integer_bounds(child, &format!("{path}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// A client generator honours `format`: an `int32` field whose `maximum` is above 2^31 - 1 (a
/// u32 limit such as ConnectionLimit) would be documented as refusing values the API accepts.
#[tokio::test]
async fn integer_ranges_fit_their_formats() {
    let doc = document().await;
    let mut found = Vec::new();
    integer_bounds(&doc, "", &mut found);
    assert!(
        found
            .iter()
            .any(|(p, f, _, max)| p.contains("ConnectionLimit")
                && f == "int64"
                && *max == Some(u32::MAX as i128)),
        "ConnectionLimit is documented as int64 up to 4294967295: {found:?}"
    );
    for (path, format, min, max) in &found {
        let (lo, hi) = match format.as_str() {
            "int32" => (i32::MIN as i128, i32::MAX as i128),
            "int64" => (i64::MIN as i128, i64::MAX as i128),
            _ => continue,
        };
        for bound in [min, max].into_iter().flatten() {
            assert!(
                (lo..=hi).contains(bound),
                "{path}: {format} with the bound {bound}"
            );
        }
    }
}

/// The gateway test's schema names exactly the keys the model's report serialises.
#[tokio::test]
async fn gateway_test_schema_matches_the_report() {
    use fedgate_model::gateway_test::{DomainReport, GatewayReport};
    let doc = document().await;
    let schemas = &doc["components"]["schemas"];
    let keys = |v: &Value| -> Vec<String> {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    let report = GatewayReport::new(
        &[],
        vec![DomainReport {
            domain: "corp.example".into(),
            steps: vec![],
            certificate: None,
            trust_anchor: None,
            verdict: fedgate_model::probe::Verdict::Ok,
            problems: vec![],
        }],
    );
    let v = serde_json::to_value(&report).unwrap();
    assert_eq!(keys(&schemas["GatewayTest"]["properties"]), keys(&v));
    assert_eq!(
        keys(&schemas["GatewayTestDomain"]["properties"]),
        keys(&v["Domains"][0])
    );
}
