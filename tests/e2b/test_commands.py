"""Commands through the unmodified E2B SDK against the daemon's envd
(process.Process over the lohar agent): foreground runs with callbacks,
exit codes, envs, cwd, users, background commands (wait, kill, list,
connect), stdin, timeouts.

Fixtures: conftest.py (`sandbox`, `eventually`).
"""

import time

import pytest
from e2b import CommandExitException, SandboxNotRunningException, TimeoutException
from packaging.version import Version

from conftest import eventually


def running_pids(sb):
    return {p.pid for p in sb.commands.list()}


def test_foreground_run_streams_to_callbacks(sandbox):
    out, err = [], []
    r = sandbox.commands.run(
        "echo out1; echo err1 >&2; echo out2",
        on_stdout=out.append,
        on_stderr=err.append,
    )
    assert r.exit_code == 0
    assert r.stdout == "out1\nout2\n"
    assert r.stderr == "err1\n"
    assert "".join(out) == "out1\nout2\n"
    assert "".join(err) == "err1\n"
    assert r.error is None


def test_nonzero_exit_raises_with_the_output(sandbox):
    with pytest.raises(CommandExitException) as e:
        sandbox.commands.run("echo partial; echo bad >&2; exit 3")
    assert e.value.exit_code == 3
    assert e.value.stdout == "partial\n"
    assert e.value.stderr == "bad\n"
    # A missing program is the shell's 127, not an RPC error.
    with pytest.raises(CommandExitException) as e:
        sandbox.commands.run("no-such-program-here")
    assert e.value.exit_code == 127


def test_bash_once_the_guest_has_it_and_sh_again_once_it_is_gone(sandbox, bhatti):
    """The SDK runs every command as `/bin/bash -l -c ...`; a guest without
    bash runs it with /bin/sh. That a guest has bash is remembered (no
    stat in the guest per command), so a bash that goes away costs one
    failed command (a clear error), and /bin/sh runs the next."""
    sid = sandbox.sandbox_id
    wrapper = (
        "[ -e /bin/bash ] && mv /bin/bash /bin/bash.real; "
        "printf '#!/bin/sh\\nexport VIA=bash\\nexec /bin/sh \"$@\"\\n' > /bin/bash "
        "&& chmod 755 /bin/bash"
    )
    r = bhatti.post(f"/sandboxes/{sid}/exec", json={"cmd": ["/bin/sh", "-c", wrapper]})
    assert r.status_code == 200 and r.json()["exit_code"] == 0, r.text
    for _ in range(2):
        assert sandbox.commands.run("echo ${VIA:-sh}").stdout == "bash\n"
    r = bhatti.post(f"/sandboxes/{sid}/exec", json={"cmd": ["rm", "/bin/bash"]})
    assert r.status_code == 200 and r.json()["exit_code"] == 0, r.text
    with pytest.raises(Exception) as e:  # noqa: B017 - the SDK's class varies
        sandbox.commands.run("echo ${VIA:-sh}")
    assert "bash" in str(e.value)
    assert sandbox.commands.run("echo ${VIA:-sh}").stdout == "sh\n"


def test_envs_cwd_and_user(sandbox):
    r = sandbox.commands.run(
        'echo "$GREETING"; pwd', envs={"GREETING": "hello there"}, cwd="/tmp"
    )
    assert r.stdout == "hello there\n/tmp\n"
    assert sandbox.commands.run("id -u", user="root").stdout.strip() == "0"
    # bhatti's images have the user lohar (uid 1000).
    r = sandbox.commands.run("id -un; echo $HOME", user="lohar")
    assert r.stdout.split() == ["lohar", "/home/lohar"]
    # and `user` (uid 1001), E2B's default user name, as E2B's templates do.
    r = sandbox.commands.run("id -un; echo $HOME; pwd", user="user")
    assert r.stdout.split() == ["user", "/home/user", "/home/user"]
    # Binary-safe output: bytes split across frames come back whole.
    r = sandbox.commands.run("head -c 300000 /dev/zero | tr '\\0' x")
    assert r.stdout == "x" * 300000


def test_background_wait_list_and_kill(sandbox):
    quick = sandbox.commands.run("sleep 1; echo done", background=True)
    assert quick.pid > 0
    assert quick.wait().stdout == "done\n"

    h = sandbox.commands.run("sleep 600", background=True)
    assert h.pid in running_pids(sandbox)
    listed = next(p for p in sandbox.commands.list() if p.pid == h.pid)
    assert listed.cmd == "/bin/bash"
    assert listed.args == ["-l", "-c", "sleep 600"]
    assert sandbox.commands.kill(h.pid) is True
    with pytest.raises(CommandExitException) as e:
        h.wait()
    assert e.value.exit_code == -1
    eventually(lambda: h.pid not in running_pids(sandbox), limit=30)
    # Gone: kill says so instead of failing.
    assert sandbox.commands.kill(h.pid) is False


def test_stdin_is_sent_to_the_command(sandbox):
    h = sandbox.commands.run("head -n 1", background=True, stdin=True)
    sandbox.commands.send_stdin(h.pid, "first line\n")
    assert h.wait().stdout == "first line\n"
    # Without stdin=True the command reads end of file at once.
    assert sandbox.commands.run("cat; echo eof").stdout == "eof\n"


def test_stream_input_feeds_stdin_in_order(sandbox):
    h = sandbox.commands.run("head -n 3", background=True, stdin=True)
    sandbox.commands.stream_input(h.pid, iter(["one\n", b"two\n", "three\n"]))
    assert h.wait().stdout == "one\ntwo\nthree\n"
    with pytest.raises(Exception):
        sandbox.commands.stream_input(h.pid, ["late\n"])


def test_close_stdin_ends_the_input(sandbox):
    # The daemon advertises envd 0.5.7, so the SDK sends CloseStdin (0.5.2).
    assert sandbox._envd_version >= Version("0.5.2")
    h = sandbox.commands.run("cat; echo closed", background=True, stdin=True)
    h.send_stdin(b"abc")
    h.close_stdin()
    assert h.wait().stdout == "abcclosed\n"


def test_timeout_ends_and_kills_the_command(sandbox):
    start = time.monotonic()
    with pytest.raises(TimeoutException):
        sandbox.commands.run("sleep 300", timeout=3)
    assert time.monotonic() - start < 120
    # The deadline killed it: it leaves the list.
    eventually(
        lambda: not any(p.args[-1:] == ["sleep 300"] for p in sandbox.commands.list()),
        limit=60,
    )


def test_connect_to_a_running_command(sandbox):
    h = sandbox.commands.run(
        "sleep 2; echo one; sleep 1; echo two", background=True
    )
    h.disconnect()
    # The command outlives the stream that started it.
    assert h.pid in running_pids(sandbox)
    again = sandbox.commands.connect(h.pid)
    r = again.wait()
    assert r.exit_code == 0
    assert r.stdout.endswith("two\n")
    with pytest.raises(Exception):
        sandbox.commands.connect(h.pid).wait()


def test_killing_the_sandbox_ends_its_commands(make_sandbox):
    sb = make_sandbox()
    h = sb.commands.run("sleep 600", background=True)
    sb.kill()
    # The stream breaks (UNAVAILABLE); the SDK's health probe then finds
    # the sandbox gone.
    with pytest.raises(SandboxNotRunningException):
        h.wait()
