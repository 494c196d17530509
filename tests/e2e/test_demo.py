"""scripts/demo.sh as a user runs it: one message each way through fedgate, exit 0, what happened
printed, and everything stopped and removed afterwards (E2E_SUBNET moves it like the tests)."""
import os
import re
import socket
import subprocess
from pathlib import Path

import pytest

from harness.fedgate import EXTERNAL_IP, INTERNAL_IP, METRICS_IP, METRICS_PORT, S2S_PORT
from harness.topology import ALICE, BOB, CORP_IP, PARTNER_IP
from harness.util import REPO

pytestmark = pytest.mark.gateway


def _listening(ip: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((ip, port)) == 0


def test_demo_script_sends_a_message_each_way_and_cleans_up():
    r = subprocess.run(["bash", str(REPO / "scripts" / "demo.sh")], capture_output=True, text=True,
                       timeout=110, cwd=REPO, stdin=subprocess.DEVNULL, env=dict(os.environ))
    out = r.stdout + r.stderr
    assert r.returncode == 0, f"demo.sh exited with {r.returncode}:\n{out}"
    assert "demo: OK, messages went both ways through fedgate" in r.stdout, out
    for sender, receiver in ((ALICE, BOB), (BOB, ALICE)):
        assert re.search(rf"{re.escape(sender)} -> {re.escape(receiver)}: delivered in [0-9.]+s", r.stdout), out
    # It printed where things ran (the subnet of this run) and what fedgate logged.
    assert f"fedgate internal {INTERNAL_IP}:5269" in r.stdout, out
    assert re.search(r"fedgate log \(.*\), INFO/WARN lines naming partner\.example: [1-9]", r.stdout), out
    # Nothing left behind: no server listening, the work directory removed.
    for ip, port in ((INTERNAL_IP, S2S_PORT), (EXTERNAL_IP, S2S_PORT), (METRICS_IP, METRICS_PORT),
                     (CORP_IP, 5222), (PARTNER_IP, 5222)):
        assert not _listening(ip, port), f"{ip}:{port} still listening after demo.sh"
    work = re.search(r"work directory: (\S+)", r.stdout)
    assert work and not Path(work.group(1)).exists(), f"the demo's work directory was left: {out}"
