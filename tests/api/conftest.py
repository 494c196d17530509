"""The admin API of a real `fedgate serve` (its admin listener, plain HTTP on loopback) over a fresh
SQLite store, with an admin and a reader token.

Builds `fedgate`, creates the tokens with `fedgate token create`, starts `fedgate serve` with a
minimal config and waits for /api/v1/health. Everything started is stopped at the end (SIGTERM;
the gateway must exit 0).
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))


def _build() -> Path:
    subprocess.run(["cargo", "build", "-q", "-p", "fedgate"], cwd=ROOT, check=True)
    return TARGET / "debug" / "fedgate"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _token(fedgate: Path, store: str, name: str, role: str) -> str:
    out = subprocess.run(
        [str(fedgate), "--store", store, "--output", "json", "token", "create", "--name", name, "--role", role],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout)["Token"]


class Server:
    def __init__(self, url: str, admin: str, reader: str):
        self.url = url
        self.admin = admin
        self.reader = reader


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    fedgate = _build()
    workdir = tmp_path_factory.mktemp("api")
    db = workdir / "fedgate.db"
    store = f"sqlite:{db}"
    admin = _token(fedgate, store, "schemathesis", "admin")
    reader = _token(fedgate, store, "reader", "reader")
    port, internal, external = _free_port(), _free_port(), _free_port()
    config = workdir / "fedgate.toml"
    config.write_text(
        f"""
store = "sqlite:fedgate.db"
[internal_listener]
listen = "127.0.0.1:{internal}"
[external_listener]
listen = "127.0.0.1:{external}"
[admin]
listen = "127.0.0.1:{port}"
tls = false
[[hosted_domain]]
domain = "corp.example"
internal_server = "127.0.0.1:9"
"""
    )
    proc = subprocess.Popen(
        [str(fedgate), "serve", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/v1/health", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the API server did not start: {proc.stdout.read() if proc.stdout else ''}")
            time.sleep(0.1)
        yield Server(url, admin, reader)
    finally:
        proc.terminate()
        try:
            code = proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
        assert code == 0, f"fedgate serve exited {code} on SIGTERM"
