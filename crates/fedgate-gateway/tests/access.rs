//! User access enforcement (DESIGN §3.4–3.5) on addresses a hostile or sloppy peer may send:
//! the policy applies to the bare user JID, whatever the resource, and a user address that
//! cannot be parsed is refused rather than waved through.

mod common;

use std::time::Duration;

use common::*;
use fedgate_model::{SaslNegotiation as S, TlsNegotiation as Tls};
use fedgate_xmpp::{Element, ns};

fn init() {
    if std::env::var_os("RUST_LOG").is_some() {
        fedgate_gateway::init_logging("info");
    }
}

fn condition(e: &Element) -> Option<String> {
    e.child("error", ns::SERVER)?
        .children
        .iter()
        .find_map(|n| match n {
            fedgate_xmpp::Node::Element(c)
                if c.namespace == ns::STANZA_ERRORS && c.name != "text" =>
            {
                Some(c.name.clone())
            }
            _ => None,
        })
}

/// An iq to a server (no user on the local side, so no user policy applies).
fn server_iq(from: &str, to: &str, id: &str) -> Element {
    Element::new("iq", ns::SERVER)
        .with_attr("from", from)
        .with_attr("to", to)
        .with_attr("type", "get")
        .with_attr("id", id)
        .with_child(Element::new("query", "jabber:iq:version"))
}

#[tokio::test]
async fn odd_resources_and_malformed_user_addresses_do_not_bypass_the_user_policy() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let (partner_addr, partner_gw, mut partner_stanzas) = receiving_server(PARTNER_SECRET).await;
    let store = open_store(dir.path());
    add_partner(
        store.as_ref(),
        "partner.example",
        Tls::NotSupported,
        S::NotSupported,
        true,
        Some(partner_addr),
    );
    set_global_xmpp_access(store.as_ref(), true);
    let mut p = store
        .partner(&fedgate_model::Domain::parse("partner.example").unwrap())
        .unwrap()
        .unwrap();
    p.value.partner_type = fedgate_model::PartnerType::PublicUnverified;
    store.update_partner(&p.value, p.version, &audit()).unwrap();
    let (gw, mut internal_stanzas) = start(dir.path(), "").await;
    partner_gw.send(gw.external_addr).unwrap();
    let mut q = dialback_peer(&gw).await;

    // bob never authorised alice: whatever follows bob's bare JID, the message is bounced.
    let long = format!("bob@corp.example/{}", "r".repeat(1100));
    let cases: [(&str, &str); 4] = [
        ("bob@corp.example/", "policy-violation"),
        (&long, "policy-violation"),
        ("BOB@Corp.Example/x", "policy-violation"),
        // A localpart no JID may have: refused as malformed, never forwarded.
        ("b ob@corp.example", "jid-malformed"),
    ];
    for (i, (to, expected)) in cases.iter().enumerate() {
        let id = format!("m{i}");
        q.send_el(&message("alice@partner.example/r", to, "hi").with_attr("id", &id))
            .await;
        let b = tokio::time::timeout(T, partner_stanzas.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (b.attr("type"), b.attr("id")),
            (Some("error"), Some(id.as_str())),
            "to={to}: {b:?}"
        );
        assert_eq!(condition(&b).as_deref(), Some(*expected), "to={to}: {b:?}");
    }
    // The same from an address with an odd resource on the remote side.
    q.send_el(&message("alice@partner.example/", "bob@corp.example", "hi").with_attr("id", "r1"))
        .await;
    let b = tokio::time::timeout(T, partner_stanzas.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(b.attr("id"), Some("r1"), "{b:?}");
    assert_eq!(condition(&b).as_deref(), Some("policy-violation"), "{b:?}");
    // Nothing reached the local user: a stanza to the server itself (no user, so no user
    // policy) on the same path is the first thing the internal server receives.
    q.send_el(&server_iq(
        "alice@partner.example/r",
        "corp.example",
        "marker-in",
    ))
    .await;
    let first = tokio::time::timeout(T, internal_stanzas.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.attr("id"), Some("marker-in"), "{first:?}");
    // The malformed address was refused as such, counted by its reason (over HTTP).
    assert_eq!(refusals(&gw, "external", "malformed_jid").await, 1);

    // Outbound, from a local user whose policy does not enable XMPP, with an odd resource.
    set_global_xmpp_access(store.as_ref(), false);
    wait_policy_current(&gw, store.as_ref()).await;
    let mut i = Peer::connect(gw.internal_addr).await;
    i.dialback("corp.example", "partner.example", INTERNAL_SECRET)
        .await
        .unwrap();
    i.send_el(&message(&long, "alice@partner.example", "out").with_attr("id", "o1"))
        .await;
    let b = tokio::time::timeout(T, internal_stanzas.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (b.attr("type"), b.attr("id")),
        (Some("error"), Some("o1")),
        "{b:?}"
    );
    assert_eq!(condition(&b).as_deref(), Some("policy-violation"), "{b:?}");
    // Nothing reached the partner: a stanza to the partner's server on the same path is the
    // first thing it receives.
    i.send_el(&server_iq("corp.example", "partner.example", "marker-out"))
        .await;
    let first = tokio::time::timeout(T, partner_stanzas.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.attr("id"), Some("marker-out"), "{first:?}");
    gw.shutdown(Duration::from_secs(5)).await;
}
