"""One test's world: everything it starts is stopped at the end, even on failure."""
from __future__ import annotations

import threading
import uuid
from pathlib import Path

from .certs import TestCA
from .client import Client
from .dns import Bind, Dnsmasq, DnsStub, Unbound
from .ejabberd import Ejabberd
from .fedgate import Fedgate
from .postgres import Postgres
from .prosody import Prosody
from .tcpproxy import TcpProxy
from .util import DNS_IP


class Env:
    def __init__(self, workdir: Path):
        self.dir = workdir
        self._ca: TestCA | None = None
        self.servers: list = []
        self.clients: list[Client] = []
        self.gateways: list[Fedgate] = []
        # Every server's resolv.conf points at this stub: add_a/add_srv for DNS-based tests.
        self.dns = DnsStub(DNS_IP)
        self.servers.append(self.dns)

    @property
    def ca(self) -> TestCA:
        if self._ca is None:
            self._ca = TestCA(self.dir / "ca")
        return self._ca

    def prosody(self, domain: str, ip: str, hosts: dict[str, str] | None = None, tls: str = "dialback",
                users: dict[str, str] | None = None, start: bool = True, **kw) -> Prosody:
        p = Prosody(self.dir, domain, ip, hosts=hosts, tls=tls, users=users,
                    ca=self.ca if tls == "ca" else None, **kw)
        self.servers.append(p)
        return p.start() if start else p

    def ejabberd(self, domain: str, ip: str, hosts: dict[str, str] | None = None, tls: str = "dialback",
                 users: dict[str, str] | None = None, start: bool = True, **kw) -> Ejabberd:
        e = Ejabberd(self.dir, domain, ip, hosts=hosts, tls=tls, users=users,
                     ca=self.ca if tls == "ca" else None, **kw)
        self.servers.append(e)
        return e.start() if start else e

    def dnsmasq(self, ip: str, conf_text: str | None, supervised: bool = False) -> Dnsmasq:
        """A real dnsmasq on ip:53 with this configuration (None: the file is already there),
        forwarding the rest to the stub."""
        d = Dnsmasq(self.dir, ip, conf_text, upstream=DNS_IP, supervised=supervised)
        self.servers.append(d)
        return d.start()

    def unbound(self, ip: str, generated: str) -> Unbound:
        """A real unbound on ip:53 that includes `generated` (`--format unbound`) and forwards the
        rest to the stub; not started (check() first, then start())."""
        u = Unbound(self.dir, ip, generated, upstream=DNS_IP)
        self.servers.append(u)
        return u

    def bind(self, generated: str, response_policy: str, zone: str) -> Bind:
        """A real named on 127.0.0.1 (a free port) with `generated` (`--format bind`) as its
        response-policy zone (the statements as its comments give them), forwarding the rest to
        the stub; not started."""
        b = Bind(self.dir, generated, upstream=DNS_IP, response_policy=response_policy, zone=zone)
        self.servers.append(b)
        return b

    def client(self, jid: str, password: str, server_ip: str, **kw) -> Client:
        c = Client(jid, password, server_ip, **kw)
        self.clients.append(c)
        return c

    def fedgate(self, tls: str = "dialback", **kw) -> Fedgate:
        g = Fedgate(self.dir, ca=self.ca if tls == "ca" else None, **kw)
        self.gateways.append(g)
        return g

    def postgres(self, ip: str, port: int = 5432, **kw) -> Postgres:
        """A PostgreSQL server on ip:port with a role and database for fedgate (`.url`,
        `.password_file`); removed at the end."""
        pg = Postgres(self.dir, ip, port, **kw)
        self.servers.append(pg)
        return pg.start()

    def tcpproxy(self, listen: tuple[str, int], target: tuple[str, int]) -> TcpProxy:
        p = TcpProxy(listen, target)
        self.servers.append(p)
        return p

    @staticmethod
    def body(tag: str = "msg") -> str:
        return f"{tag}-{uuid.uuid4().hex[:12]}"

    def diagnostics(self) -> str:
        parts = []
        for s in [*self.gateways, *self.servers]:
            parts.append(f"===== {s!r} =====\n{s.diagnostics()}")
        for c in self.clients:
            parts.append(f"===== {c!r} received =====\n" +
                         "\n".join(r.xml for r in c.received[-20:]))
        return "\n".join(parts)

    def close(self) -> list[str]:
        """Stop everything (clients, then gateways, then servers in parallel). Returns errors."""
        errors: list[str] = []
        for c in self.clients:
            try:
                c.close()
            except Exception as e:
                errors.append(f"{c!r}: {e}")
        for g in self.gateways:
            try:
                g.stop()
            except Exception as e:
                errors.append(f"{g!r}: {e}")
        threads = []
        for s in self.servers:
            def stop(s=s):
                try:
                    # teardown(): stop and remove (Postgres, whose stop() is restartable)
                    (getattr(s, "teardown", None) or s.stop)()
                except Exception as e:
                    errors.append(f"{s!r}: {e}")
            t = threading.Thread(target=stop)
            t.start()
            threads.append(t)
        for t in threads:
            t.join(timeout=30)
        return errors
