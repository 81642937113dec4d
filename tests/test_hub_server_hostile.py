"""The local Hub under hostile or malformed requests: refused cheaply (auth before body, capped bodies),
with a 400 and a message, never a 500 or a dropped connection; and what it leaves on disk is collected."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from huggingface_hub import CommitOperationAdd

from hubtune.hub_server import start_server
from hubtune.hub_server.store import HubStore
from tests.hub_fixtures import LocalHub

REPO = "org/tiny"


def _auth(hub: LocalHub) -> dict[str, str]:
    return {"Authorization": f"Bearer {hub.token}"}


def _seed(hub: LocalHub) -> str:
    hub.api().create_repo(REPO)
    return hub.api().create_commit(REPO, [CommitOperationAdd("a.txt", b"a")], commit_message="seed").oid


def _ndjson(*lines: object) -> bytes:
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


@pytest.mark.parametrize("what", ["commit-list", "commit-int", "commit-op-list", "commit-value-list", "lfs-objects",
                                  "lfs-object-int", "preupload-files", "preupload-item", "nested", "paths-info",
                                  "branch", "create-list"])
def test_malformed_json_shapes_get_400_with_a_message(local_hub: LocalHub, what: str) -> None:
    _seed(local_hub)
    api = f"{local_hub.url}/api/models/{REPO}"
    header = {"key": "header", "value": {"summary": "x"}}
    cases = {
        "commit-list": (f"{api}/commit/main", b"[1,2]\n"),
        "commit-int": (f"{api}/commit/main", b"5"),
        "commit-op-list": (f"{api}/commit/main", _ndjson(header, [1, 2])),
        "commit-value-list": (f"{api}/commit/main", _ndjson(header, {"key": "file", "value": {"path": 5}})),
        "lfs-objects": (f"{local_hub.url}/{REPO}.git/info/lfs/objects/batch",
                        json.dumps({"operation": "upload", "objects": 5}).encode()),
        "lfs-object-int": (f"{local_hub.url}/{REPO}.git/info/lfs/objects/batch",
                           json.dumps({"operation": "upload", "objects": [5]}).encode()),
        "preupload-files": (f"{api}/preupload/main", json.dumps({"files": 5}).encode()),
        "preupload-item": (f"{api}/preupload/main", json.dumps({"files": [{"path": "a", "size": "big"}]}).encode()),
        "nested": (f"{api}/preupload/main", b"[" * 200_000),
        "paths-info": (f"{api}/paths-info/main", b"paths=" + b"%FF" * 3 + b"&expand=maybe&paths=\x00"),
        "branch": (f"{api}/branch/dev", json.dumps({"startingPoint": [1]}).encode()),
        "create-list": (f"{local_hub.url}/api/repos/create", b"[" * 200_000 + b"]" * 200_000),
    }
    url, body = cases[what]
    r = httpx.post(url, content=body, headers=_auth(local_hub), timeout=30)
    assert r.status_code == 400, (r.status_code, r.text[:300])
    assert r.json()["error"] and "Traceback" not in r.text


def test_control_characters_in_revision_are_a_400_not_a_dropped_connection(local_hub: LocalHub) -> None:
    _seed(local_hub)
    for url in (f"{local_hub.url}/api/models/{REPO}/revision/main%0D",
                f"{local_hub.url}/{REPO}/resolve/main%0D%0AX-Evil:%201/a.txt",
                f"{local_hub.url}/api/models/{REPO}/tree/ma%0Ain"):
        r = httpx.get(url)
        assert r.status_code == 400, url
        assert "X-Evil" not in r.headers and "\r" not in r.headers.get("X-Error-Message", "")


@pytest.mark.parametrize("bad_path", ["a\nb.txt", "sub/.git/config", "x\r.txt", "a" * 5000, "d/" + "b" * 300])
def test_paths_the_hub_refuses_are_refused(local_hub: LocalHub, bad_path: str) -> None:
    before = _seed(local_hub)
    body = _ndjson({"key": "header", "value": {"summary": "evil"}},
                   {"key": "file", "value": {"path": bad_path, "content": base64.b64encode(b"x").decode()}})
    r = httpx.post(f"{local_hub.url}/api/models/{REPO}/commit/main", content=body, headers=_auth(local_hub))
    assert r.status_code == 400, r.text
    pre = httpx.post(f"{local_hub.url}/api/models/{REPO}/preupload/main", headers=_auth(local_hub),
                     json={"files": [{"path": bad_path, "size": 1, "sample": ""}]})
    assert pre.status_code == 400
    assert local_hub.api().repo_info(REPO).sha == before


def _post_with_empty_bearer(url: str, path: str, body: bytes) -> int:
    """POST with ``Authorization: Bearer `` (httpx refuses to send that header); the status code."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
        return int(sock.recv(4096).split(b" ")[1])


