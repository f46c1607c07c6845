"""Users are isolated on the E2B face too: another user's key cannot see,
kill, connect, pause or time out a sandbox (404, as one that does not
exist); the port relay needs the sandbox's own traffic or access token and
passes neither token to the guest."""

import os

import httpx
import pytest
from e2b import Sandbox, SandboxNotFoundException, SandboxQuery

from conftest import eventually

PORT = 8000


def test_another_user_cannot_see_kill_or_connect(sandbox, other_key):
    sid = sandbox.sandbox_id
    as_bob = {"api_key": other_key}
    with pytest.raises(SandboxNotFoundException):
        Sandbox.get_info(sid, **as_bob)
    assert Sandbox.kill(sid, **as_bob) is False
    with pytest.raises(SandboxNotFoundException):
        Sandbox.connect(sid, **as_bob)
    with pytest.raises(SandboxNotFoundException):
        Sandbox.set_timeout(sid, 5, **as_bob)
    with pytest.raises(SandboxNotFoundException):
        Sandbox.pause(sid, **as_bob)
    listed = Sandbox.list(**as_bob)
    assert sid not in [s.sandbox_id for s in listed.next_items()]
    # Bob's own sandbox is not alice's either.
    bobs = Sandbox.create(timeout=300, metadata={"owner": "bob"}, **as_bob)
    try:
        mine = Sandbox.list(query=SandboxQuery(metadata={"owner": "bob"}))
        assert mine.next_items() == []
        assert Sandbox.kill(bobs.sandbox_id) is False
    finally:
        assert Sandbox.kill(bobs.sandbox_id, **as_bob) is True
    # Alice's sandbox is untouched.
    assert sandbox.get_info().sandbox_id == sid


def serve(bhatti, sandbox_id):
    """Starts an HTTP server on PORT in the guest (native exec: envd's
    commands are not what this tests)."""
    script = (
        "mkdir -p /tmp/www && echo hello-relay > /tmp/www/hello.txt && "
        "(cd /tmp/www && setsid python3 -m http.server %d "
        "</dev/null >/dev/null 2>&1 &)" % PORT
    )
    r = bhatti.post(
        f"/sandboxes/{sandbox_id}/exec",
        json={"cmd": ["sh", "-c", script], "timeout_sec": 60},
    )
    assert r.status_code == 200 and r.json()["exit_code"] == 0, r.text


def relay(sandbox_id, path="/hello.txt", **headers):
    h = {"E2b-Sandbox-Id": sandbox_id, "E2b-Sandbox-Port": str(PORT)}
    h.update(headers)
    return httpx.get(os.environ["E2B_SANDBOX_URL"] + path, headers=h, timeout=60)


def test_port_relay_needs_the_sandboxes_token(make_sandbox, bhatti):
    sb = make_sandbox()
    other = make_sandbox()
    if sb.get_info().template_id != "minimal":
        pytest.skip("the port relay test serves with python3 (the minimal tier)")
    serve(bhatti, sb.sandbox_id)
    traffic = {"e2b-traffic-access-token": sb.traffic_access_token}

    def up():
        r = relay(sb.sandbox_id, **traffic)
        return r if r.status_code == 200 else None

    r = eventually(up, limit=120)
    assert r.text == "hello-relay\n"
    # The envd access token opens it too.
    r = relay(sb.sandbox_id, **{"X-Access-Token": sb._envd_access_token})
    assert r.status_code == 200, r.text
    # No token, a wrong one, another sandbox's: refused.
    assert relay(sb.sandbox_id).status_code == 401
    wrong = {"e2b-traffic-access-token": other.traffic_access_token}
    assert relay(sb.sandbox_id, **wrong).status_code == 401
    wrong = {"X-Access-Token": other._envd_access_token}
    assert relay(sb.sandbox_id, **wrong).status_code == 401
    # A port nothing listens on: E2B's 502.
    h = {"E2b-Sandbox-Id": sb.sandbox_id, "E2b-Sandbox-Port": "8999", **traffic}
    r = httpx.get(os.environ["E2B_SANDBOX_URL"] + "/", headers=h, timeout=120)
    assert r.status_code == 502 and "port is not open" in r.json()["message"]
    # A killed sandbox: 502 "was not found" (the SDK's not-running).
    other.kill()
    wrong = {"e2b-traffic-access-token": other.traffic_access_token}
    r = relay(other.sandbox_id, **wrong)
    assert r.status_code == 502 and "was not found" in r.json()["message"]


def test_port_relay_passes_no_token_to_the_guest(make_sandbox, bhatti):
    sb = make_sandbox()
    if sb.get_info().template_id != "minimal":
        pytest.skip("needs python3 (the minimal tier)")
    # A server that answers with the headers it got.
    script = (
        "cat > /tmp/echo.py <<'EOF'\n"
        "import http.server\n"
        "class H(http.server.BaseHTTPRequestHandler):\n"
        "    def do_GET(self):\n"
        "        body = str(self.headers).lower().encode()\n"
        "        self.send_response(200)\n"
        "        self.send_header('content-length', str(len(body)))\n"
        "        self.end_headers()\n"
        "        self.wfile.write(body)\n"
        "http.server.HTTPServer(('127.0.0.1', %d), H).serve_forever()\n"
        "EOF\n"
        "setsid python3 /tmp/echo.py </dev/null >/dev/null 2>&1 &" % PORT
    )
    r = bhatti.post(
        f"/sandboxes/{sb.sandbox_id}/exec",
        json={"cmd": ["sh", "-c", script], "timeout_sec": 60},
    )
    assert r.status_code == 200 and r.json()["exit_code"] == 0, r.text
    token = {"X-Access-Token": sb._envd_access_token, "X-Probe": "seen"}

    def up():
        r = relay(sb.sandbox_id, path="/", **token)
        return r if r.status_code == 200 else None

    got = eventually(up, limit=120).text
    assert "x-probe: seen" in got
    assert sb._envd_access_token not in got and "x-access-token" not in got
    assert "e2b-sandbox-id" not in got
