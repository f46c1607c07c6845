"""PTYs through the unmodified E2B SDK against the daemon's envd (TTY
sessions of the lohar agent): create, input, resize, kill.

Fixtures: conftest.py (`sandbox`, `eventually`).
"""

import threading

import pytest
from e2b import CommandExitException
from e2b.sandbox.commands.command_handle import PtySize

from conftest import eventually


class Screen:
    """Collects a PTY's output on a thread (the handle's iterator blocks)."""

    def __init__(self, handle):
        self.data = bytearray()
        self.result = None
        self.error = None
        self.thread = threading.Thread(target=self._run, args=(handle,), daemon=True)
        self.thread.start()

    def _run(self, handle):
        try:
            self.result = handle.wait(on_pty=self.data.extend)
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error = e

    def text(self):
        return bytes(self.data).decode("utf-8", "replace")

    def join(self, limit=60):
        self.thread.join(limit)
        assert not self.thread.is_alive(), "the PTY did not end"


def test_pty_runs_a_shell_and_exits(sandbox):
    h = sandbox.pty.create(PtySize(rows=24, cols=80))
    screen = Screen(h)
    sandbox.pty.send_stdin(h.pid, b"echo sum-$((40+2))\n")
    eventually(lambda: "sum-42" in screen.text(), limit=60)
    sandbox.pty.send_stdin(h.pid, b"exit 0\n")
    screen.join()
    assert screen.error is None
    assert screen.result.exit_code == 0


def test_pty_resize_reaches_the_terminal(sandbox):
    h = sandbox.pty.create(PtySize(rows=24, cols=80))
    screen = Screen(h)
    sandbox.pty.resize(h.pid, PtySize(rows=33, cols=101))
    sandbox.pty.send_stdin(h.pid, b"stty size\n")
    eventually(lambda: "33 101" in screen.text(), limit=60)
    assert sandbox.pty.kill(h.pid) is True
    screen.join()


def test_pty_kill_and_list(sandbox):
    h = sandbox.pty.create(PtySize(rows=24, cols=80), envs={"MARK": "pty-env"})
    screen = Screen(h)
    sandbox.pty.send_stdin(h.pid, b'echo "$MARK"\n')
    eventually(lambda: "pty-env" in screen.text(), limit=60)
    assert h.pid in {p.pid for p in sandbox.commands.list()}
    assert sandbox.pty.kill(h.pid) is True
    screen.join()
    assert isinstance(screen.error, CommandExitException)
    assert screen.error.exit_code != 0
    assert sandbox.pty.kill(h.pid) is False
    with pytest.raises(Exception):
        sandbox.pty.send_stdin(h.pid, b"echo gone\n")
