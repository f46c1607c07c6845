"""Files through the unmodified E2B SDK against the daemon's envd (/files
and filesystem.Filesystem over the lohar agent): read, write, write_files,
list, exists, get_info, make_dir, rename, remove, watch_dir, relative
paths, a 50 MB round trip.

Fixtures: conftest.py (`sandbox`, `eventually`).
"""

import asyncio
import gzip
import hashlib
import io
import os

import httpx
import pytest
from e2b import FileType, NotFoundException
from e2b.sandbox.filesystem.filesystem import WriteEntry
from e2b.sandbox.filesystem.watch_handle import FilesystemEventType

from conftest import TIMEOUT, AsyncSandbox, eventually


def test_write_and_read_text_and_bytes(sandbox):
    info = sandbox.files.write("/tmp/t/hello.txt", "héllo\n")
    assert (info.path, info.name) == ("/tmp/t/hello.txt", "hello.txt")
    assert sandbox.files.read("/tmp/t/hello.txt") == "héllo\n"
    blob = bytes(range(256)) * 4
    sandbox.files.write("/tmp/t/blob.bin", blob)
    assert bytes(sandbox.files.read("/tmp/t/blob.bin", format="bytes")) == blob
    streamed = b"".join(sandbox.files.read("/tmp/t/blob.bin", format="stream"))
    assert streamed == blob
    # Overwrite, and an empty file.
    sandbox.files.write("/tmp/t/hello.txt", "again")
    assert sandbox.files.read("/tmp/t/hello.txt") == "again"
    sandbox.files.write("/tmp/t/empty", b"")
    assert sandbox.files.read("/tmp/t/empty") == ""


def test_missing_files_and_directories(sandbox):
    with pytest.raises(NotFoundException):
        sandbox.files.read("/tmp/no/such/file")
    assert sandbox.files.exists("/tmp/no/such/file") is False
    with pytest.raises(NotFoundException):
        sandbox.files.get_info("/tmp/no/such/file")
    with pytest.raises(NotFoundException):
        sandbox.files.list("/tmp/no/such/dir")
    with pytest.raises(Exception):
        sandbox.files.read("/tmp")


def test_write_files_and_list(sandbox):
    written = sandbox.files.write_files(
        [
            WriteEntry(path="/tmp/many/a.txt", data="A"),
            WriteEntry(path="/tmp/many/sub/b.txt", data=b"BB"),
            WriteEntry(path="/tmp/many/c.txt", data=io.BytesIO(b"CCC")),
        ]
    )
    assert sorted(w.path for w in written) == [
        "/tmp/many/a.txt",
        "/tmp/many/c.txt",
        "/tmp/many/sub/b.txt",
    ]
    assert sandbox.files.read("/tmp/many/sub/b.txt") == "BB"
    assert sandbox.files.read("/tmp/many/c.txt") == "CCC"
    top = {e.name: e for e in sandbox.files.list("/tmp/many")}
    assert set(top) == {"a.txt", "c.txt", "sub"}
    assert top["sub"].type == FileType.DIR
    assert top["a.txt"].type == FileType.FILE
    assert top["a.txt"].size == 1
    assert top["a.txt"].path == "/tmp/many/a.txt"
    deep = {e.path for e in sandbox.files.list("/tmp/many", depth=2)}
    assert "/tmp/many/sub/b.txt" in deep


def test_info_make_dir_rename_remove(sandbox):
    assert sandbox.files.make_dir("/tmp/d1/d2") is True
    assert sandbox.files.make_dir("/tmp/d1/d2") is False
    info = sandbox.files.get_info("/tmp/d1/d2")
    assert (info.type, info.name, info.path) == (FileType.DIR, "d2", "/tmp/d1/d2")
    assert info.permissions.startswith("d")
    sandbox.files.write("/tmp/d1/f.txt", "12345")
    f = sandbox.files.get_info("/tmp/d1/f.txt")
    assert (f.type, f.size) == (FileType.FILE, 5)
    assert f.modified_time.year >= 2020
    moved = sandbox.files.rename("/tmp/d1/f.txt", "/tmp/d1/d2/g.txt")
    assert moved.path == "/tmp/d1/d2/g.txt"
    assert sandbox.files.exists("/tmp/d1/f.txt") is False
    assert sandbox.files.read("/tmp/d1/d2/g.txt") == "12345"
    with pytest.raises(NotFoundException):
        sandbox.files.rename("/tmp/d1/nothing", "/tmp/d1/else")
    sandbox.files.remove("/tmp/d1")
    assert sandbox.files.exists("/tmp/d1") is False


