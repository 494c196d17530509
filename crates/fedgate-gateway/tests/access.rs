//! User access enforcement (README, "PartnerType: what passes") on addresses a hostile or sloppy
//! peer may send: the policy applies to the bare user JID normalised as the internal server
//! normalises it (nodeprep), whatever the resource and however the name is spelt; the stanza
//! forwarded carries the normalised addresses; an address that cannot be normalised is refused
//! rather than waved through.

mod common;

use std::time::Duration;

use common::*;
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
                Some(c.name.to_string())
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
    add_dialback_partner(store.as_ref(), "partner.example", Some(partner_addr));
    set_global_xmpp_access(store.as_ref(), true);
    edit_partner(store.as_ref(), "partner.example", |p| {
        p.partner_type = fedgate_model::PartnerType::PublicUnverified;
    });
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
    add_dialback_partner(store.as_ref(), "partner.example", Some(partner_addr));
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
    add_dialback_partner(store.as_ref(), "partner.example", Some(partner_addr));
    edit_partner(store.as_ref(), "partner.example", |p| {
        p.partner_type = fedgate_model::PartnerType::PublicUnverified;
    });
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

// ---- PublicUnverified: what a local user's own traffic opens (issue 24) ----

/// A gateway whose partner `partner.example` (also `conference.partner.example`, its chat rooms)
/// is PublicUnverified; returns the gateway, the store, what the partner's server receives and
/// what the internal server receives.
async fn public_unverified(
    dir: &std::path::Path,
) -> (
    fedgate_gateway::Gateway,
    Box<dyn fedgate_store::Store>,
    tokio::sync::mpsc::UnboundedReceiver<Element>,
    tokio::sync::mpsc::UnboundedReceiver<Element>,
) {
    let (partner_addr, partner_gw, partner_stanzas) = receiving_server(PARTNER_SECRET).await;
    let store = open_store(dir);
    add_dialback_partner(store.as_ref(), "partner.example", Some(partner_addr));
    edit_partner(store.as_ref(), "partner.example", |p| {
        p.partner_type = fedgate_model::PartnerType::PublicUnverified;
        p.additional_domains =
            vec![fedgate_model::DomainPattern::parse("conference.partner.example").unwrap()];
    });
    let (gw, internal_stanzas) = start(dir, "").await;
    partner_gw.send(gw.external_addr).unwrap();
    (gw, store, partner_stanzas, internal_stanzas)
}

/// The internal server's stream to the gateway (as corp.example).
async fn internal_peer(gw: &fedgate_gateway::Gateway) -> Peer {
    let mut i = Peer::connect(gw.internal_addr).await;
    i.dialback("corp.example", "partner.example", INTERNAL_SECRET)
        .await
        .unwrap();
    i
}

/// A stream from the partner's chat-room service to the gateway.
async fn room_peer(gw: &fedgate_gateway::Gateway) -> Peer {
    let mut p = Peer::connect(gw.external_addr).await;
    p.dialback("conference.partner.example", "corp.example", PARTNER_SECRET)
        .await
        .unwrap();
    p
}

fn iq(from: &str, to: &str, kind: &str, id: &str) -> Element {
    let e = Element::new("iq", ns::SERVER)
        .with_attr("from", from)
        .with_attr("to", to)
        .with_attr("type", kind)
        .with_attr("id", id);
    if kind == "get" {
        e.with_child(Element::new("ping", "urn:xmpp:ping"))
    } else {
        e
    }
}

fn presence(from: &str, to: &str, kind: Option<&str>) -> Element {
    let e = Element::new("presence", ns::SERVER)
        .with_attr("from", from)
        .with_attr("to", to);
    match kind {
        Some(k) => e.with_attr("type", k),
        None => e,
    }
}

fn groupchat(from: &str, to: &str, id: &str) -> Element {
    message(from, to, "hello room")
        .with_attr("type", "groupchat")
        .with_attr("id", id)
}

/// `fedgate_stanzas_dropped_total{side="external", reason}` over HTTP (0 if absent).
async fn dropped(gw: &fedgate_gateway::Gateway, reason: &str) -> u64 {
    sample(
        &scrape(gw).await,
        "fedgate_stanzas_dropped_total",
        &[("side", "external"), ("reason", reason)],
    )
    .unwrap_or(0)
}

