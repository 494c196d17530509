"""TESTING.md scenario 9: Prosody <-> ejabberd through the gateway (not only Prosody <-> Prosody)."""
import pytest

from harness.topology import ALICE, BOB, assert_exchange, gateway_world

pytestmark = pytest.mark.gateway

DIALBACK_ONLY = ("-TlsNegotiation", "Optional", "-SaslNegotiation", "NotSupported",
                 "-SupportDialbackNegotiation", "$true")


def test_prosody_internal_ejabberd_partner_sasl_external(env):
    w = gateway_world(env, tls="ca", internal_kind="prosody", partner_kind="ejabberd")
    assert_exchange(env, w.alice, w.bob)
    w.alice.subscribe(BOB)
    assert w.alice.wait_presence(frm=BOB, ptype="subscribed"), "no subscribed from the ejabberd user"
    assert w.alice.wait_presence(frm=BOB, ptype=""), "no presence from the ejabberd user"


def test_ejabberd_internal_prosody_partner_dialback(env):
    w = gateway_world(env, tls="dialback", internal_kind="ejabberd", partner_kind="prosody",
                      partner_record=DIALBACK_ONLY)
    assert_exchange(env, w.alice, w.bob)
    w.bob.subscribe(ALICE)
    assert w.bob.wait_presence(frm=ALICE, ptype="subscribed"), "no subscribed from the ejabberd user"
    assert w.bob.wait_presence(frm=ALICE, ptype=""), "no presence from the ejabberd user"


def test_prosody_internal_ejabberd_cleartext_dialback_partner(env):
    """ejabberd as the dialback-only partner of scenario 2 (no s2s STARTTLS at all)."""
    w = gateway_world(env, tls="dialback", internal_kind="prosody", partner_kind="ejabberd",
                      partner_tls="none",
                      partner_record=("-TlsNegotiation", "NotSupported", "-SaslNegotiation",
                                      "NotSupported", "-SupportDialbackNegotiation", "$true"))
    assert_exchange(env, w.alice, w.bob)
    assert w.gw.status_streams("partner.example", "external", "tcpdialback"), w.gw.status()
