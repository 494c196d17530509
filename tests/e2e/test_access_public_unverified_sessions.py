"""Issue 24: what a local user's own traffic opens through a PublicUnverified partner, with real
Prosody on both sides (a chat-room service on the partner) and real clients, and the same under
Federated: answers to her server ping, disco and full-JID ping; pings from the partner to the
hosted domain itself; a chat room she joins (presence and groupchat both ways, she is not kicked,
she leaves cleanly); a first contact request, her approval and then messages both ways. Under
PublicUnverified also: an unsolicited message is bounced, an unsolicited iq result and a contact
request flood are dropped and counted."""
import re
import time
import xml.etree.ElementTree as ET

import pytest

from harness.access import send_message_expect_bounce, send_message_expect_delivery
from harness.topology import ALICE, BOB, CORP, PARTNER, gateway_world

pytestmark = pytest.mark.gateway

MUC = f"conference.{PARTNER}"
ROOM = f"room@{MUC}"
CAROL, MALLORY = f"carol@{CORP}", f"mallory@{PARTNER}"
PING = "{urn:xmpp:ping}ping"
DISCO_INFO = "{http://jabber.org/protocol/disco#info}query"


def send_iq(client, to: str, payload: str, iq_id: str, iq_type: str = "get") -> None:
    """An iq of `iq_type` with the given id and payload element (none for a result)."""
    def send():
        iq = client.xmpp.Iq()
        iq["type"], iq["to"], iq["id"] = iq_type, to, iq_id
        if payload:
            iq.xml.append(ET.Element(payload))
        iq.send()
    client._call(send)


def answer(client, iq_id: str, since: int, timeout: float = 10):
    """The iq result or error with this id the client received (after index `since`)."""
    return client.wait_for(lambda r: r.kind == "iq" and r.type in ("result", "error")
                           and f'id="{iq_id}"' in r.xml, timeout=timeout, since=since)


def assert_answered(client, to: str, payload: str, iq_id: str, frm: str | None = None) -> None:
    mark = len(client.received)
    send_iq(client, to, payload, iq_id)
    got = answer(client, iq_id, mark)
    assert got is not None, f"{client.jid} got no answer to its iq {iq_id} to {to}"
    assert got.frm == (frm or to), f"the answer to {iq_id} is not from {frm or to}: {got.xml}"
    assert got.type == "result", f"{iq_id} to {to} was answered with an error: {got.xml}"


def dropped(gw, reason: str) -> int:
    m = re.search(rf'^fedgate_stanzas_dropped_total{{side="external",reason="{reason}"}} (\d+)$',
                  gw.metrics(), re.M)
    return int(m.group(1)) if m else 0


def wait_dropped(gw, reason: str, at_least: int, timeout: float = 10) -> int:
    deadline = time.monotonic() + timeout
    while (n := dropped(gw, reason)) < at_least:
        assert time.monotonic() < deadline, \
            f"/metrics counts {n} {reason} drops, expected {at_least}:\n{gw.metrics()}"
        time.sleep(0.1)
    return n


def muc_presence(client, to: str, ptype: str | None = None) -> None:
    """Join (with the MUC <x/>) or, with ptype "unavailable", leave."""
    def send():
        p = client.xmpp.make_presence(pto=to, ptype=ptype)
        if ptype is None:
            p.xml.append(ET.Element("{http://jabber.org/protocol/muc}x"))
        p.send()
    client._call(send)


def room_presence(client, nick: str, ptype: str = "", since: int = 0, timeout: float = 15):
    return client.wait_for(lambda r: r.kind == "presence" and r.frm == f"{ROOM}/{nick}"
                           and r.type == ptype, timeout=timeout, since=since)


@pytest.mark.parametrize("partner_type,internal_kind", [
    ("PublicUnverified", "prosody"), ("Federated", "prosody"), ("PublicUnverified", "ejabberd")])
