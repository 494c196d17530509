//! The web panel's server side: embedded assets, browser sessions (HttpOnly cookie, CSRF token,
//! revocation) and the negotiation check.

use axum::http::Method;
use serde_json::json;

use crate::common::Api;

fn cookie_of(reply: &crate::common::Reply) -> String {
    let set = reply
        .headers
        .get("set-cookie")
        .expect("a session cookie")
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Path=/"),
        "{set}"
    );
    set.split(';').next().unwrap().to_owned()
}

#[tokio::test]
async fn panel_assets_are_served_with_a_strict_policy() {
    let api = Api::new();
    for (path, kind) in [
        ("/", "text/html"),
        ("/panel/app.js", "text/javascript"),
        ("/panel/app.css", "text/css"),
    ] {
        let r = api.send(Method::GET, path, None, &[], None).await;
        assert_eq!(r.status, 200, "{path}");
        assert!(
            r.headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with(kind),
            "{path}"
        );
        let csp = r.headers["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
            "{csp}"
        );
    }
    let html = api.send(Method::GET, "/", None, &[], None).await.body;
    assert!(
        html.as_str().unwrap().contains("<label")
            || html.as_str().unwrap().contains("/panel/app.js")
    );
}

/// The gateway settings page links from the navigation and its Test button calls the gateway
/// test route (the page itself runs in a browser; the route is tested in partner_test.rs).
#[tokio::test]
async fn the_gateway_settings_page_has_a_test_button_on_the_gateway_test_route() {
    let api = Api::new();
    let html = api.send(Method::GET, "/", None, &[], None).await.body;
    assert!(
        html.as_str().unwrap().contains("href=\"#/gateway\""),
        "{html}"
    );
    let js = api
        .send(Method::GET, "/panel/app.js", None, &[], None)
        .await
        .body;
    let js = js.as_str().unwrap();
    assert!(js.contains("call(\"POST\", \"/gateway-configuration/test\")"));
    assert!(js.contains("id: \"gateway-test-button\""));
}

