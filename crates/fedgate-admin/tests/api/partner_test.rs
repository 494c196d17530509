//! `POST /api/v1/partners/{identity}/test`: runs the gateway's partner test (a fake tester
//! here; the real probe is tested in fedgate-gateway) for listed partners only, admins only,
//! passes `from` through and names it when it is wrong, and says so when no gateway runs.
//! `POST /api/v1/gateway-configuration/test` (the gateway test) likewise: admins only, `domain`
//! passed through and named when it is not hosted, 503 without a gateway.

use std::sync::{Arc, Mutex};

use axum::http::Method;
use fedgate_admin::{BoxFuture, PartnerTester};
use fedgate_model::gateway_test::{DomainReport, GatewayReport, Listener};
use fedgate_model::probe::{Methods, Report, Step, Verdict};
use fedgate_model::{AuthMethod, Domain, InvalidValue};
use serde_json::json;

use crate::common::Api;

/// Answers with a fixed report naming the domain and `from`; records each call.
type Calls = Arc<Mutex<Vec<(String, Option<String>)>>>;

struct FakeTester(Calls);

impl PartnerTester for FakeTester {
    fn test(
        &self,
        domain: Domain,
        from: Option<String>,
    ) -> BoxFuture<Result<Report, InvalidValue>> {
        self.0
            .lock()
            .unwrap()
            .push((domain.to_string(), from.clone()));
        Box::pin(async move {
            if from.as_deref() == Some("nope.example") {
                return Err(InvalidValue::new(
                    "From",
                    "\"nope.example\" is not a hosted domain of this gateway. Allowed values: corp.example.",
                ));
            }
            Ok(Report {
                identity: domain.to_string(),
                listed: true,
                from: from.unwrap_or_else(|| "corp.example".into()),
                steps: vec![Step {
                    step: "Resolve".into(),
                    ok: Some(true),
                    detail: "ProxyFqdn 192.0.2.1:5269".into(),
                    ms: 1,
                }],
                certificate: None,
                methods: Methods {
                    outbound: Some(AuthMethod::TlsDialback),
                    inbound: vec![AuthMethod::TlsDialback],
                },
                verdict: Verdict::Warning,
                problems: vec!["A warning.".into()],
            })
        })
    }

    fn test_gateway(
        &self,
        domain: Option<String>,
    ) -> BoxFuture<Result<GatewayReport, InvalidValue>> {
        self.0
            .lock()
            .unwrap()
            .push(("gateway".into(), domain.clone()));
        Box::pin(async move {
            if domain.as_deref() == Some("nope.example") {
                return Err(InvalidValue::new(
                    "Domain",
                    "\"nope.example\" is not a hosted domain of this gateway. Allowed values: corp.example.",
                ));
            }
            let listener = Listener {
                addr: "192.0.2.5:5269".parse().unwrap(),
                direct_tls: false,
            };
            Ok(GatewayReport::new(
                &[listener],
                vec![DomainReport {
                    domain: domain.unwrap_or_else(|| "corp.example".into()),
                    steps: vec![Step {
                        step: "Points here".into(),
                        ok: Some(false),
                        detail: "elsewhere".into(),
                        ms: 1,
                    }],
                    certificate: None,
                    trust_anchor: None,
                    verdict: Verdict::Fail,
                    problems: vec!["The SRV record for corp.example points at 198.51.100.7:5269, but this gateway listens on 192.0.2.5:5269.".into()],
                }],
            ))
        })
    }
}

fn api_with_tester() -> (Api, Calls) {
    let calls = Calls::default();
    let t = FakeTester(calls.clone());
    let api = Api::with(move |s| s.with_tester(Arc::new(t)));
    (api, calls)
}