def test_access_public_unverified_sessions_replies_rooms_and_contact_requests(env, partner_type,
                                                                              internal_kind):
    unverified = partner_type == "PublicUnverified"
    w = gateway_world(env, tls="ca", partner_muc=(MUC,), internal_kind=internal_kind,
                      partner_record=("-PartnerType", partner_type, "-AdditionalDomains", MUC),
                      extra_partner_users=(MALLORY,), extra_corp_users=("carol",))
    alice_full = w.alice.xmpp.boundjid.full
    bob_full = w.bob.xmpp.boundjid.full
    w.bob._call(lambda: w.bob.xmpp.register_plugin("xep_0199"))

    # Her server ping and disco to the partner's server, her ping to a partner user's full JID.
    assert_answered(w.alice, PARTNER, PING, "ping-server")
    assert_answered(w.alice, PARTNER, DISCO_INFO, "disco-server")
    assert_answered(w.alice, bob_full, PING, "ping-bob")
    # The partner's user pings the hosted domain itself: it answers.
    assert_answered(w.bob, CORP, PING, "ping-corp")

    if unverified:
        # Unsolicited, from a user she has not authorised: a message is bounced, an iq result
        # dropped (nothing comes back to bob, nothing reaches alice).
        send_message_expect_bounce(env, w.bob, w.alice)
        before = dropped(w.gw, "unsolicited")
        mark_a, mark_b = len(w.alice.received), len(w.bob.received)
        send_iq(w.bob, alice_full, "", "unsolicited-result", iq_type="result")
        wait_dropped(w.gw, "unsolicited", before + 1)
        assert answer(w.alice, "unsolicited-result", mark_a, timeout=1) is None, \
            "alice received the unsolicited result"
        assert w.bob.wait_for(lambda r: r.type == "error" and "unsolicited-result" in r.xml,
                              timeout=0.5, since=mark_b) is None, "bob got an error for his result"

    # A chat room on the partner: bob is in it, alice joins through the gateway.
    muc_presence(w.bob, f"{ROOM}/bob")
    assert room_presence(w.bob, "bob") is not None, "bob could not join the room"
    mark = len(w.alice.received)
    muc_presence(w.alice, f"{ROOM}/alice")
    assert room_presence(w.alice, "alice", since=mark) is not None, \
        "alice did not receive her own room presence"
    assert room_presence(w.alice, "bob", since=mark, timeout=5) is not None, \
        "alice did not receive bob's room presence"
    body = env.body("from-bob")
    w.bob.send_message(ROOM, body, mtype="groupchat")
    got = w.alice.wait_for(lambda r: r.kind == "message" and r.type == "groupchat"
                           and r.frm == f"{ROOM}/bob" and r.body == body, timeout=10)
    assert got is not None, "bob's groupchat did not reach alice"
    body = env.body("from-alice")
    w.alice.send_message(ROOM, body, mtype="groupchat")
    got = w.bob.wait_for(lambda r: r.kind == "message" and r.type == "groupchat"
                         and r.frm == f"{ROOM}/alice" and r.body == body, timeout=10)
    assert got is not None, "alice's groupchat did not reach bob through the room"
    # She was never kicked (a bounced room stanza makes the room kick her with status 333).
    kicked = w.bob.wait_for(lambda r: r.kind == "presence" and r.frm == f"{ROOM}/alice"
                            and r.type == "unavailable", timeout=0)
    assert kicked is None, f"alice left the room unasked: {kicked.xml}"
    # She leaves: the room's answer (her unavailable presence) reaches her; bob sees a plain
    # leave, not a kick.
    mark_a, mark_b = len(w.alice.received), len(w.bob.received)
    muc_presence(w.alice, f"{ROOM}/alice", "unavailable")
    assert room_presence(w.alice, "alice", "unavailable", since=mark_a) is not None, \
        "alice did not receive the room's confirmation of her leave"
    left = room_presence(w.bob, "alice", "unavailable", since=mark_b)
    assert left is not None and 'code="333"' not in left.xml, f"not a plain leave: {left}"
    errors = w.alice.wait_for(lambda r: r.type == "error", timeout=0, since=mark)
    assert errors is None, f"alice got an error in the room: {errors.xml}"
    # Nothing of the room's was bounced back to it (that would make the room kick her), not
    # even what crossed her leave.
    time.sleep(0.5)
    bounced = w.gw.log_search(r"bounced.*remote=room@")
    assert not bounced, f"the gateway bounced room traffic: {bounced}"

    # First contact: bob asks alice (her client approves), then messages flow both ways.
    mark = len(w.alice.received)
    w.bob.subscribe(ALICE)
    assert w.alice.wait_presence(frm=BOB, ptype="subscribe") is not None, \
        "bob's contact request did not reach alice"
    assert w.bob.wait_presence(frm=ALICE, ptype="subscribed") is not None, \
        "alice's approval did not reach bob"
    send_message_expect_delivery(env, w.bob, w.alice)
    send_message_expect_delivery(env, w.alice, w.bob)

    if unverified:
        # A flood of contact requests from mallory to carol (who does not answer): 3 reach
        # her, the rest is dropped and counted; mallory gets no error for them.
        carol, mallory = w.extra_clients[CAROL], w.extra_clients[MALLORY]
        carol._call(lambda: setattr(carol.xmpp.roster, "auto_authorize", False))
        before = dropped(w.gw, "contact_request_limited")
        mark_c, mark_m = len(carol.received), len(mallory.received)
        for _ in range(10):
            mallory.subscribe(CAROL)
        wait_dropped(w.gw, "contact_request_limited", before + 7)
        assert carol.wait_presence(frm=MALLORY, ptype="subscribe") is not None, \
            "no contact request reached carol"
        time.sleep(1)
        requests = [r for r in carol.received[mark_c:]
                    if r.kind == "presence" and r.type == "subscribe" and r.bare_from == MALLORY]
        assert 1 <= len(requests) <= 3, f"carol received {len(requests)} requests"
        bounced = mallory.wait_for(lambda r: r.type == "error", timeout=0, since=mark_m)
        assert bounced is None, f"mallory got an error for a contact request: {bounced.xml}"