def test_empty_token_is_no_token(tmp_path: Path) -> None:
    from hubtune.core.errors import ConfigError

    with pytest.raises(ConfigError, match="token"):
        start_server(tmp_path / "r1", host="0.0.0.0", token="", allow_remote=True)
    with start_server(tmp_path / "r2", token="") as server:  # "anyone may write" means anyone may write
        any_token = {"Authorization": "Bearer anything"}
        assert httpx.post(f"{server.url}/api/repos/create", json={"name": "open", "organization": "org"},
                          headers=any_token).status_code == 200
        commit = _ndjson({"key": "header", "value": {"summary": "x"}},
                         {"key": "file", "value": {"path": "x.txt", "content": base64.b64encode(b"x").decode()}})
        assert httpx.post(f"{server.url}/api/models/org/open/commit/main", content=commit,
                          headers=any_token).status_code == 200
        assert _post_with_empty_bearer(server.url, "/api/repos/create", b'{"name": "anon", "organization": "org"}') == 200
    with start_server(tmp_path / "r3", token="sekret") as server:  # and an empty bearer is no credential
        assert _post_with_empty_bearer(server.url, "/api/repos/create", b'{"name": "anon", "organization": "org"}') == 401


def test_cli_serve_with_empty_token_says_anyone_may_write(tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_DISABLE_TELEMETRY": "1"}
    out = subprocess.run([sys.executable, "-m", "hubtune", "hub", "serve", "--root", str(tmp_path / "r"),
                          "--host", "0.0.0.0", "--allow-remote", "--token", ""],
                         capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode != 0 and "token" in out.stderr and "serving" not in out.stdout


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _send_big_body(url: str, path: str, size: int, headers: str = "", *, chunked: bool = False) -> bytes:
    """POST ``size`` bytes (Content-Length announced, or chunked: no length) as fast as the server takes them;
    the response."""
    host, port = url.removeprefix("http://").split(":")
    chunk = b"x" * (1 << 20)
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}"
    if chunked:
        chunk = b"%x\r\n" % len(chunk) + chunk + b"\r\n"
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall((f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{headers}"
                      f"{framing}\r\n\r\n").encode())
        sent = 0
        try:
            while sent < size:
                sock.sendall(chunk)
                sent += 1 << 20
        except OSError:  # the server answered and closed: what we want
            pass
        try:
            return sock.recv(4096)
        except OSError:
            return b""


def test_unauthenticated_huge_bodies_cost_the_server_little_memory(tmp_path: Path) -> None:
    root = tmp_path / "root"
    env = {**os.environ, "HF_HUB_DISABLE_TELEMETRY": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "hubtune", "hub", "serve", "--root", str(root), "--port", "0",
                             "--token", "sekret"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        url = proc.stdout.readline().split(" at ", 1)[1].split(" ", 1)[0]
        auth = {"Authorization": "Bearer sekret"}
        assert httpx.post(f"{url}/api/repos/create", json={"name": "m", "organization": "org"}, headers=auth).is_success
        httpx.get(f"{url}/api/models/org/m")
        before = _rss_kb(proc.pid)
        size = 400 * 1024 * 1024
        answers = [_send_big_body(url, p, size) for p in
                   ("/api/repos/create", "/api/models/org/m/preupload/main", "/api/models/org/m/commit/main",
                    "/org/m.git/info/lfs/objects/batch")]
        # a read anyone may make (public repo) and an authenticated request: capped, not buffered
        answers.append(_send_big_body(url, "/api/models/org/m/paths-info/main", size))
        answers.append(_send_big_body(url, "/api/models/org/m/preupload/main", size, "Authorization: Bearer sekret\r\n"))
        for what in ("/api/models/org/m/preupload/main", "/org/m.git/info/lfs/objects/batch"):  # no length announced
            answers.append(_send_big_body(url, what, size, "Authorization: Bearer sekret\r\n", chunked=True))
        time.sleep(0.5)
        after = _rss_kb(proc.pid)
        print(f"server RSS before {before / 1024:.1f} MB, after {len(answers)} x 400 MB bodies {after / 1024:.1f} MB")
        assert after - before < 50 * 1024, (before, after)
        for answer in answers:
            assert answer == b"" or answer.split(b" ")[1] in (b"401", b"413"), answer[:200]
        assert httpx.get(f"{url}/api/models/org/m").status_code == 200  # still serving
    finally:
        proc.terminate()
        proc.communicate(timeout=20)


def test_partial_uploads_and_unreferenced_blobs_are_collected(local_hub: LocalHub, tmp_path: Path) -> None:
    from hubtune.hub_server.garbage import collect_garbage

    _seed(local_hub)
    local_hub.api().upload_file(path_or_fileobj=b"\x00" * 4096, path_in_repo="w.bin", repo_id=REPO)
    store = HubStore(local_hub.root)
    orphan = store.put_blob_bytes(b"never committed")
    part = local_hub.root / "tmp" / "abcd.part"
    part.write_bytes(b"half an upload")
    old = time.time() - 7200
    os.utime(store.blob_path(orphan), (old, old))
    os.utime(part, (old, old))
    young = store.put_blob_bytes(b"uploaded a second ago, commit on its way")
    report = collect_garbage(store)
    assert report["partial_files"] == 1 and report["blobs"] == 1
    assert not part.exists() and not store.has_blob(orphan) and store.has_blob(young)
    files = local_hub.api().list_repo_files(REPO)
    assert "w.bin" in files and "a.txt" in files
    assert Path(local_hub.api().hf_hub_download(REPO, "w.bin", cache_dir=tmp_path)).read_bytes() == b"\x00" * 4096
    # on start, and through `hubtune hub gc`
    part.write_bytes(b"again")
    os.utime(part, (old, old))
    with start_server(local_hub.root):
        assert not part.exists()
    os.utime(store.blob_path(young), (old, old))
    out = subprocess.run([sys.executable, "-m", "hubtune", "hub", "gc", "--root", str(local_hub.root), "--json"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["blobs"] == 1 and not store.has_blob(young)


def test_collector_spares_uploads_in_progress_and_drops_squashed_history(local_hub: LocalHub) -> None:
    from hubtune.hub_server.garbage import collect_garbage

    _seed(local_hub)
    api = local_hub.api()
    api.upload_file(path_or_fileobj=b"\x00old weights", path_in_repo="w.bin", repo_id=REPO)
    api.upload_file(path_or_fileobj=b"\x00new weights", path_in_repo="w.bin", repo_id=REPO)
    store = HubStore(local_hub.root)
    old = time.time() - 7200
    data = b"an upload still arriving"
    with store.blob_writer(hashlib.sha256(data).hexdigest(), len(data)) as out:
        out.write(data[:5])
        (part,) = (local_hub.root / "tmp").glob("*.part")
        os.utime(part, (old, old))
        assert collect_garbage(store)["partial_files"] == 0 and part.exists()  # its writer holds the lock
        out.write(data[5:])
    api.super_squash_history(REPO, commit_message="squash")
    for f in (store.get_repo("model", REPO).path / "commits").glob("*.json"):
        os.utime(f, (old, old))
    for f in (local_hub.root / "blobs").glob("*/*"):
        os.utime(f, (old, old))
    report = collect_garbage(store)
    assert report["commits"] == 4  # initial, seed and two uploads: unreachable after the squash
    assert report["blobs"] == 2  # the old w.bin and the finished upload no commit references
    assert [c.title for c in api.list_repo_commits(REPO)] == ["squash"]
    assert Path(api.hf_hub_download(REPO, "w.bin", cache_dir=local_hub.home / "c")).read_bytes() == b"\x00new weights"
