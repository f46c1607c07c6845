"""`e2b-code-interpreter`'s run_code and code contexts against bhatti's
`interpreter` tier (a Jupyter kernel from Debian's packages behind
bhatti's code-interpreter server, reached through the daemon's port
relay on 49999)."""

import asyncio

import pytest
from e2b import SandboxException
from e2b_code_interpreter import AsyncSandbox

# The kernel's first answer under TCG: generous.
FIRST = 600


def test_state_results_and_streams(sandbox):
    out = []
    first = sandbox.run_code(
        "import os\nx = 40\nprint('hello'); x + 2",
        on_stdout=lambda m: out.append(m.line),
        timeout=FIRST,
    )
    assert first.error is None
    assert first.logs.stdout == ["hello\n"]
    assert out == ["hello\n"]
    assert first.text == "42"
    assert first.results[0].is_main_result
    # State lives on in the default context.
    again = sandbox.run_code("x * 2")
    assert again.text == "80"
    assert again.execution_count > first.execution_count
    # Where and as whom, as in E2B's template.
    who = sandbox.run_code("import getpass; (os.getcwd(), getpass.getuser())")
    assert who.text == "('/home/user', 'user')"


def test_errors_and_stderr(sandbox):
    errors = []
    r = sandbox.run_code(
        "import sys\nprint('warn', file=sys.stderr)\n1/0", on_error=errors.append
    )
    assert r.logs.stderr == ["warn\n"]
    assert r.error is not None and r.error.name == "ZeroDivisionError"
    assert r.error.value == "division by zero"
    assert "ZeroDivisionError" in r.error.traceback
    assert errors and errors[0].name == "ZeroDivisionError"


def test_env_vars_apply_to_one_run(sandbox):
    r = sandbox.run_code("os.environ.get('GREETING')", envs={"GREETING": "hi"})
    assert r.text == "'hi'"
    # Gone after it (None shows no result, as in Jupyter: compare a string).
    assert sandbox.run_code("str(os.environ.get('GREETING'))").text == "'None'"


def test_rich_results(sandbox):
    r = sandbox.run_code(
        "from IPython.display import HTML, display\n"
        "display(HTML('<b>bold</b>'))\n"
        "{'a': 1}"
    )
    html = [x for x in r.results if x.html]
    assert html and html[0].html == "<b>bold</b>" and not html[0].is_main_result
    assert r.results[-1].is_main_result and r.results[-1].text == "{'a': 1}"


def test_contexts_are_separate(sandbox):
    ctx = sandbox.create_code_context(cwd="/tmp")
    assert ctx.language == "python" and ctx.cwd == "/tmp"
    sandbox.run_code("y = 'mine'", context=ctx, timeout=FIRST)
    assert sandbox.run_code("y", context=ctx).text == "'mine'"
    r = sandbox.run_code("y")
    assert r.error is not None and r.error.name == "NameError"
    assert sandbox.run_code("import os; os.getcwd()", context=ctx).text == "'/tmp'"
    ids = [c.id for c in sandbox.list_code_contexts()]
    assert ctx.id in ids
    sandbox.restart_code_context(ctx)
    gone = sandbox.run_code("y", context=ctx, timeout=FIRST)
    assert gone.error is not None and gone.error.name == "NameError"
    sandbox.remove_code_context(ctx)
    assert ctx.id not in [c.id for c in sandbox.list_code_contexts()]


def test_bad_requests_are_clear(sandbox):
    with pytest.raises(SandboxException) as e:
        sandbox.run_code("1", language="r")
    assert "not supported" in str(e.value)


def test_a_timeout_interrupts_the_run(sandbox):
    with pytest.raises(Exception):
        sandbox.run_code("import time; time.sleep(600)", timeout=5)
    # The kernel was interrupted, not left sleeping: the next run answers.
    assert sandbox.run_code("1 + 1", timeout=120).text == "2"


def test_async_sandbox_runs_code():
    async def go():
        sb = await AsyncSandbox.create(timeout=900)
        try:
            r = await sb.run_code("sum(range(10))", timeout=FIRST)
            assert r.text == "45"
        finally:
            await sb.kill()

    asyncio.run(go())
