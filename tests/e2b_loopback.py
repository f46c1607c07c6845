"""The guard every E2B SDK suite shares: skip every test unless both E2B
URLs point at loopback (the SDKs' default is E2B's cloud, and these tests
never send a packet off the host)."""

import os
import urllib.parse

import pytest

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def _loopback(url):
    return bool(url) and urllib.parse.urlsplit(url).hostname in LOOPBACK


def skip_unless_loopback(items):
    """Marks `items` skipped unless E2B_API_URL and E2B_SANDBOX_URL are on
    loopback."""
    if _loopback(os.environ.get("E2B_API_URL")) and _loopback(
        os.environ.get("E2B_SANDBOX_URL")
    ):
        return
    skip = pytest.mark.skip(
        reason="E2B_API_URL and E2B_SANDBOX_URL must point at a bhatti daemon "
        "on loopback (run: cargo test -p bhatti-server --test vm -- e2b)"
    )
    for item in items:
        item.add_marker(skip)
