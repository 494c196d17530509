"""Issue 5 / README "PartnerType: what passes": partner trust levels on live traffic. PublicVerified
partners see local users' presence without the <status/> note (a Federated partner sees it); a
PartnerType change applies to the next stanza of a live stream."""
import pytest

from harness.access import (change_live, child_text, error_text, live_stream_ids,
                            send_message_expect_bounce, send_message_expect_delivery, send_presence)
from harness.topology import ALICE, PARTNER, gateway_world

pytestmark = pytest.mark.gateway
SECOND = "partner2.example"
DAVE = f"dave@{SECOND}"


def test_access_public_verified_partner_sees_presence_without_status_federated_sees_it(env):
    # partner.example (bob) is PublicVerified; partner2.example (dave), a second partner served by
    # the same Prosody, is Federated.
    w = gateway_world(env, tls="ca", partner_domains=(SECOND,), extra_partner_users=(DAVE,),
                      partner_record=("-PartnerType", "PublicVerified"),
                      other_records=(("-Identity", SECOND, "-PartnerType", "Federated"),))
    dave = w.extra_clients[DAVE]
    for remote in (w.bob, dave):        # both subscribe to alice's presence (alice auto-approves)
        remote.subscribe(ALICE)
        assert remote.wait_presence(frm=ALICE, ptype="subscribed"), f"{remote.jid}: no subscribed"

    note = "in a meeting until 3"
    bob_mark, dave_mark = len(w.bob.received), len(dave.received)
    send_presence(w.alice, show="dnd", status=note)

    def alices_dnd(r):
        return r.kind == "presence" and r.bare_from == ALICE and r.type == "" \
            and child_text(r, "show") == "dnd"
    at_dave = dave.wait_for(alices_dnd, timeout=10, since=dave_mark)
    assert at_dave is not None, "the Federated partner's client did not get alice's presence"
    assert child_text(at_dave, "status") == note, f"Federated: the status note is missing: {at_dave.xml}"
    at_bob = w.bob.wait_for(alices_dnd, timeout=10, since=bob_mark)
    assert at_bob is not None, "the PublicVerified partner's client did not get alice's presence"
    assert child_text(at_bob, "status") is None, f"PublicVerified: the status note leaked: {at_bob.xml}"
    # Messages flow to both.
    send_message_expect_delivery(env, w.bob, w.alice)
    send_message_expect_delivery(env, dave, w.alice)


def test_access_partner_type_change_applies_to_the_next_stanza_on_a_live_stream(env):
    w = gateway_world(env, tls="ca")        # Federated
    send_message_expect_delivery(env, w.bob, w.alice)
    send_message_expect_delivery(env, w.alice, w.bob)
    streams = live_stream_ids(w.gw)

    change_live(w.gw, "Set-CsXmppAllowedPartner", "-Identity", PARTNER, "-PartnerType", "PublicUnverified")
    bounce = send_message_expect_bounce(env, w.bob, w.alice)     # alice never authorised bob
    assert "not authorised" in error_text(bounce), bounce.xml

    change_live(w.gw, "Set-CsXmppAllowedPartner", "-Identity", PARTNER, "-PartnerType", "Federated")
    send_message_expect_delivery(env, w.bob, w.alice)
    assert streams <= live_stream_ids(w.gw), "the PartnerType change closed live streams"