#[tokio::test]
async fn admins_test_listed_partners_and_get_the_report() {
    let (api, tester) = api_with_tester();
    let r = api
        .post("/api/v1/partners", json!({"Identity": "fabrikam.com"}))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = api
        .call(Method::POST, "/api/v1/partners/FABRIKAM.com/test", None)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["Identity"], "fabrikam.com");
    assert_eq!(r.body["From"], "corp.example");
    assert_eq!(r.body["Verdict"], "Warning");
    assert_eq!(r.body["Methods"]["Outbound"], "TlsDialback");
    assert_eq!(r.body["Steps"][0]["Step"], "Resolve");
    assert_eq!(r.body["Problems"], json!(["A warning."]));
    // ?from= is passed through; a wrong one names the parameter and the allowed values.
    let r = api
        .call(
            Method::POST,
            "/api/v1/partners/fabrikam.com/test?from=corp.example",
            None,
        )
        .await;
    assert_eq!(r.body["From"], "corp.example");
    let r = api
        .call(
            Method::POST,
            "/api/v1/partners/fabrikam.com/test?from=nope.example",
            None,
        )
        .await;
    let message = r.error(400, Some("From"));
    assert!(
        message.contains("Allowed values: corp.example"),
        "{message}"
    );
    assert_eq!(
        *tester.lock().unwrap(),
        [
            ("fabrikam.com".to_owned(), None),
            ("fabrikam.com".to_owned(), Some("corp.example".to_owned())),
            ("fabrikam.com".to_owned(), Some("nope.example".to_owned())),
        ]
    );
}

#[tokio::test]
async fn unlisted_partners_readers_and_bad_names_are_refused_without_a_test() {
    let (api, tester) = api_with_tester();
    let r = api
        .call(Method::POST, "/api/v1/partners/unknown.example/test", None)
        .await;
    r.error(404, Some("Identity"));
    let r = api
        .call(Method::POST, "/api/v1/partners/not%20a%20domain/test", None)
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    api.post("/api/v1/partners", json!({"Identity": "fabrikam.com"}))
        .await;
    let reader = api.reader.clone();
    let r = api
        .send(
            Method::POST,
            "/api/v1/partners/fabrikam.com/test",
            Some(&reader),
            &[],
            None,
        )
        .await;
    r.error(403, None);
    let r = api
        .send(
            Method::POST,
            "/api/v1/partners/fabrikam.com/test",
            None,
            &[],
            None,
        )
        .await;
    r.error(401, None);
    assert!(tester.lock().unwrap().is_empty());
}

#[tokio::test]
async fn without_a_gateway_the_test_is_unavailable() {
    let api = Api::new();
    api.post("/api/v1/partners", json!({"Identity": "fabrikam.com"}))
        .await;
    let r = api
        .call(Method::POST, "/api/v1/partners/fabrikam.com/test", None)
        .await;
    let message = r.error(503, None);
    assert!(message.contains("fedgate serve"), "{message}");
}

#[tokio::test]
async fn admins_test_the_gateway_and_get_one_report_per_domain() {
    let (api, tester) = api_with_tester();
    let r = api
        .call(Method::POST, "/api/v1/gateway-configuration/test", None)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["Verdict"], "Fail");
    assert_eq!(r.body["Listeners"], json!(["192.0.2.5:5269 (STARTTLS)"]));
    let d = &r.body["Domains"][0];
    assert_eq!(d["Domain"], "corp.example");
    assert_eq!(d["Steps"][0]["Step"], "Points here");
    assert!(
        d["Certificate"].is_null() && d["TrustAnchor"].is_null(),
        "{d}"
    );
    assert!(
        d["Problems"][0]
            .as_str()
            .unwrap()
            .contains("but this gateway listens on 192.0.2.5:5269"),
        "{d}"
    );
    let r = api
        .call(
            Method::POST,
            "/api/v1/gateway-configuration/test?domain=nope.example",
            None,
        )
        .await;
    let message = r.error(400, Some("Domain"));
    assert!(
        message.contains("Allowed values: corp.example"),
        "{message}"
    );
    let reader = api.reader.clone();
    let r = api
        .send(
            Method::POST,
            "/api/v1/gateway-configuration/test",
            Some(&reader),
            &[],
            None,
        )
        .await;
    r.error(403, None);
    assert_eq!(
        *tester.lock().unwrap(),
        [
            ("gateway".to_owned(), None),
            ("gateway".to_owned(), Some("nope.example".to_owned())),
        ]
    );
}

#[tokio::test]
async fn without_a_gateway_the_gateway_test_is_unavailable() {
    let api = Api::new();
    let r = api
        .call(Method::POST, "/api/v1/gateway-configuration/test", None)
        .await;
    let message = r.error(503, None);
    assert!(message.contains("fedgate serve"), "{message}");
}
