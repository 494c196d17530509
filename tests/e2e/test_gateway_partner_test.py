"""Issue 14, item 1: `Test-CsXmppAllowedPartner` against real Prosody and ejabberd partners, run
by the CLI with the running gateway's configuration: a SASL EXTERNAL partner (test CA; Prosody and
ejabberd) is Ok with SaslExternal and its certificate described; a cleartext dialback-only partner
is Ok with TcpDialback after a real round trip (Prosody calls the running gateway back); for these
healthy partners the methods the report predicts are the ones the streams then use (a message
each way, then the partner's streams in `fedgate status --output json`); a partner whose
certificate comes from a CA fedgate does not trust fails, saying so; a partner Prosody presenting
an expired certificate fails and one that expires in 5 days warns, each with its sentence."""
import datetime
import json
import re

import pytest

from harness.certs import TestCA
from harness.topology import PARTNER, assert_exchange, assert_not_delivered, gateway_world

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


# How the gateway's log line "inbound stream authenticated" spells each method.
METHOD_IN_LOG = {"SaslExternal": "SASL EXTERNAL over TLS (certificate)",
                 "TlsDialback": "Dialback over TLS", "TcpDialback": "Dialback over TCP (unencrypted)"}


def used_methods(env, w, report) -> dict[str, str]:
    """A message each way through the gateway (alice -> bob opens the gateway's outbound stream to
    the partner, bob -> alice the partner's inbound one), then the authentication method of each
    of the partner's external streams as `fedgate status --output json` shows them:
    {"Outbound": method, "Inbound": method}."""
    assert_exchange(env, w.alice, w.bob)
    r = w.gw.cli_via_config("status", json=True)
    status = json.loads(r.stdout)
    streams = [s for s in status["streams"]
               if s["partner"] == PARTNER and s["side"].lower() == "external"]
    used = {}
    for s in streams:
        direction = s["direction"].capitalize()
        assert used.get(direction, s["auth_method"]) == s["auth_method"], \
            f"two {direction} streams with different methods:\n{json.dumps(streams, indent=1)}"
        used[direction] = s["auth_method"]
    assert set(used) == {"Outbound", "Inbound"}, (
        f"after a message each way, `fedgate status` should list the partner's outbound and inbound "
        f"external streams:\n{json.dumps(status['streams'], indent=1)}\n"
        f"report: {json.dumps(report, indent=1)}")
    return used


def assert_predicted_methods_used(env, w, report) -> dict[str, str]:
    """What an admin checks after a healthy test: the method the report predicts for outbound
    streams is the one the gateway's outbound stream authenticated with, and the partner's inbound
    stream used one of the methods predicted for inbound streams."""
    used = used_methods(env, w, report)
    predicted = report["Methods"]
    assert used["Outbound"] == predicted["Outbound"], (
        f"Test-CsXmppAllowedPartner predicted {predicted['Outbound']} outbound, the gateway's "
        f"outbound stream used {used['Outbound']}")
    assert used["Inbound"] in predicted["Inbound"], (
        f"Test-CsXmppAllowedPartner predicted {predicted['Inbound']} inbound, the partner's stream "
        f"used {used['Inbound']}")
    # The gateway's own log line for the partner's stream names the same method.
    spelled = re.escape(METHOD_IN_LOG[used["Inbound"]])
    line = (rf'inbound stream authenticated side=external domain="?{re.escape(PARTNER)}"? '
            rf"method={spelled} ")
    assert w.gw.log_search(line), \
        f"no log line matching {line!r}\n{w.gw.diagnostics()}"
    return used


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
    assert_predicted_methods_used(env, w, report)


def test_ejabberd_partner_is_ok_with_the_method_then_used(env):
    """ejabberd (test CA, SASL EXTERNAL both ways) as the partner: Ok, SaslExternal predicted,
    and SaslExternal is what the streams then authenticate with."""
    w = gateway_world(env, tls="ca", partner_kind="ejabberd")
    report, rc = partner_test(w.gw)
    text = json.dumps(report, indent=1)
    assert (rc, report["Verdict"], report["Problems"]) == (0, "Ok", []), text
    assert report["Methods"]["Outbound"] == "SaslExternal", text
    assert "SaslExternal" in report["Methods"]["Inbound"], text
    assert step(report, "STARTTLS")["Ok"] is True, text
    assert step(report, "SASL EXTERNAL")["Ok"] is True, text
    cert = report["Certificate"]
    assert cert["Trusted"] and cert["ValidForDomain"], text
    assert PARTNER in cert["DnsNames"] + cert["XmppAddrs"], text
    used = assert_predicted_methods_used(env, w, report)
    assert used == {"Outbound": "SaslExternal", "Inbound": "SaslExternal"}, used


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
    used = assert_predicted_methods_used(env, w, report)
    assert used == {"Outbound": "TcpDialback", "Inbound": "TcpDialback"}, used


