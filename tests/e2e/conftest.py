"""Fixtures for the end-to-end tests (real Prosody/ejabberd/slixmpp, fedgate on loopback)."""
from __future__ import annotations

import os
import shutil

import pytest

from harness import Env, HarnessError


def pytest_sessionstart(session):
    if os.geteuid() != 0:
        raise pytest.UsageError("tests/e2e must run as root (unshare -m / mount --bind per server)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)


@pytest.fixture
def env(tmp_path, request):
    """A fresh world per test: env.prosody(...), env.ejabberd(...), env.client(...), env.fedgate(...).
    Everything is stopped at the end, even when the test fails; on failure the servers' logs are
    printed."""
    world = Env(tmp_path)
    try:
        yield world
    finally:
        failed = any(getattr(request.node, f"rep_{w}", None) is not None
                     and getattr(request.node, f"rep_{w}").failed for w in ("setup", "call"))
        if failed:
            print(world.diagnostics())
        errors = world.close()
        if errors and failed:
            print("teardown errors: " + "; ".join(errors))
        if errors and not failed:
            raise HarnessError("teardown: " + "; ".join(errors))
        if not failed and os.environ.get("E2E_KEEP") != "1":
            shutil.rmtree(tmp_path, ignore_errors=True)
