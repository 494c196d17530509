//! User access enforcement (DESIGN §3.4–3.5) on addresses a hostile or sloppy peer may send:
//! the policy applies to the bare user JID normalised as the internal server normalises it
//! (nodeprep), whatever the resource and however the name is spelt; the stanza forwarded carries
//! the normalised addresses; an address that cannot be normalised is refused rather than waved
//! through.

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
    let cases: [(&str, &str); 5] = [
        // Resources the internal server could not prepare either: refused as malformed.
        ("bob@corp.example/", "jid-malformed"),
        (&long, "jid-malformed"),
        ("bob@corp.example/a/b@c", "policy-violation"),
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
    let malformed_before = refusals(&gw, "external", "malformed_jid").await;
    for (i, (from, expected)) in [
        ("alice@partner.example/", "jid-malformed"),
        ("alice@partner.example/a/b@c", "policy-violation"),
    ]
    .iter()
    .enumerate()
    {
        let id = format!("r{i}");
        q.send_el(&message(from, "bob@corp.example", "hi").with_attr("id", &id))
            .await;
        let b = tokio::time::timeout(T, partner_stanzas.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(b.attr("id"), Some(id.as_str()), "{b:?}");
        assert_eq!(condition(&b).as_deref(), Some(*expected), "{b:?}");
    }
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
    assert_eq!(
        refusals(&gw, "external", "malformed_jid").await,
        malformed_before + 1
    );

    // Outbound, from a local user whose policy does not enable XMPP, with an odd resource.
    set_global_xmpp_access(store.as_ref(), false);
    wait_policy_current(&gw, store.as_ref()).await;
    let mut i = Peer::connect(gw.internal_addr).await;
    i.dialback("corp.example", "partner.example", INTERNAL_SECRET)
        .await
        .unwrap();
    i.send_el(
        &message("bob@corp.example/a/b@c", "alice@partner.example", "out").with_attr("id", "o1"),
    )
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

/// Grant the tag policy `NoXmpp` (EnableXmppAccess False) to each user, spelt as given.
fn forbid(store: &dyn fedgate_store::Store, users: &[&str]) {
    let mut p = fedgate_model::ExternalAccessPolicy::new(
        fedgate_model::PolicyScope::parse("tag:NoXmpp").unwrap(),
    );
    p.enable_xmpp_access = false;
    store.create_policy(&p, &audit()).unwrap();
    for u in users {
        let user = fedgate_model::UserJid::parse(u).unwrap();
        store.grant_policy(&user, Some("NoXmpp"), &audit()).unwrap();
    }
}

async fn next(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Element>, what: &str) -> Element {
    tokio::time::timeout(T, rx.recv())
        .await
        .unwrap_or_else(|_| panic!("nothing received: {what}"))
        .unwrap()
}

#[tokio::test]
async fn variants_of_a_forbidden_users_name_stay_bounced_and_forwarded_addresses_are_normalised() {
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
    // carol, fiona and åsa may not federate; the grants are typed in variants themselves.
    forbid(
        store.as_ref(),
        &[
            "ＣＡＲＯＬ@corp.example",
            "fiona@corp.example",
            "A\u{030A}SA@corp.example",
        ],
    );
    let (gw, mut internal_stanzas) = start(dir.path(), "").await;
    partner_gw.send(gw.external_addr).unwrap();
    let mut q = dialback_peer(&gw).await;

    // Inbound: every spelling the internal server would deliver to a forbidden user bounces.
    let forbidden = [
        "carol@corp.example",
        "CAROL@corp.example",
        "ＣＡＲＯＬ@corp.example",
        "ｃａｒｏｌ@corp.example",
        "car\u{00AD}ol@corp.example",
        "ca\u{200B}rol@corp.example",
        "c\u{FEFF}arol\u{2060}@corp.example",
        "carol@ｃｏｒｐ.example",
        "carol@cor\u{00AD}p.example",
        "Ｃａｒ\u{00AD}ｏｌ@ＣＯＲＰ.example/Ｐｈｏｎｅ",
        "\u{FB01}ona@corp.example",
        "FIONA@corp.example",
        "A\u{030A}sa@corp.example",
        "\u{00E5}sa@corp.example",
        "\u{212B}SA@corp.example",
    ];
    for (i, to) in forbidden.iter().enumerate() {
        let id = format!("f{i}");
        q.send_el(&message("bob@partner.example/r", to, "hi").with_attr("id", &id))
            .await;
        let b = next(&mut partner_stanzas, to).await;
        assert_eq!(
            (b.attr("type"), b.attr("id"), condition(&b).as_deref()),
            (Some("error"), Some(id.as_str()), Some("policy-violation")),
            "to={to:?}: {b:?}"
        );
        assert_eq!(b.attr("to"), Some("bob@partner.example/r"), "{b:?}");
    }
    // Addresses nodeprep refuses: malformed, never forwarded.
    for (i, to) in [
        "car\u{FF20}ol@corp.example", // fullwidth '@' is '@' after NFKC
        "car ol@corp.example",
        "carol\u{FF0F}x@corp.example", // fullwidth '/'
        "\u{05D0}1@corp.example",      // bidi rule
        "car\u{E000}ol@corp.example",  // private use
        "\u{00AD}@corp.example",       // nothing left
    ]
    .iter()
    .enumerate()
    {
        let id = format!("m{i}");
        q.send_el(&message("bob@partner.example/r", to, "hi").with_attr("id", &id))
            .await;
        let b = next(&mut partner_stanzas, to).await;
        assert_eq!(
            (b.attr("id"), condition(&b).as_deref()),
            (Some(id.as_str()), Some("jid-malformed")),
            "to={to:?}: {b:?}"
        );
    }
    // Nothing reaches a forbidden user: the enabled user's messages below travel the same
    // stream after them, and the first stanza the internal server receives is the first of
    // those (`id` p0), checked in the loop.

    // An enabled user addressed with variants receives the message, addressed normalised.
    for (i, (from, to)) in [
        (
            "ＢＯＢ@partner.example/Ｒ",
            "ＡＬＩＣＥ@ｃｏｒｐ.example/Ｐｈｏｎｅ",
        ),
        (
            "b\u{00AD}ob@partner.example/R",
            "al\u{00AD}ice@corp.example/Phone",
        ),
    ]
    .iter()
    .enumerate()
    {
        let id = format!("p{i}");
        q.send_el(&message(from, to, "hi").with_attr("id", &id))
            .await;
        let m = next(&mut internal_stanzas, to).await;
        assert_eq!(
            (m.attr("id"), m.attr("from"), m.attr("to")),
            (
                Some(id.as_str()),
                Some("bob@partner.example/R"),
                Some("alice@corp.example/Phone")
            ),
            "{m:?}"
        );
    }

    // Outbound: a forbidden user's variant spelling from the internal side bounces too, and an
    // enabled user's stanza reaches the partner with normalised addresses.
    let mut i = Peer::connect(gw.internal_addr).await;
    i.dialback("corp.example", "partner.example", INTERNAL_SECRET)
        .await
        .unwrap();
    for (n, from) in [
        "ＣＡＲＯＬ@corp.example/x",
        "car\u{00AD}ol@corp.example/x",
        "\u{FB01}ona@ｃｏｒｐ.example",
    ]
    .iter()
    .enumerate()
    {
        let id = format!("o{n}");
        i.send_el(&message(from, "bob@partner.example", "out").with_attr("id", &id))
            .await;
        let b = next(&mut internal_stanzas, from).await;
        assert_eq!(
            (b.attr("type"), b.attr("id"), condition(&b).as_deref()),
            (Some("error"), Some(id.as_str()), Some("policy-violation")),
            "from={from:?}: {b:?}"
        );
    }
    i.send_el(
        &message(
            "ＡＬＩＣＥ@corp.example/Ｒ",
            "ＢＯＢ@ｐａｒｔｎｅｒ.example",
            "out",
        )
        .with_attr("id", "ok"),
    )
    .await;
    let m = next(&mut partner_stanzas, "alice's message").await;
    assert_eq!(
        (m.attr("id"), m.attr("from"), m.attr("to")),
        (
            Some("ok"),
            Some("alice@corp.example/R"),
            Some("bob@partner.example")
        ),
        "{m:?}"
    );
    // Nothing of the forbidden users reached the partner: they were sent before alice's
    // message on the same stream, and alice's (`id` ok) is the first stanza the partner got.
    gw.shutdown(Duration::from_secs(5)).await;
}

/// alice@corp.example/r sends presence of type `kind` to `to`, from the internal side.
async fn alice_presence(gw: &fedgate_gateway::Gateway, to: &str, kind: &str) {
    let mut i = Peer::connect(gw.internal_addr).await;
    i.dialback("corp.example", "partner.example", INTERNAL_SECRET)
        .await
        .unwrap();
    i.send_el(
        &Element::new("presence", ns::SERVER)
            .with_attr("from", "alice@corp.example/r")
            .with_attr("to", to)
            .with_attr("type", kind),
    )
    .await;
}

#[tokio::test]
async fn public_unverified_authorisations_are_keyed_on_the_normalised_users() {
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
    let mut p = store
        .partner(&fedgate_model::Domain::parse("partner.example").unwrap())
        .unwrap()
        .unwrap();
    p.value.partner_type = fedgate_model::PartnerType::PublicUnverified;
    store.update_partner(&p.value, p.version, &audit()).unwrap();
    let (gw, mut internal_stanzas) = start(dir.path(), "").await;
    partner_gw.send(gw.external_addr).unwrap();

    // alice (as her server spells her) subscribes to a variant spelling of bob.
    alice_presence(&gw, "ＢＯＢ@partner.example", "subscribe").await;
    let s = next(&mut partner_stanzas, "the subscription").await;
    assert_eq!(s.attr("to"), Some("bob@partner.example"), "{s:?}");
    let alice = fedgate_model::UserJid::parse("alice@corp.example").unwrap();
    let auths = store.authorisations(Some(&alice)).unwrap();
    assert_eq!(
        auths
            .iter()
            .map(|a| a.remote_user.to_string())
            .collect::<Vec<_>>(),
        ["bob@partner.example"]
    );

    // bob, spelt otherwise, reaches alice, spelt otherwise: the same authorisation.
    let mut q = dialback_peer(&gw).await;
    q.send_el(
        &message(
            "b\u{00AD}ob@partner.example/x",
            "ＡＬＩＣＥ@corp.example",
            "hi",
        )
        .with_attr("id", "a1"),
    )
    .await;
    let m = next(&mut internal_stanzas, "bob's message").await;
    assert_eq!(
        (m.attr("id"), m.attr("from"), m.attr("to")),
        (
            Some("a1"),
            Some("bob@partner.example/x"),
            Some("alice@corp.example")
        ),
        "{m:?}"
    );
    // Someone alice did not authorise is still bounced.
    q.send_el(
        &message("eve@partner.example/x", "ａｌｉｃｅ@corp.example", "hi").with_attr("id", "e1"),
    )
    .await;
    let b = next(&mut partner_stanzas, "eve's bounce").await;
    assert_eq!(
        (b.attr("id"), condition(&b).as_deref()),
        (Some("e1"), Some("policy-violation")),
        "{b:?}"
    );
    gw.shutdown(Duration::from_secs(5)).await;

    // Restarted on the same store: the authorisation (durable before the subscription left the
    // gateway) is in the new gateway's snapshot; alice's unsubscribe withdraws it, in the store
    // by the time the partner has the stanza.
    let (gw, mut internal_stanzas) = start(dir.path(), "").await;
    partner_gw.send(gw.external_addr).unwrap();
    let mut q = dialback_peer(&gw).await;
    q.send_el(
        &message("bob@partner.example/x", "alice@corp.example", "again").with_attr("id", "a2"),
    )
    .await;
    let m = next(&mut internal_stanzas, "bob's message after the restart").await;
    assert_eq!(m.attr("id"), Some("a2"), "{m:?}");
    alice_presence(&gw, "bob@partner.example", "unsubscribe").await;
    // (The first gateway's streams ended with system-shutdown; the partner saw that too.)
    let s = loop {
        let s = next(&mut partner_stanzas, "the unsubscribe").await;
        if s.name == "presence" {
            break s;
        }
    };
    assert_eq!(s.attr("type"), Some("unsubscribe"), "{s:?}");
    assert!(store.authorisations(Some(&alice)).unwrap().is_empty());
    q.send_el(
        &message("bob@partner.example/x", "alice@corp.example", "more").with_attr("id", "a3"),
    )
    .await;
    let b = next(&mut partner_stanzas, "bob's bounce after the unsubscribe").await;
    assert_eq!(
        (b.attr("id"), condition(&b).as_deref()),
        (Some("a3"), Some("policy-violation")),
        "{b:?}"
    );
    gw.shutdown(Duration::from_secs(5)).await;
}
