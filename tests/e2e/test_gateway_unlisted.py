"""Scenario 3 (tests/e2e/README.md): a partner not on the list is refused with <policy-violation/>;
nothing is delivered either way, and fedgate's log and metrics name the reason."""
import pytest

from harness.topology import (PARTNER, assert_gateway_logged, assert_not_delivered, assert_refused,
                              gateway_world, stream_error_seen)

pytestmark = pytest.mark.gateway


def test_unlisted_partner_refused_with_policy_violation(env):
    # Another partner is allowed; partner.example is not on the list.
    w = gateway_world(env, tls="ca", partner_record=None,
                      other_records=(("-Identity", "someone-else.example", "-PartnerType", "Federated"),))

    bounce = assert_not_delivered(env, w.bob, w.alice, wait=5)
    # The partner's server was told why: a <policy-violation/> stream error.
    assert stream_error_seen(w.partner, "policy-violation"), \
        f"partner's Prosody saw no policy-violation stream error (bounce to bob: {bounce})"

    assert_not_delivered(env, w.alice, w.bob, wait=5)
    # The internal server's stream for partner.example was refused the same way.
    assert stream_error_seen(w.corp, "policy-violation"), \
        "corp's Prosody saw no policy-violation when sending to an unlisted partner"

    assert_gateway_logged(w.gw, "refused", PARTNER, "not_listed", "not an allowed XMPP partner")
    # Both sides' refusals, by their exact label.
    assert_refused(w.gw, "external", "not_listed")
    assert_refused(w.gw, "internal", "not_listed")
    assert w.gw.running(), "fedgate must keep serving after refusing a partner"
