"""Scenario 8 (tests/e2e/README.md): ConnectionLimit and keepalive behave as configured."""
import time

import pytest

from harness.util import addr
from harness.topology import (BOB, PARTNER, PARTNER_IP, assert_gateway_logged, assert_message,
                              assert_not_delivered, assert_refused, gateway_world, stream_error_seen,
                              wait_policy_refresh)

pytestmark = pytest.mark.gateway

SECOND = "partner2.example"
DIALBACK_ONLY = ("-TlsNegotiation", "NotSupported", "-SaslNegotiation", "NotSupported",
                 "-SupportDialbackNegotiation", "$true")
PROXY_IP = addr(31)          # recording relay between fedgate and the partner (cleartext)


def test_connection_limit_refuses_the_extra_stream_and_live_raise_admits_it(env):
    # Two domains of one partner: the partner's Prosody opens one s2s stream per domain, so the
    # second one is the partner's second connection.
    w = gateway_world(env, tls="ca", partner_domains=(SECOND,), extra_partner_users=(f"dave@{SECOND}",),
                      partner_record=("-AdditionalDomains", SECOND, "-ConnectionLimit", "1"))
    dave = w.extra_clients[f"dave@{SECOND}"]
    assert_message(env, w.bob, w.alice.jid, w.alice)          # connection 1 of 1
    assert_not_delivered(env, dave, w.alice, wait=5)          # connection 2: over the limit
    # The partner's own limit: policy-violation (resource-constraint is the gateway-wide one).
    assert stream_error_seen(w.partner, "policy-violation"), \
        "the connection over the limit was not refused with <policy-violation/>"
    assert_gateway_logged(w.gw, "refused", "partner_connection_limit", "(limit 1)")
    assert_refused(w.gw, "external", "partner_connection_limit")
    # Raise the limit live: once the gateway has loaded the change, the next attempt is
    # admitted, no restart.
    pid = w.gw.proc.pid
    refreshed = len(w.gw.log_search(r"policy refreshed"))
    w.gw.cli("Set-CsXmppAllowedPartner", "-Identity", PARTNER, "-ConnectionLimit", "2")
    wait_policy_refresh(w.gw, refreshed)
    assert_message(env, dave, w.alice.jid, w.alice)
    assert w.gw.running() and w.gw.proc.pid == pid, "the gateway restarted"


def _keepalive_world(env, *record):
    proxy = env.tcpproxy((PROXY_IP, 5269), (PARTNER_IP, 5269))
    w = gateway_world(env, tls="dialback", partner_tls="none", proxy=f"{PROXY_IP}:5269",
                      partner_record=(*DIALBACK_ONLY, *record),
                      settings={"keep_alive_interval": 10})
    return w, proxy


def test_keepalive_whitespace_pings_within_the_interval(env):
    w, proxy = _keepalive_world(env, "-EnableKeepAlive", "$true")
    assert_message(env, w.alice, BOB, w.bob)                  # fedgate -> partner stream via relay
    idle_from = proxy.last_activity("c2t")
    connections, mark = proxy.connections, w.partner.log_mark()
    # Watch the idle stream past KeepAliveInterval (10 s): pings come well within it, and the
    # stream stays up throughout (no stream error, no new connection).
    while time.monotonic() - idle_from < 10.5:
        assert not stream_error_seen(w.partner, r"\S+", timeout=0, since=mark), \
            "the partner's server closed the pinged stream"
        time.sleep(0.25)
    pings = proxy.whitespace_chunks("c2t", since=idle_from)
    assert pings, f"no whitespace keepalive from fedgate in 10 s of idle stream\n{proxy.diagnostics()}"
    assert pings[0].at - idle_from < 10, "first keepalive came later than KeepAliveInterval"
    # The same stream still carries messages.
    assert_message(env, w.alice, BOB, w.bob)
    assert proxy.connections == connections, "the pinged stream was closed and opened again"


def test_keepalive_disabled_sends_no_pings(env):
    w, proxy = _keepalive_world(env, "-EnableKeepAlive", "$false")
    assert_message(env, w.alice, BOB, w.bob)
    idle_from = proxy.last_activity("c2t")
    time.sleep(9)
    assert not proxy.whitespace_chunks("c2t", since=idle_from), \
        "fedgate sent whitespace keepalives although EnableKeepAlive is False"


def test_silent_partner_stream_closed_after_keepalive_interval(env):
    w, _proxy = _keepalive_world(env, "-EnableKeepAlive", "$true")
    assert_message(env, w.bob, w.alice.jid, w.alice)          # partner -> fedgate stream
    t0 = time.monotonic()
    mark = w.partner.log_mark()
    # The partner's Prosody sends nothing more on that stream; fedgate closes it after ~10 s.
    closed = w.partner.wait_log(rf"Outgoing s2s stream {PARTNER}->corp\.example closed", timeout=16,
                                since=mark)
    assert closed, "a partner stream silent for KeepAliveInterval (10 s) was not closed"
    assert time.monotonic() - t0 >= 8, "stream closed well before KeepAliveInterval"
    # fedgate closed it, and said why: <connection-timeout/> to the partner, the reason in its
    # log and /metrics.
    assert stream_error_seen(w.partner, "connection-timeout", since=mark), \
        "the partner's server was not told <connection-timeout/>"
    assert_gateway_logged(w.gw, "refused", PARTNER, "keepalive_timeout", "Nothing received for 10 s")
    assert_refused(w.gw, "external", "keepalive_timeout")
    # And the partner can come back: a new message opens a new stream.
    assert_message(env, w.bob, w.alice.jid, w.alice)