#[tokio::test]
async fn a_session_signs_in_with_a_token_and_needs_csrf_for_changes() {
    let api = Api::with(|s| s.with_secure_cookies(true));
    let bad = api
        .send(
            Method::POST,
            "/api/v1/session",
            None,
            &[],
            Some(br#"{"Token":"fgt_wrong"}"#.to_vec()),
        )
        .await;
    bad.error(401, None);
    let body = json!({ "Token": api.admin }).to_string().into_bytes();
    // A valid token in a body a cross-site form could send (text/plain): refused, no session.
    let form = api
        .send(
            Method::POST,
            "/api/v1/session",
            None,
            &[("content-type", "text/plain")],
            Some(body.clone()),
        )
        .await;
    assert_eq!(form.status, 400, "{}", form.body);
    assert_eq!(
        form.body["error"]["parameter"], "Content-Type",
        "{}",
        form.body
    );
    assert!(!form.headers.contains_key("set-cookie"));
    let r = api
        .send(Method::POST, "/api/v1/session", None, &[], Some(body))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["Role"], "admin");
    let csrf = r.body["CsrfToken"].as_str().unwrap().to_owned();
    assert!(r.headers["set-cookie"].to_str().unwrap().contains("Secure"));
    let cookie = cookie_of(&r);

    // The cookie reads; the session is reported again for a reloaded page.
    let r = api
        .send(
            Method::GET,
            "/api/v1/partners",
            None,
            &[("cookie", &cookie)],
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    let r = api
        .send(
            Method::GET,
            "/api/v1/session",
            None,
            &[("cookie", &cookie)],
            None,
        )
        .await;
    assert_eq!(r.body["CsrfToken"], csrf);

    // A change with the cookie but without (or with a wrong) CSRF token is refused; with it, done
    // and audited under the token's name.
    let create = json!({ "Identity": "csrf.example" })
        .to_string()
        .into_bytes();
    let r = api
        .send(
            Method::POST,
            "/api/v1/partners",
            None,
            &[("cookie", &cookie)],
            Some(create.clone()),
        )
        .await;
    assert!(r.error(403, None).contains("CSRF"));
    let r = api
        .send(
            Method::POST,
            "/api/v1/partners",
            None,
            &[("cookie", &cookie), ("x-csrf-token", "fgt_nope")],
            Some(create.clone()),
        )
        .await;
    r.error(403, None);
    assert_eq!(api.get("/api/v1/partners/csrf.example").await.status, 404);
    let r = api
        .send(
            Method::POST,
            "/api/v1/partners",
            None,
            &[("cookie", &cookie), ("x-csrf-token", &csrf)],
            Some(create),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let audit = api.get("/api/v1/audit?target=csrf.example").await;
    assert!(audit.body.to_string().contains("token:"), "{}", audit.body);

    // Revoking the token ends the session at once; signing out ends it too.
    let r = api
        .send(
            Method::DELETE,
            "/api/v1/session",
            None,
            &[("cookie", &cookie)],
            None,
        )
        .await;
    assert_eq!(r.status, 204);
    assert!(
        r.headers["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let r = api
        .send(
            Method::GET,
            "/api/v1/partners",
            None,
            &[("cookie", &cookie)],
            None,
        )
        .await;
    r.error(401, None);
}

#[tokio::test]
async fn revoking_the_token_ends_its_sessions() {
    let api = Api::new();
    let body = json!({ "Token": api.reader }).to_string().into_bytes();
    let r = api
        .send(Method::POST, "/api/v1/session", None, &[], Some(body))
        .await;
    assert_eq!(r.body["Role"], "reader");
    let cookie = cookie_of(&r);
    let csrf = r.body["CsrfToken"].as_str().unwrap().to_owned();
    // A reader's session cannot change anything, CSRF token or not.
    let create = json!({ "Identity": "r.example" }).to_string().into_bytes();
    let r = api
        .send(
            Method::POST,
            "/api/v1/partners",
            None,
            &[("cookie", &cookie), ("x-csrf-token", &csrf)],
            Some(create),
        )
        .await;
    r.error(403, None);
    fedgate_admin::tokens::revoke(api.store.as_ref(), "monitor", "test").unwrap();
    let r = api
        .send(
            Method::GET,
            "/api/v1/partners",
            None,
            &[("cookie", &cookie)],
            None,
        )
        .await;
    r.error(401, None);
}

#[tokio::test]
async fn negotiation_check_uses_the_model_rule() {
    let api = Api::new();
    let r = api.get("/api/v1/negotiation").await;
    assert_eq!(r.body["Valid"], true);
    assert!(
        r.body["Warnings"][0]
            .as_str()
            .unwrap()
            .contains("dialback will never be used")
    );
    assert_eq!(
        r.body["Methods"],
        json!(["SASL EXTERNAL over TLS (certificate)"])
    );
    let r = api.get("/api/v1/negotiation?TlsNegotiation=NotSupported&SaslNegotiation=NotSupported&SupportDialbackNegotiation=false").await;
    assert_eq!(r.body["Valid"], false);
    assert!(
        r.body["Error"]
            .as_str()
            .unwrap()
            .contains("no way to authenticate")
    );
    let r = api.get("/api/v1/negotiation?TlsNegotiation=optional&SaslNegotiation=Optional&SupportDialbackNegotiation=true").await;
    assert_eq!(r.body["Methods"].as_array().unwrap().len(), 3);
    let r = api.get("/api/v1/negotiation?TlsNegotiation=Maybe").await;
    assert!(
        r.error(400, Some("TlsNegotiation"))
            .contains("Required, Optional, NotSupported")
    );
    let r = api
        .send(Method::GET, "/api/v1/negotiation", None, &[], None)
        .await;
    r.error(401, None);
}
