//! `/api/v1/partners`: create, list with filter and paging, get with ETag, PATCH with
//! PSListModifier semantics and If-Match, DELETE, dry runs, conflicts and every invalid value.

use axum::http::Method;
use fedgate_manage::ParamValue;
use fedgate_manage::params::{from_json, partner_changes};
use fedgate_store::Store;
use serde_json::{Value, json};

use crate::common::Api;

/// The two partners of Microsoft's New-CsXmppAllowedPartner examples.
fn fabrikam() -> Value {
    json!({
        "Identity": "fabrikam.com",
        "PartnerType": "PublicVerified",
        "TlsNegotiation": "Required",
        "SaslNegotiation": "Required",
        "SupportDialbackNegotiation": false,
        "Description": "Contact: admin@fabrikam.com"
    })
}

fn contoso() -> Value {
    json!({"Domain": "contoso.com", "PartnerType": "Federated", "AdditionalDomains": ["contoso.net"]})
}

#[tokio::test]
async fn create_get_list_update_delete() {
    let api = Api::new();
    let r = api.post("/api/v1/partners", fabrikam()).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.etag(), "\"1\"");
    assert_eq!(r.headers["location"], "/api/v1/partners/fabrikam.com");
    assert_eq!(r.body["Version"], 1);
    assert_eq!(r.body["Value"]["PartnerType"], "PublicVerified");
    assert_eq!(r.body["Value"]["SupportDialbackNegotiation"], false);
    assert_eq!(r.body["Warnings"], json!([]));
    assert!(r.body["WhatIf"].is_null());

    let r = api.post("/api/v1/partners", contoso()).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["Value"]["Identity"], "contoso.com");
    assert_eq!(r.body["Value"]["AdditionalDomains"], json!(["contoso.net"]));

    // Get one: the cmdlets' field names, ETag.
    let r = api.get("/api/v1/partners/FABRIKAM.com.").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.etag(), "\"1\"");
    let keys: Vec<&str> = r
        .body
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(keys, fedgate_model::partner::PARTNER_FIELDS.to_vec());
    assert_eq!(r.body["Description"], "Contact: admin@fabrikam.com");

    // List: ordered, filtered, paged with a total.
    let r = api.get("/api/v1/partners").await;
    assert_eq!(r.body["Total"], 2);
    let ids: Vec<&str> = r.body["Items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["Identity"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["contoso.com", "fabrikam.com"]);
    let r = api.get("/api/v1/partners?filter=fab*").await;
    assert_eq!(r.body["Total"], 1);
    assert_eq!(r.body["Items"][0]["Identity"], "fabrikam.com");
    let r = api.get("/api/v1/partners?filter=*.org").await;
    assert_eq!(
        (r.status.as_u16(), r.body["Total"].clone()),
        (200, json!(0))
    );
    let r = api
        .get("/api/v1/partners?filter=*.com&offset=1&limit=1")
        .await;
    assert_eq!(r.body["Total"], 2);
    assert_eq!(r.body["Offset"], 1);
    assert_eq!(r.body["Limit"], 1);
    assert_eq!(r.body["Items"].as_array().unwrap().len(), 1);
    assert_eq!(r.body["Items"][0]["Identity"], "fabrikam.com");
    let r = api.get("/api/v1/partners?offset=5").await;
    assert_eq!(r.body["Items"], json!([]));

    // PATCH: only the fields given; the version moves on.
    let r = api
        .patch(
            "/api/v1/partners/fabrikam.com",
            "\"1\"",
            json!({"ConnectionLimit": 25, "EnableKeepAlive": false}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.etag(), "\"2\"");
    assert_eq!(r.body["Value"]["ConnectionLimit"], 25);
    assert_eq!(r.body["Value"]["EnableKeepAlive"], false);
    assert_eq!(r.body["Value"]["PartnerType"], "PublicVerified");

    // DELETE with the current ETag.
    let token = api.admin.clone();
    let r = api
        .send(
            Method::DELETE,
            "/api/v1/partners/fabrikam.com",
            Some(&token),
            &[("if-match", "\"2\"")],
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["Value"]["Identity"], "fabrikam.com");
    let r = api.get("/api/v1/partners/fabrikam.com").await;
    assert!(r.error(404, Some("Identity")).contains("fabrikam.com"));
    // DELETE without If-Match is allowed (Remove-CsXmppAllowedPartner has no version).
    assert_eq!(api.delete("/api/v1/partners/contoso.com").await.status, 200);
    assert!(
        api.delete("/api/v1/partners/contoso.com")
            .await
            .error(404, Some("Identity"))
            .contains("Cannot find")
    );
}

#[tokio::test]
async fn additional_domains_follow_pslistmodifier() {
    let api = Api::new();
    api.post(
        "/api/v1/partners",
        json!({"Identity": "fabrikam.com", "AdditionalDomains": ["a.fabrikam.net", "b.fabrikam.net"]}),
    )
    .await;
    let mut version = 1;
    let mut step = |body: Value| {
        version += 1;
        (body, format!("\"{}\"", version - 1))
    };
    let cases = [
        (
            json!({"AdditionalDomains": {"Add": ["c.fabrikam.net"], "Remove": ["a.fabrikam.net", "absent.net"]}}),
            json!(["b.fabrikam.net", "c.fabrikam.net"]),
        ),
        (
            json!({"AdditionalDomains": {"add": "*.lab.fabrikam.com"}}),
            json!(["b.fabrikam.net", "c.fabrikam.net", "*.lab.fabrikam.com"]),
        ),
        (
            json!({"AdditionalDomains": {"Replace": ["x.fabrikam.net"], "Add": ["y.fabrikam.net"]}}),
            json!(["x.fabrikam.net"]),
        ),
        (
            json!({"AdditionalDomains": ["p.fabrikam.net", "q.fabrikam.net"]}),
            json!(["p.fabrikam.net", "q.fabrikam.net"]),
        ),
        (json!({"AdditionalDomains": null}), json!([])),
    ];
    for (body, expected) in cases {
        let (body, etag) = step(body);
        let r = api
            .patch("/api/v1/partners/fabrikam.com", &etag, body.clone())
            .await;
        assert_eq!(r.status, 200, "{body}: {}", r.body);
        assert_eq!(r.body["Value"]["AdditionalDomains"], expected, "{body}");
    }
}

#[tokio::test]
async fn negotiation_warnings_are_returned() {
    let api = Api::new();
    let r = api
        .post(
            "/api/v1/partners",
            json!({"Identity": "fabrikam.com", "TlsNegotiation": "Optional", "SaslNegotiation": "Required", "SupportDialbackNegotiation": false}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let warnings = r.body["Warnings"].to_string();
    assert!(warnings.contains("SASL requires TLS"), "{warnings}");
}

#[tokio::test]
async fn duplicates_and_taken_domains_conflict() {
    let api = Api::new();
    api.post("/api/v1/partners", fabrikam()).await;
    api.post("/api/v1/partners", contoso()).await;
    let r = api
        .post("/api/v1/partners", json!({"Identity": "Fabrikam.COM"}))
        .await;
    assert!(r.error(409, Some("Identity")).contains("already exists"));
    let r = api
        .post("/api/v1/partners", json!({"Identity": "contoso.net"}))
        .await;
    assert!(
        r.error(409, None)
            .contains("already belongs to the partner 'contoso.com'")
    );
    let r = api
        .patch(
            "/api/v1/partners/fabrikam.com",
            "*",
            json!({"AdditionalDomains": {"Add": "contoso.net"}}),
        )
        .await;
    assert!(r.error(409, None).contains("contoso.net"));
    assert_eq!(api.store.partners(None).unwrap().len(), 2);
}

#[tokio::test]
async fn hosted_domains_cannot_be_partners() {
    let api = Api::with(|s| {
        s.with_hosted_domains(vec![fedgate_model::Domain::parse("corp.example").unwrap()])
    });
    let r = api
        .post("/api/v1/partners", json!({"Identity": "corp.example"}))
        .await;
    assert!(r.error(400, Some("Identity")).contains("hosted domains"));
}

/// The text the CLI shows for a value (after `<cmdlet> : `): the manage crate's conversion.
fn cli_text(field: &str, value: &Value) -> String {
    let v: ParamValue = from_json(value);
    partner_changes([(field, &v)]).unwrap_err().to_string()
}

#[tokio::test]
async fn every_invalid_value_names_the_parameter_and_allowed_values() {
    let api = Api::new();
    api.post("/api/v1/partners", fabrikam()).await;
    let long = "x".repeat(1025);
    // (field, value, text the message must contain)
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "AdditionalDomains",
            json!(["not a domain"]),
            "Allowed values",
        ),
        ("AdditionalDomains", json!("http://x.com"), "Allowed values"),
        (
            "AdditionalDomains",
            json!({"Append": ["a.com"]}),
            "Add, Remove, Replace",
        ),
        (
            "AdditionalDomains",
            json!({"Add": ["a..com"]}),
            "Allowed values",
        ),
        ("Description", json!(["a", "b"]), "single value"),
        (
            "PartnerType",
            json!("Trusted"),
            "Federated, PublicVerified, PublicUnverified",
        ),
        (
            "PartnerType",
            json!(1),
            "Federated, PublicVerified, PublicUnverified",
        ),
        (
            "TlsNegotiation",
            json!("Maybe"),
            "Required, Optional, NotSupported",
        ),
        ("TlsNegotiation", json!(null), "single value"),
        (
            "SaslNegotiation",
            json!("Yes"),
            "Required, Optional, NotSupported",
        ),
        ("SupportDialbackNegotiation", json!("yes"), "$true, $false"),
        ("SupportDialbackNegotiation", json!(null), "$true, $false"),
        ("EnableKeepAlive", json!(2), "$true, $false"),
        ("ConnectionLimit", json!(-1), "1 to 4294967295"),
        ("ConnectionLimit", json!(4294967296_u64), "1 to 4294967295"),
        ("ConnectionLimit", json!("ten"), "1 to 4294967295"),
        ("ProxyFqdn", json!("http://proxy"), "Allowed values"),
        (
            "ProxyFqdn",
            json!("proxy.fabrikam.com:99999"),
            "Allowed values",
        ),
        ("BypassDualWrite", json!({}), "$true, $false"),
    ];
    for (field, value, allowed) in &cases {
        let expected = cli_text(field, value);
        for (what, r) in [
            (
                "POST",
                api.post(
                    "/api/v1/partners",
                    json!({"Identity": "contoso.com", *field: value}),
                )
                .await,
            ),
            (
                "PATCH",
                api.patch("/api/v1/partners/fabrikam.com", "*", json!({*field: value}))
                    .await,
            ),
        ] {
            let message = r.error(400, Some(field));
            assert_eq!(message, expected, "{what} {field}={value}");
            assert!(
                message.contains(allowed),
                "{what} {field}={value}: {message}"
            );
            assert!(message.contains(&format!("'{field}'")), "{message}");
            assert_eq!(r.body["error"]["code"], "invalid_value");
        }
    }
    // Rules of the whole record, checked by the model.
    let r = api
        .post(
            "/api/v1/partners",
            json!({"Identity": "contoso.com", "Description": long}),
        )
        .await;
    assert!(r.error(400, Some("Description")).contains("1024"));
    let r = api
        .post(
            "/api/v1/partners",
            json!({"Identity": "contoso.com", "TlsNegotiation": "NotSupported", "SaslNegotiation": "NotSupported", "SupportDialbackNegotiation": false}),
        )
        .await;
    assert!(
        r.error(400, Some("SupportDialbackNegotiation"))
            .contains("not valid")
    );
    let r = api
        .post(
            "/api/v1/partners",
            json!({"Identity": "contoso.com", "ConnectionLimit": 0}),
        )
        .await;
    assert!(
        r.error(400, Some("ConnectionLimit"))
            .contains("1 to 4294967295")
    );
    let r = api
        .post(
            "/api/v1/partners",
            json!({"Identity": "contoso.com", "AdditionalDomains": ["contoso.com"]}),
        )
        .await;
    assert!(r.error(400, Some("AdditionalDomains")).contains("Identity"));
    // Unknown fields are refused with the list of fields.
    let r = api
        .post(
            "/api/v1/partners",
            json!({"Identity": "contoso.com", "Colour": "red"}),
        )
        .await;
    assert!(
        r.error(400, Some("Colour"))
            .contains("Allowed fields: AdditionalDomains")
    );
    // Identity / Domain.
    let r = api
        .post("/api/v1/partners", json!({"Identity": "not a domain"}))
        .await;
    assert!(r.error(400, Some("Identity")).contains("Allowed values"));
    let r = api
        .post("/api/v1/partners", json!({"Identity": "*.contoso.com"}))
        .await;
    r.error(400, Some("Identity"));
    let r = api.post("/api/v1/partners", json!({"Domain": "a b"})).await;
    r.error(400, Some("Domain"));
    let r = api
        .post("/api/v1/partners", json!({"PartnerType": "Federated"}))
        .await;
    assert!(r.error(400, Some("Identity")).contains("-Identity"));
    let r = api
        .post(
            "/api/v1/partners",
            json!({"Identity": "a.com", "Domain": "b.com"}),
        )
        .await;
    assert!(r.error(400, Some("Domain")).contains("not both"));
    let same = api
        .post(
            "/api/v1/partners",
            json!({"Identity": "a.com", "Domain": "A.com"}),
        )
        .await;
    assert_eq!(same.status, 201, "{}", same.body);
    let r = api
        .patch(
            "/api/v1/partners/fabrikam.com",
            "*",
            json!({"Identity": "other.com"}),
        )
        .await;
    assert!(r.error(400, Some("Identity")).contains("cannot be changed"));
    let r = api.get("/api/v1/partners/not%20a%20domain").await;
    r.error(400, Some("Identity"));
    // Bodies and query parameters.
    let token = api.admin.clone();
    for body in [&b"{not json"[..], b"[1,2]", b"", b"\"fabrikam.com\""] {
        let r = api
            .send(
                Method::POST,
                "/api/v1/partners",
                Some(&token),
                &[],
                Some(body.to_vec()),
            )
            .await;
        r.error(400, Some("body"));
    }
    for (query, parameter) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
        ("offset=-1", "offset"),
    ] {
        let r = api.get(&format!("/api/v1/partners?{query}")).await;
        assert!(
            r.error(400, Some(parameter)).contains("Allowed values"),
            "{query}"
        );
    }
    let r = api
        .post(
            "/api/v1/partners?whatIf=perhaps",
            json!({"Identity": "x.com"}),
        )
        .await;
    assert!(
        r.error(400, Some("whatIf"))
            .contains("Allowed values: true, false")
    );
    // Nothing of the above was written: fabrikam.com and a.com only.
    assert_eq!(api.store.partners(None).unwrap().len(), 2);
    let stored = api.get("/api/v1/partners/fabrikam.com").await;
    assert_eq!(stored.etag(), "\"1\"");
}

