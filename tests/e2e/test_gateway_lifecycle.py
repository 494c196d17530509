"""SIGTERM closes the live streams with <system-shutdown/> and exits 0 (README "Operations",
signals)."""
import pytest

from harness.topology import assert_exchange, gateway_world, stream_error_seen

pytestmark = pytest.mark.gateway


def test_sigterm_closes_streams_with_system_shutdown_and_exits_0(env):
    w = gateway_world(env, tls="ca")
    assert_exchange(env, w.alice, w.bob)            # streams up on both sides of the gateway
    partner_mark, corp_mark = w.partner.log_mark(), w.corp.log_mark()
    assert w.gw.stop() == 0                          # raises with the log tail if not 0
    assert stream_error_seen(w.partner, "system-shutdown", since=partner_mark), \
        "the partner's streams were not closed with <system-shutdown/>"
    assert stream_error_seen(w.corp, "system-shutdown", since=corp_mark), \
        "the internal server's streams were not closed with <system-shutdown/>"
