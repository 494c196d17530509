"""Scenario 2 (tests/e2e/README.md): a dialback-only partner (TLS NotSupported, SASL NotSupported,
dialback True) works; the same peer is refused when the partner's settings require TLS."""
import pytest

from harness.topology import (PARTNER, assert_exchange, assert_gateway_logged, assert_not_delivered,
                              assert_refused, gateway_world)

pytestmark = pytest.mark.gateway

DIALBACK_ONLY = ("-TlsNegotiation", "NotSupported", "-SaslNegotiation", "NotSupported",
                 "-SupportDialbackNegotiation", "$true")


def test_dialback_only_partner_works(env):
    # The partner's Prosody cannot do s2s TLS at all (s2s_allow_encryption = false).
    w = gateway_world(env, tls="dialback", partner_tls="none", partner_record=DIALBACK_ONLY)
    assert_exchange(env, w.alice, w.bob)
    # Cleartext dialback on the partner side, both directions.
    assert not w.partner.log_search(r"s2s(in|out)\S*\s+info\s+Stream encrypted")
    assert w.partner.log_search(r"dialback")
    assert_gateway_logged(w.gw, PARTNER, "dialback")
    assert w.gw.status_streams(PARTNER, "external", "dialback"), \
        f"fedgate status shows no dialback stream with {PARTNER}:\n{w.gw.status()}"
    # No certificate configured for corp.example: generated at first start, kept next to the store.
    assert (w.gw.db.parent / "corp.example.pem").is_file() and \
        (w.gw.db.parent / "corp.example.key").is_file(), sorted(p.name for p in w.gw.dir.iterdir())


def test_dialback_only_peer_refused_when_partner_requires_tls(env):
    # Same cleartext-only peer, but the record says TLS Required (dialback still allowed).
    w = gateway_world(env, tls="dialback", partner_tls="none",
                      partner_record=("-TlsNegotiation", "Required", "-SaslNegotiation", "NotSupported",
                                      "-SupportDialbackNegotiation", "$true"))
    assert_not_delivered(env, w.bob, w.alice, wait=6)
    out = assert_not_delivered(env, w.alice, w.bob, wait=6)
    # Outbound: the partner offers no TLS, so fedgate does not open the stream and says why.
    assert out is not None and out.error == "remote-server-not-found", f"alice's bounce: {out}"
    assert_gateway_logged(w.gw, "outbound stream failed", PARTNER, "does not offer TLS, which is required")
    # Inbound: the partner's cleartext dialback is refused because TLS is required.
    assert_gateway_logged(w.gw, "refused", PARTNER, "TLS is required")
    assert_refused(w.gw, "external", "method_not_allowed")
