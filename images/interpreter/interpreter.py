#!/usr/bin/env python3
"""bhatti's code-interpreter server: E2B's code-interpreter execute API
over Jupyter kernels (Debian's python3-ipykernel and
python3-jupyter-client), so the unmodified `e2b-code-interpreter` SDK's
`run_code` works against a bhatti sandbox of the `interpreter` tier.

It listens on port 49999 (the SDK's JUPYTER_PORT) and serves:

  POST   /execute               {code, context_id?, language?, env_vars?}
                                -> 200, one JSON object per line (NDJSON):
                                   {"type": "number_of_executions", "execution_count"}
                                   {"type": "stdout"|"stderr", "text", "timestamp"}
                                   {"type": "result", "text"?, "html"?, "png"?, ...,
                                    "is_main_result", "extra"?}
                                   {"type": "error", "name", "value", "traceback"}
                                   {"type": "end_of_execution"}
  POST   /contexts              {language?, cwd?} -> {id, language, cwd}
  GET    /contexts              -> [{id, language, cwd}]
  DELETE /contexts/{id}         -> 204
  POST   /contexts/{id}/restart -> 204
  GET    /health                -> 200 "ok"

Only Python is served (language "python" or none): another language is a
400 that names it. The default context (cwd /home/user when it exists)
starts with the server, so the first run_code does not wait for a kernel
start. One execution at a time per context (others wait); a client that
goes away interrupts its execution (a line `{"type": "keepalive"}` goes
out each second a run prints nothing, so that every hop notices). `env_vars` apply to that execution
only. Errors are plain text with a 4xx/5xx status (the SDK shows the
text). The daemon in front of it authenticates every request; the server
itself trusts its callers, as E2B's does.

Standard library plus jupyter_client; started by the sandbox's init
(`python3 /usr/local/lib/bhatti/interpreter.py`).
"""

import datetime
import json
import os
import queue
import threading
import uuid
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from jupyter_client.manager import KernelManager

PORT = int(os.environ.get("BHATTI_INTERPRETER_PORT", "49999"))
DEFAULT_CWD = "/home/user" if os.path.isdir("/home/user") else "/"
MAX_BODY = 64 << 20
# Longest wait for one kernel message before a keepalive line.
POLL_SECONDS = 1.0
# Longest wait for an interrupted run to end.
SETTLE_SECONDS = 30
# What goes out while a run prints nothing (the SDKs ignore unknown types).
KEEPALIVE = {"type": "keepalive"}
# Longest a kernel may take to answer its first request (a TCG guest is slow).
READY_SECONDS = 300

MIME_FIELDS = {
    "text/plain": "text",
    "text/html": "html",
    "text/markdown": "markdown",
    "image/svg+xml": "svg",
    "image/png": "png",
    "image/jpeg": "jpeg",
    "application/pdf": "pdf",
    "text/latex": "latex",
    "application/json": "json",
    "application/javascript": "javascript",
}


def now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


class Gone(Exception):
    """The client closed its connection."""


