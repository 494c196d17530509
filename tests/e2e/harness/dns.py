"""A tiny authoritative DNS stub on a loopback address (UDP and TCP): answers A and SRV records the
test sets, NXDOMAIN for everything else — at once, so resolvers never wait for a timeout. Every
server's resolv.conf points here (see util.write_resolv)."""
from __future__ import annotations

import re
import signal
import socket
import struct
import threading
import time

import subprocess
from pathlib import Path

from .util import (HarnessError, check_loopback, ensure_free, require_binary, spawn, stop_process_group,
                   tail, wait_port)

QTYPE_A, QTYPE_SRV, QTYPE_AAAA = 1, 33, 28


def _encode_name(name: str) -> bytes:
    out = b""
    for label in name.rstrip(".").split("."):
        if label:
            raw = label.encode("idna")
            out += bytes([len(raw)]) + raw
    return out + b"\0"


def _read_qname(msg: bytes, pos: int) -> tuple[str, int]:
    labels = []
    while True:
        n = msg[pos]
        if n == 0:
            return ".".join(labels).lower(), pos + 1
        if n & 0xC0:            # no compression in questions we accept
            raise ValueError("compressed qname")
        labels.append(msg[pos + 1:pos + 1 + n].decode("ascii", "replace"))
        pos += 1 + n


