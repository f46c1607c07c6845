"""Fixtures of the code-interpreter SDK tests: the unmodified
`e2b-code-interpreter` package against a bhatti daemon, as
crates/server/tests/vm/e2b_interpreter.rs runs them.

Environment (set by the Rust trial): E2B_API_KEY, E2B_API_URL and
E2B_SANDBOX_URL (the daemon's /e2b on loopback). Every test is skipped
unless both URLs point at loopback: the SDK's default is E2B's cloud, and
these tests never send a packet off the host.
"""

import pathlib
import sys

import pytest
from e2b_code_interpreter import Sandbox

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
from e2b_loopback import skip_unless_loopback  # noqa: E402


def pytest_collection_modifyitems(config, items):
    skip_unless_loopback(items)


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
