"""The control plane's routes that SDK 2.63 does not call (older SDKs and
other clients do), and its error shapes, through plain HTTP."""

import os

import httpx
import pytest
from e2b import Sandbox

from conftest import TIMEOUT, kill_quietly


@pytest.fixture
def api(api_key):
    headers = {"X-API-Key": api_key}
    with httpx.Client(
        base_url=os.environ["E2B_API_URL"], headers=headers, timeout=120
    ) as c:
        yield c


def error(r, status):
    assert r.status_code == status, r.text
    body = r.json()
    assert body["code"] == status and body["message"], body
    return body["message"]


def test_default_create_has_e2bs_default_timeout():
    sb = Sandbox.create()
    try:
        info = sb.get_info()
        left = (info.end_at - info.started_at).total_seconds()
        assert 240 <= left <= 360, left
    finally:
        kill_quietly(sb.sandbox_id)


def test_v1_create_list_resume_and_refresh(api):
    r = api.post(
        "/sandboxes",
        json={"templateID": "base", "timeout": TIMEOUT, "metadata": {"api": "v1"}},
    )
    assert r.status_code == 201, r.text
    created = r.json()
    sid = created["sandboxID"]
    try:
        for k in ("templateID", "clientID", "envdVersion", "envdAccessToken"):
            assert created[k], k
        assert "domain" in created and created["domain"] is None
        listed = api.get("/sandboxes", params={"metadata": "api=v1"}).json()
        assert [s["sandboxID"] for s in listed] == [sid]
        assert listed[0]["state"] == "running"
        error(api.post(f"/sandboxes/{sid}/resume", json={}), 409)
        assert api.post(f"/sandboxes/{sid}/refreshes", json={"duration": 60}).status_code == 204
        assert api.post(f"/sandboxes/{sid}/pause", json={}).status_code == 204
        # The running-only listing leaves it out now.
        assert api.get("/sandboxes", params={"metadata": "api=v1"}).json() == []
        error(api.post(f"/sandboxes/{sid}/refreshes", json={}), 409)
        r = api.post(f"/sandboxes/{sid}/resume", json={"timeout": TIMEOUT})
        assert r.status_code == 201 and r.json()["sandboxID"] == sid, r.text
        detail = api.get(f"/sandboxes/{sid}").json()
        assert detail["state"] == "running" and detail["metadata"] == {"api": "v1"}
        assert detail["envdAccessToken"] == created["envdAccessToken"]
        r = api.post(f"/sandboxes/{sid}/connect", json={"timeout": 10})
        assert r.status_code == 200, r.text
        # A connect never shortens the timeout.
        assert api.get(f"/sandboxes/{sid}").json()["endAt"] == detail["endAt"]
        [m] = api.get(f"/sandboxes/{sid}/metrics").json()
        assert m["cpuCount"] >= 1 and m["memTotal"] > 0, m
        many = api.get("/sandboxes/metrics", params={"sandbox_ids": f"{sid},sb-0"})
        assert list(many.json()["sandboxes"]) == [sid], many.text
        assert api.delete(f"/sandboxes/{sid}").status_code == 204
        error(api.delete(f"/sandboxes/{sid}"), 404)
    finally:
        kill_quietly(sid)


def test_errors_are_e2bs_shape(api):
    error(api.post("/v2/sandboxes", content=b"{not json"), 400)
    error(api.post("/v2/sandboxes", json={"templateID": "base", "timeout": -1}), 400)
    msg = error(api.post("/v2/sandboxes", json={"templateID": "nope"}), 404)
    assert "nope" in msg
    error(api.get("/v2/sandboxes", params={"state": "gone"}), 400)
    error(api.get("/v2/sandboxes", params={"limit": "0"}), 400)
    error(api.get("/no/such/route"), 404)
    error(api.put("/v2/sandboxes"), 405)
    error(api.get("/sandboxes/sb-none"), 404)
    error(api.post("/sandboxes/sb-none/timeout", json={"timeout": 5}), 404)
    r = httpx.get(os.environ["E2B_API_URL"] + "/v2/sandboxes", timeout=60)
    error(r, 401)
    r = httpx.get(
        os.environ["E2B_API_URL"] + "/v2/sandboxes",
        headers={"X-API-Key": "bht_wrong"},
        timeout=60,
    )
    error(r, 401)
