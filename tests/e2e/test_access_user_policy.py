"""Issue 5 / scenario 6 (tests/e2e/README.md): the local user's effective external access
policy (user grant > site policy > Global) decides, per stanza, whether the user may exchange
stanzas with partners; refusals reach the user as a <policy-violation/> stanza error with a text."""
import pytest

from harness.access import (change_live, error_text, live_stream_ids, send_message_expect_bounce,
                            send_message_expect_delivery, send_presence, with_site)
from harness.topology import CORP, assert_gateway_logged, gateway_world

pytestmark = pytest.mark.gateway
CAROL = f"carol@{CORP}"


def test_access_user_without_xmpp_access_bounced_both_ways_with_text_others_work(env):
    # Global allows XMPP (gateway_world); carol is granted a tag policy that does not.
    w = gateway_world(env, tls="ca", extra_corp_users=("carol",), management=(
        ("New-CsExternalAccessPolicy", "-Identity", "tag:NoXmpp", "-EnableXmppAccess", "$false"),
        ("Grant-CsExternalAccessPolicy", "-Identity", CAROL, "-PolicyName", "NoXmpp"),
    ))
    carol = w.extra_clients[CAROL]
    send_message_expect_delivery(env, w.alice, w.bob)      # others of the same domain work
    send_message_expect_delivery(env, w.bob, w.alice)

    out = send_message_expect_bounce(env, carol, w.bob)    # carol -> partner: back to carol
    assert "not enabled for you" in error_text(out), f"carol's bounce has no clear text: {out.xml}"
    back = send_message_expect_bounce(env, w.bob, carol)   # partner -> carol: back to bob
    assert "may not receive" in error_text(back), f"bob's bounce has no clear text: {back.xml}"

    # Visibility: the log, /metrics and `fedgate status` name the reason.
    assert_gateway_logged(w.gw, "bounced", "user_not_enabled")
    metrics = [ln for ln in w.gw.metrics().splitlines()
               if ln.startswith("fedgate_refusals_total") and 'reason="user_not_enabled"' in ln]
    assert metrics and sum(int(float(ln.rsplit(" ", 1)[1])) for ln in metrics) >= 2, \
        f"/metrics does not count user_not_enabled refusals: {metrics}"
    rows = w.gw.status_streams("user_not_enabled")
    assert rows, f"`fedgate status` shows no user_not_enabled refusals:\n{w.gw.status()}"


def test_access_user_grant_overrides_site_policy_overrides_global(env):
    # corp.example is in site Berlin. Global: XMPP on; site:Berlin: off; carol's tag grant: on.
    with_site(env, CORP, "Berlin")
    w = gateway_world(env, tls="ca", extra_corp_users=("carol",), management=(
        ("New-CsExternalAccessPolicy", "-Identity", "site:Berlin", "-EnableXmppAccess", "$false"),
        ("New-CsExternalAccessPolicy", "-Identity", "tag:XmppUsers", "-EnableXmppAccess", "$true"),
        ("Grant-CsExternalAccessPolicy", "-Identity", CAROL, "-PolicyName", "XmppUsers"),
    ))
    carol = w.extra_clients[CAROL]
    # The user grant wins over the site policy.
    send_message_expect_delivery(env, carol, w.bob)
    send_message_expect_delivery(env, w.bob, carol)
    # The site policy wins over Global for alice (no grant).
    send_message_expect_bounce(env, w.alice, w.bob)
    send_message_expect_bounce(env, w.bob, w.alice)
    # Without the site policy, Global applies to alice again - live, on the same streams.
    streams = live_stream_ids(w.gw)
    change_live(w.gw, "Remove-CsExternalAccessPolicy", "-Identity", "site:Berlin", "-Force")
    send_message_expect_delivery(env, w.alice, w.bob)
    send_message_expect_delivery(env, w.bob, w.alice)
    assert streams <= live_stream_ids(w.gw), "the policy change closed live streams"


