"""The admin API served on a loopback port over a fresh SQLite store, with an admin and a reader token.

Builds `fedgate` (for `fedgate token create`) and the `serve` example of fedgate-admin (the API
alone, until `fedgate serve` runs it on the admin listener), then starts the example and waits for
/api/v1/health. Everything started is stopped at the end.
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


def _build() -> tuple[Path, Path]:
    subprocess.run(
        ["cargo", "build", "-q", "-p", "fedgate", "-p", "fedgate-admin", "--example", "serve"],
        cwd=ROOT,
        check=True,
    )
    return TARGET / "debug" / "fedgate", TARGET / "debug" / "examples" / "serve"


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
    fedgate, serve = _build()
    db = tmp_path_factory.mktemp("api") / "fedgate.db"
    store = f"sqlite:{db}"
    admin = _token(fedgate, store, "schemathesis", "admin")
    reader = _token(fedgate, store, "reader", "reader")
    port = _free_port()
    proc = subprocess.Popen(
        [str(serve), "--store", store, "--listen", f"127.0.0.1:{port}"],
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
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