/// JSON types are strict: a value the CLI would take as typed text, but of the wrong JSON type,
/// is refused with the field and the JSON type it takes.
#[tokio::test]
async fn json_types_are_strict() {
    let api = Api::new();
    api.post("/api/v1/partners", fabrikam()).await;
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "EnableKeepAlive",
            json!("true"),
            "a JSON boolean: true or false",
        ),
        (
            "SupportDialbackNegotiation",
            json!("$false"),
            "a JSON boolean",
        ),
        ("BypassDualWrite", json!(1), "a JSON boolean"),
        ("ConnectionLimit", json!("25"), "a JSON integer"),
        ("Description", json!(5), "a JSON string"),
        ("PartnerType", json!(["Federated"]), "a JSON string"),
    ];
    for (field, value, expected) in cases {
        for r in [
            api.post(
                "/api/v1/partners",
                json!({"Identity": "contoso.com", field: value.clone()}),
            )
            .await,
            api.patch(
                "/api/v1/partners/fabrikam.com",
                "*",
                json!({field: value.clone()}),
            )
            .await,
        ] {
            let message = r.error(400, Some(field));
            assert!(message.contains(expected), "{field}={value}: {message}");
            assert!(
                message.starts_with(&format!("Cannot bind parameter '{field}'.")),
                "{message}"
            );
        }
    }
    let r = api.post("/api/v1/partners", json!({"Identity": 5})).await;
    assert!(r.error(400, Some("Identity")).contains("a JSON string"));
    assert_eq!(api.store.partners(None).unwrap().len(), 1);
    assert_eq!(
        api.get("/api/v1/partners/fabrikam.com").await.etag(),
        "\"1\""
    );
}

