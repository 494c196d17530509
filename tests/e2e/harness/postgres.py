"""A real PostgreSQL server (Debian's `postgresql` package) for the tests that share one store between
fedgate nodes: initdb into a temp dir, `postgres` in the foreground on a loopback address of the
test's subnet, password (SCRAM) authentication over TCP, one role owning one database. Stoppable
and startable again on the same data dir and port (the outage test), stopped and removed at the end.

initdb refuses to run as root: as root, the server's commands run as the `postgres` user
(`setpriv`), and the data dir lives in a directory of its own under /tmp (pytest's tmp dirs are
root-only, 0700) that the postgres user owns. A watchdog (its own session) stops the server and
removes that directory once this Python process is gone, however it ends (even SIGKILL)."""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from .util import (HarnessError, check_loopback, ensure_free, spawn, stop_process_group, tail,
                   wait_port, wait_port_closed)

INSTALL_HINT = ("apt-get install postgresql (Debian's PostgreSQL server: initdb, postgres, psql under "
                "/usr/lib/postgresql/<version>/bin; run .ci/install-deps.sh as root)")


def pg_bin() -> Path:
    """The newest /usr/lib/postgresql/<version>/bin with initdb, postgres and psql."""
    found = []
    for d in glob.glob("/usr/lib/postgresql/*/bin"):
        version = Path(d).parent.name
        if version.isdigit() and all(os.access(Path(d) / p, os.X_OK) for p in ("initdb", "postgres", "psql")):
            found.append((int(version), Path(d)))
    if not found:
        raise HarnessError(f"no PostgreSQL server found: {INSTALL_HINT}")
    return sorted(found)[-1][1]


