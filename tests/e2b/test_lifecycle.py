"""The E2B control plane through the SDK: create (sync and async), info,
connect, list with filters and pages, timeouts and their expiry, pause and
resume, metrics, errors."""

import asyncio
import datetime

import pytest
from e2b import (
    AsyncSandbox,
    AuthenticationException,
    Sandbox,
    SandboxException,
    SandboxNotFoundException,
    SandboxQuery,
    SandboxState,
)

from conftest import TIMEOUT, eventually

ENVD_VERSION = "0.5.7"


def ids(paginator):
    out = []
    while paginator.has_next:
        out += [s.sandbox_id for s in paginator.next_items()]
    return out


def state_of(sandbox_id):
    return Sandbox.get_info(sandbox_id).state


def gone(sandbox_id):
    try:
        Sandbox.get_info(sandbox_id)
    except SandboxNotFoundException:
        return True
    return False


def test_create_info_and_kill():
    sb = Sandbox.create(
        timeout=TIMEOUT, metadata={"suite": "e2b", "who": "create"}, envs={"A": "1"}
    )
    try:
        assert sb.sandbox_id.startswith("sb-")
        assert str(sb._envd_version) == ENVD_VERSION
        assert sb._envd_access_token and sb.traffic_access_token
        info = sb.get_info()
        assert info.sandbox_id == sb.sandbox_id
        assert info.state == SandboxState.RUNNING
        assert info.metadata == {"suite": "e2b", "who": "create"}
        assert info.template_id in ("minimal", "busybox")
        assert info.cpu_count >= 1 and info.memory_mb >= 128
        assert info.envd_version == ENVD_VERSION
        # The timeout counts from the create.
        left = info.end_at - info.started_at
        assert datetime.timedelta(seconds=TIMEOUT - 60) <= left
        assert left <= datetime.timedelta(seconds=TIMEOUT + 60)
        assert info.lifecycle == {"on_timeout": "kill", "auto_resume": False}
    finally:
        assert sb.kill() is True
    assert Sandbox.kill(sb.sandbox_id) is False, "a second kill finds nothing"
    assert gone(sb.sandbox_id)


def test_create_async(async_sandbox_ids):
    async def go():
        sb = await AsyncSandbox.create(timeout=TIMEOUT, metadata={"client": "async"})
        async_sandbox_ids.append(sb.sandbox_id)
        info = await sb.get_info()
        assert info.state == SandboxState.RUNNING
        assert info.metadata == {"client": "async"}
        again = await AsyncSandbox.connect(sb.sandbox_id)
        assert again.sandbox_id == sb.sandbox_id
        assert await sb.kill() is True
        assert await AsyncSandbox.kill(sb.sandbox_id) is False

    asyncio.run(go())


def test_connect_returns_the_same_sandbox(sandbox):
    again = Sandbox.connect(sandbox.sandbox_id)
    assert again.sandbox_id == sandbox.sandbox_id
    assert again._envd_access_token == sandbox._envd_access_token
    assert again.get_info().state == SandboxState.RUNNING


def test_list_filters_by_metadata_and_state_and_pages(make_sandbox):
    a = make_sandbox(metadata={"suite": "list", "name": "a"})
    b = make_sandbox(metadata={"suite": "list", "name": "b"})
    only_a = SandboxQuery(metadata={"suite": "list", "name": "a"})
    assert ids(Sandbox.list(query=only_a)) == [a.sandbox_id]
    both = SandboxQuery(metadata={"suite": "list"})
    assert sorted(ids(Sandbox.list(query=both))) == sorted(
        [a.sandbox_id, b.sandbox_id]
    )
    # One per page: the token leads to the other, then the end.
    pages = Sandbox.list(query=both, limit=1)
    first = pages.next_items()
    assert len(first) == 1 and pages.has_next and pages.next_token
    second = pages.next_items()
    assert len(second) == 1 and second[0].sandbox_id != first[0].sandbox_id
    assert not pages.has_next, "two sandboxes, two pages"
    # State: b paused, a running.
    assert b.pause() is True
    paused = SandboxQuery(metadata={"suite": "list"}, state=[SandboxState.PAUSED])
    assert ids(Sandbox.list(query=paused)) == [b.sandbox_id]
    running = SandboxQuery(metadata={"suite": "list"}, state=[SandboxState.RUNNING])
    assert ids(Sandbox.list(query=running)) == [a.sandbox_id]
    listed = {s.sandbox_id: s for s in Sandbox.list(query=both).next_items()}
    assert listed[a.sandbox_id].metadata == {"suite": "list", "name": "a"}
    assert listed[b.sandbox_id].state == SandboxState.PAUSED


