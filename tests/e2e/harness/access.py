"""Helpers for the user access policy / partner type scenarios (tests/e2e/test_access_*.py):
what a user sees of a refusal (the stanza error's condition and text), live policy changes
(wait until the gateway has picked the store change up), the live streams, sites, and messages
whose s2s address is spelt as the test says (the partner Prosody's e2e_readdress module)."""
from __future__ import annotations

import json
import re
import time
import xml.etree.ElementTree as ET

from .client import Client, Received
from .env import Env
from .fedgate import Fedgate

STANZAS_NS = "urn:ietf:params:xml:ns:xmpp-stanzas"


def error_text(rec: Received) -> str:
    """The <text/> of a stanza error as the client received it ("" when there is none)."""
    try:
        root = ET.fromstring(rec.xml)
    except ET.ParseError:
        m = re.search(r"<text[^>]*>(.*?)</text>", rec.xml, re.S)
        return m.group(1) if m else ""
    for el in root.iter(f"{{{STANZAS_NS}}}text"):
        return el.text or ""
    return ""


def child_text(rec: Received, name: str) -> str | None:
    """Text of a direct child element (any namespace) such as <status/> or <show/>; None if absent."""
    try:
        root = ET.fromstring(rec.xml)
    except ET.ParseError:
        return None
    for el in root:
        if el.tag == name or el.tag.endswith("}" + name):
            return el.text or ""
    return None


def send_message_expect_bounce(env: Env, sender: Client, receiver: Client, wait: float = 5) -> Received:
    """sender -> receiver (a message with a fresh body) must not arrive; the sender must get a
    bounce of type error with <policy-violation/>. Returns the bounce."""
    body = env.body("refused")
    mark = len(sender.received)
    sender.send_message(receiver.jid, body)
    bounce = sender.wait_for(lambda r: r.kind == "message" and r.type == "error"
                             and r.bare_from == receiver.jid, timeout=wait, since=mark)
    assert bounce is not None, f"{sender.jid} got no bounce for its message to {receiver.jid}"
    assert bounce.error == "policy-violation", \
        f"the bounce is not <policy-violation/>: {bounce.xml}"
    # The refused body never reaches the receiver (the bounce came back, so give it a moment).
    late = receiver.wait_message(frm=sender.jid, body=body, timeout=0.5)
    assert late is None, f"{receiver.jid} received {body!r} although the sender got a bounce"
    return bounce


def send_message_expect_delivery(env: Env, sender: Client, receiver: Client, timeout: float = 10) -> None:
    """sender -> receiver arrives, and the sender gets no error for it."""
    body = env.body(sender.jid.split("@")[0])
    mark = len(sender.received)
    sender.send_message(receiver.jid, body)
    got = receiver.wait_message(frm=sender.jid, body=body, timeout=timeout)
    assert got is not None, f"{receiver.jid} did not receive {body!r} from {sender.jid} within {timeout}s"
    err = sender.wait_for(lambda r: r.type == "error", timeout=0, since=mark)
    assert err is None, f"{sender.jid} got an error although its message arrived: {err.xml}"


def send_presence(client: Client, to: str | None = None, ptype: str | None = None,
                  show: str | None = None, status: str | None = None) -> None:
    """Presence with optional <show/> and <status/> (broadcast when `to` is None)."""
    client._call(lambda: client.xmpp.send_presence(pto=to, ptype=ptype, pshow=show, pstatus=status))


# -- raw addresses over s2s ------------------------------------------------------------------
READDRESS_NS = "urn:fedgate:e2e"


def send_readdressed(client: Client, to: str, raw_to: str, body: str, mtype: str = "chat") -> None:
    """A message to `to` that the sender's Prosody (with the "e2e_readdress" module, see
    gateway_world(partner_modules=...)) sends over s2s with the `to` attribute `raw_to`, spelt
    exactly so: Prosody prepares every address its clients give, a hostile server need not."""
    def send():
        msg = client.xmpp.make_message(mto=to, mbody=body, mtype=mtype)
        msg.xml.append(ET.Element(f"{{{READDRESS_NS}}}readdress", {"to": raw_to}))
        msg.send()
    client._call(send)


# -- live changes ----------------------------------------------------------------------------
def refresh_count(gw: Fedgate) -> int:
    return len(gw.log_search(r"policy refreshed"))


def change_live(gw: Fedgate, *cmdlet: str, timeout: float = 5.0) -> None:
    """Run a management cmdlet against the running gateway's store and wait until the gateway
    has loaded the new policy (its "policy refreshed" log line), so the next stanza sees it."""
    before = refresh_count(gw)
    gw.cli(*cmdlet)
    deadline = time.monotonic() + timeout
    while refresh_count(gw) <= before:
        assert time.monotonic() < deadline, \
            f"the gateway did not pick up {' '.join(cmdlet)} within {timeout}s\n{gw.diagnostics()}"
        time.sleep(0.05)


def live_stream_ids(gw: Fedgate) -> set[int]:
    """Ids of the live streams in the gateway's /status."""
    return {s["id"] for s in json.loads(gw.status_json())["streams"]}


# -- sites -----------------------------------------------------------------------------------
def with_site(env: Env, domain: str, site: str) -> None:
    """Make the next env.fedgate(...) put hosted `domain` in `site` (config `site = ...` of its
    [[hosted_domain]]): wraps env.fedgate for this test's Env only."""
    original = env.fedgate

    def fedgate(*args, **kw) -> Fedgate:
        g = original(*args, **kw)
        text = g.config.read_text()
        head = f'[[hosted_domain]]\ndomain = "{domain}"\n'
        assert head in text, f"no [[hosted_domain]] {domain} in {g.config}"
        g.config.write_text(text.replace(head, head + f'site = "{site}"\n', 1))
        return g

    env.fedgate = fedgate
