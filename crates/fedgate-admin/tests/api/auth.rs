//! Tokens and roles: missing, malformed, wrong and revoked tokens get 401; readers read but never
//! write (403, nothing written); changes are audited with the token's name.

use axum::http::Method;
use fedgate_admin::tokens;
use serde_json::json;

use crate::common::Api;

/// Every route that needs a token, with a method that reads.
const READS: &[&str] = &[
    "/api/v1/partners",
    "/api/v1/partners/fabrikam.com",
    "/api/v1/policies",
    "/api/v1/policies/Global",
    "/api/v1/grants",
    "/api/v1/gateway-configuration",
    "/api/v1/audit",
    "/api/v1/streams",
];

#[tokio::test]
async fn missing_malformed_and_wrong_tokens_are_refused() {
    let api = Api::new();
    for uri in READS {
        let r = api.send(Method::GET, uri, None, &[], None).await;
        let message = r.error(401, None);
        assert!(message.contains("Bearer"), "{message}");
        assert!(
            r.headers
                .get("www-authenticate")
                .is_some_and(|v| v.to_str().unwrap().starts_with("Bearer")),
            "{uri}"
        );
    }
    let wrong = tokens::generate().unwrap();
    let r = api
        .send(Method::GET, "/api/v1/partners", Some(&wrong), &[], None)
        .await;
    assert!(r.error(401, None).contains("not valid"));
    for header in [
        "Basic b3BzOnNlY3JldA==",
        "Bearer",
        "Bearer ",
        &api.admin.clone(),
    ] {
        let r = api
            .send(
                Method::GET,
                "/api/v1/partners",
                None,
                &[("authorization", header)],
                None,
            )
            .await;
        r.error(401, None);
    }
    // Writes without a token are refused before the body is even read.
    let r = api
        .send(
            Method::POST,
            "/api/v1/partners",
            None,
            &[],
            Some(br#"{"Identity":"fabrikam.com"}"#.to_vec()),
        )
        .await;
    r.error(401, None);
    assert_eq!(api.store.partners(None).unwrap().len(), 0);
}

#[tokio::test]
async fn a_revoked_token_stops_working_at_once() {
    let api = Api::new();
    let (_, token) = tokens::create(
        api.store.as_ref(),
        "temp",
        fedgate_store::TokenRole::Admin,
        "cli:test",
    )
    .unwrap();
    let ok = api
        .send(Method::GET, "/api/v1/partners", Some(&token), &[], None)
        .await;
    assert_eq!(ok.status, 200);
    tokens::revoke(api.store.as_ref(), "temp", "cli:test").unwrap();
    let r = api
        .send(Method::GET, "/api/v1/partners", Some(&token), &[], None)
        .await;
    assert!(r.error(401, None).contains("revoked"));
}

use fedgate_store::Store;

#[tokio::test]
async fn a_reader_reads_everything_and_changes_nothing() {
    let api = Api::new();
    assert_eq!(
        api.post("/api/v1/partners", json!({"Identity": "fabrikam.com"}))
            .await
            .status,
        201
    );
    assert_eq!(
        api.post("/api/v1/policies", json!({"Identity": "tag:Sales"}))
            .await
            .status,
        201
    );
    let reader = api.reader.clone();
    for uri in READS {
        let r = api.send(Method::GET, uri, Some(&reader), &[], None).await;
        assert_eq!(r.status, 200, "{uri}: {}", r.body);
    }
    let before = api.audit_len();
    let body = |v: serde_json::Value| Some(v.to_string().into_bytes());
    let writes: Vec<(Method, &str, Option<Vec<u8>>)> = vec![
        (
            Method::POST,
            "/api/v1/partners",
            body(json!({"Identity": "contoso.com"})),
        ),
        (
            Method::PATCH,
            "/api/v1/partners/fabrikam.com",
            body(json!({"Description": "x"})),
        ),
        (Method::DELETE, "/api/v1/partners/fabrikam.com", None),
        (
            Method::POST,
            "/api/v1/partners?whatIf=true",
            body(json!({"Identity": "contoso.com"})),
        ),
        (
            Method::POST,
            "/api/v1/policies",
            body(json!({"Identity": "tag:Eng"})),
        ),
        (
            Method::PATCH,
            "/api/v1/policies/tag:Sales",
            body(json!({"EnableXmppAccess": true})),
        ),
        (Method::DELETE, "/api/v1/policies/tag:Sales", None),
        (
            Method::PUT,
            "/api/v1/grants/alice@corp.example",
            body(json!({"PolicyName": "Sales"})),
        ),
        (
            Method::PATCH,
            "/api/v1/gateway-configuration",
            body(json!({"KeepAliveInterval": 120})),
        ),
    ];
    for (method, uri, body) in writes {
        let r = api
            .send(
                method.clone(),
                uri,
                Some(&reader),
                &[("if-match", "*")],
                body,
            )
            .await;
        let message = r.error(403, None);
        assert!(message.contains("reader"), "{method} {uri}: {message}");
    }
    assert_eq!(
        api.audit_len(),
        before,
        "a reader's request wrote something"
    );
    assert_eq!(api.store.partners(None).unwrap().len(), 1);
}

#[tokio::test]
async fn changes_are_audited_with_the_token_name() {
    let api = Api::new();
    api.post("/api/v1/partners", json!({"Identity": "fabrikam.com"}))
        .await;
    let log = api.get("/api/v1/audit?target=fabrikam.com").await;
    assert_eq!(log.status, 200);
    let entries = log.body.as_array().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["Actor"], "token:ops");
    assert_eq!(entries[0]["Command"], "New-CsXmppAllowedPartner");
    assert!(entries[0]["Before"].is_null());
    assert_eq!(entries[0]["After"]["Identity"], "fabrikam.com");
    // Token management is audited too, and never shows a token or its hash.
    let tokens_log = api.get("/api/v1/audit?target=token:ops").await;
    let text = tokens_log.body.to_string();
    assert!(text.contains("token create"), "{text}");
    assert!(!text.contains(&api.admin) && !text.contains(&tokens::hash(&api.admin)));
}