def test_metadata_with_reserved_characters(make_sandbox):
    meta = {"path": "a/b c&d=e"}
    sb = make_sandbox(metadata=meta)
    assert ids(Sandbox.list(query=SandboxQuery(metadata=meta))) == [sb.sandbox_id]
    assert sb.get_info().metadata == meta


def test_set_timeout_and_expiry_destroys(make_sandbox):
    sb = make_sandbox(timeout=TIMEOUT)
    sb.set_timeout(3)
    end = sb.get_info().end_at
    assert end - datetime.datetime.now(datetime.timezone.utc) < datetime.timedelta(
        seconds=30
    )
    eventually(lambda: gone(sb.sandbox_id), limit=180)
    everything = ids(Sandbox.list())
    assert sb.sandbox_id not in everything


def test_expiry_with_auto_pause_pauses(make_sandbox):
    sb = make_sandbox(timeout=3, lifecycle={"on_timeout": "pause"})
    assert sb.get_info().lifecycle["on_timeout"] == "pause"
    eventually(lambda: state_of(sb.sandbox_id) == SandboxState.PAUSED, limit=240)
    Sandbox.connect(sb.sandbox_id, timeout=TIMEOUT)
    assert state_of(sb.sandbox_id) == SandboxState.RUNNING


def test_pause_then_connect_resumes(sandbox):
    assert sandbox.pause() is True
    assert sandbox.pause() is False, "already paused: 409"
    info = sandbox.get_info()
    assert info.state == SandboxState.PAUSED
    with pytest.raises(SandboxException):
        sandbox.set_timeout(30)
    resumed = Sandbox.connect(sandbox.sandbox_id, timeout=TIMEOUT)
    assert resumed.sandbox_id == sandbox.sandbox_id
    info = resumed.get_info()
    assert info.state == SandboxState.RUNNING
    left = info.end_at - datetime.datetime.now(datetime.timezone.utc)
    assert datetime.timedelta(seconds=TIMEOUT - 120) < left


def test_metrics_are_a_series_of_samples(sandbox):
    info = sandbox.get_info()
    # At least one sample, even before the daemon's first round (5 s).
    m = sandbox.get_metrics()[-1]
    assert m.cpu_count == info.cpu_count
    assert m.mem_total == info.memory_mb * 1024 * 1024
    assert 0 < m.mem_used  # the VMM's resident memory: it is running
    assert 0 <= m.cpu_used_pct
    assert 0 < m.disk_used and 0 < m.disk_total
    # The daemon samples running sandboxes every 5 s: a series builds up.
    series = eventually(
        lambda: (lambda s: s if len(s) >= 2 else None)(sandbox.get_metrics())
    )
    stamps = [x.timestamp for x in series]
    assert stamps == sorted(stamps)
    last = series[-1].timestamp
    second = datetime.timedelta(seconds=1)
    near = sandbox.get_metrics(start=last - second, end=last + second)
    assert near and all(abs(x.timestamp - last) <= 3 * second for x in near)
    long_ago = last - datetime.timedelta(days=2)
    assert sandbox.get_metrics(start=long_ago, end=long_ago + second) == []


def test_unknown_template_is_refused():
    with pytest.raises(SandboxException) as e:
        Sandbox.create("no-such-template", timeout=60)
    assert e.value.status_code == 404
    assert "no-such-template" in str(e.value)


def test_missing_sandbox_and_bad_key():
    assert gone("sb-doesnotexist")
    assert Sandbox.kill("sb-doesnotexist") is False
    with pytest.raises(SandboxNotFoundException):
        Sandbox.connect("sb-doesnotexist")
    with pytest.raises(AuthenticationException):
        Sandbox.list(api_key="bht_" + "0" * 40).next_items()


def test_idempotency_key_makes_one_sandbox(make_sandbox):
    first = make_sandbox(idempotency_key="retry-1")
    again = make_sandbox(idempotency_key="retry-1")
    assert again.sandbox_id == first.sandbox_id
    assert again.commands.run("echo same").stdout == "same\n"
    other = make_sandbox(idempotency_key="retry-2")
    assert other.sandbox_id != first.sandbox_id
