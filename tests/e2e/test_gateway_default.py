"""Scenario 1 (tests/e2e/README.md): an allowed partner with default settings (TLS Required, SASL
EXTERNAL Required): messages and presence flow both ways through fedgate."""
import pytest

from harness.topology import (ALICE, BOB, CORP, PARTNER, PARTNER_IP, assert_exchange,
                              assert_gateway_logged, gateway_world)

pytestmark = pytest.mark.gateway


def test_default_partner_tls_sasl_external_message_and_presence_both_ways(env):
    # New-CsXmppAllowedPartner -Identity partner.example -PartnerType Federated
    #     -ProxyFqdn 127.0.0.30:5269          (TLS/SASL/dialback left at their defaults)
    w = gateway_world(env, tls="ca")

    assert_exchange(env, w.alice, w.bob)

    # Presence both ways: subscription requests (each client auto-authorizes) and the resulting
    # available presence, then a directed presence with a personal note (Federated: kept).
    w.alice.subscribe(BOB)
    assert w.bob.wait_presence(frm=ALICE, ptype="subscribe"), "bob got no subscribe from alice"
    assert w.alice.wait_presence(frm=BOB, ptype="subscribed"), "alice got no subscribed from bob"
    assert w.alice.wait_presence(frm=BOB, ptype=""), "alice got no available presence from bob"
    w.bob.subscribe(ALICE)
    assert w.alice.wait_presence(frm=BOB, ptype="subscribe"), "alice got no subscribe from bob"
    assert w.bob.wait_presence(frm=ALICE, ptype="subscribed"), "bob got no subscribed from alice"
    assert w.bob.wait_presence(frm=ALICE, ptype=""), "bob got no available presence from alice"
    mark = len(w.bob.received)
    w.alice.send_presence(to=BOB, status="in a meeting")
    got = w.bob.wait_for(lambda r: r.kind == "presence" and r.bare_from == ALICE
                         and "in a meeting" in r.xml, timeout=10, since=mark)
    assert got is not None, "directed presence with status did not reach bob"

    # Both gateway<->partner streams were authenticated with SASL EXTERNAL (XEP-0178).
    assert w.partner.wait_log(rf"Accepting SASL EXTERNAL identity from {CORP}"), \
        "the partner did not accept SASL EXTERNAL from the gateway (as corp.example)"
    assert w.partner.wait_log(rf"SASL EXTERNAL with {CORP} succeeded"), \
        "the partner's outbound stream to the gateway did not use SASL EXTERNAL"
    assert_gateway_logged(w.gw, PARTNER, "EXTERNAL")
    # `fedgate status` shows both external streams with the partner, authenticated by EXTERNAL.
    for direction in ("inbound", "outbound"):
        assert w.gw.status_streams(PARTNER, "external", direction, "saslexternal"), \
            f"fedgate status shows no {direction} SASL EXTERNAL stream with {PARTNER}:\n{w.gw.status()}"
    # The internal side: fedgate speaks for partner.example with a certificate minted from the
    # [internal_tls] CA; corp's Prosody (s2s_secure_auth = true) accepted it.
    assert w.corp.wait_log(rf"Accepting SASL EXTERNAL identity from {PARTNER}"), \
        "corp's Prosody did not authenticate the gateway (as partner.example) with SASL EXTERNAL"


def test_partner_without_proxyfqdn_resolved_from_hosts(env):
    """No ProxyFqdn: fedgate finds partner.example itself (no SRV answer, then A/AAAA from its
    /etc/hosts, port 5269), and still checks the certificate against the partner's domain."""
    w = gateway_world(env, tls="ca", proxy="")
    assert_exchange(env, w.alice, w.bob)
    assert w.gw.status_streams(PARTNER, "external", "outbound", "saslexternal"), w.gw.status()


def test_partner_found_by_srv_record(env):
    """No ProxyFqdn and no hosts entry: fedgate follows _xmpp-server._tcp.partner.example (to a
    non-default port) and checks the certificate against partner.example, not the SRV target."""
    env.dns.add_srv(f"_xmpp-server._tcp.{PARTNER}", f"xmpp.{PARTNER}", port=5270)
    env.dns.add_a(f"xmpp.{PARTNER}", PARTNER_IP)
    w = gateway_world(env, tls="ca", proxy="", gateway_hosts=False, partner_s2s_port=5270)
    assert_exchange(env, w.alice, w.bob)
    assert (f"_xmpp-server._tcp.{PARTNER}", 33) in env.dns.queries
    assert w.gw.status_streams(PARTNER, "external", "outbound", "saslexternal"), w.gw.status()


def test_partner_found_by_direct_tls_srv_record(env):
    """No ProxyFqdn, no hosts entry and no _xmpp-server record: fedgate falls back to
    _xmpps-server._tcp.partner.example (XEP-0368) and connects with TLS first, to a port where
    the partner Prosody speaks Direct TLS only; the certificate is checked against partner.example."""
    env.dns.add_srv(f"_xmpps-server._tcp.{PARTNER}", f"xmpp.{PARTNER}", port=5271)
    env.dns.add_a(f"xmpp.{PARTNER}", PARTNER_IP)
    w = gateway_world(env, tls="ca", proxy="", gateway_hosts=False, partner_direct_tls_port=5271)
    assert_exchange(env, w.alice, w.bob)
    queries = env.dns.queries
    assert (f"_xmpp-server._tcp.{PARTNER}", 33) in queries, queries
    assert (f"_xmpps-server._tcp.{PARTNER}", 33) in queries, queries
    # Both SRV names are asked at once (their arrival order at the DNS server is not fixed); the
    # order fedgate tries the targets in is resolve::candidates', unit-tested in resolve.rs.
    assert w.gw.status_streams(PARTNER, "external", "outbound", "saslexternal"), w.gw.status()
