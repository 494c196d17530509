//! `/api/v1/policies`, `/api/v1/grants` and `/api/v1/gateway-configuration`.

use axum::http::Method;
use fedgate_manage::params::{from_json, gateway_changes, policy_changes};
use serde_json::{Value, json};

use crate::common::Api;

#[tokio::test]
async fn policies_and_grants() {
    let api = Api::new();
    let r = api.get("/api/v1/policies").await;
    assert_eq!(r.body[0]["Identity"], "Global");
    let r = api
        .post(
            "/api/v1/policies",
            json!({"Identity": "tag:Sales", "EnableXmppAccess": true, "Description": "Sales team"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.headers["location"], "/api/v1/policies/Tag:Sales");
    assert_eq!(r.body["Value"]["EnableXmppAccess"], true);
    let r = api
        .post("/api/v1/policies", json!({"Identity": "site:Paris"}))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = api
        .post("/api/v1/policies", json!({"Identity": "TAG:sales"}))
        .await;
    assert!(r.error(409, Some("Identity")).contains("already exists"));

    let r = api.get("/api/v1/policies?filter=tag:*").await;
    assert_eq!(r.body.as_array().unwrap().len(), 1);
    let r = api.get("/api/v1/policies/tag:sales").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.etag(), "\"1\"");
    assert_eq!(r.body["Description"], "Sales team");

    let r = api
        .patch(
            "/api/v1/policies/tag:Sales",
            "\"1\"",
            json!({"EnableOutsideAccess": true}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.etag(), "\"2\"");
    assert_eq!(r.body["Value"]["EnableOutsideAccess"], true);
    let r = api
        .patch(
            "/api/v1/policies/tag:Sales",
            "\"1\"",
            json!({"EnableOutsideAccess": false}),
        )
        .await;
    r.error(412, Some("If-Match"));
    let token = api.admin.clone();
    let r = api
        .send(
            Method::PATCH,
            "/api/v1/policies/Global",
            Some(&token),
            &[],
            Some(b"{}".to_vec()),
        )
        .await;
    r.error(428, Some("If-Match"));
    let r = api
        .patch(
            "/api/v1/policies/Global",
            "*",
            json!({"EnableXmppAccess": true}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);

    // Grants.
    let r = api
        .call(
            Method::PUT,
            "/api/v1/grants/Alice@Corp.Example",
            Some(json!({"PolicyName": "Sales"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body["Value"],
        json!({"Identity": "alice@corp.example", "ExternalAccessPolicy": "Sales"})
    );
    let r = api.get("/api/v1/grants").await;
    assert_eq!(
        r.body,
        json!([{"Identity": "alice@corp.example", "ExternalAccessPolicy": "Sales"}])
    );
    let r = api
        .call(
            Method::PUT,
            "/api/v1/grants/bob@corp.example",
            Some(json!({"PolicyName": "Nope"})),
        )
        .await;
    r.error(404, Some("Identity"));
    let r = api
        .call(
            Method::PUT,
            "/api/v1/grants/bob@corp.example",
            Some(json!({"PolicyName": "site:Paris"})),
        )
        .await;
    assert!(r.error(400, Some("PolicyName")).contains("tag:"));
    let r = api
        .call(
            Method::PUT,
            "/api/v1/grants/not-a-jid",
            Some(json!({"PolicyName": "Sales"})),
        )
        .await;
    assert!(r.error(400, Some("Identity")).contains("bare JID"));
    let r = api
        .call(
            Method::PUT,
            "/api/v1/grants/bob@corp.example",
            Some(json!({})),
        )
        .await;
    r.error(400, Some("PolicyName"));
    let r = api
        .call(
            Method::PUT,
            "/api/v1/grants/bob@corp.example",
            Some(json!({"PolicyName": "Sales", "Extra": 1})),
        )
        .await;
    r.error(400, Some("Extra"));
    let r = api
        .call(
            Method::PUT,
            "/api/v1/grants/bob@corp.example?whatIf=true",
            Some(json!({"PolicyName": "Sales"})),
        )
        .await;
    assert!(
        r.body["WhatIf"]
            .as_str()
            .unwrap()
            .contains("Grant-CsExternalAccessPolicy")
    );
    assert_eq!(
        api.get("/api/v1/grants")
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // A granted tag policy is removed only with force, grants and all.
    let r = api.delete("/api/v1/policies/tag:Sales").await;
    assert!(r.error(409, None).contains("alice@corp.example"));
    let r = api
        .delete("/api/v1/policies/tag:Sales?force=true&whatIf=true")
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(api.get("/api/v1/policies/tag:Sales").await.status, 200);
    let r = api.delete("/api/v1/policies/tag:Sales?force=true").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(api.get("/api/v1/grants").await.body, json!([]));
    api.get("/api/v1/policies/tag:Sales")
        .await
        .error(404, Some("Identity"));
    // Removing a grant with null.
    api.post("/api/v1/policies", json!({"Identity": "tag:Eng"}))
        .await;
    api.call(
        Method::PUT,
        "/api/v1/grants/carol@corp.example",
        Some(json!({"PolicyName": "Eng"})),
    )
    .await;
    let r = api
        .call(
            Method::PUT,
            "/api/v1/grants/carol@corp.example",
            Some(json!({"PolicyName": null})),
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.body["Value"].clone()),
        (200, Value::Null)
    );
    assert_eq!(api.get("/api/v1/grants").await.body, json!([]));
    // Global is reset, not removed.
    let r = api.delete("/api/v1/policies/Global").await;
    assert_eq!(r.status, 200);
    assert!(r.body["Warnings"].to_string().contains("reset"));
}

#[tokio::test]
async fn invalid_policy_values() {
    let api = Api::new();
    api.post("/api/v1/policies", json!({"Identity": "tag:Sales"}))
        .await;
    for field in [
        "EnableFederationAccess",
        "EnableXmppAccess",
        "EnableOutsideAccess",
        "EnablePublicCloudAccess",
        "EnablePublicCloudAudioVideoAccess",
    ] {
        let value = json!("maybe");
        let expected = policy_changes([(field, &from_json(&value))])
            .unwrap_err()
            .to_string();
        let r = api
            .post(
                "/api/v1/policies",
                json!({"Identity": "tag:Eng", field: value}),
            )
            .await;
        assert_eq!(r.error(400, Some(field)), expected);
        let r = api
            .patch("/api/v1/policies/tag:Sales", "*", json!({field: value}))
            .await;
        assert!(r.error(400, Some(field)).contains("$true, $false"));
    }
    let r = api
        .post(
            "/api/v1/policies",
            json!({"Identity": "tag:Eng", "EnableXmppAccess": "true"}),
        )
        .await;
    assert!(
        r.error(400, Some("EnableXmppAccess"))
            .contains("a JSON boolean")
    );
    let r = api.post("/api/v1/policies", json!({"Identity": 0})).await;
    assert!(r.error(400, Some("Identity")).contains("a JSON string"));
    let r = api
        .post(
            "/api/v1/policies",
            json!({"Identity": "tag:Eng", "Description": "x".repeat(1025)}),
        )
        .await;
    r.error(400, Some("Description"));
    let r = api
        .post("/api/v1/policies", json!({"Identity": "group:Eng"}))
        .await;
    r.error(400, Some("Identity"));
    let r = api
        .post("/api/v1/policies", json!({"EnableXmppAccess": true}))
        .await;
    r.error(400, Some("Identity"));
    let r = api
        .post(
            "/api/v1/policies",
            json!({"Identity": "tag:Eng", "Colour": 1}),
        )
        .await;
    assert!(r.error(400, Some("Colour")).contains("Allowed fields"));
    let r = api.get("/api/v1/policies/group:x").await;
    r.error(400, Some("Identity"));
    let r = api
        .patch(
            "/api/v1/policies/tag:Sales",
            "*",
            json!({"Identity": "tag:Other"}),
        )
        .await;
    r.error(400, Some("Identity"));
    let r = api.delete("/api/v1/policies/tag:Sales?force=perhaps").await;
    r.error(400, Some("force"));
    api.get("/api/v1/policies/tag:Nobody")
        .await
        .error(404, Some("Identity"));
}

#[tokio::test]
async fn gateway_configuration() {
    let api = Api::new();
    let r = api.get("/api/v1/gateway-configuration").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["Identity"], "Global");
    assert_eq!(r.body["KeepAliveInterval"], 300);
    let keys: Vec<&str> = r
        .body
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(
        keys,
        fedgate_model::gateway_settings::GATEWAY_FIELDS.to_vec()
    );

    let secret = "correct horse battery staple";
    let r = api
        .call(
            Method::PATCH,
            "/api/v1/gateway-configuration",
            Some(json!({"Identity": "global", "KeepAliveInterval": 120, "DialbackPassphrase": secret, "EnableLoggingAllMessageBodies": false})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["Value"]["KeepAliveInterval"], 120);
    assert_eq!(r.body["Value"]["DialbackPassphrase"], "********");
    let r = api.get("/api/v1/gateway-configuration").await;
    assert_eq!(r.body["KeepAliveInterval"], 120);
    assert_eq!(r.body["DialbackPassphrase"], "********");
    let audit = api.get("/api/v1/audit?target=Global").await;
    assert!(
        audit
            .body
            .to_string()
            .contains("Set-CsXmppGatewayConfiguration")
    );
    for text in [r.body.to_string(), audit.body.to_string()] {
        assert!(!text.contains(secret), "the passphrase leaked: {text}");
    }
    let r = api
        .call(
            Method::PATCH,
            "/api/v1/gateway-configuration?whatIf=true",
            Some(json!({"ConnectionLimit": 5, "PartnerConnectionLimit": 10})),
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(
        r.body["Warnings"]
            .to_string()
            .contains("PartnerConnectionLimit")
    );
    assert_eq!(
        api.get("/api/v1/gateway-configuration").await.body["ConnectionLimit"],
        1000
    );

    // Every invalid value: the CLI's text.
    let cases: Vec<(&str, Value)> = vec![
        ("ConnectionLimit", json!(0)),
        ("PartnerConnectionLimit", json!("many")),
        ("KeepAliveInterval", json!(-5)),
        ("StreamEstablishmentTimeout", json!(0)),
        ("StreamInactivityTimeout", json!(true)),
        ("SubscriptionRefreshInterval", json!(null)),
        ("DialbackPassphrase", json!("short")),
        ("EnableLoggingAllMessageBodies", json!("sometimes")),
        ("Colour", json!("red")),
    ];
    for (field, value) in cases {
        let expected = gateway_changes([(field, &from_json(&value))])
            .unwrap_err()
            .to_string();
        let r = api
            .call(
                Method::PATCH,
                "/api/v1/gateway-configuration",
                Some(json!({field: value})),
            )
            .await;
        let message = r.error(400, Some(field));
        assert_eq!(message, expected, "{field}");
        assert!(
            !message.contains("short\""),
            "the passphrase was echoed: {message}"
        );
    }
    // A passphrase sent with the wrong JSON type is not repeated either.
    for value in [
        json!(1234567890123456789_u64),
        json!(["a-secret-that-is-long", "x"]),
        json!(["a-secret-that-is-long"]),
        json!({"a-secret-that-is-long": 1}),
    ] {
        let r = api
            .call(
                Method::PATCH,
                "/api/v1/gateway-configuration",
                Some(json!({"DialbackPassphrase": value})),
            )
            .await;
        let message = r.error(400, Some("DialbackPassphrase"));
        assert!(
            !message.contains("a-secret") && !message.contains("123456789"),
            "{message}"
        );
        assert!(message.contains("JSON string"), "{message}");
    }
    let r = api
        .call(
            Method::PATCH,
            "/api/v1/gateway-configuration",
            Some(json!({"KeepAliveInterval": "120"})),
        )
        .await;
    assert!(
        r.error(400, Some("KeepAliveInterval"))
            .contains("a JSON integer")
    );
    let r = api
        .call(
            Method::PUT,
            "/api/v1/grants/bob@corp.example",
            Some(json!({"PolicyName": 7})),
        )
        .await;
    assert!(r.error(400, Some("PolicyName")).contains("a JSON string"));
    let r = api
        .call(
            Method::PATCH,
            "/api/v1/gateway-configuration",
            Some(json!({"Identity": "site:Paris"})),
        )
        .await;
    assert!(r.error(400, Some("Identity")).contains("Global"));
    assert_eq!(
        api.get("/api/v1/gateway-configuration").await.body["KeepAliveInterval"],
        120
    );
}
