"""Scenario 9 (tests/e2e/README.md): Prosody <-> ejabberd through the gateway (not only Prosody <->
Prosody)."""
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


def test_ejabberd_internal_sasl_external_with_minted_certificates(env):
    """ejabberd as the internal server, trusting the internal CA that fedgate mints the partner
    domains' certificates with: the internal side authenticates with SASL EXTERNAL (fedgate's
    certificates carry a DNS-ID only; ejabberd 23.01 crashes on an XmppAddr SAN)."""
    w = gateway_world(env, tls="ca", internal_kind="ejabberd", partner_kind="prosody")
    assert_exchange(env, w.alice, w.bob)
    assert w.gw.wait_log(r"side=internal.*method=SASL EXTERNAL.*inbound stream authenticated"
                         r"|inbound stream authenticated.*side=internal.*method=SASL EXTERNAL"), \
        "ejabberd did not authenticate to the gateway's internal side with SASL EXTERNAL"
