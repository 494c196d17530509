"""Issue 5, visibility: an admin sees refusals by reason - partner not allowed, user not enabled,
not authorised - in `fedgate status`, in the log and in /metrics."""
import pytest

from harness.access import send_message_expect_bounce
from harness.topology import CORP, assert_gateway_logged, assert_not_delivered, gateway_world

pytestmark = pytest.mark.gateway
CAROL = f"carol@{CORP}"
SIBLING = "partner3.example"          # served by the partner's Prosody, not on the list
ERIN = f"erin@{SIBLING}"


def test_access_refusals_by_reason_in_status_log_and_metrics(env):
    w = gateway_world(env, tls="ca", extra_corp_users=("carol",), partner_domains=(SIBLING,),
                      extra_partner_users=(ERIN,),
                      partner_record=("-PartnerType", "PublicUnverified"), management=(
        ("New-CsExternalAccessPolicy", "-Identity", "tag:NoXmpp", "-EnableXmppAccess", "$false"),
        ("Grant-CsExternalAccessPolicy", "-Identity", CAROL, "-PolicyName", "NoXmpp"),
    ))
    carol, erin = w.extra_clients[CAROL], w.extra_clients[ERIN]
    send_message_expect_bounce(env, w.bob, w.alice)          # not authorised (PublicUnverified)
    send_message_expect_bounce(env, carol, w.bob)            # user not enabled (outbound)
    assert_not_delivered(env, erin, w.alice, wait=3)         # partner not allowed (stream refused)

    expected = {  # reason label -> what `fedgate status` says about it
        "not_authorised": "not authorised",
        "user_not_enabled": "user not enabled",
        "not_listed": "partner not allowed",
    }
    for reason, words in expected.items():
        rows = w.gw.status_streams(reason)
        assert rows and words in rows[0], \
            f"`fedgate status` has no {reason} ({words}) row:\n{w.gw.status()}"
    assert_gateway_logged(w.gw, "not_authorised", "bob@partner.example")
    assert_gateway_logged(w.gw, "user_not_enabled", CAROL)
    assert_gateway_logged(w.gw, "not_listed", SIBLING)
    metrics = w.gw.metrics()
    for reason in expected:
        assert f'reason="{reason}"' in metrics, f"/metrics does not count {reason}:\n{metrics}"