class Postgres:
    """Postgres(workdir, ip, port=5432): `url` is the store URL fedgate takes
    (postgres://fedgate@ip:port/fedgate?sslmode=disable&connect_timeout=2), `password_file` holds the
    role's password (FEDGATE_STORE_PASSWORD_FILE). stop() is a fast shutdown (clients are
    disconnected at once), start() brings the same cluster back."""

    ROLE, DATABASE, PASSWORD = "fedgate", "fedgate", "fedgate-e2e-pw"

    def __init__(self, workdir: Path, ip: str, port: int = 5432, connect_timeout: int = 2):
        check_loopback(ip)
        self.bin = pg_bin()
        self.ip, self.port = ip, port
        self.workdir = workdir / f"postgres-{ip}"
        self.workdir.mkdir(parents=True)
        self.root = Path(tempfile.mkdtemp(prefix="fedgate-e2e-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.password_file = self.workdir / "password"
        self.password_file.write_text(self.PASSWORD + "\n")
        self.password_file.chmod(0o600)
        self.url = (f"postgres://{self.ROLE}@{ip}:{port}/{self.DATABASE}"
                    f"?sslmode=disable&connect_timeout={connect_timeout}")
        self.proc: subprocess.Popen | None = None
        self.as_root = os.geteuid() == 0
        self._initialised = False
        self._watchdog()

    # -- helpers -----------------------------------------------------------------------------
    def _as_server_user(self, argv: list[str]) -> list[str]:
        if not self.as_root:
            return argv
        setpriv = shutil.which("setpriv")
        if not setpriv:
            raise HarnessError("setpriv not found: apt-get install util-linux (run .ci/install-deps.sh)")
        try:
            pwd.getpwnam("postgres")
        except KeyError as e:
            raise HarnessError(f"no 'postgres' user: {INSTALL_HINT}") from e
        return [setpriv, "--reuid=postgres", "--regid=postgres", "--init-groups", "--", *argv]

    def _run(self, argv: list[str], what: str, timeout: float = 60) -> str:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=self.root,
                           stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            raise HarnessError(f"PostgreSQL: {what} failed (rc={r.returncode}):\n{r.stdout}\n{r.stderr}\n"
                               f"{tail(self.log, 30)}")
        return r.stdout

    def _watchdog(self) -> None:
        """Stop the server and remove its directory once this process is gone (even by SIGKILL)."""
        stop = " ".join(self._as_server_user([str(self.bin / "pg_ctl"), "-D", str(self.data),
                                              "-m", "immediate", "stop"]))
        # (Exits at once when teardown() removed the directory: nothing left to do.)
        script = (f"while kill -0 {os.getpid()} 2>/dev/null && [ -d '{self.root}' ]; do sleep 0.5; done; "
                  f"[ -d '{self.root}' ] || exit 0; {stop} >/dev/null 2>&1; rm -rf '{self.root}'")
        subprocess.run(["setsid", "--fork", "sh", "-c", script], stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run SQL as the superuser over the Unix socket (trust)."""
        return self._run(self._as_server_user([str(self.bin / "psql"), "-h", str(self.root), "-p",
                                               str(self.port), "-U", "postgres", "-d", database,
                                               "-v", "ON_ERROR_STOP=1", "-XAtqc", sql]),
                         f"psql {sql!r}")

    # -- lifecycle ---------------------------------------------------------------------------
    def _initdb(self) -> None:
        superpw = self.root / "superuser-password"
        superpw.write_text("superuser-e2e-pw\n")
        if self.as_root:
            shutil.chown(self.root, "postgres", "postgres")
            shutil.chown(superpw, "postgres", "postgres")
        self.root.chmod(0o700)
        self._run(self._as_server_user([str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres",
                                        "--auth-local=trust", "--auth-host=scram-sha-256",
                                        "--no-sync", "--no-instructions", "-E", "UTF8",
                                        f"--pwfile={superpw}"]), "initdb")

    def start(self, timeout: float = 30.0) -> "Postgres":
        ensure_free(self.ip, self.port, repr(self))
        if not self._initialised:
            self._initdb()
        argv = self._as_server_user([str(self.bin / "postgres"), "-D", str(self.data),
                                     "-p", str(self.port), "-k", str(self.root),
                                     "-c", f"listen_addresses={self.ip}",
                                     "-c", "fsync=off", "-c", "synchronous_commit=off",
                                     "-c", "full_page_writes=off", "-c", "max_connections=50",
                                     "-c", "log_connections=on", "-c", "log_disconnections=on"])
        out = open(self.log, "ab")
        try:
            self.proc = spawn(argv, stdout=out, stderr=subprocess.STDOUT, cwd=self.root)
        finally:
            out.close()
        wait_port(self.ip, self.port, timeout, self.proc, repr(self), self.log)
        self._wait_ready(timeout)
        if not self._initialised:
            self.psql(f"CREATE ROLE {self.ROLE} LOGIN PASSWORD '{self.PASSWORD}'")
            self.psql(f"CREATE DATABASE {self.DATABASE} OWNER {self.ROLE}")
            self._initialised = True
        return self

    def _wait_ready(self, timeout: float) -> None:
        """The port opens before the server accepts sessions ("the database system is starting
        up"): wait until a query succeeds."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.psql("SELECT 1")
                return
            except HarnessError:
                if self.proc is not None and self.proc.poll() is not None:
                    raise HarnessError(f"{self!r} exited with status {self.proc.returncode}\n"
                                       f"{tail(self.log, 30)}")
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        """Fast shutdown (SIGINT): active sessions are ended at once."""
        if self.proc is not None:
            stop_process_group(self.proc, sig=signal.SIGINT, grace=15)
            self.proc = None
            wait_port_closed(self.ip, self.port, 5)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def teardown(self) -> None:
        """(Env.close) Stop and remove the cluster (the log is kept in the test's work directory)."""
        self.stop()
        if self.log.exists():
            shutil.copy(self.log, self.workdir / "server.log")
        shutil.rmtree(self.root, ignore_errors=True)

    def diagnostics(self) -> str:
        return tail(self.log, 40)

    def __repr__(self) -> str:
        return f"Postgres({self.ip}:{self.port})"
