"""What real servers must prove about fedgate's logs and outbound certificate checks:

- message bodies never appear in fedgate's (debug) log unless EnableLoggingAllMessageBodies,
  which a live Set-CsXmppGatewayConfiguration turns on for the streams already running; the
  DialbackPassphrase never appears (log, Get-CsXmppGatewayConfiguration), and the dialback key
  fedgate sent to Prosody is the XEP-0185 key recomputed here with Python's hmac;
- a partner server whose certificate comes from an issuer fedgate does not trust gets no
  outbound stream when its record allows only SASL EXTERNAL: the message is bounced, the log
  says why, nothing reaches the partner."""
import hashlib
import hmac
import re
import time

import pytest

from harness.certs import TestCA
from harness.topology import (ALICE, BOB, PARTNER, PARTNER_IP, assert_gateway_logged,
                              assert_message, assert_not_delivered, gateway_world)
from harness.util import addr

pytestmark = pytest.mark.gateway

DIALBACK_ONLY = ("-TlsNegotiation", "NotSupported", "-SaslNegotiation", "NotSupported",
                 "-SupportDialbackNegotiation", "$true")
PASSPHRASE = "e2e-Dialback-Passphrase-7f3a9c41d2"
PROXY_IP = addr(31)          # recording relay between fedgate and the partner (cleartext)


def _xep0185_key(secret: str, receiving: str, originating: str, stream_id: str) -> str:
    return hmac.new(hashlib.sha256(secret.encode()).hexdigest().encode(),
                    f"{receiving} {originating} {stream_id}".encode(), hashlib.sha256).hexdigest()


def test_bodies_and_the_dialback_secret_stay_out_of_the_log_until_body_logging_is_set_live(env):
    proxy = env.tcpproxy((PROXY_IP, 5269), (PARTNER_IP, 5269))
    w = gateway_world(env, tls="dialback", partner_tls="none", proxy=f"{PROXY_IP}:5269",
                      partner_record=DIALBACK_ONLY,
                      management=(("Set-CsXmppGatewayConfiguration", "-DialbackPassphrase",
                                   PASSPHRASE),))
    out = assert_message(env, w.alice, BOB, w.bob)            # over fedgate's outbound stream
    back = assert_message(env, w.bob, ALICE, w.alice)         # over the partner's inbound stream
    # The streams were logged at debug (relaying lines), but without the bodies.
    assert w.gw.wait_log(r"relaying"), f"no relaying line at debug\n{w.gw.diagnostics()}"
    log = w.gw.log_text()
    for body in (out, back):
        assert body not in log, f"message body {body!r} in fedgate's log"
    assert PASSPHRASE not in log, "the DialbackPassphrase is in fedgate's log"
    shown = w.gw.cli("Get-CsXmppGatewayConfiguration").stdout
    assert "DialbackPassphrase" in shown and PASSPHRASE not in shown, shown

    # The key fedgate sent Prosody (seen by the relay) is XEP-0185's, computed independently.
    with proxy._lock:
        c2t = b"".join(c.data for c in proxy.chunks if c.direction == "c2t").decode(errors="replace")
        t2c = b"".join(c.data for c in proxy.chunks if c.direction == "t2c").decode(errors="replace")
    sent = re.search(r"<(?:db:)?result[^>]*>([0-9a-f]{64})</(?:db:)?result>", c2t)
    header = re.search(r"<stream:stream[^>]*\bid=['\"]([^'\"]+)['\"]", t2c)
    assert sent and header, f"no dialback request / stream id on the relay:\n{c2t[:2000]}\n{t2c[:2000]}"
    assert sent.group(1) == _xep0185_key(PASSPHRASE, PARTNER, "corp.example", header.group(1)), \
        f"fedgate's dialback key is not HMAC-SHA256(hex(SHA256(secret)), 'R O id'): {sent.group(0)}"

    # Live, while the streams run: the change reaches the gateway (its policy poll logs the
    # new revision) and the next stanzas' bodies are logged, on the same connection.
    refreshed = len(w.gw.log_search(r"policy refreshed"))
    connections = proxy.connections
    w.gw.cli("Set-CsXmppGatewayConfiguration", "-EnableLoggingAllMessageBodies", "$true")
    deadline = time.monotonic() + 5
    while len(w.gw.log_search(r"policy refreshed")) == refreshed:
        assert time.monotonic() < deadline, "the live Set-CsXmppGatewayConfiguration was not loaded"
        time.sleep(0.05)
    out2 = assert_message(env, w.alice, BOB, w.bob)
    back2 = assert_message(env, w.bob, ALICE, w.alice)
    for body in (out2, back2):
        assert w.gw.wait_log(re.escape(body)), f"body {body!r} not logged with EnableLoggingAllMessageBodies"
    assert proxy.connections == connections, "the change re-established the outbound stream"
    assert PASSPHRASE not in w.gw.log_text(), "the DialbackPassphrase is in fedgate's log"


def test_partner_certificate_from_an_untrusted_issuer_gets_no_outbound_stream(env):
    other = TestCA(env.dir / "other-ca")
    # Default record: TLS and SASL Required, so SASL EXTERNAL with a valid certificate is the
    # only way; the partner's Prosody trusts fedgate's certificate but presents one fedgate must
    # not trust.
    w = gateway_world(env, tls="ca", partner_cert_issuer=other)
    bounce = assert_not_delivered(env, w.alice, w.bob, wait=8)
    assert bounce is not None and bounce.error == "remote-server-not-found", \
        f"alice's message was not bounced with remote-server-not-found: {bounce}"
    assert_gateway_logged(w.gw, "remote certificate is not valid", "Untrusted")
    assert_gateway_logged(w.gw, "outbound stream failed", PARTNER)
    assert w.gw.running()
