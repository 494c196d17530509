"""Hardening: addresses are normalised as the internal server normalises them (nodeprep) before
the user policy is looked up. A partner's server that spells a local user's name in capitals,
fullwidth letters, with a soft hyphen or zero-width space, or with compatibility characters (the
ﬁ ligature, circled letters) reaches the user Prosody and ejabberd deliver to: such a stanza is
decided for that user - a user without EnableXmppAccess stays unreachable (policy-violation
bounce, nothing delivered) - and an enabled user receives it."""
import json

import pytest

from harness.access import error_text, send_readdressed
from harness.topology import BOB, CORP, gateway_world

pytestmark = pytest.mark.gateway
ALICE, CAROL, FIONA = f"alice@{CORP}", f"carol@{CORP}", f"fiona@{CORP}"

# Spellings of forbidden users: every one is nodeprep'd to the user by Prosody and ejabberd.
FORBIDDEN = [
    (CAROL, f"CAROL@{CORP}"),                      # case
    (CAROL, f"ＣＡＲＯＬ@{CORP}"),                   # fullwidth capitals
    (CAROL, f"ｃａｒｏｌ@{CORP}"),                   # fullwidth
    (CAROL, f"car\u00adol@{CORP}"),                # soft hyphen (table B.1: mapped to nothing)
    (CAROL, f"ca\u200brol@{CORP}"),                # zero-width space (B.1)
    (CAROL, f"\u24d2\u24d0\u24e1\u24de\u24db@{CORP}"),  # circled letters (NFKC)
    (CAROL, "carol@ｃｏｒｐ.example"),              # fullwidth hosted domain
    (FIONA, f"\ufb01ona@{CORP}"),                  # ﬁ ligature (NFKC)
    (FIONA, f"Ｆ\u00adＩＯＮＡ@{CORP}"),
]
# Spellings of an enabled user: delivered (normalisation, not refusal).
ENABLED = [
    f"ＡＬＩＣＥ@{CORP}",
    f"al\u00adice@{CORP}",
    f"\u24b6\u24db\u24d8\u24d2\u24d4@{CORP}",
    "alice@ｃｏｒｐ.example",
]


def assert_variant_delivered(env, w, raw_to: str) -> None:
    body = env.body("variant")
    mark = len(w.bob.received)
    send_readdressed(w.bob, ALICE, raw_to, body)
    got = w.alice.wait_message(frm=BOB, body=body, timeout=10)
    assert got is not None, f"alice did not receive bob's message addressed {raw_to!r}"
    err = w.bob.wait_for(lambda r: r.type == "error", timeout=0, since=mark)
    assert err is None, f"bob got an error for his message to {raw_to!r}: {err.xml}"


def check_variants(env, w) -> None:
    clients = {CAROL: w.extra_clients[CAROL], FIONA: w.extra_clients[FIONA]}
    # Positive controls: the partner's plain and variant messages reach the enabled alice.
    assert_variant_delivered(env, w, ALICE)
    for raw_to in ENABLED:
        assert_variant_delivered(env, w, raw_to)

    for user, raw_to in FORBIDDEN:
        body = env.body("refused")
        mark = len(w.bob.received)
        send_readdressed(w.bob, user, raw_to, body)
        bounce = w.bob.wait_for(lambda r: r.kind == "message" and r.type == "error",
                                timeout=5, since=mark)
        assert bounce is not None, f"bob got no bounce for his message addressed {raw_to!r}"
        assert bounce.error == "policy-violation", f"{raw_to!r}: not <policy-violation/>: {bounce.xml}"
        assert "may not receive" in error_text(bounce), f"{raw_to!r}: {bounce.xml}"
        assert bounce.bare_from == user, f"{raw_to!r}: the bounce is not from {user}: {bounce.xml}"
        late = clients[user].wait_message(frm=BOB, body=body, timeout=0.5)
        assert late is None, f"{user} received {body!r} addressed {raw_to!r}"

    # Nothing of bob's ever reached the forbidden users; alice still gets his messages.
    for user, client in clients.items():
        assert client.messages_from(BOB) == [], f"{user} received: {client.messages_from(BOB)}"
    assert_variant_delivered(env, w, ENABLED[0])


MANAGEMENT = (
    ("New-CsExternalAccessPolicy", "-Identity", "tag:NoXmpp", "-EnableXmppAccess", "$false"),
    # The grants themselves typed as variants: stored under the normalised user.
    ("Grant-CsExternalAccessPolicy", "-Identity", "ＣＡＲＯＬ@corp.example", "-PolicyName", "NoXmpp"),
    ("Grant-CsExternalAccessPolicy", "-Identity", "\ufb01ona@corp.example", "-PolicyName", "NoXmpp"),
)


def test_access_variants_of_a_forbidden_users_name_stay_bounced_prosody_internal(env):
    w = gateway_world(env, tls="ca", extra_corp_users=("carol", "fiona"),
                      partner_modules=("e2e_readdress",), management=MANAGEMENT)
    grants = {g["Identity"] for g in json.loads(
        w.gw.cli("policy", "grants", json=True).stdout)}
    assert grants == {CAROL, FIONA}, f"grants not stored normalised: {grants}"
    check_variants(env, w)


def test_access_variants_of_a_forbidden_users_name_stay_bounced_ejabberd_internal(env):
    w = gateway_world(env, tls="dialback", internal_kind="ejabberd",
                      extra_corp_users=("carol", "fiona"), partner_modules=("e2e_readdress",),
                      partner_record=("-TlsNegotiation", "Optional", "-SaslNegotiation",
                                      "NotSupported", "-SupportDialbackNegotiation", "$true"),
                      management=MANAGEMENT)
    check_variants(env, w)
