"""Fixtures of the code-interpreter SDK tests: the unmodified
`e2b-code-interpreter` package against a bhatti daemon, as
crates/server/tests/vm/e2b_interpreter.rs runs them.

Environment (set by the Rust trial): E2B_API_KEY, E2B_API_URL and
E2B_SANDBOX_URL (the daemon's /e2b on loopback). Every test is skipped
unless both URLs point at loopback: the SDK's default is E2B's cloud, and
these tests never send a packet off the host.
"""

import os
import urllib.parse

import pytest
from e2b_code_interpreter import Sandbox

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def _loopback(url):
    return bool(url) and urllib.parse.urlsplit(url).hostname in LOOPBACK


def pytest_collection_modifyitems(config, items):
    if _loopback(os.environ.get("E2B_API_URL")) and _loopback(
        os.environ.get("E2B_SANDBOX_URL")
    ):
        return
    skip = pytest.mark.skip(
        reason="E2B_API_URL and E2B_SANDBOX_URL must point at a bhatti daemon "
        "on loopback (run: cargo test -p bhatti-server --test vm -- e2b)"
    )
    for item in items:
        item.add_marker(skip)


@pytest.fixture(scope="module")
def sandbox():
    """One code-interpreter sandbox for the module (a kernel start under
    TCG takes a while), killed after it."""
    sb = Sandbox.create(timeout=900)
    yield sb
    try:
        Sandbox.kill(sb.sandbox_id)
    except Exception:  # noqa: BLE001 - cleanup must not hide the test's error
        pass
