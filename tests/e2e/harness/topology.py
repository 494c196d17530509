"""The gateway topology of docs/config-contract.md, built from the fixtures:

  corp.example server 127.0.0.10  --hosts: partner domains -> 127.0.0.20-->  fedgate internal 127.0.0.20:5269
  fedgate external 127.0.0.21:5269 <--hosts: corp.example -> 127.0.0.21--  partner server 127.0.0.30
  fedgate -> partner via the partner record's -ProxyFqdn 127.0.0.30:5269 (and its own hosts file).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .client import Client
from .env import Env
from .fedgate import EXTERNAL_IP, INTERNAL_IP, Fedgate
from .util import addr

CORP, PARTNER = "corp.example", "partner.example"
CORP_IP, PARTNER_IP = addr(10), addr(30)
DNSMASQ_IP = addr(53)  # the internal side's resolver, when internal_routing="dnsmasq"
UNBOUND_IP = addr(54)  # the internal side's resolver, when internal_routing="unbound"
ALICE, BOB = f"alice@{CORP}", f"bob@{PARTNER}"
PASSWORD = "s3cret-pw"


@dataclass
class GatewayWorld:
    gw: Fedgate
    corp: object
    partner: object
    alice: Client
    bob: Client
    extra_clients: dict[str, Client] = field(default_factory=dict)


def gateway_world(env: Env, *, tls: str = "ca", internal_kind: str = "prosody",
                  partner_kind: str = "prosody", partner_tls: str | None = None,
                  partner_record: tuple[str, ...] | None = (), proxy: str | None = None,
                  partner_domains: tuple[str, ...] = (), extra_partner_users: tuple[str, ...] = (),
                  other_records: tuple[tuple[str, ...], ...] = (),
                  extra_corp_users: tuple[str, ...] = (),
                  management: tuple[tuple[str, ...], ...] = (),
                  gateway_hosts: bool = True, partner_s2s_port: int = 5269,
                  partner_direct_tls_port: int | None = None,
                  partner_modules: tuple[str, ...] = (),
                  settings: dict[str, int] | None = None,
                  limits: dict[str, int] | None = None,
                  partner_cert_issuer: object | None = None,
                  gateway_server_auth_only: bool = False,
                  partner_muc: tuple[str, ...] = (),
                  internal_routing: str = "hosts") -> GatewayWorld:
    """tls: "ca" (test CA everywhere: SASL EXTERNAL on both sides of the gateway, fedgate mints
    internal-side certificates from the CA) or "dialback" (self-signed, dialback).
    partner_tls: the partner server's mode ("ca", "dialback", "none" = no s2s TLS), default tls.
    partner_record: extra New-CsXmppAllowedPartner parameters for partner.example (PartnerType
    Federated, ProxyFqdn 127.0.0.30:5269 are always set); None = no record (unlisted partner).
    partner_domains: more domains served by the partner server (VirtualHosts on the same Prosody;
    routed to the gateway by the internal server). extra_partner_users: "name@domain" users there.
    other_records: more New-CsXmppAllowedPartner argument tuples (written before start).
    extra_corp_users: more users of corp.example ("carol"), each with a client in extra_clients
    (key "carol@corp.example"). management: more cmdlet argument tuples run before start.
    gateway_hosts=False: fedgate's hosts file does not map the partner domains (DNS only, see
    env.dns). partner_s2s_port: where the partner server listens for s2s.
    partner_direct_tls_port: a Direct TLS s2s port on the partner Prosody (XEP-0368).
    partner_modules: more modules on the partner Prosody (e.g. "e2e_readdress").
    partner_cert_issuer: another TestCA that issues the partner Prosody's own certificate (it
    still trusts the test CA): a partner whose certificate fedgate must not trust.
    Or `env.ca.with_validity(not_before, not_after)`: the test CA with these dates (a partner
    certificate that is expired or about to expire).
    gateway_server_auth_only: fedgate's hosted-domain certificates (tls="ca") carry the
    serverAuth purpose only.
    partner_muc: chat-room services (MUC components) on the partner Prosody, resolved like the
    partner's domains (list them in the partner record's AdditionalDomains).
    internal_routing: how the internal server finds the gateway for partner domains: "hosts" (its
    hosts file maps them to the internal listener), or as the README deploys it, from
    `fedgate internal-dns`: "dnsmasq" (a real dnsmasq at DNSMASQ_IP loads the generated file and is
    the internal server's only nameserver; ejabberd only), "dnsmasq-kept" (the same, but fedgate's
    [internal_dns] writes the file and restarts dnsmasq on every partner change), "unbound" (a real
    unbound at UNBOUND_IP includes `--format unbound`; ejabberd's nameserver, or Prosody's
    `unbound = { resolvconf = ... }`) or "prosody" (the generated hosts file as
    Prosody's `unbound = { hoststxt = ... }`). With both, the internal hosts file maps no partner."""
    partner_tls = partner_tls or tls
    all_partner_domains = [PARTNER, *partner_domains, *partner_muc]
    kept = None
    if internal_routing == "dnsmasq-kept":
        # fedgate's [internal_dns] writes dnsmasq's file and restarts it (a restart loop stands
        # in for systemd) whenever the partner list changes.
        from .dns import Dnsmasq
        kept = {"file": Dnsmasq.conf_path(env.dir, DNSMASQ_IP), "format": "dnsmasq",
                "reload_command": Dnsmasq.restart_command(env.dir, DNSMASQ_IP)}
        kept["file"].parent.mkdir(parents=True, exist_ok=True)
    gw = env.fedgate(tls=tls, hosts={d: PARTNER_IP for d in all_partner_domains} if gateway_hosts else {},
                     settings=settings, limits=limits, internal_ca=(tls == "ca"),
                     server_auth_only=gateway_server_auth_only, internal_dns=kept)
    gw.enable_xmpp_access_globally()
    if partner_record is not None:
        # proxy="" = no ProxyFqdn: fedgate resolves the partner itself (its hosts file).
        gw.allow_partner(PARTNER, *partner_record,
                         proxy=f"{PARTNER_IP}:{partner_s2s_port}" if proxy is None else proxy)
    for rec in other_records:
        gw.cli("New-CsXmppAllowedPartner", *rec)
    for cmd in management:
        gw.cli(*cmd)
    gw.start()

    internal_tls = "ca" if tls == "ca" else "dialback"
    starter = env.prosody if internal_kind == "prosody" else env.ejabberd
    internal_hosts, internal_kw = {d: INTERNAL_IP for d in all_partner_domains}, {}
    if internal_routing == "dnsmasq" and internal_kind == "ejabberd":
        internal_hosts = {}
        internal_kw["nameserver"] = env.dnsmasq(DNSMASQ_IP, gw.internal_dns("dnsmasq")).ip
    elif internal_routing == "unbound":
        internal_hosts = {}
        resolver = env.unbound(UNBOUND_IP, gw.internal_dns("unbound"))
        resolver.check()
        resolver.start()
        if internal_kind == "ejabberd":
            internal_kw["nameserver"] = resolver.ip
        else:
            # Prosody's own resolver asks it: unbound = { resolvconf = ... }, as the README says.
            resolv = env.dir / "prosody-resolv.conf"
            resolv.write_text(f"nameserver {resolver.ip}\n")
            internal_kw["unbound_resolvconf"] = resolv
    elif internal_routing == "dnsmasq-kept" and internal_kind == "ejabberd":
        internal_hosts = {}
        import time
        deadline = time.monotonic() + 5
        while not kept["file"].exists():
            assert time.monotonic() < deadline, f"fedgate did not write {kept['file']}\n{gw.diagnostics()}"
            time.sleep(0.05)
        resolver = env.dnsmasq(DNSMASQ_IP, None, supervised=True)
        internal_kw["nameserver"] = resolver.ip
    elif internal_routing == "prosody" and internal_kind == "prosody":
        internal_hosts = {}
        hosts_file = env.dir / "fedgate-partners.hosts"
        hosts_file.write_text(gw.internal_dns("prosody"))
        internal_kw["unbound_hoststxt"] = hosts_file
    elif internal_routing != "hosts":
        raise ValueError(f"internal_routing={internal_routing!r} is not implemented for {internal_kind}")
    corp = starter(CORP, CORP_IP, hosts=internal_hosts, tls=internal_tls,
                   users={"alice": PASSWORD, **{u: PASSWORD for u in extra_corp_users}}, **internal_kw)
    users = {"bob": PASSWORD, **{u: PASSWORD for u in extra_partner_users}}
    if partner_kind == "prosody":
        partner = env.prosody(PARTNER, PARTNER_IP, hosts={CORP: EXTERNAL_IP}, tls=partner_tls,
                              users=users, extra_domains=tuple(partner_domains),
                              muc_components=tuple(partner_muc),
                              s2s_port=partner_s2s_port,
                              s2s_direct_tls_port=partner_direct_tls_port,
                              extra_modules=partner_modules,
                              start=partner_cert_issuer is None)
        if partner_cert_issuer is not None:
            partner.cert = partner_cert_issuer.issue(f"prosody-{PARTNER}-other-ca", *partner.domains)
            partner._write_config()
            partner.start()
    else:
        if partner_domains or partner_modules or partner_muc:
            raise ValueError("extra partner domains and modules are only implemented for Prosody")
        partner = env.ejabberd(PARTNER, PARTNER_IP, hosts={CORP: EXTERNAL_IP}, tls=partner_tls,
                               users=users, s2s_port=partner_s2s_port)
    alice = env.client(ALICE, PASSWORD, CORP_IP)
    bob = env.client(BOB, PASSWORD, PARTNER_IP)
    extra = {u: env.client(u, PASSWORD, PARTNER_IP) for u in extra_partner_users}
    extra.update({f"{u}@{CORP}": env.client(f"{u}@{CORP}", PASSWORD, CORP_IP) for u in extra_corp_users})
    return GatewayWorld(gw, corp, partner, alice, bob, extra)


def assert_message(env: Env, sender: Client, to: str, receiver: Client, timeout: float = 15) -> str:
    body = env.body(sender.jid.split("@")[0])
    sender.send_message(to, body)
    got = receiver.wait_message(frm=sender.jid, body=body, timeout=timeout)
    assert got is not None, f"{to} did not receive {body!r} from {sender.jid} within {timeout}s"
    return body


def assert_exchange(env: Env, a: Client, b: Client, timeout: float = 15) -> None:
    """a -> b and b -> a: each body arrives at the other client."""
    assert_message(env, a, b.jid, b, timeout)
    assert_message(env, b, a.jid, a, timeout)


def assert_not_delivered(env: Env, sender: Client, receiver: Client, wait: float = 5) -> object:
    """sender -> receiver must not arrive within `wait` s. Returns the bounce the sender got (or
    None: silently dropped). Once the sender has its bounce, half a second more is enough."""
    import time
    body = env.body("refused")
    mark = len(sender.received)
    sender.send_message(receiver.jid, body)
    deadline = time.monotonic() + wait
    bounce = None
    while time.monotonic() < deadline:
        got = receiver.wait_message(frm=sender.jid, body=body, timeout=0.25)
        assert got is None, f"{receiver.jid} received {body!r} from {sender.jid}: it should be refused"
        if bounce is None:
            bounce = sender.wait_for(lambda r: r.type == "error", timeout=0, since=mark)
            if bounce is not None:
                deadline = min(deadline, time.monotonic() + 0.5)
    return bounce


def assert_gateway_logged(gw: Fedgate, *words: str, timeout: float = 3) -> str:
    """Some fedgate log line contains every word (case-insensitive): the reason of a refusal, the
    method used... Returns the line."""
    import re
    pattern = "".join(f"(?=.*{re.escape(w)})" for w in words)
    found = gw.wait_log(pattern, timeout=timeout)
    assert found, f"no fedgate log line mentions all of {words}\n{gw.diagnostics()}"
    return found[0]


def assert_metrics_mention(gw: Fedgate, *alternatives: str) -> str:
    """The Prometheus /metrics text has a (non-comment) sample line mentioning one of the words."""
    text = gw.metrics()
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    for ln in lines:
        if any(a.lower() in ln.lower() for a in alternatives):
            return ln
    raise AssertionError(f"/metrics has no sample mentioning any of {alternatives}:\n{text[:3000]}")


def refusal_count(gw: Fedgate, side: str, reason: str) -> int:
    """fedgate_refusals_total{side, reason} from /metrics over HTTP (0 when absent)."""
    import re
    m = re.search(rf'^fedgate_refusals_total{{side="{side}",reason="{reason}"}} (\d+)$', gw.metrics(), re.M)
    return int(m.group(1)) if m else 0


def assert_refused(gw: Fedgate, side: str, reason: str, timeout: float = 5) -> int:
    """/metrics counts at least one refusal with this exact side and reason (polled: the count
    is taken as the refusal is logged)."""
    import time
    deadline = time.monotonic() + timeout
    while True:
        n = refusal_count(gw, side, reason)
        if n > 0:
            return n
        if time.monotonic() > deadline:
            raise AssertionError(f"/metrics counts no {side}/{reason} refusal:\n{gw.metrics()}")
        time.sleep(0.1)


def wait_policy_refresh(gw: Fedgate, before: int, timeout: float = 5) -> None:
    """Wait until fedgate logged a policy refresh after `before` = the number of such lines
    counted before the change (the gateway polls the store every 250 ms)."""
    import time
    deadline = time.monotonic() + timeout
    while len(gw.log_search(r"policy refreshed")) <= before:
        assert time.monotonic() < deadline, f"the change did not reach the gateway\n{gw.diagnostics()}"
        time.sleep(0.05)


def stream_error_seen(server, condition: str, timeout: float = 2.0, since: int = 0) -> list[str]:
    """Prosody logs a received stream error as 'Session closed by remote with error: <cond>'
    (only log lines after `since` = server.log_mark() count)."""
    return server.wait_log(rf"closed by remote with error: {condition}", timeout=timeout, since=since)
