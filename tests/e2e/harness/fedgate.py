"""fedgate under test: config per docs/config-contract.md, a private sqlite store, management through
the real CLI binary, `fedgate serve --config <file>` started and stopped with SIGTERM (exit 0)."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

from .certs import TestCA
from .util import (spawn, REPO, HarnessError, addr, check_loopback, ensure_free, netns_wrap, stop_process_group, tail, wait_port,
                   write_hosts, write_resolv)

# The e2e topology (docs/config-contract.md).
INTERNAL_IP, EXTERNAL_IP, METRICS_IP = addr(20), addr(21), addr(22)
S2S_PORT, METRICS_PORT, ADMIN_PORT = 5269, 9269, 8443

# TODO(pool branch, issue 13): `[node] name = "a"` is being added to the config on branch `pool`.
# Until it lands on main, a config with it is refused (unknown keys are errors, config.rs
# deny_unknown_fields), so the harness keeps the node name (Fedgate(node_name=...)) but does not
# write it. Once `pool` is merged: set this to True (or delete the flag and always write it).
CONFIG_HAS_NODE_NAME = False


def fedgate_binary() -> Path:
    env = os.environ.get("FEDGATE_BIN")
    path = Path(env) if env else REPO / "target" / "debug" / "fedgate"
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise HarnessError(f"fedgate binary not found at {path}: run `cargo build -p fedgate` "
                           "(or set FEDGATE_BIN)")
    return path


def toml_str(s: str | Path) -> str:
    return '"' + str(s).replace("\\", "\\\\").replace('"', '\\"') + '"'


class Fedgate:
    """Fedgate(workdir, hosted={"corp.example": f"{addr(10)}:5269"}, ca=TestCA|None, settings={...},
    hosts={"partner.example": addr(30)}).

    With a TestCA, each hosted domain gets a certificate from it (config `certificate`/`key`) and
    the CA is the only extra trust anchor (`[tls] ca_files`, `system_roots = false`), so partners
    of the same CA can use SASL EXTERNAL. Without one, the gateway generates its own self-signed
    certificates (contract: kept next to the store). server_auth_only: the hosted domains'
    certificates from the TestCA carry the serverAuth purpose only (as public CAs issue them
    since 2026)."""

    def __init__(self, workdir: Path, hosted: dict[str, str] | None = None, ca: TestCA | None = None,
                 settings: dict[str, int] | None = None, limits: dict[str, int] | None = None,
                 hosts: dict[str, str] | None = None, log_level: str = "debug",
                 internal_ca: bool = False, server_auth_only: bool = False,
                 internal_dns: dict | None = None, name: str = "fedgate",
                 internal_ip: str = INTERNAL_IP, external_ip: str = EXTERNAL_IP,
                 metrics_ip: str = METRICS_IP, store: str | None = None,
                 store_password_file: Path | None = None, node_name: str | None = None,
                 certificates: dict | None = None, admin: bool = False):
        """Pool nodes (several gateways on one PostgreSQL store): name= (its directory under the
        work dir), internal_ip/external_ip/metrics_ip (its own listeners; the admin listener, with
        admin=True, is plain HTTP on metrics_ip:8443), store= a postgres:// URL with
        store_password_file= (FEDGATE_STORE_PASSWORD_FILE for serve and the CLI), certificates=
        {domain: CertFiles} to present the same certificate as another node, node_name= the
        node's name (see CONFIG_HAS_NODE_NAME)."""
        self.bin = fedgate_binary()
        self.name = name
        self.dir = workdir / name
        self.dir.mkdir(parents=True)
        self.internal_ip, self.external_ip, self.metrics_ip = internal_ip, external_ip, metrics_ip
        for ip in (internal_ip, external_ip, metrics_ip):
            check_loopback(ip)
        self.node_name = node_name
        self.admin = admin
        self.extra_env: dict[str, str] = {}
        if store_password_file is not None:
            self.extra_env["FEDGATE_STORE_PASSWORD_FILE"] = str(store_password_file)
        self.certificates: dict = dict(certificates or {})
        self.hosted = dict(hosted or {"corp.example": f"{addr(10)}:5269"})
        self.ca = ca
        self.settings = dict(settings or {})
        self.limits = dict(limits or {})
        self.hosts = dict(hosts or {})
        self.db = self.dir / "fedgate.db"
        self.store = store or f"sqlite:{self.db}"
        self.config = self.dir / "fedgate.toml"
        self.log = self.dir / "fedgate.log"
        self.hosts_file = write_hosts(self.dir / "hosts", self.hosts)
        self.resolv_file = write_resolv(self.dir / "resolv.conf")
        self.proc: subprocess.Popen | None = None
        self.exit_status: int | None = None
        self.log_level = log_level
        self.internal_ca = internal_ca
        self.server_auth_only = server_auth_only
        # [internal_dns]: {"file": path, "format": name, "reload_command": [argv...]}
        self.internal_dns_config = internal_dns
        self._write_config()

    def _write_config(self) -> None:
        lines = [
            "# generated by tests/e2e/harness/fedgate.py (docs/config-contract.md)",
            f"store = {toml_str(self.store)}",
            f"log_level = {toml_str(self.log_level)}",
            f"metrics_listen = {toml_str(f'{self.metrics_ip}:{METRICS_PORT}')}",
            "",
        ]
        if self.node_name is not None:
            # TODO(pool branch): written only once the key exists (CONFIG_HAS_NODE_NAME).
            lines += ([f"# [node] name = {toml_str(self.node_name)}  (TODO: not yet a config key on main)", ""]
                      if not CONFIG_HAS_NODE_NAME else
                      ["[node]", f"name = {toml_str(self.node_name)}", ""])
        if self.admin:
            lines += ["[admin]", f"listen = {toml_str(f'{self.metrics_ip}:{ADMIN_PORT}')}", "tls = false", ""]
        lines += [
            "[internal_listener]",
            f"listen = {toml_str(f'{self.internal_ip}:{S2S_PORT}')}",
            # The internal servers listen on their own loopback addresses but connect out from
            # 127.0.0.1 (the kernel's source for loopback routes).
            'allowed_sources = ["127.0.0.0/8"]',
            "",
            "[external_listener]",
            f"listen = {toml_str(f'{self.external_ip}:{S2S_PORT}')}",
            "",
        ]
        for domain, internal in self.hosted.items():
            check_loopback(internal.rsplit(":", 1)[0])
            lines += ["[[hosted_domain]]", f"domain = {toml_str(domain)}",
                      f"internal_server = {toml_str(internal)}"]
            if domain in self.certificates:
                cert = self.certificates[domain]
                lines += [f"certificate = {toml_str(cert.cert)}", f"key = {toml_str(cert.key)}"]
            elif self.ca is not None:
                cert = self.ca.issue(f"{self.name}-{domain}", domain,
                                     server_auth_only=self.server_auth_only)
                self.certificates[domain] = cert
                lines += [f"certificate = {toml_str(cert.cert)}", f"key = {toml_str(cert.key)}"]
            lines.append("")
        lines += ["[tls]", "system_roots = false"]
        if self.ca is not None:
            lines.append(f"ca_files = [{toml_str(self.ca.ca_file)}]")
        lines.append("")
        if self.ca is not None:
            # The internal servers' certificates come from the same test CA: trust it for them
            # too (the internal side has its own anchors, never the partners').
            lines += ["[internal_tls]", f"ca_files = [{toml_str(self.ca.ca_file)}]"]
            if self.internal_ca:
                lines += [f"ca_certificate = {toml_str(self.ca.ca_file)}",
                          f"ca_key = {toml_str(self.ca.ca_key_file)}"]
            lines.append("")
        if self.limits:
            lines.append("[limits]")
            lines += [f"{k} = {v}" for k, v in self.limits.items()]
            lines.append("")
        if self.internal_dns_config:
            lines.append("[internal_dns]")
            lines += [f"file = {toml_str(self.internal_dns_config['file'])}",
                      f"format = {toml_str(self.internal_dns_config['format'])}"]
            if self.internal_dns_config.get("reload_command"):
                argv = ", ".join(toml_str(a) for a in self.internal_dns_config["reload_command"])
                lines.append(f"reload_command = [{argv}]")
            lines.append("")
        if self.settings:
            lines.append("[settings]")
            lines += [f"{k} = {v}" for k, v in self.settings.items()]
            lines.append("")
        self.config.write_text("\n".join(lines))

    # -- management plane (the real CLI) -----------------------------------------------------
    def cli(self, *args: str, check: bool = True, json: bool = False) -> subprocess.CompletedProcess:
        argv = [str(self.bin), "--store", self.store]
        return self._run_cli(argv, args, check=check, json=json)

    def cli_via_config(self, *args: str, check: bool = True, json: bool = False,
                       timeout: float = 30) -> subprocess.CompletedProcess:
        """`fedgate --config <this node's file> <args>`: the management commands as an admin on
        this node runs them (the store of the node's config). subprocess.TimeoutExpired after
        `timeout` s."""
        return self._run_cli([str(self.bin), "--config", str(self.config)], args, check=check, json=json,
                             timeout=timeout)

    def _run_cli(self, argv: list[str], args, check: bool, json: bool,
                 timeout: float = 30) -> subprocess.CompletedProcess:
        if json:
            argv += ["--output", "json"]
        argv += list(args)
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=self.dir,
                           stdin=subprocess.DEVNULL, env={**os.environ, **self.extra_env})
        with open(self.dir / "cli.log", "a") as f:
            f.write(f"$ {' '.join(argv)}\n[rc={r.returncode}]\n{r.stdout}{r.stderr}\n")
        if check and r.returncode != 0:
            raise HarnessError(f"fedgate CLI failed (rc={r.returncode}): {' '.join(args)}\n"
                               f"{r.stdout}\n{r.stderr}")
        return r

    def internal_dns(self, fmt: str, *extra: str) -> str:
        """`fedgate --config <file> internal-dns --format <fmt>`: the internal side's records."""
        return self.cli("--config", str(self.config), "internal-dns", "--format", fmt, *extra).stdout

    def allow_partner(self, identity: str, *extra: str, proxy: str | None = None) -> None:
        """New-CsXmppAllowedPartner with PartnerType Federated (so PublicUnverified gating, a
        separate scenario, does not interfere) unless `extra` names a -PartnerType, plus any extra
        cmdlet parameters."""
        args = ["New-CsXmppAllowedPartner", "-Identity", identity]
        if not any(a.lower() == "-partnertype" for a in extra):
            args += ["-PartnerType", "Federated"]
        if proxy:
            args += ["-ProxyFqdn", proxy]
        self.cli(*args, *extra)

    def enable_xmpp_access_globally(self) -> None:
        self.cli("Set-CsExternalAccessPolicy", "-Identity", "Global", "-EnableXmppAccess", "$true")

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, timeout: float = 15.0) -> "Fedgate":
        for ip, port in ((self.internal_ip, S2S_PORT), (self.external_ip, S2S_PORT),
                         (self.metrics_ip, METRICS_PORT)):
            ensure_free(ip, port, f"fedgate serve ({self.name})")
        argv = netns_wrap([str(self.bin), "serve", "--config", str(self.config)], self.hosts_file,
                          self.resolv_file)
        env = dict(os.environ)
        env.pop("RUST_LOG", None)          # the config's log_level decides
        env["NO_COLOR"] = "1"
        env.update(self.extra_env)
        with open(self.log, "ab") as out:
            self.proc = spawn(argv, stdout=out, stderr=subprocess.STDOUT, cwd=self.dir, env=env)
        what = f"fedgate serve ({self.name})"
        try:
            wait_port(self.internal_ip, S2S_PORT, timeout, self.proc, what, self.log)
            wait_port(self.external_ip, S2S_PORT, timeout, self.proc, what, self.log)
        except HarnessError as e:
            # It never came up: stop whatever is left without asserting an exit status.
            proc, self.proc = self.proc, None
            self.exit_status = stop_process_group(proc, grace=5)
            text = self.log.read_text(errors="replace") if self.log.exists() else ""
            if re.search(r"unrecognized subcommand|unexpected argument|invalid subcommand|not recognized as the name of a cmdlet", text):
                raise HarnessError("this fedgate binary has no `serve` subcommand yet (the gateway "
                                   f"runtime is not built in): {self.bin}\n{tail(self.log, 20)}") from e
            raise
        return self

    def stop(self, expect_exit: int | None = 0) -> int | None:
        """SIGTERM; the contract says: close streams with <system-shutdown/>, exit 0."""
        if self.proc is None:
            return self.exit_status
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        stop_process_group(proc, grace=1)
        self.exit_status = proc.returncode
        if expect_exit is not None and self.exit_status != expect_exit:
            raise HarnessError(f"fedgate serve exited with {self.exit_status} on SIGTERM "
                               f"(expected {expect_exit})\n{tail(self.log, 40)}")
        return self.exit_status

    def kill9(self) -> None:
        """SIGKILL the gateway (a crashed node): no <system-shutdown/>, no goodbye to the store."""
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.exit_status = stop_process_group(proc, grace=5)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- inspection --------------------------------------------------------------------------
    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://{self.metrics_ip}:{METRICS_PORT}/metrics", timeout=5) as r:
            return r.read().decode()

    def status(self) -> str:
        """`fedgate status --config <file>`: the live streams table an admin would look at."""
        r = subprocess.run([str(self.bin), "status", "--config", str(self.config)], capture_output=True,
                           text=True, timeout=15, cwd=self.dir, stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            raise HarnessError(f"fedgate status failed (rc={r.returncode}):\n{r.stdout}\n{r.stderr}")
        return r.stdout

    def status_streams(self, *words: str) -> list[str]:
        """Lines of `fedgate status` containing every word (case-insensitive)."""
        return [ln for ln in self.status().splitlines()
                if all(w.lower() in ln.lower() for w in words)]

    def status_json(self) -> str:
        with urllib.request.urlopen(f"http://{self.metrics_ip}:{METRICS_PORT}/status", timeout=5) as r:
            return r.read().decode()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def log_search(self, pattern: str, flags: int = re.IGNORECASE) -> list[str]:
        rx = re.compile(pattern, flags)
        return [line for line in self.log_text().splitlines() if rx.search(line)]

    def wait_log(self, pattern: str, timeout: float = 5.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while True:
            found = self.log_search(pattern)
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.1)

    def diagnostics(self) -> str:
        return tail(self.log, 80) + "\n" + tail(self.dir / "cli.log", 30)

    def __repr__(self) -> str:
        return f"Fedgate({self.name}: {self.config})"
