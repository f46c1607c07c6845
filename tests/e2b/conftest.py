"""Fixtures of the E2B SDK tests: the unmodified `e2b` package against a
bhatti daemon, as crates/server/tests/vm/e2b.rs runs them.

Environment (set by the Rust trial):
  E2B_API_KEY           a bhatti API key (user alice)
  E2B_API_URL           http://127.0.0.1:PORT/e2b
  E2B_SANDBOX_URL       http://127.0.0.1:PORT/e2b
  BHATTI_E2B_OTHER_KEY  another user's key (isolation tests)
  BHATTI_URL            the daemon's native API, http://127.0.0.1:PORT

Every test is skipped unless both E2B URLs point at loopback: the SDK's
default is E2B's cloud, and these tests never send a packet off the host.
"""

import os
import pathlib
import sys
import time

import httpx
import pytest
from e2b import AsyncSandbox, Sandbox

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
from e2b_loopback import skip_unless_loopback  # noqa: E402

# What the tests give a sandbox unless they test timeouts: long enough for
# a loaded host, short enough that a crashed test leaves nothing for long.
TIMEOUT = 600


def pytest_collection_modifyitems(config, items):
    skip_unless_loopback(items)


@pytest.fixture(scope="session")
def api_key():
    return os.environ["E2B_API_KEY"]


@pytest.fixture(scope="session")
def other_key():
    key = os.environ.get("BHATTI_E2B_OTHER_KEY")
    if not key:
        pytest.skip("BHATTI_E2B_OTHER_KEY not set")
    return key


@pytest.fixture(scope="session")
def bhatti():
    """An httpx client of the daemon's native API, as alice."""
    url = os.environ.get("BHATTI_URL")
    if not url:
        pytest.skip("BHATTI_URL not set")
    headers = {"Authorization": f"Bearer {os.environ['E2B_API_KEY']}"}
    with httpx.Client(base_url=url, headers=headers, timeout=120) as c:
        yield c


@pytest.fixture
def sandbox():
    """A sandbox of the default template, killed after the test."""
    sb = Sandbox.create(timeout=TIMEOUT)
    yield sb
    kill_quietly(sb.sandbox_id)


@pytest.fixture
def make_sandbox():
    """Creates sandboxes (`Sandbox.create` arguments) and kills them all
    after the test."""
    made = []

    def make(**kwargs):
        kwargs.setdefault("timeout", TIMEOUT)
        sb = Sandbox.create(**kwargs)
        made.append(sb.sandbox_id)
        return sb

    yield make
    for sid in made:
        kill_quietly(sid)


@pytest.fixture
def async_sandbox_ids():
    """Ids of sandboxes an async test made, killed after it."""
    ids = []
    yield ids
    for sid in ids:
        kill_quietly(sid)


def kill_quietly(sandbox_id):
    try:
        Sandbox.kill(sandbox_id)
    except Exception:  # noqa: BLE001 - cleanup must not hide the test's error
        pass


def eventually(check, limit=120.0, step=0.5):
    """Polls `check` until it returns a truthy value (returned), for at most
    `limit` seconds; no tight timing."""
    end = time.monotonic() + limit
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"condition not met within {limit} s")
        time.sleep(step)


__all__ = ["AsyncSandbox", "Sandbox", "eventually", "kill_quietly", "TIMEOUT"]