def test_symlinks_and_owners(sandbox):
    sandbox.commands.run(
        "mkdir -p /tmp/ln && ln -sfn /etc /tmp/ln/etc-link"
        " && echo x > /tmp/ln/f && chown lohar /tmp/ln/f"
    )
    info = sandbox.files.get_info("/tmp/ln/etc-link")
    listed = {e.name: e for e in sandbox.files.list("/tmp/ln")}
    if info.owner:
        # An agent with the extended stat (protocol v4) describes the link
        # itself, as envd does, and names owners.
        assert info.type == FileType.SYMLINK
        assert info.symlink_target == "/etc"
        assert info.owner == "root"
        assert listed["f"].owner == "lohar"
        assert listed["etc-link"].type == FileType.SYMLINK
    else:
        # An older agent's stat follows the link.
        assert info.type == FileType.DIR
    assert listed["f"].type == FileType.FILE
    assert listed["f"].size == 2


def test_relative_paths_are_under_the_users_home(sandbox):
    sandbox.files.write("rel/note.txt", "home", user="root")
    assert sandbox.files.read("/root/rel/note.txt") == "home"
    info = sandbox.files.get_info("rel/note.txt", user="root")
    assert info.path == "/root/rel/note.txt"
    sandbox.files.write("mine.txt", "x", user="lohar")
    assert sandbox.files.exists("/home/lohar/mine.txt")
    owner = sandbox.commands.run("stat -c %U /home/lohar/mine.txt").stdout.strip()
    assert owner == "lohar"
    # E2B programs write under /home/user as the user `user`.
    sandbox.files.write("main.py", "print(1)", user="user")
    assert sandbox.files.read("/home/user/main.py") == "print(1)"
    r = sandbox.commands.run("stat -c %U main.py", user="user")
    assert r.stdout.strip() == "user"


def test_watch_dir_reports_changes(sandbox):
    sandbox.files.make_dir("/tmp/watched")
    sandbox.files.write("/tmp/watched/old.txt", "1")
    handle = sandbox.files.watch_dir("/tmp/watched")
    try:
        sandbox.files.write("/tmp/watched/new.txt", "2")
        sandbox.files.remove("/tmp/watched/old.txt")
        seen = []

        def both():
            seen.extend((e.name, e.type) for e in handle.get_new_events())
            return ("new.txt", FilesystemEventType.CREATE) in seen and (
                "old.txt",
                FilesystemEventType.REMOVE,
            ) in seen

        eventually(both, limit=60)
    finally:
        handle.stop()
    with pytest.raises(Exception):
        handle.get_new_events()


def test_fifty_megabytes_round_trip(sandbox):
    data = os.urandom(50 * 1024 * 1024)
    digest = hashlib.sha256(data).hexdigest()
    sandbox.files.write("/tmp/big.bin", data)
    r = sandbox.commands.run("sha256sum /tmp/big.bin", timeout=300)
    assert r.stdout.split()[0] == digest
    back = sandbox.files.read("/tmp/big.bin", format="bytes", request_timeout=300)
    assert len(back) == len(data)
    assert hashlib.sha256(back).hexdigest() == digest
    streamed = hashlib.sha256()
    for chunk in sandbox.files.read("/tmp/big.bin", format="stream"):
        streamed.update(chunk)
    assert streamed.hexdigest() == digest


