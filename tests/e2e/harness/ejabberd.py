"""A real ejabberd node (Debian package) with its own config, spool, node name, Erlang distribution
port, HOME/cookie and /etc/hosts (per-process mount namespace)."""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from .certs import CertFiles, TestCA, self_signed
from .util import (ServerLog, spawn, DNS_IP, HarnessError, check_loopback, ensure_free, netns_wrap, require_binary, stop_process_group,
                   tail, wait_port, write_hosts, write_resolv)

INSTALL_HINT = "apt-get install ejabberd (run .ci/install-deps.sh as root)"
EJABBERDCTL = "/usr/sbin/ejabberdctl"


def yaml_str(s: str | Path) -> str:
    return '"' + str(s).replace("\\", "\\\\").replace('"', '\\"') + '"'


class Ejabberd(ServerLog):
    """tls="dialback": self-signed certificate, dialback authentication (mod_s2s_dialback), STARTTLS
    optional. tls="ca": certificate from the shared TestCA and the CA in ca_file, so SASL EXTERNAL
    works with peers of the same CA. tls="none": no s2s STARTTLS at all (s2s_use_starttls: false),
    cleartext dialback only."""

    kind = "ejabberd"

    def __init__(self, workdir: Path, domain: str, ip: str, hosts: dict[str, str] | None = None,
                 tls: str = "dialback", ca: TestCA | None = None, users: dict[str, str] | None = None,
                 s2s_use_starttls: str | None = None, s2s_port: int = 5269, c2s_port: int = 5222,
                 dist_port: int | None = None, loglevel: str = "info", nameserver: str | None = None):
        check_loopback(ip)
        if tls not in ("dialback", "ca", "none"):
            raise ValueError(f"tls must be 'dialback', 'ca' or 'none', not {tls!r}")
        if tls == "ca" and ca is None:
            raise ValueError("tls='ca' needs the shared TestCA (ca=...)")
        if not os.access(EJABBERDCTL, os.X_OK):
            raise HarnessError(f"{EJABBERDCTL} not found: {INSTALL_HINT}")
        require_binary("erl", INSTALL_HINT)
        self.domain, self.ip, self.tls, self.ca = domain, ip, tls, ca
        self.s2s_port, self.c2s_port = s2s_port, c2s_port
        self.hosts = dict(hosts or {})
        self.users = dict(users or {})
        self.s2s_use_starttls = s2s_use_starttls or {"ca": "required", "dialback": "optional",
                                                     "none": "false"}[tls]
        self.loglevel = loglevel
        octets = ip.split(".")
        tag = "_".join(octets[1:])
        # Erlang distribution: no epmd; each node listens on its own port on 127.0.0.1.
        # Below Linux's ephemeral range (32768-60999), so no outgoing connection can hold it, and
        # distinct per address (subnet included), so concurrent runs on other subnets do not clash.
        self.dist_port = dist_port or 20000 + (int(octets[2]) * 256 + int(octets[3])) % 12000
        self.node = f"ejabberd_e2e_{tag}@localhost"
        self.dir = workdir / f"ejabberd-{domain}-{ip}"
        self.dir.mkdir(parents=True)
        for sub in ("home", "spool", "logs", "conf"):
            (self.dir / sub).mkdir()
        self.hosts_file = write_hosts(self.dir / "hosts", self.hosts)
        # nameserver: the DNS server ejabberd asks (default: the test's DnsStub), e.g. a Dnsmasq.
        self.nameserver = nameserver or DNS_IP
        self.resolv_file = write_resolv(self.dir / "resolv.conf", self.nameserver)
        if tls == "ca":
            self.cert: CertFiles = ca.issue(f"ejabberd-{domain}", domain)
        else:
            self.cert = self_signed(self.dir / "tls", domain, domain)
        self.config = self.dir / "conf" / "ejabberd.yml"
        self.ctl_config = self.dir / "conf" / "ejabberdctl.cfg"
        self.log = self.dir / "logs" / "ejabberd.log"
        self.console = self.dir / "console.log"
        self.ctl = self.dir / "ejabberdctl"
        self.proc: subprocess.Popen | None = None
        self._write_files()

    def _write_files(self) -> None:
        # A copy of ejabberdctl that does not switch to the ejabberd user (other HOME and cookie).
        src = Path(EJABBERDCTL).read_text()
        patched, n = re.subn(r"(?m)^INSTALLUSER=.*$", "INSTALLUSER=", src)
        if n != 1:
            raise HarnessError("could not patch INSTALLUSER in ejabberdctl (package changed?)")
        # exec erl instead of running it as a child of bash: the beam then IS the process we
        # started (stopped by SIGTERM, tied to the test process by PDEATHSIG, no orphan).
        patched, n = re.subn(r'as_current_user\) "\$@" ;;', 'as_current_user) exec "$@" ;;', patched)
        if n != 1:
            raise HarnessError("could not patch exec_cmd in ejabberdctl (package changed?)")
        self.ctl.write_text(patched)
        self.ctl.chmod(0o755)
        conf = self.dir / "conf"
        # Erlang resolver: hosts file first, DNS only from self.nameserver (the stub answers at once).
        (conf / "inetrc").write_text(
            f'{{file, hosts, "{self.hosts_file}"}}.\n'
            '{lookup, [file, native]}.\n'
            '{resolv_conf, ""}.\n'
            f'{{nameserver, {{{self.nameserver.replace(".", ",")}}}, 53}}.\n'
            '{timeout, 1000}.\n{retry, 1}.\n')
        self.ctl_config.write_text(
            f'ERLANG_NODE={self.node}\n'
            f'INET_DIST_INTERFACE=127.0.0.1\n'
            f'ERL_DIST_PORT={self.dist_port}\n'
            f'EJABBERD_PID_PATH={self.dir / "ejabberd.pid"}\n'
            'EJABBERD_BYPASS_WARNINGS=true\n')
        ca_line = f"ca_file: {yaml_str(self.ca.ca_file)}\n" if self.tls == "ca" else ""
        self.config.write_text(f"""# generated by tests/e2e/harness/ejabberd.py
hosts:
  - {yaml_str(self.domain)}
loglevel: {self.loglevel}
log_rotate_count: 0
certfiles:
  - {yaml_str(self.cert.combined)}
{ca_line}s2s_use_starttls: {self.s2s_use_starttls}
s2s_dns_timeout: 2
s2s_dns_retries: 1  # attempts, not retries: 0 makes every lookup fail with "timeout"
s2s_timeout: 30
outgoing_s2s_families: [ipv4]
auth_method: internal
listen:
  - port: {self.c2s_port}
    ip: {yaml_str(self.ip)}
    module: ejabberd_c2s
    starttls_required: true
  - port: {self.s2s_port}
    ip: {yaml_str(self.ip)}
    module: ejabberd_s2s_in
acl:
  local:
    user_regexp: ""
access_rules:
  local:
    allow: local
  c2s:
    allow: all
  s2s:
    allow: all
modules:
  mod_disco: {{}}
  mod_ping: {{}}
  mod_roster: {{}}
  mod_s2s_dialback: {{}}
""")

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(HOME=str(self.dir / "home"), ERL_DIST_PORT=str(self.dist_port),
                   INET_DIST_INTERFACE="127.0.0.1", EJABBERD_BYPASS_WARNINGS="true")
        return env

    def _ctl_argv(self, *args: str) -> list[str]:
        return [str(self.ctl), "--config-dir", str(self.dir / "conf"), "--config", str(self.config),
                "--ctl-config", str(self.ctl_config), "--logs", str(self.dir / "logs"),
                "--spool", str(self.dir / "spool"), "--node", self.node, *args]

    def ctl_run(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
        argv = netns_wrap(self._ctl_argv(*args), self.hosts_file, self.resolv_file)
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=self._env(),
                              cwd=self.dir, stdin=subprocess.DEVNULL)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, timeout: float = 40.0) -> "Ejabberd":
        for port in (self.s2s_port, self.c2s_port):
            ensure_free(self.ip, port, repr(self))
        ensure_free("127.0.0.1", self.dist_port, f"{self!r} (Erlang distribution port)")
        argv = netns_wrap(self._ctl_argv("foreground"), self.hosts_file, self.resolv_file)
        with open(self.console, "ab") as out:
            self.proc = spawn(argv, stdout=out, stderr=subprocess.STDOUT, cwd=self.dir, env=self._env())
        what = f"ejabberd {self.domain}@{self.ip}"
        wait_port(self.ip, self.c2s_port, timeout, self.proc, what, self.console)
        wait_port(self.ip, self.s2s_port, timeout, self.proc, what, self.console)
        for user, password in self.users.items():
            self.register(user, password)
        return self

    def register(self, user: str, password: str) -> None:
        self.users[user] = password
        r = self.ctl_run("register", user, self.domain, password)
        if r.returncode != 0:
            raise HarnessError(f"ejabberdctl register {user}@{self.domain} failed ({r.returncode}):\n"
                               f"{r.stdout}\n{r.stderr}\n{self.diagnostics()}")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process_group(self.proc, grace=15)
            self.proc = None

    # -- inspection --------------------------------------------------------------------------
    def diagnostics(self) -> str:
        return tail(self.console, 30) + "\n" + tail(self.log, 80)

    def __repr__(self) -> str:
        return f"Ejabberd({self.domain}@{self.ip}, tls={self.tls})"