/// Wait until the external `reason` drops reach `n`.
async fn wait_dropped(gw: &fedgate_gateway::Gateway, reason: &str, n: u64) {
    let deadline = std::time::Instant::now() + T;
    while dropped(gw, reason).await < n {
        assert!(
            std::time::Instant::now() < deadline,
            "never counted {n} {reason} drops:\n{}",
            scrape(gw).await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const ALICE: &str = "alice@corp.example/phone";

#[tokio::test]
async fn public_unverified_replies_to_her_requests_pass_and_unsolicited_results_are_dropped() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let (gw, _store, mut partner_stanzas, mut internal_stanzas) =
        public_unverified(dir.path()).await;
    let mut q = dialback_peer(&gw).await;
    let mut i = internal_peer(&gw).await;

    // An unsolicited result, from the partner's server and from a user: dropped, not answered.
    q.send_el(&iq("partner.example", ALICE, "result", "nobody-asked"))
        .await;
    q.send_el(&iq(
        "eve@partner.example/x",
        ALICE,
        "result",
        "nobody-asked",
    ))
    .await;
    wait_dropped(&gw, "unsolicited", 2).await;

    // She pings the partner's server and a partner user's full JID; both requests go out.
    i.send_el(&iq(ALICE, "partner.example", "get", "ping-server"))
        .await;
    i.send_el(&iq(ALICE, "bob@partner.example/pc", "get", "ping-bob"))
        .await;
    for id in ["ping-server", "ping-bob"] {
        let r = next(&mut partner_stanzas, id).await;
        assert_eq!(r.attr("id"), Some(id), "{r:?}");
    }
    // Their answers reach her: a result and an error. Nothing unsolicited came first.
    q.send_el(&iq("partner.example", ALICE, "result", "ping-server"))
        .await;
    let r = next(&mut internal_stanzas, "the server's pong").await;
    assert_eq!(
        (r.attr("id"), r.attr("type"), r.attr("to")),
        (Some("ping-server"), Some("result"), Some(ALICE)),
        "{r:?}"
    );
    q.send_el(&iq("bob@partner.example/pc", ALICE, "error", "ping-bob"))
        .await;
    let r = next(&mut internal_stanzas, "bob's answer").await;
    assert_eq!(
        (r.attr("id"), r.attr("type")),
        (Some("ping-bob"), Some("error")),
        "{r:?}"
    );
    // An answer is taken once; an answer from someone else with her request's id is dropped.
    i.send_el(&iq(ALICE, "partner.example", "get", "ping-again"))
        .await;
    next(&mut partner_stanzas, "ping-again").await;
    q.send_el(&iq("eve@partner.example/x", ALICE, "result", "ping-again"))
        .await;
    q.send_el(&iq("partner.example", ALICE, "result", "ping-server"))
        .await;
    wait_dropped(&gw, "unsolicited", 4).await;
    // A stranger's message is still bounced; the bounce is the first thing the partner gets
    // since the pings (no error went back for the dropped results).
    q.send_el(&message("eve@partner.example/x", ALICE, "hi").with_attr("id", "eve-msg"))
        .await;
    let b = next(&mut partner_stanzas, "eve's bounce").await;
    assert_eq!(
        (b.attr("id"), b.attr("type"), condition(&b).as_deref()),
        (Some("eve-msg"), Some("error"), Some("policy-violation")),
        "{b:?}"
    );
    // The server marker: nothing else reached alice.
    q.send_el(&server_iq("partner.example", "corp.example", "marker"))
        .await;
    let m = next(&mut internal_stanzas, "the marker").await;
    assert_eq!(m.attr("id"), Some("marker"), "{m:?}");
    assert_eq!(refusals(&gw, "external", "unsolicited").await, 4);
    gw.shutdown(Duration::from_secs(5)).await;
}

/// (That the path stays closed once the 30 s grace is over, bouncing the room like any
/// stranger, is tested in fedgate-model's route tests, which set the clock.)
#[tokio::test]
async fn public_unverified_room_traffic_passes_after_directed_presence_and_stops_after_unavailable()
{
    init();
    let dir = tempfile::tempdir().unwrap();
    let (gw, _store, mut partner_stanzas, mut internal_stanzas) =
        public_unverified(dir.path()).await;
    let mut room = room_peer(&gw).await;
    let mut i = internal_peer(&gw).await;
    let (me_in_room, bob_in_room) = (
        "room@conference.partner.example/Alice",
        "room@conference.partner.example/bob",
    );

    // Before she joins, the room is a stranger: its groupchat is bounced.
    room.send_el(&groupchat(bob_in_room, ALICE, "before")).await;
    let b = next(&mut partner_stanzas, "the bounce before joining").await;
    assert_eq!(
        (b.attr("id"), condition(&b).as_deref()),
        (Some("before"), Some("policy-violation")),
        "{b:?}"
    );

    // She joins (directed presence); the room's presence and groupchat reach her.
    i.send_el(&presence(ALICE, me_in_room, None)).await;
    let p = next(&mut partner_stanzas, "her join").await;
    assert_eq!(
        (p.name.as_str(), p.attr("to")),
        ("presence", Some(me_in_room))
    );
    room.send_el(&presence(bob_in_room, ALICE, None)).await;
    room.send_el(&presence(me_in_room, ALICE, None)).await;
    room.send_el(&groupchat(bob_in_room, ALICE, "g1")).await;
    room.send_el(&iq(bob_in_room, ALICE, "get", "version-q"))
        .await;
    for what in ["bob's presence", "her own presence", "g1", "version-q"] {
        let s = next(&mut internal_stanzas, what).await;
        assert_eq!(s.attr("to"), Some(ALICE), "{what}: {s:?}");
        assert_ne!(s.attr("type"), Some("error"), "{what}: {s:?}");
    }
    // Not to her other resource, and a chat message is not room traffic.
    room.send_el(&groupchat(
        bob_in_room,
        "alice@corp.example/laptop",
        "other-res",
    ))
    .await;
    let b = next(&mut partner_stanzas, "the bounce to her other resource").await;
    assert_eq!(b.attr("id"), Some("other-res"), "{b:?}");

    // She leaves: the room's unavailable still reaches her; its groupchat in flight is dropped
    // (a bounce would make the room kick her if she joined again), never delivered.
    i.send_el(&presence(ALICE, me_in_room, Some("unavailable")))
        .await;
    let p = next(&mut partner_stanzas, "her leave").await;
    assert_eq!(p.attr("type"), Some("unavailable"), "{p:?}");
    room.send_el(&presence(me_in_room, ALICE, Some("unavailable")))
        .await;
    let s = next(&mut internal_stanzas, "the room's unavailable").await;
    assert_eq!(
        (s.name.as_str(), s.attr("type")),
        ("presence", Some("unavailable")),
        "{s:?}"
    );
    room.send_el(&groupchat(bob_in_room, ALICE, "after")).await;
    room.send_el(&presence(bob_in_room, ALICE, None)).await;
    wait_dropped(&gw, "path_closed", 2).await;
    room.send_el(&server_iq(bob_in_room, "corp.example", "marker"))
        .await;
    let m = next(&mut internal_stanzas, "the marker").await;
    assert_eq!(
        m.attr("id"),
        Some("marker"),
        "nothing else reached her: {m:?}"
    );
    gw.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn public_unverified_contact_requests_pass_a_flood_is_limited_and_her_approval_authorises() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let (gw, store, mut partner_stanzas, mut internal_stanzas) =
        public_unverified(dir.path()).await;
    let mut q = dialback_peer(&gw).await;
    let burst = fedgate_model::session::Limits::DEFAULT
        .subscribe_per_remote
        .burst as usize;

    // eve asks alice 10 times: her burst reaches alice, the rest is dropped without an answer.
    for n in 0..10 {
        q.send_el(
            &presence(
                "eve@partner.example/x",
                "alice@corp.example",
                Some("subscribe"),
            )
            .with_attr("id", format!("s{n}")),
        )
        .await;
    }
    wait_dropped(&gw, "contact_request_limited", 10 - burst as u64).await;
    for n in 0..burst {
        let s = next(&mut internal_stanzas, "a contact request").await;
        assert_eq!(
            (s.attr("type"), s.attr("id")),
            (Some("subscribe"), Some(format!("s{n}").as_str())),
            "{s:?}"
        );
    }
    q.send_el(&server_iq("partner.example", "corp.example", "marker-1"))
        .await;
    let m = next(&mut internal_stanzas, "the marker").await;
    assert_eq!(m.attr("id"), Some("marker-1"), "no more requests: {m:?}");

    // Many users of the partner: the partner's budget holds too.
    let partner_burst = fedgate_model::session::Limits::DEFAULT
        .subscribe_per_partner
        .burst as u64;
    let before = dropped(&gw, "contact_request_limited").await;
    for n in 0..40 {
        q.send_el(&presence(
            &format!("u{n}@partner.example"),
            "alice@corp.example",
            Some("subscribe"),
        ))
        .await;
    }
    q.send_el(&server_iq("partner.example", "corp.example", "marker-2"))
        .await;
    let mut passed = 0u64;
    loop {
        let s = next(&mut internal_stanzas, "requests, then the marker").await;
        if s.attr("id") == Some("marker-2") {
            break;
        }
        passed += 1;
    }
    let limited = dropped(&gw, "contact_request_limited").await - before;
    assert_eq!(passed + limited, 40);
    // (A refill of one every 2 s may add one while the test runs.)
    assert!(
        passed + burst as u64 <= partner_burst + 2 && limited >= 10,
        "passed {passed}, limited {limited}"
    );

    // She approves eve: that authorises eve, whose messages now reach her.
    let mut i = internal_peer(&gw).await;
    i.send_el(&presence(
        "alice@corp.example",
        "eve@partner.example",
        Some("subscribed"),
    ))
    .await;
    let s = next(&mut partner_stanzas, "her approval").await;
    assert_eq!(s.attr("type"), Some("subscribed"), "{s:?}");
    let alice = fedgate_model::UserJid::parse("alice@corp.example").unwrap();
    assert_eq!(
        store
            .authorisations(Some(&alice))
            .unwrap()
            .iter()
            .map(|a| a.remote_user.to_string())
            .collect::<Vec<_>>(),
        ["eve@partner.example"]
    );
    q.send_el(&message("eve@partner.example/x", ALICE, "hi").with_attr("id", "eve-hi"))
        .await;
    let m = next(&mut internal_stanzas, "eve's message").await;
    assert_eq!(m.attr("id"), Some("eve-hi"), "{m:?}");
    // No contact request was bounced: nothing but her approval went to the partner.
    q.send_el(&message("mallory@partner.example/x", ALICE, "hi").with_attr("id", "m-hi"))
        .await;
    let b = next(&mut partner_stanzas, "mallory's bounce").await;
    assert_eq!(b.attr("id"), Some("m-hi"), "{b:?}");
    gw.shutdown(Duration::from_secs(5)).await;
}

/// The error condition of a stanza error and its type.
fn error_of(e: &Element) -> (Option<String>, Option<String>) {
    (
        condition(e),
        e.child("error", ns::SERVER)
            .and_then(|x| x.attr("type"))
            .map(str::to_owned),
    )
}

/// Make the SQLite store in `dir` refuse every authorisation change (`refuse`) or take them
/// again: a trigger aborts the write, as a store that cannot commit would.
fn refuse_authorisation_changes(dir: &std::path::Path, refuse: bool) {
    let db = rusqlite::Connection::open(dir.join("fedgate.db")).unwrap();
    let sql = if refuse {
        "CREATE TRIGGER test_refuse_insert BEFORE INSERT ON authorisations \
           BEGIN SELECT RAISE(ABORT, 'refused by the test'); END; \
         CREATE TRIGGER test_refuse_delete BEFORE DELETE ON authorisations \
           BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;"
    } else {
        "DROP TRIGGER test_refuse_insert; DROP TRIGGER test_refuse_delete;"
    };
    db.execute_batch(sql).unwrap();
}

#[tokio::test]
async fn an_authorisation_the_store_does_not_commit_is_not_forwarded_and_its_sender_told_to_retry()
{
    init();
    let (log, _guard) = Log::capture();
    let dir = tempfile::tempdir().unwrap();
    let (gw, store, mut partner_stanzas, mut internal_stanzas) =
        public_unverified(dir.path()).await;
    let alice = fedgate_model::UserJid::parse("alice@corp.example").unwrap();
    let mut i = internal_peer(&gw).await;
    refuse_authorisation_changes(dir.path(), true);

    // She approves eve while the store cannot commit it: her server gets the error back (retry
    // later), the partner gets nothing, eve is not authorised.
    i.send_el(
        &presence(ALICE, "eve@partner.example", Some("subscribed")).with_attr("id", "approve-1"),
    )
    .await;
    let b = next(&mut internal_stanzas, "the error for her approval").await;
    assert_eq!(
        (b.name.as_str(), b.attr("id"), b.attr("type")),
        ("presence", Some("approve-1"), Some("error")),
        "{b:?}"
    );
    assert_eq!(
        (b.attr("from"), b.attr("to")),
        (Some("eve@partner.example"), Some(ALICE)),
        "{b:?}"
    );
    assert_eq!(
        error_of(&b),
        (
            Some("resource-constraint".to_owned()),
            Some("wait".to_owned())
        ),
        "{b:?}"
    );
    assert!(store.authorisations(Some(&alice)).unwrap().is_empty());
    assert!(!gw.shared.snapshot().authorisations.contains(
        &alice,
        &fedgate_model::UserJid::parse("eve@partner.example").unwrap()
    ));
    // Counted as refused (answered, so not dropped), logged once with the store's error.
    assert_eq!(
        refusals(&gw, "internal", "authorisation_not_committed").await,
        1
    );
    assert_eq!(
        sample(
            &scrape(&gw).await,
            "fedgate_stanzas_dropped_total",
            &[
                ("side", "internal"),
                ("reason", "authorisation_not_committed")
            ],
        )
        .unwrap_or(0),
        0
    );
    let lines = log.lines_with(&["authorisation_not_committed"]);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].contains("refused by the test") && lines[0].contains("remote=eve@partner.example"),
        "{lines:#?}"
    );
    // eve is still a stranger to the gateway: her message is bounced. On the stream the approval
    // would have taken, the bounce is the first thing the partner gets.
    let mut q = dialback_peer(&gw).await;
    q.send_el(&message("eve@partner.example/x", ALICE, "hi").with_attr("id", "eve-1"))
        .await;
    let b = next(&mut partner_stanzas, "eve's bounce").await;
    assert_eq!(
        (b.name.as_str(), b.attr("id"), condition(&b).as_deref()),
        ("message", Some("eve-1"), Some("policy-violation")),
        "{b:?}"
    );

    // The store takes writes again: her client's retry goes through and authorises eve.
    refuse_authorisation_changes(dir.path(), false);
    i.send_el(
        &presence(ALICE, "eve@partner.example", Some("subscribed")).with_attr("id", "approve-2"),
    )
    .await;
    let s = next(&mut partner_stanzas, "her approval, retried").await;
    assert_eq!(
        (s.attr("id"), s.attr("type")),
        (Some("approve-2"), Some("subscribed")),
        "{s:?}"
    );
    assert_eq!(store.authorisations(Some(&alice)).unwrap().len(), 1);
    q.send_el(&message("eve@partner.example/x", ALICE, "hi").with_attr("id", "eve-2"))
        .await;
    let m = next(&mut internal_stanzas, "eve's message").await;
    assert_eq!(m.attr("id"), Some("eve-2"), "{m:?}");
    gw.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn public_unverified_server_pings_and_disco_to_the_hosted_domain_pass() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let (gw, _store, mut partner_stanzas, mut internal_stanzas) =
        public_unverified(dir.path()).await;
    let mut q = dialback_peer(&gw).await;
    // From the partner's server and from a partner user nobody authorised.
    for (from, id) in [
        ("partner.example", "s2s-ping"),
        ("eve@partner.example/x", "eve-ping"),
    ] {
        q.send_el(&iq(from, "corp.example", "get", id)).await;
        let r = next(&mut internal_stanzas, id).await;
        assert_eq!(
            (r.attr("id"), r.attr("to")),
            (Some(id), Some("corp.example")),
            "{r:?}"
        );
    }
    q.send_el(
        &server_iq("eve@partner.example/x", "corp.example", "disco").with_child(Element::new(
            "query",
            "http://jabber.org/protocol/disco#info",
        )),
    )
    .await;
    let r = next(&mut internal_stanzas, "disco").await;
    assert_eq!(r.attr("id"), Some("disco"), "{r:?}");
    // The hosted server's answers go back.
    let mut i = internal_peer(&gw).await;
    i.send_el(&iq(
        "corp.example",
        "eve@partner.example/x",
        "result",
        "eve-ping",
    ))
    .await;
    let r = next(&mut partner_stanzas, "the pong").await;
    assert_eq!(
        (r.attr("id"), r.attr("type")),
        (Some("eve-ping"), Some("result")),
        "{r:?}"
    );
    gw.shutdown(Duration::from_secs(5)).await;
}
