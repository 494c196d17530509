"""Issue 14, item 2: `Test-CsXmppGatewayConfiguration` (`fedgate gateway test`) run by the CLI, as
an admin on the gateway's host runs it, against the running gateway of the e2e world: the CLI
resolves through the host's /etc/resolv.conf, i.e. the test's DNS stub (the CLI runs in a mount
namespace with the gateway's /etc/hosts and /etc/resolv.conf: `Fedgate.cli_on_gateway_host`).

- The stub's `_xmpp-server._tcp.corp.example` SRV record points at the gateway's external
  listener: Ok, the listener, its certificate (test CA, in `[tls] ca_files`) and the trust anchor
  described.
- The SRV record changed to point at another address: Fail (exit 1) with "The SRV record for
  corp.example points at <there>, but this gateway listens on <external listener>."
- The gateway's certificate has the serverAuth purpose only: Warning, saying partners that
  authenticate it by SASL EXTERNAL refuse it.
"""
import json

import pytest

from harness.fedgate import EXTERNAL_IP, S2S_PORT
from harness.topology import CORP, gateway_world
from harness.util import addr

pytestmark = pytest.mark.gateway

SRV = f"_xmpp-server._tcp.{CORP}"
GW_HOST = f"gw.{CORP}"
ELSEWHERE_HOST, ELSEWHERE_IP = f"old-gw.{CORP}", addr(99)   # nothing listens there
LISTENER = f"{EXTERNAL_IP}:{S2S_PORT}"


def publish(env, host: str, ip: str) -> None:
    """The hosted domain's SRV record -> host:5269, host's A record -> ip (TTL 0)."""
    env.dns.clear_srv(SRV)
    env.dns.add_srv(SRV, host, S2S_PORT, ttl=0)
    env.dns.a.pop(host, None)
    env.dns.add_a(host, ip, ttl=0)


def gateway_test(gw, *args: str):
    """`fedgate --config <file> --output json gateway test [args]` on the gateway's host: the JSON
    report and the exit code."""
    r = gw.cli_on_gateway_host("gateway", "test", *args, check=False, json=True)
    try:
        return json.loads(r.stdout), r.returncode
    except json.JSONDecodeError:
        raise AssertionError(f"not JSON (rc={r.returncode}):\n{r.stdout}\n{r.stderr}")


def only_domain(report):
    assert [d["Domain"] for d in report["Domains"]] == [CORP], json.dumps(report, indent=1)
    return report["Domains"][0]


def step(domain_report, name):
    found = [s for s in domain_report["Steps"] if s["Step"] == name]
    assert found, f"no step {name}: {json.dumps(domain_report, indent=1)}"
    return found[0]


def test_srv_pointing_at_the_gateway_is_ok_and_pointing_elsewhere_fails(env):
    w = gateway_world(env, tls="ca")
    publish(env, GW_HOST, EXTERNAL_IP)
    mark = len(env.dns.queries)
    report, rc = gateway_test(w.gw, CORP)
    text = json.dumps(report, indent=1)
    # The CLI asked the stub (the gateway host's resolver), not the machine's resolver.
    assert (SRV, 33) in env.dns.queries[mark:], f"the CLI did not ask the DNS stub: {env.dns.diagnostics()}"
    d = only_domain(report)
    assert (rc, report["Verdict"], d["Verdict"], d["Problems"]) == (0, "Ok", "Ok", []), (
        "Ok expected: the SRV record points at the external listener, which opens a stream with "
        "STARTTLS and presents the test CA's certificate for corp.example (the CA is the gateway's "
        "[tls] ca_files, serverAuth and clientAuth, 30 days left: no 14-day expiry warning)\n" + text)
    assert report["Listeners"] == [f"{LISTENER} (STARTTLS)"], text
    assert step(d, "Resolve")["Ok"] is True and GW_HOST in step(d, "Resolve")["Detail"], text
    points = step(d, "Points here")
    assert points["Ok"] is True and f"{LISTENER} (STARTTLS): this gateway's listener" in points["Detail"], text
    assert step(d, "STARTTLS")["Ok"] is True, text
    cert = d["Certificate"]
    assert CORP in cert["DnsNames"] and cert["Trusted"] and cert["ValidForDomain"], text
    assert cert["Issuer"] == "O=fedgate e2e, CN=fedgate e2e test CA", text
    assert d["TrustAnchor"] and str(env.ca.ca_file) in d["TrustAnchor"], \
        f"TrustAnchor should name the [tls] ca_files file {env.ca.ca_file}:\n{text}"

    # The record is changed to point at another address (a stale record, another host).
    publish(env, ELSEWHERE_HOST, ELSEWHERE_IP)
    report, rc = gateway_test(w.gw, CORP)
    text = json.dumps(report, indent=1)
    d = only_domain(report)
    assert (rc, report["Verdict"], d["Verdict"]) == (1, "Fail", "Fail"), text
    sentence = (f"The SRV record for {CORP} points at {ELSEWHERE_IP}:{S2S_PORT}, "
                f"but this gateway listens on {LISTENER}.")
    assert sentence in d["Problems"], f"no problem {sentence!r}:\n{text}"
    assert step(d, "Points here")["Ok"] is False, text
    # The listener itself is still fine: only the record is wrong.
    assert d["Problems"] == [sentence], text
    assert step(d, "STARTTLS")["Ok"] is True, text
    # The test's streams name no `from`: nothing was refused or counted against a partner.
    refusals = [ln for ln in w.gw.metrics().splitlines()
                if ln.startswith("fedgate_refusals_total{") and not ln.endswith(" 0")]
    assert refusals == [], f"the gateway test's streams were counted as refusals: {refusals}"


def test_server_auth_only_certificate_is_a_warning(env):
    w = gateway_world(env, tls="ca", gateway_server_auth_only=True)
    publish(env, GW_HOST, EXTERNAL_IP)
    report, rc = gateway_test(w.gw)
    text = json.dumps(report, indent=1)
    d = only_domain(report)
    assert (rc, report["Verdict"], d["Verdict"]) == (0, "Warning", "Warning"), (
        "Warning expected: everything reaches the gateway, but its certificate has serverAuth "
        "without clientAuth (partners authenticating our outbound streams by SASL EXTERNAL "
        "refuse it)\n" + text)
    assert d["Certificate"]["ExtendedKeyUsage"] == ["serverAuth"], text
    assert len(d["Problems"]) == 1 and d["Problems"][0].startswith(
        f"The certificate this gateway presents for '{CORP}' has the serverAuth purpose but not "
        "clientAuth"), text
