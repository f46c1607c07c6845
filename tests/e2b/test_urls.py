"""What the SDK addresses without the `/e2b` path: signed file URLs
(`download_url`, `upload_url`, served at the daemon's root `/files`) and
per-sandbox hosts (`<port>-<id>.<domain>`, the domain `localhost` when
the daemon has no public one)."""

import os
import urllib.parse

import httpx


def root():
    """The daemon's root URL (E2B_SANDBOX_URL without its path)."""
    u = urllib.parse.urlsplit(os.environ["E2B_SANDBOX_URL"])
    return f"{u.scheme}://{u.netloc}"


def test_signed_urls_upload_and_download(sandbox):
    up = sandbox.upload_url("/tmp/signed.txt", use_signature_expiration=300)
    down = sandbox.download_url("/tmp/signed.txt", use_signature_expiration=300)
    assert "signature=" in up and "signature=" in down
    # No API key and no access token: the signature alone grants these.
    with httpx.Client(timeout=120) as c:
        r = c.post(up, files={"file": ("signed.txt", b"signed bytes")})
        assert r.status_code == 200, r.text
        r = c.get(down)
        assert r.status_code == 200 and r.content == b"signed bytes", r.text
        # The download signature does not write; a changed path or a
        # forged signature is refused, and nothing was written.
        r = c.post(down, files={"file": ("x", b"forged")})
        assert r.status_code == 401, r.text
        # Refused before its body was read: the reply says the connection
        # ends, so the next request does not go on a closing one.
        assert r.headers.get("connection") == "close"
        r = c.get(down.replace("signed.txt", "other.txt"))
        assert r.status_code == 401, r.text
        r = c.get(f"{root()}/files", params={"path": "/etc/hostname"})
        assert r.status_code == 401, r.text
    assert sandbox.files.read("/tmp/signed.txt") == "signed bytes"


def test_an_expired_signature_is_refused(sandbox):
    sandbox.files.write("/tmp/e.txt", "x")
    url = sandbox.download_url("/tmp/e.txt", use_signature_expiration=300)
    q = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    # The same fields with an expiration in the past (re-signed as the SDK
    # would): refused for the time, not the signature.
    from e2b.sandbox.signature import get_signature

    sig = get_signature("/tmp/e.txt", "read", None, sandbox._envd_access_token, -10)
    params = {
        "path": q["path"][0],
        "signature": sig["signature"],
        "signature_expiration": str(sig["expiration"]),
    }
    r = httpx.get(f"{root()}/files", params=params, timeout=60)
    assert r.status_code == 401 and "expired" in r.text, r.text


def test_per_sandbox_hosts_reach_envd(sandbox):
    sandbox.files.write("/tmp/h.txt", "by host")
    host = f"49983-{sandbox.sandbox_id}.localhost"
    token = {"X-Access-Token": sandbox._envd_access_token}
    with httpx.Client(base_url=root(), timeout=60) as c:
        r = c.get("/health", headers={"Host": host})
        assert r.status_code == 204, r.text
        r = c.get("/files", params={"path": "/tmp/h.txt"}, headers={"Host": host, **token})
        assert r.status_code == 200 and r.content == b"by host", r.text
        r = c.get("/files", params={"path": "/tmp/h.txt"}, headers={"Host": host})
        assert r.status_code == 401, r.text
        # A closed guest port through its host: the relay's answer.
        r = c.get("/", headers={"Host": f"8999-{sandbox.sandbox_id}.localhost", **token})
        assert r.status_code == 502 and "not open" in r.text, r.text
        # A host naming no sandbox is not the E2B face.
        r = c.get("/health", headers={"Host": "49983-sb-0000000000000000.localhost"})
        assert r.status_code != 204
