"""Scenario 4 (tests/e2e/README.md): Remove/Set while a stream is live: the stream closes (or
adapts) within a second, without restarting the gateway."""
import time

import pytest

from harness.topology import (PARTNER, assert_exchange, assert_gateway_logged, assert_not_delivered,
                              assert_refused, gateway_world, refusal_count, stream_error_seen)

pytestmark = pytest.mark.gateway

DIALBACK_ONLY = ("-TlsNegotiation", "NotSupported", "-SaslNegotiation", "NotSupported",
                 "-SupportDialbackNegotiation", "$true")


def _timed_close(w, fn):
    """Run the management command; return seconds until the partner saw <policy-violation/>."""
    mark = w.partner.log_mark()
    t0 = time.monotonic()
    fn()
    seen = stream_error_seen(w.partner, "policy-violation", timeout=3, since=mark)
    assert seen, "the live stream with the partner was not closed with <policy-violation/>"
    return time.monotonic() - t0


def test_remove_partner_closes_live_streams_within_a_second(env):
    w = gateway_world(env, tls="ca")
    assert_exchange(env, w.alice, w.bob)            # streams up in both directions
    pid = w.gw.proc.pid
    took = _timed_close(w, lambda: w.gw.cli("Remove-CsXmppAllowedPartner", "-Identity", PARTNER))
    assert took <= 1.5, f"stream closed {took:.2f}s after Remove (must be within a second)"
    assert_gateway_logged(w.gw, "closing a stream after a policy change", PARTNER, "partner_removed")
    assert_not_delivered(env, w.bob, w.alice, wait=4)
    assert_not_delivered(env, w.alice, w.bob, wait=4)
    assert w.gw.running() and w.gw.proc.pid == pid, "the gateway restarted"
    # A metric says why streams were closed: the partner was removed (README "Operations").
    assert_refused(w.gw, "external", "partner_removed")
    assert refusal_count(w.gw, "external", "settings_changed") == 0


def test_set_tls_required_closes_cleartext_stream_within_a_second(env):
    w = gateway_world(env, tls="dialback", partner_tls="none", partner_record=DIALBACK_ONLY)
    assert_exchange(env, w.alice, w.bob)
    pid = w.gw.proc.pid
    took = _timed_close(w, lambda: w.gw.cli("Set-CsXmppAllowedPartner", "-Identity", PARTNER,
                                            "-TlsNegotiation", "Required"))
    assert took <= 1.5, f"stream closed {took:.2f}s after Set (must be within a second)"
    assert_gateway_logged(w.gw, "closing a stream after a policy change", "TLS is now required")
    assert_refused(w.gw, "external", "settings_changed")
    assert_not_delivered(env, w.bob, w.alice, wait=4)
    assert w.gw.running() and w.gw.proc.pid == pid, "the gateway restarted"


def test_set_compatible_change_keeps_live_stream(env):
    w = gateway_world(env, tls="ca")
    assert_exchange(env, w.alice, w.bob)
    pid = w.gw.proc.pid
    established = len(w.partner.log_search(r"s2s connection \S+->\S+ complete"))
    mark = w.partner.log_mark()
    w.gw.cli("Set-CsXmppAllowedPartner", "-Identity", PARTNER, "-Description", "contact: ops@partner",
             "-EnableKeepAlive", "$false")
    assert not stream_error_seen(w.partner, r"\S+", timeout=1.5, since=mark), \
        "a change that still allows the stream closed it"
    assert_exchange(env, w.alice, w.bob)
    # The same streams carried the new messages: no new s2s connection was set up.
    assert len(w.partner.log_search(r"s2s connection \S+->\S+ complete")) == established
    assert w.gw.running() and w.gw.proc.pid == pid, "the gateway restarted"
