"""The OpenAPI document checked against the real API with schemathesis (every operation; examples,
coverage, fuzzing and stateful phases): responses must match their documented status codes,
headers and schemas, never be a server error, refuse what the document forbids, and refuse calls
without a token. Settings and the reasons for them: schemathesis.toml beside this file.

The schemathesis CLI is run in a subprocess: its pytest plugin does not support pytest 9 yet.
"""
from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent


def test_the_document_lists_the_api(server):
    with urllib.request.urlopen(f"{server.url}/api/v1/openapi.json", timeout=5) as r:
        doc = json.load(r)
    assert "/api/v1/partners/{identity}" in doc["paths"]
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


def test_api_matches_its_openapi_document(server, tmp_path):
    run = subprocess.run(
        [
            sys.executable, "-m", "schemathesis.cli",
            "--config-file", str(HERE / "schemathesis.toml"),
            "run", f"{server.url}/api/v1/openapi.json",
            "--header", f"Authorization: Bearer {server.admin}",
            "--report", "junit", "--report-dir", str(tmp_path),
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert run.returncode == 0, run.stdout + run.stderr