def test_partner_certificate_from_an_untrusted_ca_fails(env):
    other = TestCA(env.dir / "other-ca")
    w = gateway_world(env, tls="ca", partner_cert_issuer=other)
    report, rc = partner_test(w.gw)
    text = json.dumps(report, indent=1)
    assert (rc, report["Verdict"]) == (1, "Fail"), text
    assert report["Certificate"]["Trusted"] is False, text
    assert any("does not chain to the gateway's trust anchors" in p for p in report["Problems"]), text


def now_utc() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def expired_issuer(env):
    """The test CA (which fedgate trusts) issuing a certificate that expired yesterday."""
    return env.ca.with_validity(now_utc() - datetime.timedelta(days=40),
                                now_utc() - datetime.timedelta(days=1))


def test_partner_certificate_expired_fails_and_nothing_is_delivered(env):
    """A partner Prosody presenting a test-CA certificate that expired yesterday (default record:
    TLS and SASL EXTERNAL required): Fail (exit 1) with the expiry sentence naming its not-after;
    and the prediction holds: alice's message is not delivered."""
    w = gateway_world(env, tls="ca", partner_cert_issuer=expired_issuer(env))
    report, rc = partner_test(w.gw)
    text = json.dumps(report, indent=1)
    assert (rc, report["Verdict"]) == (1, "Fail"), text
    cert = report["Certificate"]
    assert cert is not None and cert["ValidForDomain"], text
    assert cert["NotAfter"] < now_utc().strftime("%Y-%m-%dT%H:%M:%SZ"), text
    sentence = f"The certificate of '{PARTNER}' expired on {cert['NotAfter']}."
    assert report["Problems"] and report["Problems"][0].startswith(sentence), \
        f"the first problem (failures first) should start with {sentence!r}:\n{text}"
    assert step(report, "Certificate")["Ok"] is False, text
    assert report["Methods"]["Outbound"] is None, text
    bounce = assert_not_delivered(env, w.alice, w.bob, wait=8)
    assert bounce is not None and bounce.error == "remote-server-not-found", \
        f"alice's message to a partner whose certificate expired was not bounced with remote-server-not-found: {bounce}"


def test_expired_partner_certificate_from_a_trusted_ca_is_described_as_chaining(env):
    """The admin reading the report of an expired partner certificate from the trusted test CA
    should be told the issuer is fine (only the date is wrong), not sent hunting for a CA
    problem."""
    w = gateway_world(env, tls="ca", partner_cert_issuer=expired_issuer(env))
    report, _ = partner_test(w.gw)
    text = json.dumps(report, indent=1)
    assert report["Certificate"]["Issuer"] == "O=fedgate e2e, CN=fedgate e2e test CA", text
    assert "chains to our trust anchors: yes" in step(report, "Certificate")["Detail"], text
    assert report["Certificate"]["Trusted"] is True, text


def test_partner_certificate_expiring_in_5_days_warns_and_federation_works(env):
    """A partner Prosody whose test-CA certificate expires in 5 days: Warning (exit 0) with the
    sentence "The certificate of 'partner.example' expires on <NotAfter> (in 4 day(s))." (whole
    days left, rounded down), SaslExternal still predicted and then used. (The Rust tests cover
    expired and expiring with fake peers; here both with a real Prosody.)"""
    expiring = env.ca.with_validity(now_utc() - datetime.timedelta(hours=1),
                                    now_utc() + datetime.timedelta(days=5))
    w = gateway_world(env, tls="ca", partner_cert_issuer=expiring)
    report, rc = partner_test(w.gw)
    text = json.dumps(report, indent=1)
    assert (rc, report["Verdict"]) == (0, "Warning"), text
    cert = report["Certificate"]
    sentence = re.compile(rf"The certificate of '{re.escape(PARTNER)}' expires on "
                          rf"{re.escape(cert['NotAfter'])} \(in [45] day\(s\)\)\.")
    assert [p for p in report["Problems"] if sentence.search(p)], \
        f"no problem matching {sentence.pattern!r}:\n{text}"
    assert len(report["Problems"]) == 1, f"the expiry should be the only problem:\n{text}"
    assert report["Methods"]["Outbound"] == "SaslExternal", text
    used = assert_predicted_methods_used(env, w, report)
    assert used == {"Outbound": "SaslExternal", "Inbound": "SaslExternal"}, used