#[tokio::test]
async fn if_match_is_required_and_checked() {
    let api = Api::new();
    api.post("/api/v1/partners", fabrikam()).await;
    let token = api.admin.clone();
    let r = api
        .send(
            Method::PATCH,
            "/api/v1/partners/fabrikam.com",
            Some(&token),
            &[],
            Some(br#"{"Description":"x"}"#.to_vec()),
        )
        .await;
    assert!(r.error(428, Some("If-Match")).contains("If-Match"));
    let r = api
        .patch(
            "/api/v1/partners/fabrikam.com",
            "\"7\"",
            json!({"Description": "x"}),
        )
        .await;
    assert!(
        r.error(412, Some("If-Match"))
            .contains("changed by someone else")
    );
    let r = api
        .patch(
            "/api/v1/partners/fabrikam.com",
            "\"abc\"",
            json!({"Description": "x"}),
        )
        .await;
    r.error(412, Some("If-Match"));
    let r = api
        .patch(
            "/api/v1/partners/fabrikam.com",
            "W/\"1\"",
            json!({"Description": "x"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = api
        .patch(
            "/api/v1/partners/fabrikam.com",
            "*",
            json!({"Description": "y"}),
        )
        .await;
    assert_eq!((r.status.as_u16(), r.etag()), (200, "\"3\"".to_owned()));
    let r = api
        .send(
            Method::DELETE,
            "/api/v1/partners/fabrikam.com",
            Some(&token),
            &[("if-match", "\"2\"")],
            None,
        )
        .await;
    r.error(412, Some("If-Match"));
    let r = api
        .send(
            Method::DELETE,
            "/api/v1/partners/fabrikam.com?whatIf=true",
            Some(&token),
            &[("if-match", "\"2\"")],
            None,
        )
        .await;
    r.error(412, Some("If-Match"));
    assert_eq!(api.store.partners(None).unwrap().len(), 1);
    let r = api
        .patch(
            "/api/v1/partners/nobody.com",
            "*",
            json!({"Description": "y"}),
        )
        .await;
    r.error(404, Some("Identity"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_admins_with_the_same_etag_one_wins_one_gets_412() {
    let api = Api::new();
    api.post("/api/v1/partners", fabrikam()).await;
    for round in 0..5 {
        let etag = api.get("/api/v1/partners/fabrikam.com").await.etag();
        let (a, b) = tokio::join!(
            api.patch(
                "/api/v1/partners/fabrikam.com",
                &etag,
                json!({"Description": format!("alice {round}")})
            ),
            api.patch(
                "/api/v1/partners/fabrikam.com",
                &etag,
                json!({"Description": format!("bob {round}")})
            ),
        );
        let mut statuses = [a.status.as_u16(), b.status.as_u16()];
        statuses.sort();
        assert_eq!(statuses, [200, 412], "{} / {}", a.body, b.body);
        let winner = if a.status == 200 { &a } else { &b };
        let now = api.get("/api/v1/partners/fabrikam.com").await;
        assert_eq!(now.body["Description"], winner.body["Value"]["Description"]);
        assert_eq!(now.etag(), winner.etag());
    }
}

#[tokio::test]
async fn what_if_writes_nothing() {
    let api = Api::new();
    api.post("/api/v1/partners", fabrikam()).await;
    let before = api.audit_len();
    let r = api.post("/api/v1/partners?whatIf=true", contoso()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body["WhatIf"]
            .as_str()
            .unwrap()
            .contains("New-CsXmppAllowedPartner")
    );
    assert_eq!(r.body["Value"]["Identity"], "contoso.com");
    assert_eq!(r.body["Version"], 0);
    assert_eq!(api.get("/api/v1/partners/contoso.com").await.status, 404);
    // A dry run still checks everything.
    let r = api.post("/api/v1/partners?whatIf=true", fabrikam()).await;
    r.error(409, Some("Identity"));

    let r = api
        .patch(
            "/api/v1/partners/fabrikam.com?whatIf=TRUE",
            "\"1\"",
            json!({"PartnerType": "Federated"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["Value"]["PartnerType"], "Federated");
    assert!(
        r.body["WhatIf"]
            .as_str()
            .unwrap()
            .contains("Set-CsXmppAllowedPartner")
    );
    assert!(r.headers.get("etag").is_none());
    let r = api
        .delete("/api/v1/partners/fabrikam.com?whatIf=true")
        .await;
    assert_eq!(r.status, 200);
    assert!(
        r.body["WhatIf"]
            .as_str()
            .unwrap()
            .contains("Remove-CsXmppAllowedPartner")
    );

    let now = api.get("/api/v1/partners/fabrikam.com").await;
    assert_eq!(now.etag(), "\"1\"");
    assert_eq!(now.body["PartnerType"], "PublicVerified");
    assert_eq!(api.audit_len(), before);
}
