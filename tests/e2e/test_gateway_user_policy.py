"""Scenarios 6 and 7 (tests/e2e/README.md): per-user external access policy and PublicUnverified
partners."""
import pytest

from harness.topology import (ALICE, BOB, CORP, assert_exchange, assert_gateway_logged,
                              assert_message, assert_not_delivered, gateway_world)

pytestmark = pytest.mark.gateway
CAROL = f"carol@{CORP}"


def test_user_without_xmpp_access_bounced_both_ways_others_work(env):
    # Global allows XMPP (gateway_world); carol gets a tag policy that does not.
    w = gateway_world(env, tls="ca", extra_corp_users=("carol",), management=(
        ("New-CsExternalAccessPolicy", "-Identity", "tag:NoXmpp", "-EnableXmppAccess", "$false"),
        ("Grant-CsExternalAccessPolicy", "-Identity", CAROL, "-PolicyName", "NoXmpp"),
    ))
    carol = w.extra_clients[CAROL]
    assert_exchange(env, w.alice, w.bob)            # others of the same domain work

    out = assert_not_delivered(env, carol, w.bob, wait=5)
    assert out is not None and out.error == "policy-violation", \
        f"carol's outbound message was not bounced with <policy-violation/>: {out}"
    back = assert_not_delivered(env, w.bob, carol, wait=5)
    assert back is not None and back.error == "policy-violation", \
        f"bob's message to carol was not bounced with <policy-violation/>: {back}"
    # The reason is logged, for carol, both ways.
    assert_gateway_logged(w.gw, "stanza bounced by user policy", "user_not_enabled", CAROL, "side=internal")
    assert_gateway_logged(w.gw, "stanza bounced by user policy", "user_not_enabled", CAROL, "side=external")


def test_public_unverified_inbound_bounced_until_local_user_subscribes(env):
    w = gateway_world(env, tls="ca", partner_record=("-PartnerType", "PublicUnverified"))
    first = assert_not_delivered(env, w.bob, w.alice, wait=5)
    assert first is not None and first.error == "policy-violation" \
        and "has not authorised you" in first.xml, \
        f"an unsolicited message from an unverified partner was not bounced as not authorised: {first}"
    assert_gateway_logged(w.gw, "stanza bounced by user policy", "not_authorised", ALICE)
    # alice authorises the relationship: her subscribe to bob goes out (and bob auto-approves).
    w.alice.subscribe(BOB)
    assert w.bob.wait_presence(frm=ALICE, ptype="subscribe"), "alice's subscribe did not reach bob"
    assert w.alice.wait_presence(frm=BOB, ptype="subscribed"), "bob's subscribed did not reach alice"
    assert_message(env, w.bob, ALICE, w.alice)
    assert_message(env, w.alice, BOB, w.bob)
