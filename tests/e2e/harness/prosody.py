"""A real Prosody instance (Debian package) with its own config, data dir, pid file, addresses and
/etc/hosts (per-process mount namespace)."""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

from .certs import CertFiles, TestCA, self_signed
from .util import (ServerLog, spawn, HarnessError, check_loopback, ensure_free, netns_wrap, require_binary, stop_process_group,
                   tail, wait_port, write_hosts, write_resolv)

# Test-only Prosody modules (extra_modules=...).
PLUGINS = Path(__file__).resolve().parent / "prosody_modules"
INSTALL_HINT = "apt-get install prosody lua-unbound lua-sec (run .ci/install-deps.sh as root)"


def lua_str(s: str | Path) -> str:
    return '"' + str(s).replace("\\", "\\\\").replace('"', '\\"') + '"'


class Prosody(ServerLog):
    """tls="dialback": self-signed certificate, s2s_secure_auth = false (Prosody falls back to
    dialback). tls="ca": certificate from the shared TestCA and the CA in ssl.cafile, so SASL
    EXTERNAL (XEP-0178) succeeds between servers of the same CA. tls="none": no TLS at all on s2s
    (s2s_allow_encryption = false; cleartext dialback only) — clients still use STARTTLS.
    extra_domains: more VirtualHosts on the same server (users "name@domain" in `users`).
    s2s_require_encryption: None = True for "ca", False for "dialback" (so a cleartext dialback peer
    such as a TLS-NotSupported partner is accepted).
    extra_modules: more modules to enable, from Prosody's own or harness/prosody_modules/ (e.g.
    "e2e_readdress", which sends stanzas with the raw addresses a test gives).
    muc_components: chat-room services on the same server (`Component "<domain>" "muc"` with
    `muc_room_locking = false`, so a room is usable as soon as it is joined); the certificate
    covers them too."""

    kind = "prosody"

    def __init__(self, workdir: Path, domain: str, ip: str, hosts: dict[str, str] | None = None,
                 tls: str = "dialback", ca: TestCA | None = None, users: dict[str, str] | None = None,
                 s2s_require_encryption: bool | None = None, extra_config: str = "",
                 s2s_port: int = 5269, c2s_port: int = 5222, log_level: str = "debug",
                 extra_domains: list[str] | tuple[str, ...] = (),
                 s2s_direct_tls_port: int | None = None, extra_modules: tuple[str, ...] = (),
                 muc_components: tuple[str, ...] = (), unbound_hoststxt: Path | None = None,
                 unbound_resolvconf: Path | None = None):
        check_loopback(ip)
        if tls not in ("dialback", "ca", "none"):
            raise ValueError(f"tls must be 'dialback', 'ca' or 'none', not {tls!r}")
        if tls == "ca" and ca is None:
            raise ValueError("tls='ca' needs the shared TestCA (ca=...)")
        self.prosody = require_binary("prosody", INSTALL_HINT)
        self.prosodyctl = require_binary("prosodyctl", INSTALL_HINT)
        self.domain, self.ip, self.tls, self.ca = domain, ip, tls, ca
        self.domains = [domain, *extra_domains]
        self.muc_components = tuple(muc_components)
        self.s2s_port, self.c2s_port = s2s_port, c2s_port
        # Direct TLS s2s (XEP-0368), as a `_xmpps-server` SRV record would point to.
        self.s2s_direct_tls_port = s2s_direct_tls_port
        self.hosts = dict(hosts or {})
        self.users = dict(users or {})
        self.s2s_require_encryption = (tls == "ca") if s2s_require_encryption is None else s2s_require_encryption
        self.extra_config = extra_config
        self.log_level = log_level
        self.extra_modules = tuple(extra_modules)
        # A hosts file as the only unbound option (`fedgate internal-dns --format prosody`, as the
        # README deploys it) instead of the harness's hosts file + static zone.
        self.unbound_hoststxt = unbound_hoststxt
        # Or a resolv.conf naming a local resolver as the only unbound option (the README's
        # `unbound = { resolvconf = ... }`, for wildcard partners).
        self.unbound_resolvconf = unbound_resolvconf
        self.dir = workdir / f"prosody-{domain}-{ip}"
        self.dir.mkdir(parents=True)
        self.data = self.dir / "data"
        self.data.mkdir()
        self.config = self.dir / "prosody.cfg.lua"
        self.log = self.dir / "prosody.log"
        self.console = self.dir / "console.log"
        self.pidfile = self.dir / "prosody.pid"
        self.hosts_file = write_hosts(self.dir / "hosts", self.hosts)
        self.resolv_file = write_resolv(self.dir / "resolv.conf")
        self.proc: subprocess.Popen | None = None
        names = [*self.domains, *self.muc_components]
        if tls == "ca":
            self.cert: CertFiles = ca.issue(f"prosody-{domain}", *names)
        else:
            self.cert = self_signed(self.dir / "tls", domain, *names)
        self._write_config()

    def _write_config(self) -> None:
        ssl = [f"certificate = {lua_str(self.cert.cert)}", f"key = {lua_str(self.cert.key)}"]
        if self.tls == "ca":
            ssl.append(f"cafile = {lua_str(self.ca.ca_file)}")
        zones = sorted({name.rsplit(".", 1)[-1]
                        for name in [*self.domains, *self.muc_components, *self.hosts]} - {"localhost"})
        # A static local-zone for the TLD of the test domains: unbound answers A from the hosts
        # file and SRV with NXDOMAIN at once, never asking a nameserver. The option value must be
        # ONE string: a Lua table there makes Prosody 0.12 (lua-unbound 1.0) segfault at start.
        if len(zones) > 1:
            raise HarnessError(f"all test domains must share one TLD (got {zones})")
        zone_opt = f'"{zones[0]}. static"' if zones else '"test. static"'
        unbound = (f"unbound = {{ hoststxt = {lua_str(self.unbound_hoststxt)} }}" if self.unbound_hoststxt
                   else f"unbound = {{ resolvconf = {lua_str(self.unbound_resolvconf)} }}" if self.unbound_resolvconf
                   else f'unbound = {{ hoststxt = true, options = {{ ["local-zone:"] = {zone_opt} }} }}')
        cfg = f"""-- generated by tests/e2e/harness/prosody.py
pidfile = {lua_str(self.pidfile)}
data_path = {lua_str(self.data)}
run_as_root = true
log = {{ {self.log_level} = {lua_str(self.log)} }}
interfaces = {{ {lua_str(self.ip)} }}
local_interfaces = {{ {lua_str(self.ip)} }}
c2s_ports = {{ {self.c2s_port} }}
s2s_ports = {{ {self.s2s_port} }}
c2s_direct_tls_ports = {{}}
s2s_direct_tls_ports = {{ {self.s2s_direct_tls_port or ""} }}
component_ports = {{}}
http_ports = {{}}
https_ports = {{}}
admin_socket = {lua_str(self.dir / "admin.sock")}
{f"plugin_paths = {{ {lua_str(PLUGINS)} }}" if self.extra_modules else ""}
modules_enabled = {{ "roster"; "saslauth"; "tls"; "dialback"; "disco"; "ping"; "posix"; "presence"; "message"; "iq"{"".join(f"; {lua_str(m)}" for m in self.extra_modules)} }}
modules_disabled = {{ "offline"; "c2s_timeout" }}
authentication = "internal_hashed"
storage = "internal"
c2s_require_encryption = true
s2s_require_encryption = {str(self.s2s_require_encryption).lower()}
s2s_secure_auth = {str(self.tls == "ca").lower()}
s2s_allow_encryption = {str(self.tls != "none").lower()}
s2s_timeout = 10
{unbound}
ssl = {{ {", ".join(ssl)} }}
{self.extra_config}
"""
        for d in self.domains:
            cfg += f"""
VirtualHost {lua_str(d)}
    ssl = {{ {", ".join(ssl)} }}
"""
        for c in self.muc_components:
            cfg += f"""
Component {lua_str(c)} "muc"
    muc_room_locking = false
    ssl = {{ {", ".join(ssl)} }}
"""
        self.config.write_text(cfg)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, timeout: float = 20.0) -> "Prosody":
        for port in (self.s2s_port, self.c2s_port):
            ensure_free(self.ip, port, repr(self))
        argv = netns_wrap([self.prosody, "--config", str(self.config), "-F"], self.hosts_file,
                          self.resolv_file)
        with open(self.console, "ab") as out:
            self.proc = spawn(argv, stdout=out, stderr=subprocess.STDOUT, cwd=self.dir)
        what = f"prosody {self.domain}@{self.ip}"
        wait_port(self.ip, self.s2s_port, timeout, self.proc, what, self.console)
        wait_port(self.ip, self.c2s_port, timeout, self.proc, what, self.console)
        for user, password in self.users.items():
            self.register(user, password)
        time.sleep(0.2)
        if self.proc.poll() is not None:
            raise HarnessError(f"{what} exited with status {self.proc.returncode} after start\n"
                               f"{self.diagnostics()}")
        return self

    def register(self, user: str, password: str) -> None:
        """user: "name" (on the main domain) or "name@domain" (one of extra_domains)."""
        self.users[user] = password
        name, _, domain = user.partition("@")
        domain = domain or self.domain
        r = subprocess.run([self.prosodyctl, "--config", str(self.config), "register", name,
                            domain, password], capture_output=True, text=True, timeout=30,
                           cwd=self.dir)
        if r.returncode != 0:
            raise HarnessError(f"prosodyctl register {name}@{domain} failed ({r.returncode}):\n"
                               f"{r.stdout}\n{r.stderr}")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process_group(self.proc, grace=10)
            self.proc = None

    # -- inspection --------------------------------------------------------------------------
    def diagnostics(self) -> str:
        return tail(self.console, 20) + "\n" + tail(self.log, 80)

    def __repr__(self) -> str:
        return f"Prosody({self.domain}@{self.ip}, tls={self.tls})"
