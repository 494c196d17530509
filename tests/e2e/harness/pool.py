"""Two fedgate nodes on one PostgreSQL store (issue 13), between real Prosody servers:

  alice --c2s--> corp.example Prosody 10   --hosts: partner.example -> the internal listener of
                                              node A (20) or node B (24), `internal_via`
  node A: internal 20, external 21, metrics/admin 22      } same hosted domain, same certificate,
  node B: internal 24, external 25, metrics/admin 26      } same store = postgres://...@40:5432
  PostgreSQL 40:5432 (harness/postgres.py)
  bob --c2s--> partner.example Prosody 30  --DNS (the stub): _xmpp-server._tcp.corp.example SRV
                                              10 gw-a.corp.example:5269 (-> 21) and
                                              20 gw-b.corp.example:5269 (-> 25) by default
  both nodes reach partner.example through the partner record's ProxyFqdn 30:5269.

The partner Prosody has no static DNS zone: it asks the stub for the SRV record, as a real partner
would, so it prefers the lower priority target and fails over to the other (RFC 6120 3.2.1).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .client import Client
from .env import Env
from .fedgate import Fedgate
from .postgres import Postgres
from .topology import ALICE, BOB, CORP, CORP_IP, PARTNER, PARTNER_IP, PASSWORD
from .util import addr

NODE_IPS = {"a": (addr(20), addr(21), addr(22)), "b": (addr(24), addr(25), addr(26))}
PG_IP = addr(40)
SRV_NAME = f"_xmpp-server._tcp.{CORP}"
SRV_TARGETS = {"a": f"gw-a.{CORP}", "b": f"gw-b.{CORP}"}


@dataclass
class PoolWorld:
    pg: Postgres
    a: Fedgate
    b: Fedgate
    corp: object
    partner: object
    alice: Client
    bob: Client
    extra_clients: dict = field(default_factory=dict)

    def node(self, name: str) -> Fedgate:
        return {"a": self.a, "b": self.b}[name]


def pool_node(env: Env, name: str, pg: Postgres, certificates: dict | None = None,
              admin: bool = False, partner_domains: tuple[str, ...] = ()) -> Fedgate:
    """One gateway node of the pool: its own listeners, the shared store and certificate."""
    internal_ip, external_ip, metrics_ip = NODE_IPS[name]
    return env.fedgate(tls="ca", name=f"fedgate-{name}", node_name=name, store=pg.url,
                       store_password_file=pg.password_file, internal_ip=internal_ip,
                       external_ip=external_ip, metrics_ip=metrics_ip, internal_ca=True,
                       hosts={d: PARTNER_IP for d in (PARTNER, *partner_domains)}, certificates=certificates, admin=admin)


def pool_world(env: Env, *, partner_listed: bool = True, internal_via: str = "b",
               srv_priorities: dict[str, int] | None = None, admin: bool = False,
               partner_extra_config: str = "", partner_record: tuple[str, ...] = (),
               partner_domains: tuple[str, ...] = (),
               extra_partner_users: tuple[str, ...] = ()) -> PoolWorld:
    """partner_listed: New-CsXmppAllowedPartner partner.example (Federated, ProxyFqdn) before the
    nodes start. internal_via: the node the corp Prosody sends partner traffic to ("a"/"b").
    srv_priorities: the SRV priority of each node's target (default a=10, b=20: the partner prefers
    A; RFC 2782 picks at random within one priority, so two priorities make the first stream's
    node certain; the records have TTL 0, so `set_srv_priorities` takes effect at the partner's next
    connection). admin: both nodes get an admin listener (plain HTTP, metrics_ip:8443).
    partner_record: more New-CsXmppAllowedPartner parameters. partner_domains: more VirtualHosts
    on the partner Prosody (one s2s stream each); extra_partner_users: "name@domain" users there,
    each with a client in `extra_clients`."""
    srv_priorities = srv_priorities or {"a": 10, "b": 20}
    pg = env.postgres(PG_IP)
    all_partner_domains = [PARTNER, *partner_domains]
    a = pool_node(env, "a", pg, admin=admin, partner_domains=partner_domains)
    b = pool_node(env, "b", pg, certificates=a.certificates, admin=admin, partner_domains=partner_domains)
    a.enable_xmpp_access_globally()
    if partner_listed:
        a.allow_partner(PARTNER, *partner_record, proxy=f"{PARTNER_IP}:5269")
    a.start()
    b.start()
    set_srv_priorities(env, srv_priorities)
    for name in NODE_IPS:
        env.dns.add_a(SRV_TARGETS[name], NODE_IPS[name][1], ttl=0)
    corp = env.prosody(CORP, CORP_IP, hosts={d: NODE_IPS[internal_via][0] for d in all_partner_domains},
                       tls="ca",
                       users={"alice": PASSWORD})
    # No static zone, no hosts entry for corp.example: libunbound asks the DNS stub (resolv.conf).
    partner_hosts = env.dir / "partner-unbound.hosts"
    partner_hosts.write_text("127.0.0.1 localhost\n")
    partner = env.prosody(PARTNER, PARTNER_IP, tls="ca",
                          users={"bob": PASSWORD, **{u: PASSWORD for u in extra_partner_users}},
                          extra_domains=tuple(partner_domains),
                          unbound_hoststxt=partner_hosts, extra_config=partner_extra_config)
    alice = env.client(ALICE, PASSWORD, CORP_IP)
    bob = env.client(BOB, PASSWORD, PARTNER_IP)
    extra = {u: env.client(u, PASSWORD, PARTNER_IP) for u in extra_partner_users}
    return PoolWorld(pg, a, b, corp, partner, alice, bob, extra)


def set_srv_priorities(env: Env, priorities: dict[str, int]) -> None:
    """The SRV record of corp.example: one target per node named, with these priorities (TTL 0)."""
    env.dns.clear_srv(SRV_NAME)
    for name, prio in priorities.items():
        env.dns.add_srv(SRV_NAME, SRV_TARGETS[name], 5269, priority=prio, weight=0, ttl=0)
