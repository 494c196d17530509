"""Issue 14, item 1: `Test-CsXmppAllowedPartner` against real Prosody partners, run by the CLI
with the running gateway's configuration: a SASL EXTERNAL partner (test CA) is Ok with
SaslExternal and its certificate described; a cleartext dialback-only partner is Ok with
TcpDialback after a real round trip (Prosody calls the running gateway back); a partner whose
certificate comes from a CA fedgate does not trust fails, saying so."""
import json

import pytest

from harness.certs import TestCA
from harness.topology import PARTNER, gateway_world

pytestmark = pytest.mark.gateway

DIALBACK_ONLY = ("-TlsNegotiation", "NotSupported", "-SaslNegotiation", "NotSupported",
                 "-SupportDialbackNegotiation", "$true")


def partner_test(gw):
    """The CLI's JSON report and exit code for the listed partner."""
    r = gw.cli("--config", str(gw.config), "Test-CsXmppAllowedPartner", "-Identity", PARTNER,
               check=False, json=True)
    try:
        return json.loads(r.stdout), r.returncode
    except json.JSONDecodeError:
        raise AssertionError(f"not JSON (rc={r.returncode}):\n{r.stdout}\n{r.stderr}")


def step(report, name):
    found = [s for s in report["Steps"] if s["Step"] == name]
    assert found, f"no step {name}: {json.dumps(report, indent=1)}"
    return found[0]


def test_sasl_external_partner_is_ok(env):
    w = gateway_world(env, tls="ca")
    report, rc = partner_test(w.gw)
    text = json.dumps(report, indent=1)
    assert (rc, report["Verdict"]) == (0, "Ok"), text
    assert report["Methods"]["Outbound"] == "SaslExternal", text
    assert step(report, "STARTTLS")["Ok"] is True, text
    assert step(report, "SASL EXTERNAL")["Ok"] is True, text
    cert = report["Certificate"]
    assert cert["Trusted"] and cert["ValidForDomain"], text
    assert PARTNER in cert["DnsNames"] + cert["XmppAddrs"], text


def test_dialback_only_partner_is_ok_after_a_real_round_trip(env):
    w = gateway_world(env, tls="dialback", partner_tls="none", partner_record=DIALBACK_ONLY)
    report, rc = partner_test(w.gw)
    text = json.dumps(report, indent=1)
    assert (rc, report["Verdict"]) == (0, "Ok"), text
    assert report["Methods"]["Outbound"] == "TcpDialback", text
    db = step(report, "Dialback")
    assert db["Ok"] is True and "called back 'corp.example'" in db["Detail"], text
    # The partner's Prosody really asked the running gateway (db:verify on its listener).
    assert w.partner.log_search(r"dialback")


def test_partner_certificate_from_an_untrusted_ca_fails(env):
    other = TestCA(env.dir / "other-ca")
    w = gateway_world(env, tls="ca", partner_cert_issuer=other)
    report, rc = partner_test(w.gw)
    text = json.dumps(report, indent=1)
    assert (rc, report["Verdict"]) == (1, "Fail"), text
    assert report["Certificate"]["Trusted"] is False, text
    assert any("does not chain to the gateway's trust anchors" in p for p in report["Problems"]), text