class Context:
    """One Jupyter kernel and the lock its executions take turns on."""

    def __init__(self, cid, language, cwd):
        self.id, self.language, self.cwd = cid, language, cwd
        self.lock = threading.Lock()
        self.manager = KernelManager(kernel_name="python3")
        self.manager.start_kernel(cwd=cwd)
        self.client = self.manager.blocking_client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=READY_SECONDS)

    def view(self):
        return {"id": self.id, "language": self.language, "cwd": self.cwd}

    def restart(self):
        with self.lock:
            self.client.stop_channels()
            self.manager.restart_kernel(now=True)
            self.client = self.manager.blocking_client()
            self.client.start_channels()
            self.client.wait_for_ready(timeout=READY_SECONDS)

    def shutdown(self):
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)

    def quiet(self, code):
        """Runs `code` with no output kept (env var set-up)."""
        msg_id = self.client.execute(
            code, silent=True, store_history=False, stop_on_error=False
        )
        self.drain(msg_id, lambda _line: None)

    def run(self, code, env, emit):
        """Runs `code`, calling `emit` with each output line's object."""
        with self.lock:
            if env:
                self.quiet(env_code(env, set_them=True))
            try:
                # An error (an interrupt too) must not abort the runs
                # queued after it: each run_code stands alone.
                msg_id = self.client.execute(code, stop_on_error=False)
                self.drain(msg_id, emit)
            finally:
                if env:
                    self.quiet(env_code(env, set_them=False))

    def drain(self, msg_id, emit):
        """Sends the kernel's messages for `msg_id` until it is idle; when
        the client leaves, interrupts the run and waits for its end."""
        try:
            for msg in self.messages(msg_id):
                line = translate(msg["msg_type"], msg["content"]) if msg else None
                if msg is None or line is not None:
                    emit(line)  # raises Gone when the client left
        except Gone:
            self.manager.interrupt_kernel()
            for _ in self.messages(msg_id, limit=SETTLE_SECONDS):
                pass
            raise

    def messages(self, msg_id, limit=None):
        """The kernel's messages for `msg_id` until it is idle, and None
        for each POLL_SECONDS without one (ends after `limit` seconds
        without any when given)."""
        quiet = 0.0
        while True:
            try:
                msg = self.client.get_iopub_msg(timeout=POLL_SECONDS)
            except queue.Empty:
                quiet += POLL_SECONDS
                if limit is not None and quiet >= limit:
                    return
                yield None
                continue
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            quiet = 0.0
            content = msg["content"]
            if msg["msg_type"] == "status" and content.get("execution_state") == "idle":
                return
            yield msg


def env_code(env, set_them):
    """Python that sets `env` in os.environ, or puts back what it replaced."""
    if set_them:
        return (
            "import os as _b_os\n"
            f"_b_saved = {{k: _b_os.environ.get(k) for k in {list(env)!r}}}\n"
            f"_b_os.environ.update({env!r})\n"
        )
    return (
        "for _b_k, _b_v in _b_saved.items():\n"
        "    if _b_v is None: _b_os.environ.pop(_b_k, None)\n"
        "    else: _b_os.environ[_b_k] = _b_v\n"
        "del _b_saved\n"
    )


def translate(kind, content):
    """A kernel message as an output line of E2B's execute stream."""
    if kind == "stream":
        name = "stderr" if content.get("name") == "stderr" else "stdout"
        return {"type": name, "text": content.get("text", ""), "timestamp": now()}
    if kind == "execute_input":
        return {
            "type": "number_of_executions",
            "execution_count": content.get("execution_count"),
        }
    if kind in ("execute_result", "display_data"):
        out = {"type": "result", "is_main_result": kind == "execute_result"}
        extra = {}
        for mime, value in content.get("data", {}).items():
            field = MIME_FIELDS.get(mime)
            if field:
                out[field] = value
            else:
                extra[mime] = value
        if extra:
            out["extra"] = extra
        return out
    if kind == "error":
        return {
            "type": "error",
            "name": content.get("ename", ""),
            "value": content.get("evalue", ""),
            "traceback": "\n".join(content.get("traceback", [])),
        }
    return None


class Contexts:
    """Every context by id; the default one is `default`."""

    def __init__(self):
        self.lock = threading.Lock()
        self.by_id = {}
        self.default_ready = threading.Event()
        threading.Thread(target=self._start_default, daemon=True).start()

    def _start_default(self):
        try:
            ctx = Context("default", "python", DEFAULT_CWD)
            with self.lock:
                self.by_id["default"] = ctx
        finally:
            self.default_ready.set()

    def get(self, cid):
        if cid in (None, "", "default"):
            self.default_ready.wait()
            cid = "default"
        with self.lock:
            return self.by_id.get(cid)

    def create(self, language, cwd):
        ctx = Context(uuid.uuid4().hex, language, cwd)
        with self.lock:
            self.by_id[ctx.id] = ctx
        return ctx

    def remove(self, cid):
        with self.lock:
            ctx = self.by_id.pop(cid, None)
        if ctx:
            ctx.shutdown()
        return ctx is not None

    def all(self):
        self.default_ready.wait()
        with self.lock:
            return [c.view() for c in self.by_id.values()]


CONTEXTS = None


