"""Issue 5 / scenario 7 (tests/e2e/README.md), README "PartnerType: what passes": a PublicUnverified
partner's user reaches a local user only once that local user has authorised them (outbound
subscribe/subscribed, recorded by the gateway), and no longer after the local user unsubscribes."""
import json

import pytest

from harness.access import (error_text, send_message_expect_bounce, send_message_expect_delivery,
                            send_presence)
from harness.topology import ALICE, BOB, assert_gateway_logged, gateway_world

pytestmark = pytest.mark.gateway


def authorisations(gw) -> list[tuple[str, str]]:
    """`fedgate authorisations --output json`: (local user, remote user) pairs."""
    rows = json.loads(gw.cli("authorisations", json=True).stdout or "[]")
    if isinstance(rows, dict):
        rows = [rows]
    return [(r["LocalUser"], r["RemoteUser"]) for r in rows]


def test_access_public_unverified_bounced_until_subscribe_and_again_after_unsubscribe(env):
    w = gateway_world(env, tls="ca", partner_record=("-PartnerType", "PublicUnverified"))

    # An unknown remote user is bounced; the text tells bob what is missing.
    first = send_message_expect_bounce(env, w.bob, w.alice)
    assert "not authorised" in error_text(first), f"no clear text in the bounce: {first.xml}"
    assert_gateway_logged(w.gw, "bounced", "not_authorised")
    assert w.gw.status_streams("not_authorised", "external"), \
        f"`fedgate status` shows no not_authorised refusal:\n{w.gw.status()}"
    # The local user may still write first (outbound passes; bob's answer would not).
    send_message_expect_delivery(env, w.alice, w.bob)
    assert authorisations(w.gw) == []

    # alice authorises bob: her subscribe goes out, bob (auto-authorise) answers subscribed,
    # and that answer to her own request passes.
    w.alice.subscribe(BOB)
    assert w.bob.wait_presence(frm=ALICE, ptype="subscribe"), "alice's subscribe did not reach bob"
    assert w.alice.wait_presence(frm=BOB, ptype="subscribed"), "bob's subscribed did not reach alice"
    assert authorisations(w.gw) == [(ALICE, BOB)], "the authorisation is not listed"
    send_message_expect_delivery(env, w.bob, w.alice)
    send_message_expect_delivery(env, w.alice, w.bob)

    # alice withdraws (unsubscribe): bounced again.
    send_presence(w.alice, to=BOB, ptype="unsubscribe")
    assert w.bob.wait_presence(frm=ALICE, ptype="unsubscribe"), "alice's unsubscribe did not reach bob"
    assert authorisations(w.gw) == [], "the authorisation is still listed after unsubscribe"
    again = send_message_expect_bounce(env, w.bob, w.alice)
    assert "not authorised" in error_text(again), f"no clear text in the bounce: {again.xml}"
