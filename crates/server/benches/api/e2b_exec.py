"""Exec through the unmodified E2B SDK against a bhatti daemon, for the
api bench (crates/server/benches/api/e2b.rs), which sets the environment:

  E2B_API_KEY, E2B_API_URL, E2B_SANDBOX_URL, E2B_DOMAIN  as the SDK tests
  BHATTI_URL         the daemon's native API (loopback)
  BHATTI_SANDBOX_ID  a running sandbox of that key's user
  BHATTI_ARGV        JSON: the argv the E2B path runs in the guest
  BHATTI_N           timed rounds
  BHATTI_GAP_MS      idle time before each timed call (a caller's think
                     time: what the daemon does in the background then
                     is off the call's path), default 0

Interleaves `commands.run("true")` with a native `POST /exec` of the argv
the E2B path runs (`/bin/bash -l -c true`, or `/bin/sh` for a guest
without bash), from this one process with the same HTTP stack, and prints
the nanoseconds of each as JSON: {"e2b": [...], "native": [...]}.
Refuses to run unless every URL is on loopback."""

import json
import os
import sys
import time
import urllib.parse

import httpx
from e2b import Sandbox

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def main():
    urls = [os.environ[v] for v in ("E2B_API_URL", "E2B_SANDBOX_URL", "BHATTI_URL")]
    if any(urllib.parse.urlsplit(u).hostname not in LOOPBACK for u in urls):
        sys.exit("every URL must be on loopback")
    sid = os.environ["BHATTI_SANDBOX_ID"]
    argv = json.loads(os.environ["BHATTI_ARGV"])
    n = int(os.environ["BHATTI_N"])
    gap = int(os.environ.get("BHATTI_GAP_MS", "0")) / 1000
    sandbox = Sandbox.connect(sid)
    key = os.environ["E2B_API_KEY"]
    native = httpx.Client(
        base_url=os.environ["BHATTI_URL"],
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    )

    def e2b():
        r = sandbox.commands.run("true")
        assert r.exit_code == 0, r

    def post():
        r = native.post(f"/sandboxes/{sid}/exec", json={"cmd": argv})
        assert r.status_code == 200 and r.json()["exit_code"] == 0, r.text

    for _ in range(max(3, n // 10)):
        e2b()
        post()
    out = {"e2b": [], "native": []}
    for i in range(n):
        order = [("e2b", e2b), ("native", post)]
        for name, f in order if i % 2 == 0 else reversed(order):
            time.sleep(gap)
            t = time.perf_counter_ns()
            f()
            out[name].append(time.perf_counter_ns() - t)
    json.dump(out, sys.stdout)


main()