class BadRequest(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def language_of(body):
    language = body.get("language") or "python"
    if language != "python":
        raise BadRequest(HTTPStatus.BAD_REQUEST, f"language {language!r} is not supported (python only)")
    return language


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "bhatti-interpreter"

    def log_message(self, fmt, *args):  # quiet: the console is small
        pass

    def body(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise BadRequest(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "body too large")
        raw = self.rfile.read(length) if length else b""
        if not raw.strip():
            return {}
        try:
            v = json.loads(raw)
        except ValueError as e:
            raise BadRequest(HTTPStatus.BAD_REQUEST, f"invalid JSON body: {e}")
        if not isinstance(v, dict):
            raise BadRequest(HTTPStatus.BAD_REQUEST, "the body must be a JSON object")
        return v

    def reply(self, status, payload=None):
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        if payload is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def text(self, status, message):
        data = message.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def guarded(self, fn):
        try:
            fn()
        except BadRequest as e:
            self.text(e.status, str(e))
        except (BrokenPipeError, ConnectionResetError, Gone):
            self.close_connection = True
        except Exception as e:  # noqa: BLE001 - the client gets the reason
            self.text(HTTPStatus.INTERNAL_SERVER_ERROR, f"{type(e).__name__}: {e}")

    def do_GET(self):
        self.guarded(self._get)

    def do_POST(self):
        self.guarded(self._post)

    def do_DELETE(self):
        self.guarded(self._delete)

    def _get(self):
        if self.path == "/health":
            self.text(HTTPStatus.OK, "ok")
        elif self.path == "/contexts":
            self.reply(HTTPStatus.OK, CONTEXTS.all())
        else:
            raise BadRequest(HTTPStatus.NOT_FOUND, f"no route {self.path}")

    def _post(self):
        body = self.body()
        parts = self.path.strip("/").split("/")
        if parts == ["execute"]:
            self.execute(body)
        elif parts == ["contexts"]:
            language = language_of(body)
            cwd = body.get("cwd") or DEFAULT_CWD
            if not os.path.isdir(cwd):
                raise BadRequest(HTTPStatus.BAD_REQUEST, f"cwd {cwd!r} is not a directory")
            self.reply(HTTPStatus.OK, CONTEXTS.create(language, cwd).view())
        elif len(parts) == 3 and parts[0] == "contexts" and parts[2] == "restart":
            ctx = CONTEXTS.get(parts[1])
            if ctx is None:
                raise BadRequest(HTTPStatus.NOT_FOUND, f"context {parts[1]} not found")
            ctx.restart()
            self.reply(HTTPStatus.NO_CONTENT)
        else:
            raise BadRequest(HTTPStatus.NOT_FOUND, f"no route {self.path}")

    def _delete(self):
        parts = self.path.strip("/").split("/")
        if len(parts) == 2 and parts[0] == "contexts" and CONTEXTS.remove(parts[1]):
            self.reply(HTTPStatus.NO_CONTENT)
        else:
            raise BadRequest(HTTPStatus.NOT_FOUND, f"context {self.path} not found")

    def execute(self, body):
        code = body.get("code")
        if not isinstance(code, str):
            raise BadRequest(HTTPStatus.BAD_REQUEST, "code must be a string")
        if body.get("context_id") and body.get("language"):
            raise BadRequest(HTTPStatus.BAD_REQUEST, "give context_id or language, not both")
        if body.get("language"):
            language_of(body)
        env = body.get("env_vars") or {}
        if not isinstance(env, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in env.items()
        ):
            raise BadRequest(HTTPStatus.BAD_REQUEST, "env_vars must map strings to strings")
        ctx = CONTEXTS.get(body.get("context_id"))
        if ctx is None:
            raise BadRequest(HTTPStatus.NOT_FOUND, f"context {body.get('context_id')} not found")
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def emit(line):
            # None: no output for a while. A keepalive line (a type the
            # SDKs skip) goes through every hop in front of the server, so
            # a client that left is noticed there and the connection here
            # closes: the write fails and the run is interrupted.
            line = KEEPALIVE if line is None else line
            chunk = json.dumps(line).encode() + b"\n"
            try:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError, OSError) as e:
                raise Gone() from e

        ctx.run(code, env, emit)
        emit({"type": "end_of_execution"})
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


def main():
    global CONTEXTS
    CONTEXTS = Contexts()
    server = ThreadingHTTPServer(("0.0.0.0", PORT), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
