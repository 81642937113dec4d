"""The local Hub server through the real clients (huggingface_hub) and raw HTTP for the protocol edges."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest
from huggingface_hub import CommitOperationAdd, hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from hubtune.hub_server import start_server
from hubtune.hub_server.store import HubStore
from tests.hub_fixtures import LocalHub

REPO = "org/tiny"


def _auth(hub: LocalHub) -> dict[str, str]:
    return {"Authorization": f"Bearer {hub.token}"}


def _head(hub: LocalHub, repo: str = REPO, rev: str = "main", repo_type: str = "model") -> str:
    return hub.api().repo_info(repo, repo_type=repo_type, revision=rev).sha


def _seed(hub: LocalHub, repo: str = REPO, private: bool = False) -> str:
    api = hub.api()
    api.create_repo(repo, private=private)
    info = api.create_commit(repo, [
        CommitOperationAdd("README.md", b"---\nlicense: mit\npipeline_tag: text-classification\ntags: [demo]\n---\n# hi"),
        CommitOperationAdd("config.json", b'{"architectures": ["BertForSequenceClassification"]}'),
        CommitOperationAdd("sub/dir/notes.txt", b"hello"),
        CommitOperationAdd("model.safetensors", b"\x00\x01" * 5000),
    ], commit_message="seed")
    return info.oid


def _ndjson(*lines: dict) -> bytes:
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def test_create_repo_whoami_and_conflict_carries_url(local_hub: LocalHub) -> None:
    api = local_hub.api()
    assert api.whoami()["name"] == "hubtune"
    url = api.create_repo(REPO)
    assert url == f"{local_hub.url}/{REPO}"
    assert api.create_repo(REPO, exist_ok=True).repo_id == REPO
    r = httpx.post(f"{local_hub.url}/api/repos/create", json={"name": "tiny", "organization": "org"},
                   headers=_auth(local_hub))
    assert r.status_code == 409 and r.json()["url"] == f"{local_hub.url}/{REPO}"
    info = api.model_info(REPO)
    assert len(info.sha) == 40 and info.sha == info.sha.lower()
    assert [s.rfilename for s in info.siblings] == [".gitattributes"]


def test_upload_download_round_trip_regular_and_lfs(local_hub: LocalHub, tmp_path: Path) -> None:
    sha = _seed(local_hub)
    info = local_hub.api().model_info(REPO, files_metadata=True)
    assert info.sha == sha
    assert info.pipeline_tag == "text-classification" and info.library_name == "transformers"
    assert info.card_data["license"] == "mit" and "demo" in info.tags
    sib = {s.rfilename: s for s in info.siblings}
    assert sib["model.safetensors"].lfs.sha256 == hashlib.sha256(b"\x00\x01" * 5000).hexdigest()
    assert sib["sub/dir/notes.txt"].lfs is None and sib["sub/dir/notes.txt"].size == 5

    path = hf_hub_download(REPO, "model.safetensors", cache_dir=tmp_path)
    assert Path(path).read_bytes() == b"\x00\x01" * 5000
    assert Path(hf_hub_download(REPO, "sub/dir/notes.txt", cache_dir=tmp_path)).read_text() == "hello"

    base = f"{local_hub.url}/{REPO}/resolve/main"
    head = httpx.head(f"{base}/sub/dir/notes.txt")
    assert head.status_code == 200 and head.headers["X-Repo-Commit"] == sha
    assert head.headers["Content-Length"] == "5"
    assert head.headers["ETag"] == f'"{hashlib.sha1(b"blob 5" + bytes([0]) + b"hello").hexdigest()}"'
    lfs_head = httpx.head(f"{base}/model.safetensors")
    assert lfs_head.headers["ETag"] == f'"{sib["model.safetensors"].lfs.sha256}"'
    assert lfs_head.headers["Content-Length"] == "10000"
    part = httpx.get(f"{base}/sub/dir/notes.txt", headers={"Range": "bytes=1-3"})
    assert part.status_code == 206 and part.content == b"ell"
    missing = httpx.head(f"{base}/nope.json")
    assert missing.status_code == 404 and missing.headers["X-Error-Code"] == "EntryNotFound"
    assert missing.headers["X-Repo-Commit"] == sha
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(REPO, "nope.json", cache_dir=tmp_path)
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(REPO, "config.json", revision="no-such-branch", cache_dir=tmp_path)


def test_tree_paths_info_refs_and_commits(local_hub: LocalHub) -> None:
    sha = _seed(local_hub)
    api = local_hub.api()
    entries = {e.path: e for e in api.list_repo_tree(REPO, recursive=True, expand=True)}
    assert set(entries) == {".gitattributes", "README.md", "config.json", "model.safetensors",
                            "sub", "sub/dir", "sub/dir/notes.txt"}
    assert entries["sub/dir/notes.txt"].last_commit.oid == sha
    top = {e.path for e in api.list_repo_tree(REPO)}
    assert top == {".gitattributes", "README.md", "config.json", "model.safetensors", "sub"}
    assert {e.path for e in api.list_repo_tree(REPO, path_in_repo="sub/dir")} == {"sub/dir/notes.txt"}
    raw = httpx.get(f"{local_hub.url}/api/models/{REPO}/tree/main?recursive=true&expand=true").json()
    assert not any("xetHash" in e for e in raw)
    infos = api.get_paths_info(REPO, ["sub", "config.json", "absent"])
    assert sorted(i.path for i in infos) == ["config.json", "sub"]
    refs = api.list_repo_refs(REPO)
    assert [(b.name, b.target_commit) for b in refs.branches] == [("main", sha)]
    commits = api.list_repo_commits(REPO)
    assert [c.title for c in commits] == ["seed", "initial commit"]


def test_branch_tag_pr_and_snapshot_at_tag(local_hub: LocalHub, tmp_path: Path) -> None:
    sha = _seed(local_hub)
    api = local_hub.api()
    api.create_tag(REPO, tag="v1", revision=sha)
    with pytest.raises(HfHubHTTPError) as exc:
        api.create_tag(REPO, tag="v1")
    assert exc.value.response.status_code == 409
    api.upload_file(path_or_fileobj=b"v2", path_in_repo="sub/dir/notes.txt", repo_id=REPO)
    snap = Path(snapshot_download(REPO, revision="v1", cache_dir=tmp_path))
    assert (snap / "sub/dir/notes.txt").read_text() == "hello"
    api.create_branch(REPO, branch="dev", revision="v1")
    api.upload_file(path_or_fileobj=b"dev only", path_in_repo="dev.txt", repo_id=REPO, revision="dev")
    assert "dev.txt" in api.list_repo_files(REPO, revision="dev")
    assert "dev.txt" not in api.list_repo_files(REPO)
    pr = api.upload_file(path_or_fileobj=b"proposal", path_in_repo="pr.txt", repo_id=REPO, create_pr=True)
    assert pr.pr_url.endswith("/discussions/1") and pr.pr_revision == "refs/pr/1"
    assert "pr.txt" in api.list_repo_files(REPO, revision="refs/pr/1")
    assert "pr.txt" not in api.list_repo_files(REPO)
    assert Path(hf_hub_download(REPO, "pr.txt", revision="refs/pr/1", cache_dir=tmp_path)).read_text() == "proposal"
    api.delete_branch(REPO, branch="dev")
    assert [b.name for b in api.list_repo_refs(REPO).branches] == ["main"]


def test_pull_request_from_parent_commit_merges_as_a_fast_forward(local_hub: LocalHub) -> None:
    """The staging flow of ``train-and-push``: a PR opened from main's head, then merged: main moves to that
    exact commit (this Hub merges fast-forwards only), and a PR whose base moved is refused."""
    from huggingface_hub import CommitOperationDelete

    base = _seed(local_hub)
    api = local_hub.api()
    staged = api.create_commit(REPO, [CommitOperationAdd("new.txt", b"new"), CommitOperationDelete("sub/dir/notes.txt")],
                               commit_message="staged", create_pr=True, parent_commit=base)
    assert staged.pr_revision == "refs/pr/1" and _head(local_hub) == base
    assert api.list_repo_commits(REPO, revision="refs/pr/1")[1].commit_id == base
    api.merge_pull_request(REPO, 1, comment="verified")
    assert _head(local_hub) == staged.oid, "main fast-forwarded to the verified commit"
    assert "new.txt" in api.list_repo_files(REPO) and "sub/dir/notes.txt" not in api.list_repo_files(REPO)
    with pytest.raises(HfHubHTTPError) as exc:
        api.merge_pull_request(REPO, 1)
    assert exc.value.response.status_code == 409  # already merged
    # a PR opened from an older commit, after main moved: not a fast-forward, refused; main unchanged
    old = api.create_commit(REPO, [CommitOperationAdd("late.txt", b"late")], commit_message="late",
                            create_pr=True, parent_commit=base)
    assert old.pr_revision == "refs/pr/2"
    with pytest.raises(HfHubHTTPError) as exc:
        api.merge_pull_request(REPO, 2)
    assert exc.value.response.status_code == 409 and "fast-forward" in str(exc.value)
    assert _head(local_hub) == staged.oid
    with pytest.raises(HfHubHTTPError) as exc:
        api.merge_pull_request(REPO, 7)
    assert exc.value.response.status_code == 404
    # a PR against another branch moves that branch
    api.create_branch(REPO, branch="exp", revision=base)
    on_exp = api.create_commit(REPO, [CommitOperationAdd("exp.txt", b"e")], commit_message="exp",
                               revision="exp", create_pr=True, parent_commit=base)
    api.merge_pull_request(REPO, int(on_exp.pr_num))
    branches = {b.name: b.target_commit for b in api.list_repo_refs(REPO).branches}
    assert branches == {"main": staged.oid, "exp": on_exp.oid}


def test_stale_parent_commit_is_refused(local_hub: LocalHub) -> None:
    first = _seed(local_hub)
    api = local_hub.api()
    second = api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=REPO).oid
    with pytest.raises(HfHubHTTPError) as exc:
        api.create_commit(REPO, [CommitOperationAdd("y.txt", b"y")], commit_message="stale", parent_commit=first)
    assert exc.value.response.status_code in (409, 412)
    assert _head(local_hub) == second


def test_commit_with_unuploaded_lfs_blob_leaves_repo_unchanged(local_hub: LocalHub) -> None:
    before = _seed(local_hub)
    body = _ndjson(
        {"key": "header", "value": {"summary": "bad"}},
        {"key": "file", "value": {"path": "ok.txt", "content": base64.b64encode(b"ok").decode(), "encoding": "base64"}},
        {"key": "lfsFile", "value": {"path": "big.bin", "algo": "sha256", "oid": "ab" * 32, "size": 123}},
    )
    r = httpx.post(f"{local_hub.url}/api/models/{REPO}/commit/main", content=body,
                   headers={**_auth(local_hub), "Content-Type": "application/x-ndjson"})
    assert r.status_code == 422 and "never uploaded" in r.json()["error"]
    assert _head(local_hub) == before
    assert "ok.txt" not in local_hub.api().list_repo_files(REPO)


def _raw_request_then_drop(url: str, head: bytes, partial_body: bytes) -> None:
    """Send a request whose body is cut short, then reset the connection (a client killed mid-upload)."""
    u = urlparse(url)
    with socket.create_connection((u.hostname, u.port)) as sock:
        sock.sendall(head + partial_body)
        time.sleep(0.2)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")


def test_client_dropped_mid_commit_and_mid_lfs_upload_leave_previous_commit(local_hub: LocalHub) -> None:
    before = _seed(local_hub)
    body = _ndjson(
        {"key": "header", "value": {"summary": "half"}},
        {"key": "file", "value": {"path": "half.txt", "content": base64.b64encode(b"x" * 4000).decode()}},
    )
    head = (f"POST /api/models/{REPO}/commit/main HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {local_hub.token}\r\n"
            f"Content-Type: application/x-ndjson\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    _raw_request_then_drop(local_hub.url, head, body[: len(body) // 2])

    data = os.urandom(300_000)
    oid = hashlib.sha256(data).hexdigest()
    batch = httpx.post(f"{local_hub.url}/{REPO}.git/info/lfs/objects/batch", headers=_auth(local_hub),
                       json={"operation": "upload", "transfers": ["basic"], "objects": [{"oid": oid, "size": len(data)}]})
    href = urlparse(batch.json()["objects"][0]["actions"]["upload"]["href"])
    put = (f"PUT {href.path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(data)}\r\n\r\n").encode()
    _raw_request_then_drop(local_hub.url, put, data[:100_000])
    time.sleep(0.3)
    assert _head(local_hub) == before
    assert "half.txt" not in local_hub.api().list_repo_files(REPO)
    store = HubStore(local_hub.root)
    assert not store.has_blob(oid)
    assert list((local_hub.root / "tmp").glob("*.part")) == []
    commit = _ndjson({"key": "header", "value": {"summary": "x"}},
                     {"key": "lfsFile", "value": {"path": "w.bin", "algo": "sha256", "oid": oid, "size": len(data)}})
    r = httpx.post(f"{local_hub.url}/api/models/{REPO}/commit/main", content=commit, headers=_auth(local_hub))
    assert r.status_code == 422 and _head(local_hub) == before


def test_lfs_upload_with_wrong_content_is_refused(local_hub: LocalHub) -> None:
    _seed(local_hub)
    oid = hashlib.sha256(b"right").hexdigest()
    batch = httpx.post(f"{local_hub.url}/{REPO}.git/info/lfs/objects/batch", headers=_auth(local_hub),
                       json={"operation": "upload", "objects": [{"oid": oid, "size": 5}]}).json()
    assert batch["transfer"] == "basic"
    href = batch["objects"][0]["actions"]["upload"]["href"]
    assert httpx.put(href, content=b"wrong").status_code == 422
    assert httpx.put(href.replace(oid, "0" * 64), content=b"right").status_code == 403
    assert not HubStore(local_hub.root).has_blob(oid)
    assert httpx.put(href, content=b"right").status_code == 200
    assert HubStore(local_hub.root).has_blob(oid, 5)


def test_wrong_token_is_rejected_and_writes_nothing(local_hub: LocalHub) -> None:
    before = _seed(local_hub)
    bad = local_hub.api(token="not-the-token")
    with pytest.raises(HfHubHTTPError) as exc:
        bad.upload_file(path_or_fileobj=b"evil", path_in_repo="evil.txt", repo_id=REPO)
    assert exc.value.response.status_code == 401
    with pytest.raises(HfHubHTTPError):
        bad.create_repo("org/other")
    anon = httpx.post(f"{local_hub.url}/api/repos/create", json={"name": "other2", "organization": "org"})
    assert anon.status_code == 401
    assert _head(local_hub) == before
    assert not (local_hub.root / "repos/models/org/other").exists()
    assert not (local_hub.root / "repos/models/org/other2").exists()


def test_private_repo_is_invisible_without_token(local_hub: LocalHub, tmp_path: Path) -> None:
    _seed(local_hub, "org/secret", private=True)
    anon = local_hub.api(token=False)
    with pytest.raises(RepositoryNotFoundError):
        anon.model_info("org/secret")
    for url in (f"{local_hub.url}/api/models/org/secret", f"{local_hub.url}/org/secret/resolve/main/config.json",
                f"{local_hub.url}/api/models/org/secret/tree/main"):
        r = httpx.get(url)
        assert r.status_code == 404 and r.headers["X-Error-Code"] == "RepoNotFound", url
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("org/secret", "config.json", token=False, cache_dir=tmp_path)
    assert local_hub.api().model_info("org/secret").private is True


@pytest.mark.parametrize("bad_path", ["../evil.txt", "a/../../evil.txt", "/abs.txt", "a\\b.txt", "./x", ".git/config"])
def test_path_traversal_is_refused(local_hub: LocalHub, bad_path: str) -> None:
    before = _seed(local_hub)
    body = _ndjson({"key": "header", "value": {"summary": "evil"}},
                   {"key": "file", "value": {"path": bad_path, "content": base64.b64encode(b"x").decode()}})
    r = httpx.post(f"{local_hub.url}/api/models/{REPO}/commit/main", content=body, headers=_auth(local_hub))
    assert r.status_code == 400, r.text
    assert _head(local_hub) == before
    assert not (local_hub.root.parent / "evil.txt").exists()


def test_traversal_in_urls_and_bad_repo_ids_are_refused(local_hub: LocalHub) -> None:
    _seed(local_hub)
    assert httpx.get(f"{local_hub.url}/{REPO}/resolve/main/..%2F..%2Frepo.json").status_code == 400
    assert httpx.get(f"{local_hub.url}/api/models/{REPO}/tree/main/..%2F..").status_code == 400
    assert httpx.get(f"{local_hub.url}/api/models/org/..%2F..%2Fx").status_code == 400
    for name in ("..", "a/b", "bad name", "x.git"):
        r = httpx.post(f"{local_hub.url}/api/repos/create", json={"name": name, "organization": "org"},
                       headers=_auth(local_hub))
        assert r.status_code == 400, name


def test_concurrent_commits_are_serialised(local_hub: LocalHub) -> None:
    _seed(local_hub)
    errors: list[BaseException] = []

    def commit(i: int) -> None:
        try:
            local_hub.api().upload_file(path_or_fileobj=f"{i}".encode(), path_in_repo=f"c/{i}.txt", repo_id=REPO)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=commit, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    files = local_hub.api().list_repo_files(REPO)
    assert {f"c/{i}.txt" for i in range(8)} <= set(files)
    assert len(local_hub.api().list_repo_commits(REPO)) == 2 + 8


XET_CLIENT_ROUND_TRIP = """
import hashlib, os, sys
import hf_xet  # noqa: F401 - installed: the client would upload through Xet if the Hub offered it
from huggingface_hub import HfApi, constants, hf_hub_download
assert "HF_HUB_DISABLE_XET" not in os.environ and not constants.HF_HUB_DISABLE_XET
api = HfApi()
api.create_repo("org/xet", exist_ok=True)
info = api.upload_file(path_or_fileobj=sys.argv[1], path_in_repo="data/big.dat", repo_id="org/xet")
path = hf_hub_download("org/xet", "data/big.dat", revision=info.oid)
print(info.oid, hashlib.sha256(open(path, "rb").read()).hexdigest())
"""


def test_xet_capable_client_uploads_big_file_without_xet_disabled(local_hub: LocalHub, tmp_path: Path) -> None:
    """hf_xet installed and HF_HUB_DISABLE_XET unset: the real client still gets a >10 MB file in and out."""
    pytest.importorskip("hf_xet")
    data = os.urandom(12 * 1024 * 1024 + 5)
    big = tmp_path / "big.dat"
    big.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    env = local_hub.client_env(token=True)
    env.pop("HF_HUB_DISABLE_XET")
    out = subprocess.run([sys.executable, "-c", XET_CLIENT_ROUND_TRIP, str(big)], capture_output=True, text=True,
                         env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    commit, got = out.stdout.strip().splitlines()[-1].split()
    assert got == sha  # downloaded back byte-identical
    info = local_hub.api().model_info("org/xet", revision=commit, files_metadata=True)
    entry = {s.rfilename: s for s in info.siblings}["data/big.dat"]
    assert entry.size == len(data) and entry.lfs is not None and entry.lfs.sha256 == sha  # stored as LFS
    head = httpx.head(f"{local_hub.url}/org/xet/resolve/{commit}/data/big.dat")
    assert head.headers["ETag"] == f'"{sha}"' and head.headers["Content-Length"] == str(len(data))
    no_xet = httpx.get(f"{local_hub.url}/api/models/org/xet/xet-write-token/main", headers=_auth(local_hub))
    assert no_xet.status_code == 404 and no_xet.headers["X-Error-Code"] == "XetNotSupported"


def test_server_refuses_non_loopback_bind_without_opt_in(tmp_path: Path) -> None:
    from hubtune.core.errors import ConfigError

    with pytest.raises(ConfigError, match="loopback"):
        start_server(tmp_path, host="0.0.0.0")


def test_cli_serve_and_import_through_subprocess(tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_XET": "1", "HF_HOME": str(tmp_path / "h"),
           "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    env.pop("HF_HUB_OFFLINE", None)
    src = tmp_path / "base"
    (src / "sub").mkdir(parents=True)
    (src / "config.json").write_text('{"architectures": ["BertModel"]}')
    (src / "sub" / "w.safetensors").write_bytes(b"\x00" * 2048)
    root = tmp_path / "root"
    imp = subprocess.run([sys.executable, "-m", "hubtune", "hub", "import", str(src), "base/model", "--root", str(root)],
                         capture_output=True, text=True, env=env, timeout=60)
    assert imp.returncode == 0, imp.stderr
    proc = subprocess.Popen(
        [sys.executable, "-m", "hubtune", "hub", "serve", "--root", str(root), "--port", "0", "--token", "sekret"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        line = proc.stdout.readline()
        assert "serving" in line and "sekret" not in line, line
        url = line.split(" at ", 1)[1].split(" ", 1)[0]
        assert url.startswith("http://127.0.0.1:")
        r = httpx.get(f"{url}/api/models/base/model")
        assert r.status_code == 200
        assert {s["rfilename"] for s in r.json()["siblings"]} == {".gitattributes", "config.json", "sub/w.safetensors"}
        assert httpx.get(f"{url}/api/whoami-v2", headers={"Authorization": "Bearer sekret"}).json()["name"] == "hubtune"
        # import over HTTP through huggingface_hub, into the running server
        env2 = {**env, "HF_ENDPOINT": url, "HF_TOKEN": "sekret"}
        imp2 = subprocess.run([sys.executable, "-m", "hubtune", "hub", "import", str(src), "base/copy", "--json"],
                              capture_output=True, text=True, env=env2, timeout=60)
        assert imp2.returncode == 0, imp2.stderr
        assert json.loads(imp2.stdout)["repo_id"] == "base/copy"
        assert httpx.get(f"{url}/api/models/base/copy").json()["private"] is False
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