class DnsStub:
    def __init__(self, ip: str, port: int = 53):
        check_loopback(ip)
        self.ip, self.port = ip, port
        self.a: dict[str, list[str]] = {}
        self.srv: dict[str, list[tuple[int, int, int, str]]] = {}
        self.ttls: dict[str, int] = {}       # per name; 5 s unless add_a/add_srv gave another
        self.queries: list[tuple[str, int]] = []
        self._stop = threading.Event()
        self._udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self._udp.bind((ip, port))
            self._tcp = socket.create_server((ip, port))
        except OSError as e:
            self._udp.close()
            raise HarnessError(f"cannot start the DNS stub on {ip}:{port} ({e}): is another e2e run "
                               "using these addresses? Run with E2E_SUBNET=127.x.y") from e
        self._udp.settimeout(0.2)
        self._tcp.settimeout(0.2)
        self._threads = [threading.Thread(target=self._serve_udp, daemon=True),
                         threading.Thread(target=self._serve_tcp, daemon=True)]
        for t in self._threads:
            t.start()

    # -- records -----------------------------------------------------------------------------
    def add_a(self, name: str, ip: str, ttl: int | None = None) -> None:
        check_loopback(ip)
        self.a.setdefault(name.rstrip(".").lower(), []).append(ip)
        if ttl is not None:
            self.ttls[name.rstrip(".").lower()] = ttl

    def add_srv(self, service: str, target: str, port: int = 5269, priority: int = 0,
                weight: int = 0, ttl: int | None = None) -> None:
        """service: e.g. "_xmpp-server._tcp.partner.example". ttl: of this name's answers (default
        5 s; 0 = resolvers do not cache it, so a test can change the records while servers run)."""
        self.srv.setdefault(service.rstrip(".").lower(), []).append((priority, weight, port, target))
        if ttl is not None:
            self.ttls[service.rstrip(".").lower()] = ttl

    def clear_srv(self, service: str) -> None:
        """Forget the name's SRV records (then add_srv the new ones)."""
        self.srv.pop(service.rstrip(".").lower(), None)

    # -- protocol ----------------------------------------------------------------------------
    def answer(self, query: bytes) -> bytes | None:
        if len(query) < 12:
            return None
        ident, flags, qdcount = struct.unpack("!HHH", query[:6])
        if qdcount != 1:
            return struct.pack("!HHHHHH", ident, 0x8000 | (flags & 0x0100) | 1, 0, 0, 0, 0)
        try:
            qname, pos = _read_qname(query, 12)
        except (ValueError, IndexError):
            return struct.pack("!HHHHHH", ident, 0x8000 | 1, 0, 0, 0, 0)
        qtype, _qclass = struct.unpack("!HH", query[pos:pos + 4])
        question = query[12:pos + 4]
        self.queries.append((qname, qtype))
        answers = []
        ttl = self.ttls.get(qname, 5)
        if qtype == QTYPE_A:
            for ip in self.a.get(qname, []):
                answers.append(struct.pack("!HHHIH", 0xC00C, QTYPE_A, 1, ttl, 4) + socket.inet_aton(ip))
        elif qtype == QTYPE_SRV:
            for prio, weight, port, target in self.srv.get(qname, []):
                rdata = struct.pack("!HHH", prio, weight, port) + _encode_name(target)
                answers.append(struct.pack("!HHHIH", 0xC00C, QTYPE_SRV, 1, ttl, len(rdata)) + rdata)
        known = qname in self.a or qname in self.srv
        rcode = 0 if (answers or known) else 3          # NXDOMAIN for names we do not have
        flags_out = 0x8000 | 0x0400 | (flags & 0x0100) | rcode   # QR, AA, RD copied
        header = struct.pack("!HHHHHH", ident, flags_out, 1, len(answers), 0, 0)
        return header + question + b"".join(answers)

    def _serve_udp(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self._udp.recvfrom(4096)
            except (socket.timeout, OSError):
                continue
            reply = self.answer(data)
            if reply:
                try:
                    self._udp.sendto(reply, peer)
                except OSError:
                    pass

    def _serve_tcp(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._tcp.accept()
            except (socket.timeout, OSError):
                continue
            with conn:
                try:
                    conn.settimeout(2)
                    head = conn.recv(2)
                    if len(head) < 2:
                        continue
                    (n,) = struct.unpack("!H", head)
                    data = b""
                    while len(data) < n:
                        chunk = conn.recv(n - len(data))
                        if not chunk:
                            break
                        data += chunk
                    reply = self.answer(data)
                    if reply:
                        conn.sendall(struct.pack("!H", len(reply)) + reply)
                except OSError:
                    pass

    def stop(self) -> None:
        self._stop.set()
        for s in (self._udp, self._tcp):
            try:
                s.close()
            except OSError:
                pass
        for t in self._threads:
            t.join(timeout=2)

    def diagnostics(self) -> str:
        return "queries: " + ", ".join(f"{n}/{t}" for n, t in self.queries[-30:])

    def __repr__(self) -> str:
        return f"DnsStub({self.ip}:{self.port})"


class Dnsmasq:
    """A real dnsmasq (Debian's dnsmasq-base) on a loopback address, loading one configuration
    file (e.g. `fedgate internal-dns --format dnsmasq`) and forwarding everything else to
    `upstream` (the test's DnsStub), as an admin's local resolver would. Every query is logged
    (`queries()`), so a test can see who answered what."""

    def __init__(self, workdir, ip: str, conf_text: str | None, upstream: str, port: int = 53,
                 supervised: bool = False):
        """conf_text None: the file is written by someone else (fedgate's [internal_dns]) at
        `conf_path(workdir, ip)`. supervised: dnsmasq runs in a restart loop, as under systemd, so
        `restart_command(workdir, ip)` (kill it; the loop starts it again) is a reload command."""
        check_loopback(ip)
        self.bin = require_binary("dnsmasq", "apt-get install dnsmasq-base (run .ci/install-deps.sh)")
        self.ip, self.port, self.upstream = ip, port, upstream
        self.dir = Path(workdir) / f"dnsmasq-{ip}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.conf = self.conf_path(workdir, ip)
        if conf_text is not None:
            self.conf.write_text(conf_text)
        self.supervised = supervised
        self.pid_file = self.conf.parent / "pid"
        self.log = self.dir / "dnsmasq.log"
        self.proc = None

    @staticmethod
    def conf_path(workdir, ip: str) -> Path:
        return Path(workdir) / f"dnsmasq-{ip}" / "fedgate-partners.conf"

    @staticmethod
    def restart_command(workdir, ip: str) -> list[str]:
        """A reload command for a supervised dnsmasq: kill it (the loop starts it again)."""
        pid_file = Dnsmasq.conf_path(workdir, ip).parent / "pid"
        return ["sh", "-c", f'kill "$(cat {pid_file})" 2>/dev/null; true']

    def starts(self) -> int:
        """How many times dnsmasq has started (its log says so each time)."""
        return sum(1 for line in self.queries() if ": started, version" in line)

    def start(self, timeout: float = 10.0) -> "Dnsmasq":
        ensure_free(self.ip, self.port, repr(self))
        argv = [self.bin, "--keep-in-foreground", "--no-resolv", "--no-hosts", "--user=root",
                f"--conf-file={self.conf}", f"--listen-address={self.ip}", "--bind-interfaces",
                f"--port={self.port}", f"--server={self.upstream}", "--cache-size=0",
                "--log-queries", f"--log-facility={self.log}", f"--pid-file={self.pid_file}"]
        if self.supervised:
            argv = ["sh", "-c", 'while :; do "$@"; sleep 0.1; done', "sh", *argv]
        with open(self.dir / "console.log", "ab") as out:
            self.proc = spawn(argv, stdout=out, stderr=subprocess.STDOUT, cwd=self.dir)
        wait_port(self.ip, self.port, timeout, self.proc, repr(self), self.dir / "console.log")
        return self

    def queries(self) -> list[str]:
        return self.log.read_text(errors="replace").splitlines() if self.log.exists() else []

    def stop(self) -> None:
        if self.proc is not None:
            stop_process_group(self.proc)
            self.proc = None

    def diagnostics(self) -> str:
        return f"config:\n{self.conf.read_text()}\n{tail(self.log)}\n{tail(self.dir / 'console.log')}"

    def __repr__(self) -> str:
        return f"Dnsmasq({self.ip}:{self.port})"


def query(server: str, name: str, qtype: int, port: int = 53, timeout: float = 2.0) -> tuple[int, int]:
    """Ask `server` one question over UDP: (rcode, number of answers)."""
    msg = struct.pack("!HHHHHH", 0x2727, 0x0100, 1, 0, 0, 0) + _encode_name(name) + struct.pack("!HH", qtype, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(msg, (server, port))
        reply = s.recv(4096)
    flags, _qd, an = struct.unpack("!HHH", reply[2:8])
    return flags & 0xF, an


def free_port(ip: str) -> int:
    """A port no one listens on at ip right now (UDP and TCP), for a server that must pick one."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind((ip, 0))
            port = u.getsockname()[1]
            try:
                with socket.create_server((ip, port)):
                    return port
            except OSError:
                continue
    raise HarnessError(f"no free port on {ip}")


def dig(server: str, name: str, qtype: str, port: int = 53, timeout: float = 2.0) -> tuple[str, list[str]]:
    """Ask `server` one question with dig (bind9-dnsutils): (status such as "NOERROR" or
    "NXDOMAIN", the answer section's records as "TYPE rdata", e.g. "A 127.0.0.20" or
    "SRV 0 0 5269 partner.example.")."""
    binary = require_binary("dig", "apt-get install bind9-dnsutils (run .ci/install-deps.sh)")
    r = subprocess.run([binary, "-p", str(port), f"@{server}", name, qtype, "+noall", "+comments",
                        "+answer", "+tries=1", f"+time={max(1, int(timeout))}"],
                       capture_output=True, text=True, timeout=timeout + 5)
    status, answers = "", []
    for line in r.stdout.splitlines():
        if "status:" in line:
            status = line.split("status:")[1].split(",")[0].strip()
        elif line.strip() and not line.startswith(";"):
            fields = line.split()
            answers.append(" ".join(fields[3:]))
    if not status:
        raise HarnessError(f"dig @{server} -p {port} {name} {qtype}: no answer\n{r.stdout}{r.stderr}")
    return status, answers


class _ForegroundResolver:
    """A resolver process in the foreground in its own directory, loading a file generated by
    `fedgate internal-dns` (`include_path`) and forwarding everything else to `upstream` (the
    test's DnsStub). Subclasses write the server's own configuration and argv."""
    name = "resolver"

    def __init__(self, workdir, ip: str, port: int, upstream: str, include_text: str):
        check_loopback(ip)
        self.ip, self.port, self.upstream = ip, port, upstream
        self.dir = Path(workdir) / f"{self.name}-{ip}-{port}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.include_path = self.dir / self.include_name
        self.include_path.write_text(include_text)
        self.console = self.dir / "console.log"
        self.proc = None
        self.conf = self.dir / self.conf_name
        self.conf.write_text(self.config_text())

    def check(self) -> list[subprocess.CompletedProcess]:
        """The server's own checkers on the configuration and the generated file (raises on a
        complaint)."""
        out = []
        for argv in self.check_commands():
            r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
            if r.returncode != 0:
                raise HarnessError(f"{' '.join(argv)} failed (rc={r.returncode}):\n{r.stdout}{r.stderr}\n"
                                   f"{self.include_path.read_text()}")
            out.append(r)
        return out

    def start(self, timeout: float = 15.0):
        ensure_free(self.ip, self.port, repr(self))
        with open(self.console, "ab") as out:
            self.proc = spawn(self.argv(), stdout=out, stderr=subprocess.STDOUT, cwd=self.dir)
        wait_port(self.ip, self.port, timeout, self.proc, repr(self), self.console)
        return self

    def regenerate(self, include_text: str) -> None:
        """Write a new generated file and reload it with SIGHUP (both servers re-read their
        configuration and its files on SIGHUP)."""
        self.include_path.write_text(include_text)
        self.proc.send_signal(signal.SIGHUP)

    def log_text(self) -> str:
        return self.console.read_text(errors="replace") if self.console.exists() else ""

    def stop(self) -> None:
        if self.proc is not None:
            stop_process_group(self.proc)
            self.proc = None

    def diagnostics(self) -> str:
        return (f"config:\n{self.conf.read_text()}\ngenerated file:\n{self.include_path.read_text()}\n"
                f"{tail(self.console)}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.ip}:{self.port})"


class Unbound(_ForegroundResolver):
    """A real unbound (Debian's unbound) on a loopback address: its own unbound.conf in a temp dir
    (no chroot, no user change, in the foreground) that `include:`s the generated file (`fedgate
    internal-dns --format unbound`, as the README says) and forwards "." to `upstream`. Queries
    are logged (log-queries)."""
    name, conf_name, include_name = "unbound", "unbound.conf", "fedgate-partners.conf"

    def __init__(self, workdir, ip: str, include_text: str, upstream: str, port: int = 53):
        self.bin = require_binary("unbound", "apt-get install unbound (run .ci/install-deps.sh)")
        super().__init__(workdir, ip, port, upstream, include_text)

    def config_text(self) -> str:
        return "\n".join([
            "server:",
            f"    interface: {self.ip}",
            f"    port: {self.port}",
            "    do-ip6: no",
            '    chroot: ""',
            '    username: ""',
            "    do-daemonize: no",
            f'    directory: "{self.dir}"',
            f'    pidfile: "{self.dir / "unbound.pid"}"',
            "    use-syslog: no",
            '    logfile: ""',
            "    log-queries: yes",
            "    verbosity: 1",
            "    access-control: 127.0.0.0/8 allow",
            # The stub is a plain forwarder target on loopback, unsigned: no validation.
            '    module-config: "iterator"',
            "    do-not-query-localhost: no",
            "    cache-max-ttl: 0",
            "    cache-max-negative-ttl: 0",
            f'include: "{self.include_path}"',
            "forward-zone:",
            '    name: "."',
            f"    forward-addr: {self.upstream}",
            ""])

    def argv(self) -> list[str]:
        return [self.bin, "-d", "-c", str(self.conf)]

    def check_commands(self) -> list[list[str]]:
        checker = require_binary("unbound-checkconf", "apt-get install unbound (run .ci/install-deps.sh)")
        return [[checker, str(self.include_path)], [checker, str(self.conf)]]


class Bind(_ForegroundResolver):
    """A real named (Debian's bind9) in the foreground (-g) with its own named.conf in a temp dir:
    the generated response-policy zone (`fedgate internal-dns --format bind`) loaded as the file's
    comments and the README say, recursion forwarded only to `upstream`.

    named listens only on addresses configured on an interface, and the e2e addresses are not
    (the kernel routes all of 127/8 to lo, but only 127.0.0.1 is an interface address): this
    named listens on 127.0.0.1 on a free port."""
    name, conf_name, include_name = "named", "named.conf", "fedgate-partners.rpz"
    ZONE = "fedgate-partners"

    def __init__(self, workdir, include_text: str, upstream: str, response_policy: str, zone: str,
                 ip: str = "127.0.0.1", port: int | None = None):
        """response_policy: the `response-policy ...;` statement for the options block; zone: the
        `zone "fedgate-partners" {...};` statement, whose file is replaced by this server's copy
        of the generated file (both as the generated file's comments give them)."""
        self.bin = require_binary("named", "apt-get install bind9 (run .ci/install-deps.sh)")
        self.response_policy = response_policy
        self.zone = zone
        super().__init__(workdir, ip, port or free_port(ip), upstream, include_text)

    def config_text(self) -> str:
        d = self.dir
        return "\n".join([
            "options {",
            f'    directory "{d}";',
            f'    pid-file "{d / "named.pid"}";',
            f'    session-keyfile "{d / "session.key"}";',
            f'    managed-keys-directory "{d}";',
            f"    listen-on port {self.port} {{ {self.ip}; }};",
            "    listen-on-v6 { none; };",
            "    recursion yes;",
            "    allow-query { any; };",
            "    allow-recursion { any; };",
            f"    forwarders {{ {self.upstream}; }};",
            "    forward only;",
            "    dnssec-validation no;",
            "    max-cache-ttl 0;",
            "    max-ncache-ttl 0;",
            f"    {self.response_policy}",
            "};",
            "controls { };",
            re.sub(r'file "[^"]*"', lambda _m: f'file "{self.include_path}"', self.zone),
            ""])

    def start(self, timeout: float = 15.0) -> "Bind":
        """Listening, and the policy zone loaded: named answers before that (its port opens first),
        without the policy, i.e. as the outside DNS would."""
        super().start(timeout)
        loaded = f"rpz: {self.ZONE}: reload done"
        deadline = time.monotonic() + timeout
        while loaded not in self.log_text():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise HarnessError(f"{self!r}: no '{loaded}' in its log\n{tail(self.console)}")
            time.sleep(0.05)
        return self

    def argv(self) -> list[str]:
        return [self.bin, "-g", "-c", str(self.conf)]

    def check_commands(self) -> list[list[str]]:
        conf = require_binary("named-checkconf", "apt-get install bind9-utils (run .ci/install-deps.sh)")
        zone = require_binary("named-checkzone", "apt-get install bind9-utils (run .ci/install-deps.sh)")
        return [[conf, str(self.conf)], [zone, self.ZONE, str(self.include_path)]]
