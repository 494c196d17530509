"""Scenario 5 (tests/e2e/README.md): AdditionalDomains: a second domain of the same partner
federates; an unlisted sibling (served by the same partner server) does not."""
import pytest

from harness.topology import (assert_exchange, assert_gateway_logged, assert_not_delivered,
                              gateway_world, stream_error_seen)

pytestmark = pytest.mark.gateway

SECOND, SIBLING = "partner2.example", "partner3.example"


def test_additional_domain_federates_unlisted_sibling_does_not(env):
    w = gateway_world(env, tls="ca", partner_domains=(SECOND, SIBLING),
                      extra_partner_users=(f"dave@{SECOND}", f"erin@{SIBLING}"),
                      partner_record=("-AdditionalDomains", SECOND))
    dave, erin = w.extra_clients[f"dave@{SECOND}"], w.extra_clients[f"erin@{SIBLING}"]

    assert_exchange(env, w.alice, w.bob)        # the partner's primary domain
    assert_exchange(env, w.alice, dave)         # its additional domain

    assert_not_delivered(env, erin, w.alice, wait=5)
    assert_not_delivered(env, w.alice, erin, wait=5)
    assert stream_error_seen(w.partner, "policy-violation"), \
        "the sibling's stream was not refused with <policy-violation/>"
    assert_gateway_logged(w.gw, SIBLING, "policy")
