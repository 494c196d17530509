"""Small process/port helpers shared by the server fixtures."""
from __future__ import annotations

import atexit
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


# The e2e topology's addresses are SUBNET.<n> (default 127.0.0.<n>, as in docs/config-contract.md).
# E2E_SUBNET=127.0.5 moves a whole run to 127.0.5.<n>, so two people can run the suite at once.
SUBNET = os.environ.get("E2E_SUBNET", "127.0.0").rstrip(".")
if not re.fullmatch(r"127\.\d{1,3}\.\d{1,3}", SUBNET):
    raise ValueError(f"E2E_SUBNET must look like 127.x.y (loopback only), not {SUBNET!r}")


def addr(n: int) -> str:
    """The topology address number n (10 = internal server, 20/21/22 = fedgate, 30 = partner)."""
    return f"{SUBNET}.{n}"


# The DNS stub every server's resolv.conf points at (harness/dns.py, started by Env).
DNS_IP = addr(153)


class HarnessError(AssertionError):
    """A harness-level failure (missing dependency, server did not start...). Fails the test."""


_LIVE: "list[subprocess.Popen]" = []


def _set_pdeathsig() -> None:
    # The server gets SIGTERM if the test process dies (even by SIGKILL); survives the execs of
    # unshare/sh into the server binary.
    try:
        import ctypes
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def spawn(argv: list[str], **kw) -> subprocess.Popen:
    """Start a server in its own process group (so it can be stopped as a whole), tied to this
    process's life, and remembered so that an interpreter exit stops it (see _stop_all)."""
    proc = subprocess.Popen(argv, start_new_session=True, preexec_fn=_set_pdeathsig,
                            stdin=subprocess.DEVNULL, **kw)
    _LIVE.append(proc)
    return proc


@atexit.register
def _stop_all() -> None:
    """Last resort (Ctrl-C, a harness bug): stop every server group still running."""
    for proc in list(_LIVE):
        try:
            stop_process_group(proc, grace=5)
        except Exception:
            pass


def require_binary(name: str, install_hint: str) -> str:
    path = shutil.which(name) or (name if os.path.isabs(name) and os.access(name, os.X_OK) else None)
    if not path:
        raise HarnessError(f"required program {name!r} not found: {install_hint}")
    return path


def check_loopback(ip: str) -> None:
    if not ip.startswith("127."):
        raise HarnessError(f"refusing non-loopback address {ip!r}: tests use 127.0.0.0/8 only")


def port_open(ip: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((ip, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_port(ip: str, port: int, timeout: float, proc: subprocess.Popen | None = None,
              what: str = "", log: "Path | None" = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(ip, port):
            return
        if proc is not None and proc.poll() is not None:
            raise HarnessError(f"{what} exited with status {proc.returncode} before listening on "
                               f"{ip}:{port}\n{tail(log)}")
        time.sleep(0.05)
    raise HarnessError(f"{what} did not listen on {ip}:{port} within {timeout}s\n{tail(log)}")


def ensure_free(ip: str, port: int, what: str) -> None:
    if port_open(ip, port):
        raise HarnessError(f"{ip}:{port} is already in use before starting {what}: another e2e run on "
                           "this machine (use E2E_SUBNET=127.x.y) or a left-over server (`ss -ltnp`)?")


def wait_port_closed(ip: str, port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not port_open(ip, port):
            return True
        time.sleep(0.05)
    return False


def tail(path: "Path | None", lines: int = 60) -> str:
    if path is None or not Path(path).exists():
        return ""
    text = Path(path).read_text(errors="replace").splitlines()
    return f"--- last {min(lines, len(text))} lines of {path} ---\n" + "\n".join(text[-lines:])


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of process group pgid."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            out.append(int(entry))
    return out


def stop_process_group(proc: subprocess.Popen, sig: int = signal.SIGTERM, grace: float = 10.0) -> int | None:
    """Signal the process group `proc` leads (started with start_new_session=True), wait up to
    `grace` seconds for every member to exit, then SIGKILL what is left. Returns the leader's exit
    status."""
    pgid = proc.pid
    deadline = time.monotonic() + grace
    if proc.poll() is None or group_members(pgid):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            pass
        while time.monotonic() < deadline:
            proc.poll()
            if proc.returncode is not None and not group_members(pgid):
                break
            time.sleep(0.05)
    if group_members(pgid):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    if proc.poll() is None:
        proc.wait(timeout=5)
    if proc in _LIVE:
        _LIVE.remove(proc)
    return proc.returncode


def write_hosts(path: Path, hosts: dict[str, str]) -> Path:
    lines = ["127.0.0.1 localhost", "::1 localhost ip6-localhost ip6-loopback"]
    for name, ip in hosts.items():
        check_loopback(ip)
        lines.append(f"{ip} {name}")
    path.write_text("\n".join(lines) + "\n")
    return path


def write_resolv(path: Path, nameserver: str | None = None) -> Path:
    # The test's DNS stub (harness/dns.py) answers at once: never the machine's real resolver.
    # (Without a listener, UDP queries to loopback time out here instead of being refused.)
    path.write_text(f"nameserver {nameserver or DNS_IP}\noptions timeout:1 attempts:1\n")
    return path


def netns_wrap(argv: list[str], hosts_file: Path, resolv_file: Path) -> list[str]:
    """Run argv in a private mount namespace where /etc/hosts and /etc/resolv.conf are the given
    files. All processes still share the one network namespace (loopback addresses)."""
    unshare = require_binary("unshare", "apt-get install util-linux (run .ci/install-deps.sh)")
    script = ('mount --bind "$1" /etc/hosts && mount --bind "$2" /etc/resolv.conf && shift 2 && '
              'exec "$@"')
    return [unshare, "-m", "--propagation", "private", "sh", "-c", script, "sh",
            str(hosts_file), str(resolv_file), *argv]


class ServerLog:
    """Reading a server's log file (`self.log`), for the server classes: what it said, since when."""

    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def log_mark(self) -> int:
        """The current number of log lines: pass as `since` to see only what comes after."""
        return len(self.log_text().splitlines())

    def log_search(self, pattern: str, since: int = 0) -> list[str]:
        rx = re.compile(pattern)
        return [line for line in self.log_text().splitlines()[since:] if rx.search(line)]

    def wait_log(self, pattern: str, timeout: float = 5.0, since: int = 0) -> list[str]:
        deadline = time.monotonic() + timeout
        while True:
            found = self.log_search(pattern, since)
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.1)