def test_access_policy_change_applies_to_the_next_stanza_on_a_live_stream(env):
    w = gateway_world(env, tls="ca")
    send_message_expect_delivery(env, w.alice, w.bob)
    send_message_expect_delivery(env, w.bob, w.alice)
    streams = live_stream_ids(w.gw)
    assert streams, "no live streams after the exchange"

    # Global off: both ways bounced, no restart, same streams.
    change_live(w.gw, "Set-CsExternalAccessPolicy", "-Identity", "Global", "-EnableXmppAccess", "$false")
    send_message_expect_bounce(env, w.alice, w.bob)
    send_message_expect_bounce(env, w.bob, w.alice)

    # A per-user policy granted to alice turns her back on.
    change_live(w.gw, "New-CsExternalAccessPolicy", "-Identity", "tag:XmppUsers", "-EnableXmppAccess", "$true")
    change_live(w.gw, "Grant-CsExternalAccessPolicy", "-Identity", w.alice.jid, "-PolicyName", "XmppUsers")
    send_message_expect_delivery(env, w.alice, w.bob)
    send_message_expect_delivery(env, w.bob, w.alice)
    assert streams <= live_stream_ids(w.gw), "the policy changes closed live streams"
    assert w.gw.running()


def test_access_disabled_user_presence_and_subscriptions_never_reach_the_partner(env):
    w = gateway_world(env, tls="ca", extra_corp_users=("carol",), management=(
        ("New-CsExternalAccessPolicy", "-Identity", "tag:NoXmpp", "-EnableXmppAccess", "$false"),
        ("Grant-CsExternalAccessPolicy", "-Identity", CAROL, "-PolicyName", "NoXmpp"),
    ))
    carol = w.extra_clients[CAROL]
    # bob asks for carol's presence: refused back to bob, carol never sees the request.
    mark = len(w.bob.received)
    w.bob.subscribe(CAROL)
    err = w.bob.wait_for(lambda r: r.kind == "presence" and r.type == "error"
                         and r.bare_from == CAROL, timeout=5, since=mark)
    assert err is not None and err.error == "policy-violation", \
        f"bob's subscribe to carol was not refused with <policy-violation/>: {err}"
    assert carol.wait_presence(frm=w.bob.jid, ptype="subscribe", timeout=0.5) is None
    # carol's directed presence (with a note) to bob: bounced to carol, bob sees nothing of her.
    mark = len(carol.received)
    send_presence(carol, to=w.bob.jid, show="chat", status="free to talk")
    err = carol.wait_for(lambda r: r.kind == "presence" and r.type == "error"
                         and r.bare_from == w.bob.jid, timeout=5, since=mark)
    assert err is not None and err.error == "policy-violation", \
        f"carol's presence to bob was not refused with <policy-violation/>: {err}"
    leak = w.bob.wait_for(lambda r: r.kind == "presence" and r.type != "error"
                          and r.bare_from == CAROL, timeout=0.5)
    assert leak is None, f"carol's presence leaked to the partner: {leak.xml}"


def test_access_user_without_xmpp_access_bounced_both_ways_ejabberd_internal(env):
    # The same through an ejabberd internal server (its clients see the same error and text).
    # Dialback here; ejabberd with SASL EXTERNAL on the internal side is covered by
    # test_gateway_ejabberd.py::test_ejabberd_internal_sasl_external_with_minted_certificates.
    w = gateway_world(env, tls="dialback", internal_kind="ejabberd", extra_corp_users=("carol",),
                      partner_record=("-TlsNegotiation", "Optional", "-SaslNegotiation",
                                      "NotSupported", "-SupportDialbackNegotiation", "$true"),
                      management=(
        ("New-CsExternalAccessPolicy", "-Identity", "tag:NoXmpp", "-EnableXmppAccess", "$false"),
        ("Grant-CsExternalAccessPolicy", "-Identity", CAROL, "-PolicyName", "NoXmpp"),
    ))
    carol = w.extra_clients[CAROL]
    send_message_expect_delivery(env, w.alice, w.bob)
    send_message_expect_delivery(env, w.bob, w.alice)
    out = send_message_expect_bounce(env, carol, w.bob)
    assert "not enabled for you" in error_text(out), f"carol's bounce has no clear text: {out.xml}"
    back = send_message_expect_bounce(env, w.bob, carol)
    assert "may not receive" in error_text(back), f"bob's bounce has no clear text: {back.xml}"