def test_octet_stream_gzip_and_chunked_uploads(sandbox):
    """The daemon's /files takes what envd >= 0.5.7 takes, whatever
    envdVersion the control plane advertises (which decides whether the
    SDK sends it): raw bodies, gzip bodies, bodies without a length. Sent
    with the SDK's own envd client (base URL and headers)."""
    api = sandbox._envd_api
    raw = {"Content-Type": "application/octet-stream"}
    r = api.post("/files", params={"path": "/tmp/up/raw.bin"}, content=b"raw", headers=raw)
    assert r.status_code == 200, r.text
    assert r.json() == [{"name": "raw.bin", "type": "file", "path": "/tmp/up/raw.bin"}]
    text = "zipped " * 20000
    r = api.post(
        "/files",
        params={"path": "/tmp/up/z.txt"},
        content=gzip.compress(text.encode()),
        headers={**raw, "Content-Encoding": "gzip"},
    )
    assert r.status_code == 200, r.text
    assert sandbox.files.read("/tmp/up/z.txt") == text
    r = api.post(
        "/files",
        params={"path": "/tmp/up/chunked"},
        content=iter([b"a" * 70000, b"b" * 70000]),
        headers=raw,
    )
    assert r.status_code == 200, r.text
    assert sandbox.files.read("/tmp/up/chunked") == "a" * 70000 + "b" * 70000
    bad = api.post(
        "/files",
        params={"path": "/tmp/up/bad"},
        content=b"not gzip",
        headers={**raw, "Content-Encoding": "gzip"},
    )
    assert bad.status_code == 400
    assert sandbox.files.exists("/tmp/up/bad") is False
    # The SDK's own octet-stream path (advertised envd 0.5.7), plain and gzip.
    sandbox.files.write("/tmp/up/sdk.txt", io.BytesIO(b"via sdk"), gzip=False)
    assert sandbox.files.read("/tmp/up/sdk.txt") == "via sdk"
    sandbox.files.write("/tmp/up/sdk.gz.txt", io.BytesIO(b"via sdk gz"), gzip=True)
    assert sandbox.files.read("/tmp/up/sdk.gz.txt") == "via sdk gz"


def test_wrong_token_and_unknown_sandbox(sandbox):
    base = sandbox.envd_api_url
    headers = dict(sandbox.connection_config.sandbox_headers or {})
    headers["E2b-Sandbox-Id"] = sandbox.sandbox_id
    headers["E2b-Sandbox-Port"] = "49983"
    headers["X-Access-Token"] = "0" * 64
    with httpx.Client(base_url=base, headers=headers, timeout=60) as c:
        r = c.get("/files", params={"path": "/etc/hostname"})
        assert r.status_code == 401
        r = c.post(
            "/filesystem.Filesystem/Stat",
            json={"path": "/"},
            headers={"Connect-Protocol-Version": "1"},
        )
        assert r.status_code == 401
        assert r.json()["code"] == "unauthenticated"
        headers["E2b-Sandbox-Id"] = "no-such-sandbox"
        r = c.post("/filesystem.Filesystem/Stat", json={"path": "/"}, headers=headers)
        assert r.status_code == 404
        assert r.json()["code"] == "not_found"
        assert c.get("/health", headers=headers).status_code == 502
        r = c.post("/process.Process/NoSuchMethod", json={})
        assert (r.status_code, r.json()["code"]) == (501, "unimplemented")


def test_async_watch_dir_streams_events(async_sandbox_ids):
    """AsyncSandbox watches with the WatchDir stream (the sync SDK polls)."""

    async def main():
        sb = await AsyncSandbox.create(timeout=TIMEOUT)
        async_sandbox_ids.append(sb.sandbox_id)
        await sb.files.make_dir("/tmp/aw")
        got = []
        handle = await sb.files.watch_dir("/tmp/aw", on_event=got.append, recursive=True)
        await sb.files.write("/tmp/aw/x.txt", "1")
        await sb.files.make_dir("/tmp/aw/sub")
        await asyncio.sleep(1.5)
        await sb.files.write("/tmp/aw/sub/y.txt", "2")
        want = {("x.txt", FilesystemEventType.CREATE), ("sub/y.txt", FilesystemEventType.CREATE)}
        for _ in range(240):
            if want <= {(e.name, e.type) for e in got}:
                break
            await asyncio.sleep(0.5)
        await handle.stop()
        assert want <= {(e.name, e.type) for e in got}, got
        out = []
        r = await sb.commands.run("echo async; exit 0", on_stdout=out.append)
        assert (r.stdout, "".join(out)) == ("async\n", "async\n")
        # A watch open while the sandbox is killed ends with an error.
        exited = []
        await sb.files.watch_dir("/tmp", on_event=lambda e: None, on_exit=exited.append)
        await sb.kill()
        for _ in range(240):
            if exited:
                break
            await asyncio.sleep(0.5)
        assert exited and exited[0] is not None, exited

    asyncio.run(main())
