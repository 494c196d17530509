"""Issue 29: fedgate with a serverAuth-only certificate (as public CAs issue them since 2026) and a
partner on ejabberd 23.01 (Debian 12), which insists on the clientAuth purpose and refuses that
certificate for SASL EXTERNAL. With SaslNegotiation Optional and dialback on, fedgate goes on with
dialback and the message arrives; with SaslNegotiation Required the bounce says why. The log and
/metrics name the reason either way. The other direction (ejabberd's certificate carries both
purposes) authenticates by SASL EXTERNAL as before."""
import html

import pytest

from harness.topology import (PARTNER, assert_exchange, assert_gateway_logged, assert_not_delivered,
                              assert_refused, gateway_world)

pytestmark = pytest.mark.gateway

REFUSED = "the remote refused our certificate for SASL EXTERNAL"


def test_ejabberd_partner_refusing_a_server_auth_only_certificate_gets_dialback(env):
    w = gateway_world(env, tls="ca", internal_kind="prosody", partner_kind="ejabberd",
                      gateway_server_auth_only=True,
                      partner_record=("-TlsNegotiation", "Required", "-SaslNegotiation", "Optional",
                                      "-SupportDialbackNegotiation", "$true"))
    assert_exchange(env, w.alice, w.bob)
    line = assert_gateway_logged(w.gw, REFUSED, f'remote="{PARTNER}"', "not-authorized")
    assert "Dialback over TLS" in line, line
    established = assert_gateway_logged(w.gw, "outbound stream established", "side=external",
                                        "method=Dialback over TLS")
    assert REFUSED in established, established
    assert assert_refused(w.gw, "external", "sasl_external_refused") >= 1
    assert w.gw.status_streams(PARTNER, "external", "outbound", "tlsdialback"), w.gw.status()


def test_ejabberd_partner_refusing_a_server_auth_only_certificate_with_sasl_required(env):
    w = gateway_world(env, tls="ca", internal_kind="prosody", partner_kind="ejabberd",
                      gateway_server_auth_only=True)  # the default record: SASL Required
    bounce = assert_not_delivered(env, w.alice, w.bob, wait=10)
    assert bounce is not None, f"no bounce for alice\n{env.diagnostics()}"
    assert bounce.error == "remote-server-not-found", bounce.xml
    text = html.unescape(bounce.xml)
    for words in (f"The partner '{PARTNER}' refused this gateway's certificate for SASL EXTERNAL",
                  "its settings do not allow dialback (SaslNegotiation is Required)"):
        assert words in text, text
    assert_gateway_logged(w.gw, REFUSED, "none, bouncing")
    assert assert_refused(w.gw, "external", "sasl_external_refused") >= 1
