"""Issue 35, the Hub commands under bad input: ``push``, ``hub serve``, ``hub import``, ``hub gc`` and
``train-and-push``'s publishing options.

Every case: one ``error:`` line, an exit code other than 0 and 70 (its own), no traceback, nothing created or
changed locally (the folders it watches) or on the local Hub (its root, so its repos, blobs and refs), and the
same command succeeds once the input is fixed. Ids and branches are checked before any remote call, a symlink
leaving a folder is never published, a bad port or root leaves no folder behind, and what the embedded local Hub
serves is cached apart from the user's Hugging Face cache.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

from ._bad_input import assert_refused, assert_unchanged, cli, snapshot, succeeds
from .test_cli_errors import readonly_target

HUB_TOKEN = "hf_bad_input_hub_token"


@dataclass
class Hub:
    url: str
    root: Path
    env: dict[str, str]


@pytest.fixture(scope="module")
def hub(tmp_path_factory) -> Hub:
    """One local Hub for the module (a server per case would cost more than the case)."""
    from hubtune.hub_server import start_server
    from hubtune.hub_server.embedded import client_patches, load_client_modules

    base = tmp_path_factory.mktemp("bad_input_hub")
    home = base / "hf_home"
    home.mkdir()
    load_client_modules()
    server = start_server(base / "root", token=HUB_TOKEN)
    env = {"HF_ENDPOINT": server.url, "HF_TOKEN": HUB_TOKEN, "HF_HOME": str(home), "HF_HUB_OFFLINE": "0",
           "HF_HUB_DISABLE_XET": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    with pytest.MonkeyPatch.context() as mp:
        for obj, name, value in client_patches(server.url, home=home):
            mp.setattr(obj, name, value)
        try:
            yield Hub(server.url, server.root, env)
        finally:
            server.stop()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _model(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text('{"model_type": "bert"}\n')
    (folder / "model.safetensors").write_bytes(os.urandom(2048))
    return folder


def _dataset(folder: Path) -> Path:
    import pandas as pd

    (folder / "data").mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"text": ["good", "bad"], "label": [1, 0]}).to_parquet(
        folder / "data" / "train-00000-of-00001.parquet", index=False)
    return folder


@dataclass
class Case:
    args: list[str]
    code: int
    needles: tuple[str, ...] = ()
    fix: Callable[[], list[str] | None] | None = None  # fixes the input (files or args); the args of the retry
    watch: list[Path] = field(default_factory=list)
    env: str = "hub"  # "hub": the local Hub's environment; "offline": HF_HUB_OFFLINE=1; or a literal marker
    extra_env: dict[str, str] = field(default_factory=dict)
    retry_code: int = 0  # what the fixed command exits with (train-and-push: past its checks, it fails at the model)


def _push(t: Path, repo: str, *extra: str) -> list[str]:
    return ["push", str(t / "m"), "--repo-id", repo, "--no-progress", *extra]


def _swap(args: list[str], old: str, new: str) -> list[str]:
    return [new if a == old else a for a in args]


# --- push: ids and branches checked before any remote call (item 6) ----------------------------------------------
def push_repo_id(bad: str) -> Callable[[Path], Case]:
    def make(t: Path) -> Case:
        _model(t / "m")
        args = _push(t, bad)
        return Case(args, 25, ("--repo-id", "nothing was created"), fix=lambda: _swap(args, bad, "me/fixed-id"))
    return make


def push_revision(bad: str) -> Callable[[Path], Case]:
    def make(t: Path) -> Case:
        _model(t / "m")
        args = _push(t, "me/rev-" + str(abs(hash(bad)) % 10**6), "--revision", bad)
        return Case(args, 25, ("--revision", "nothing was created"), fix=lambda: _swap(args, bad, "dev"))
    return make


# --- push: symlinks (item 8) and what a user hits ------------------------------------------------------------------
def push_symlink_out(t: Path) -> Case:
    _model(t / "m")
    (t / "m" / "passwd").symlink_to("/etc/passwd")
    return Case(_push(t, "me/link-out"), 26, ("'passwd'", "symlink leaving the folder", "/etc/passwd"),
                fix=lambda: (t / "m" / "passwd").unlink())


def push_symlink_dangling(t: Path) -> Case:
    _model(t / "m")
    (t / "m" / "gone.json").symlink_to(t / "m" / "missing.json")
    return Case(_push(t, "me/link-gone"), 26, ("'gone.json'", "does not exist"),
                fix=lambda: (t / "m" / "gone.json").unlink())


def push_symlinked_dir_out(t: Path) -> Case:
    _model(t / "m")
    (t / "outside").mkdir()
    (t / "outside" / "secret.txt").write_text("secret\n")
    (t / "m" / "extra").symlink_to(t / "outside", target_is_directory=True)
    return Case(_push(t, "me/dir-out"), 26, ("'extra'", "symlink leaving the folder"),
                fix=lambda: (t / "m" / "extra").unlink())


def push_cache_snapshot(t: Path) -> Case:
    """A Hugging Face cache snapshot links its files into ../../blobs: refused, saying how to copy it."""
    blob = t / "models--me--x" / "blobs" / ("a" * 64)
    blob.parent.mkdir(parents=True)
    blob.write_text('{"model_type": "bert"}\n')
    snap = t / "models--me--x" / "snapshots" / ("b" * 40)
    snap.mkdir(parents=True)
    (snap / "config.json").symlink_to(Path("..") / ".." / "blobs" / blob.name)
    def fix() -> list[str]:
        (snap / "config.json").unlink()
        (snap / "config.json").write_text(blob.read_text())
        return ["push", str(snap), "--repo-id", "me/snapshot", "--no-progress"]
    return Case(["push", str(snap), "--repo-id", "me/snapshot", "--no-progress"], 26,
                ("'config.json'", "Hugging Face cache snapshot", "cp -rL"), fix=fix)


def push_missing_folder(t: Path) -> Case:
    return Case(_push(t, "me/missing"), 2, ("does not exist",), fix=lambda: _model(t / "m") and None)


def push_empty_folder(t: Path) -> Case:
    (t / "m").mkdir()
    return Case(_push(t, "me/empty"), 2, ("no files to publish",), fix=lambda: _model(t / "m") and None)


def push_file_not_folder(t: Path) -> Case:
    (t / "m").write_text("not a folder\n")
    def fix() -> None:
        (t / "m").unlink()
        _model(t / "m")
    return Case(_push(t, "me/file"), 2, ("not a directory",), fix=fix)


def push_bad_repo_type(t: Path) -> Case:
    _model(t / "m")
    args = _push(t, "me/space", "--repo-type", "space")
    return Case(args, 2, ("'space'", "--type"), fix=lambda: _swap(args, "space", "model"))


def push_bad_tag(tag: str) -> Callable[[Path], Case]:
    def make(t: Path) -> Case:
        _model(t / "m")
        args = _push(t, "me/tag-" + str(abs(hash(tag)) % 10**6), "--tag", tag)
        return Case(args, 2, ("--tag",), fix=lambda: _swap(args, tag, "v{n}"))
    return make


def push_unreachable(t: Path) -> Case:
    _model(t / "m")
    return Case(_push(t, "me/unreachable"), 22, ("cannot reach the Hub at", "connection refused", "nothing was pushed"),
                env="closed")


def push_offline(t: Path) -> Case:
    _model(t / "m")
    return Case(_push(t, "me/offline"), 22, ("HF_HUB_OFFLINE",), env="hub", extra_env={"HF_HUB_OFFLINE": "1"})


def push_control_char_name(t: Path) -> Case:
    _model(t / "m")
    (t / "m" / "bad\nname.txt").write_text("x\n")
    return Case(_push(t, "me/ctrl-name"), 2, ("control character", "rename it"),
                fix=lambda: (t / "m" / "bad\nname.txt").unlink())


# --- hub serve (item 7): one line, nothing created -----------------------------------------------------------------
def _serve(root: Path, *extra: str) -> list[str]:
    return ["hub", "serve", "--root", str(root), *extra]


def serve_root_file(t: Path) -> Case:
    (t / "root").write_text("a file\n")
    return Case(_serve(t / "root", "--port", "0"), 28, ("--root", "is a file"), watch=[t], env="none")


def serve_root_readonly(t: Path) -> Case:
    target = readonly_target(t)
    return Case(_serve(target, "--port", "0"), 28, ("--root", "cannot be used"), watch=[t, target], env="none")


def serve_port(port: str) -> Callable[[Path], Case]:
    def make(t: Path) -> Case:
        return Case(_serve(t / "root", "--port", port), 17, ("--port", "out of range", "65535"), watch=[t], env="none")
    return make


def serve_port_in_use(t: Path) -> Case:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    _OPEN.append(sock)  # kept open for the case, closed at the module's teardown
    port = str(sock.getsockname()[1])
    return Case(_serve(t / "root", "--port", port), 28, ("port", "in use", "--port"), watch=[t / "root"], env="none")


def serve_remote_host(t: Path) -> Case:
    return Case(_serve(t / "root", "--host", "0.0.0.0", "--port", "0"), 2, ("--allow-remote",), watch=[t / "root"],
                env="none")


_OPEN: list[socket.socket] = []


# --- hub import (items 7, 8, 9) ------------------------------------------------------------------------------------
def _import(t: Path, folder: str, repo: str, *extra: str) -> list[str]:
    return ["hub", "import", str(t / folder), repo, "--root", str(t / "hubroot"), *extra]


def import_dataset_no_parquet(t: Path) -> Case:
    (t / "ds").mkdir()
    (t / "ds" / "train.csv").write_text("text,label\ngood,1\n")
    return Case(_import(t, "ds", "org/ds-none", "--repo-type", "dataset"), 3, ("data/*.parquet",),
                watch=[t / "hubroot"], fix=lambda: _dataset(t / "ds") and None)


def import_dataset_corrupt_parquet(t: Path) -> Case:
    (t / "ds" / "data").mkdir(parents=True)
    bad = t / "ds" / "data" / "train-00000-of-00001.parquet"
    bad.write_bytes(b"PAR1 not really parquet")
    def fix() -> None:
        bad.unlink()
        _dataset(t / "ds")
    return Case(_import(t, "ds", "org/ds-bad", "--repo-type", "dataset"), 3, ("not a readable parquet file",),
                watch=[t / "hubroot"], fix=fix)


def import_space(t: Path) -> Case:
    _model(t / "m")
    args = _import(t, "m", "org/space", "--repo-type", "space")
    return Case(args, 2, ("--repo-type space", "space.py", "metric"), watch=[t / "hubroot"],
                fix=lambda: _swap(args, "space", "model"))


def import_repo_type_unknown(t: Path) -> Case:
    _model(t / "m")
    args = _import(t, "m", "org/kind", "--repo-type", "kernel")
    return Case(args, 2, ("'kernel'",), watch=[t / "hubroot"], fix=lambda: _swap(args, "kernel", "model"))




def import_symlink_out(t: Path) -> Case:
    _model(t / "m")
    (t / "m" / "passwd").symlink_to("/etc/passwd")
    return Case(_import(t, "m", "org/link"), 26, ("'passwd'", "symlink leaving the folder"), watch=[t / "hubroot"],
                fix=lambda: (t / "m" / "passwd").unlink())


def import_root_file(t: Path) -> Case:
    _model(t / "m")
    (t / "hubroot").write_text("a file\n")
    def fix() -> None:
        (t / "hubroot").unlink()
    return Case(_import(t, "m", "org/rootfile"), 28, ("--root", "is a file"), watch=[t], fix=fix)


def import_root_readonly(t: Path) -> Case:
    _model(t / "m")
    target = readonly_target(t)
    args = ["hub", "import", str(t / "m"), "org/ro", "--root", str(target)]
    return Case(args, 28, ("--root", "cannot be used"), watch=[t, target], fix=lambda: _swap(args, str(target), str(t / "hubroot")))


def import_missing_folder(t: Path) -> Case:
    return Case(_import(t, "m", "org/missing"), 2, ("not a directory",), watch=[t / "hubroot"],
                fix=lambda: _model(t / "m") and None)


def import_empty_folder(t: Path) -> Case:
    (t / "m").mkdir()
    return Case(_import(t, "m", "org/empty"), 2, ("holds no files",), watch=[t / "hubroot"],
                fix=lambda: _model(t / "m") and None)


def import_bad_repo_id(t: Path) -> Case:
    _model(t / "m")
    args = _import(t, "m", "a/b/c")
    return Case(args, 24, ("REPO_ID",), watch=[t / "hubroot"], fix=lambda: _swap(args, "a/b/c", "org/abc"))


def import_repo_id_hf(bad: str) -> Callable[[Path], Case]:
    """Ids the local store would take but huggingface_hub's clients refuse to download."""
    def make(t: Path) -> Case:
        _model(t / "m")
        args = _import(t, "m", bad)
        return Case(args, 24, ("REPO_ID",), watch=[t / "hubroot"], fix=lambda: _swap(args, bad, "org/fixed"))
    return make


def import_http_dataset_no_parquet(t: Path) -> Case:
    (t / "ds").mkdir()
    (t / "ds" / "README.md").write_text("# no data\n")
    return Case(["hub", "import", str(t / "ds"), "org/http-ds", "--repo-type", "dataset"], 3, ("data/*.parquet",),
                fix=lambda: _dataset(t / "ds") and None)


def import_http_space(t: Path) -> Case:
    _model(t / "m")
    args = ["hub", "import", str(t / "m"), "org/http-space", "--repo-type", "space"]
    return Case(args, 2, ("http-space.py",), fix=lambda: _swap(args, "space", "model"))


def import_http_unreachable(t: Path) -> Case:
    _model(t / "m")
    return Case(["hub", "import", str(t / "m"), "org/http-unreachable"], 22, ("cannot reach the Hub at",), env="closed")


def test_import_space_holding_a_metric_script(tmp_path):
    """What --repo-type space is for: an evaluate metric module (NAME.py), served for --metric ORG/NAME."""
    from hubtune.hub_server.importer import list_repos

    (tmp_path / "hits").mkdir()
    (tmp_path / "hits" / "hits.py").write_text("# a metric module\n")
    succeeds(["hub", "import", str(tmp_path / "hits"), "org/hits", "--repo-type", "space", "--root", str(tmp_path / "r")])
    assert list_repos(tmp_path / "r", "space") == ["org/hits"]


# --- hub gc ----------------------------------------------------------------------------------------------------------
def gc_missing_root(t: Path) -> Case:
    return Case(["hub", "gc", "--root", str(t / "nothing")], 2, ("not a local Hub root",), watch=[t], env="none")


def gc_file_root(t: Path) -> Case:
    (t / "root").write_text("x\n")
    return Case(["hub", "gc", "--root", str(t / "root")], 2, ("not a local Hub root",), watch=[t], env="none")


def gc_negative_age(t: Path) -> Case:
    from hubtune.hub_server.store import open_store

    open_store(t / "root")
    args = ["hub", "gc", "--root", str(t / "root"), "--min-age", "-5"]
    return Case(args, 2, ("--min-age",), watch=[t], env="none", fix=lambda: _swap(args, "-5", "5"))


# --- train-and-push's publishing options: refused before anything is trained ---------------------------------------
def _tap(t: Path, *extra: str) -> list[str]:
    from .conftest import TWEETS_TRAIN

    # a base model that is not there: once the publishing options pass, the run stops there (exit 5), untrained
    return ["train-and-push", "--dataset", str(TWEETS_TRAIN), "-o", str(t / "run"), "--base-model", "org/no-base",
            "--no-progress", *extra]


def tap_repo_id(bad: str, retry: bool = False) -> Callable[[Path], Case]:
    """No retry in the fast suite: past its checks, train-and-push loads torch, the data and the model (10-30 s)
    before it stops at the missing base model (exit 5, ``retry=True``)."""
    def make(t: Path) -> Case:
        args = _tap(t, "--repo-id", bad)
        return Case(args, 25, ("--repo-id", "nothing was created"), watch=[t],
                    fix=(lambda: _swap(args, bad, "me/ok")) if retry else None, retry_code=5)
    return make


def tap_revision(bad: str, retry: bool = False) -> Callable[[Path], Case]:
    def make(t: Path) -> Case:
        args = _tap(t, "--repo-id", "me/ok", "--revision", bad)
        return Case(args, 25, ("--revision",), watch=[t], fix=(lambda: _swap(args, bad, "dev")) if retry else None,
                    retry_code=5)
    return make


def tap_local_hub_file(t: Path) -> Case:
    (t / "hubfile").write_text("x\n")
    args = _tap(t, "--repo-id", "me/ok", "--local-hub", str(t / "hubfile"))
    return Case(args, 28, ("is a file",), watch=[t])


def tap_bad_tag(t: Path) -> Case:
    args = _tap(t, "--repo-id", "me/ok", "--tag", "v{x}")
    return Case(args, 2, ("--tag", "{x}"), watch=[t])


def tap_offline(t: Path) -> Case:
    return Case(_tap(t, "--repo-id", "me/ok"), 22, ("HF_HUB_OFFLINE=1", "--local-hub"), watch=[t], env="none")


CASES: dict[str, Callable[[Path], Case]] = {
    "push-id-dotdot": push_repo_id("me/bad..id"),
    "push-id-dashdash": push_repo_id("me/a--b"),
    "push-id-space": push_repo_id("me/x y"),
    "push-id-parent": push_repo_id("../etc"),
    "push-id-100-chars": push_repo_id("me/" + "n" * 100),
    "push-id-no-org": push_repo_id("justaname"),
    "push-id-three-parts": push_repo_id("a/b/c"),
    "push-id-dot-git": push_repo_id("me/model.git"),
    "push-rev-pr-ref": push_revision("refs/pr/1"),
    "push-rev-dotdot": push_revision("bad..name"),
    "push-rev-newline": push_revision("dev\nx"),
    "push-rev-space": push_revision("my branch"),
    "push-rev-lock": push_revision("dev.lock"),
    "push-symlink-out": push_symlink_out,
    "push-symlink-dangling": push_symlink_dangling,
    "push-symlinked-dir-out": push_symlinked_dir_out,
    "push-cache-snapshot": push_cache_snapshot,
    "push-missing-folder": push_missing_folder,
    "push-empty-folder": push_empty_folder,
    "push-file-not-folder": push_file_not_folder,
    "push-repo-type-space": push_bad_repo_type,
    "push-tag-unknown-placeholder": push_bad_tag("v{x}"),
    "push-tag-dotdot": push_bad_tag("v..{n}"),
    "push-unreachable-endpoint": push_unreachable,
    "push-offline": push_offline,
    "push-control-char-file": push_control_char_name,
    "serve-root-file": serve_root_file,
    "serve-root-readonly": serve_root_readonly,
    "serve-port-70000": serve_port("70000"),
    "serve-port-negative": serve_port("-1"),
    "serve-port-in-use": serve_port_in_use,
    "serve-remote-host": serve_remote_host,
    "import-dataset-no-parquet": import_dataset_no_parquet,
    "import-dataset-corrupt-parquet": import_dataset_corrupt_parquet,
    "import-space": import_space,
    "import-repo-type-unknown": import_repo_type_unknown,
    "import-symlink-out": import_symlink_out,
    "import-root-file": import_root_file,
    "import-root-readonly": import_root_readonly,
    "import-missing-folder": import_missing_folder,
    "import-empty-folder": import_empty_folder,
    "import-bad-repo-id": import_bad_repo_id,
    "import-repo-id-dashdash": import_repo_id_hf("org/a--b"),
    "import-repo-id-100-chars": import_repo_id_hf("org/" + "n" * 100),
    "import-http-dataset-no-parquet": import_http_dataset_no_parquet,
    "import-http-space": import_http_space,
    "import-http-unreachable": import_http_unreachable,
    "gc-missing-root": gc_missing_root,
    "gc-file-root": gc_file_root,
    "gc-negative-min-age": gc_negative_age,
    "tap-id-dotdot": tap_repo_id("me/bad..id"),
    "tap-id-parent": tap_repo_id("../etc"),
    "tap-id-100-chars": tap_repo_id("me/" + "n" * 100),
    "tap-rev-pr-ref": tap_revision("refs/pr/1"),
    "tap-rev-newline": tap_revision("a\nb"),
    "tap-local-hub-file": tap_local_hub_file,
    "tap-tag-unknown-placeholder": tap_bad_tag,
    "tap-offline-without-local-hub": tap_offline,
}


def _env(case: Case, hub: Hub) -> dict[str, str]:
    if case.env == "hub":
        return {**hub.env, **case.extra_env}
    if case.env == "closed":
        return {**hub.env, "HF_ENDPOINT": f"http://127.0.0.1:{_closed_port()}"}
    return {"HF_HUB_OFFLINE": "1"}


@pytest.fixture(scope="module", autouse=True)
def _close_sockets():
    yield
    while _OPEN:
        _OPEN.pop().close()


@pytest.mark.parametrize("name", list(CASES))
def test_hub_bad_input_is_refused_cleanly(name, tmp_path, hub):
    from hubtune.hub_server.importer import list_repos

    work = tmp_path / "w"
    work.mkdir()
    case = CASES[name](work)
    env = _env(case, hub)
    watch = [*case.watch, hub.root]
    before, repos = snapshot(*watch), {k: list_repos(hub.root, k) for k in ("model", "dataset", "space")}
    res = cli(*case.args, env=env)
    assert_refused(res, *case.needles, code=case.code)
    assert_unchanged(before, *watch)
    assert {k: list_repos(hub.root, k) for k in ("model", "dataset", "space")} == repos
    if case.fix is not None:
        fixed = case.fix()
        if case.retry_code:
            again = cli(*(fixed or case.args), env=env)
            assert again.returncode == case.retry_code, again.stderr[-2000:]
        else:
            succeeds(fixed or case.args, env=env)


def test_battery_size():
    assert len(CASES) >= 35


# --- the retry of the server cases, which block: the same root and port start once fixed -------------------------------
def test_serve_starts_once_the_root_is_a_folder(tmp_path):
    from hubtune.hub_server import start_server

    (tmp_path / "root").write_text("x\n")
    res = cli(*_serve(tmp_path / "root", "--port", "0"), env={"HF_HUB_OFFLINE": "1"})
    assert_refused(res, "is a file", code=28)
    (tmp_path / "root").unlink()
    with start_server(tmp_path / "root", port=0) as server:
        assert server.url.startswith("http://127.0.0.1:")
    assert (tmp_path / "root" / "repos").is_dir()


def test_port_in_use_creates_no_root(tmp_path):
    from hubtune.core.errors import ServerStartError
    from hubtune.hub_server import start_server

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        with pytest.raises(ServerStartError, match="in use"):
            start_server(tmp_path / "root", port=sock.getsockname()[1])
    assert not (tmp_path / "root").exists()


# --- symlinks inside the folder are published as their target's content (item 8) --------------------------------------
def test_symlink_inside_the_folder_is_published_as_its_content(tmp_path, hub):
    from huggingface_hub import HfApi

    folder = _model(tmp_path / "m")
    (folder / "sub").mkdir()
    (folder / "sub" / "vocab.txt").write_text("a\nb\n")
    (folder / "vocab.txt").symlink_to(folder / "sub" / "vocab.txt")
    (folder / "loop").symlink_to(folder, target_is_directory=True)  # a link back up is not walked again
    succeeds(["push", str(folder), "--repo-id", "me/inside-links", "--no-progress"], env=hub.env)
    api = HfApi(endpoint=hub.url, token=HUB_TOKEN)
    files = set(api.list_repo_files("me/inside-links"))
    assert {"vocab.txt", "sub/vocab.txt", "config.json"} <= files
    assert not any(f.startswith("loop/") for f in files)
    got = api.hf_hub_download("me/inside-links", "vocab.txt", cache_dir=tmp_path / "c")
    assert Path(got).read_text() == "a\nb\n"


def test_stage_refuses_a_symlink_leaving_the_folder(tmp_path, hub, monkeypatch):
    """train-and-push publishes through ``stage``: the same refusal, before any remote call."""
    from hubtune.core.errors import UnsafePathError
    from hubtune.publish.hub import PushOptions
    from hubtune.publish.staging import stage
    from hubtune.hub_server.importer import list_repos

    for key, value in hub.env.items():
        monkeypatch.setenv(key, value)
    folder = _model(tmp_path / "m")
    (folder / "tokenizer.json").symlink_to("/etc/passwd")
    before = list_repos(hub.root)
    with pytest.raises(UnsafePathError, match="tokenizer.json"):
        stage(PushOptions(folder=folder, repo_id="me/staged-link"))
    assert list_repos(hub.root) == before


# --- item 10: what comes from a local Hub is cached apart from the user's Hugging Face cache ----------------------------
def test_embedded_hub_downloads_are_cached_in_its_root(tmp_path, monkeypatch, tiny_bert_dir):
    """Through the embedded Hub (as train-and-push --local-hub), a model pulled by transformers under a real Hub id
    lands in ROOT/client-cache, never in $HF_HOME/hub; the user's cache settings come back afterwards."""
    from huggingface_hub import constants
    from transformers import AutoTokenizer

    from hubtune.hub_server.embedded import CLIENT_CACHE, embedded_hub
    from hubtune.hub_server.importer import import_into_store

    home = tmp_path / "hf_home"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    root = tmp_path / "hubroot"
    import_into_store(root, tiny_bert_dir, "sentence-transformers/all-MiniLM-L6-v2")
    with embedded_hub(root):
        tok = AutoTokenizer.from_pretrained("sentence-transformers/all-MiniLM-L6-v2")
        assert tok.vocab_size > 0
    assert not list((home / "hub").glob("models--*")) if (home / "hub").exists() else True
    assert list((root / CLIENT_CACHE / "hub").glob("models--sentence-transformers--all-MiniLM-L6-v2"))
    assert constants.HF_HUB_CACHE == str(home / "hub") and "HF_HUB_CACHE" not in os.environ


def test_another_hub_gets_a_cache_of_its_own(tmp_path):
    from hubtune.hub_server.embedded import endpoint_cache_dir

    a = endpoint_cache_dir("http://127.0.0.1:8765", home=tmp_path)
    b = endpoint_cache_dir("https://hub.example.com/", home=tmp_path)
    assert a != b and a.parent == b.parent == tmp_path / "hubtune" / "hubs" and a.name == "127.0.0.1_8765"


@pytest.mark.parametrize("where", ["local-hub", "hf-endpoint", "huggingface.co"])
def test_train_and_push_caches_another_hubs_files_apart(where, tmp_path, monkeypatch):
    """What train-and-push's steps see: the embedded Hub's root, or a cache keyed by a non-public HF_ENDPOINT, as
    HF_HUB_CACHE / HF_DATASETS_CACHE (the clients' constants too); huggingface.co keeps the user's cache."""
    from huggingface_hub import constants

    import hubtune.pipeline as pipeline
    from hubtune.core.config import PipelineConfig, PublishSettings

    seen = {}

    def fake_run(cfg, opts, say, hub):
        seen.update(env=os.environ.get("HF_HUB_CACHE"), datasets=os.environ.get("HF_DATASETS_CACHE"),
                    constant=constants.HF_HUB_CACHE)
        return pipeline.PipelineResult(run_dir="", repo_id="me/ok", published_dir="")

    monkeypatch.setattr(pipeline, "_run", fake_run)
    monkeypatch.setattr(pipeline, "seed_local_hub", lambda root, say: None)
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(constants, "HF_HOME", str(tmp_path / "home"))
    if where == "hf-endpoint":
        monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:8765")
    else:
        monkeypatch.delenv("HF_ENDPOINT", raising=False)
    user_cache = constants.HF_HUB_CACHE
    cfg = PipelineConfig(base_model="b", output_dir=str(tmp_path / "run"), publish=PublishSettings(repo_id="me/ok"))
    local = str(tmp_path / "hub") if where == "local-hub" else None
    pipeline.run_pipeline(pipeline.PipelineOptions(config=cfg, local_hub=local, progress=False))
    expected = {"local-hub": tmp_path / "hub" / "client-cache",
                "hf-endpoint": tmp_path / "home" / "hubtune" / "hubs" / "127.0.0.1_8765"}.get(where)
    if expected is None:
        assert seen["env"] is None and seen["constant"] == user_cache
    else:
        assert seen["env"] == seen["constant"] == str(expected / "hub")
        assert seen["datasets"] == str(expected / "datasets")
    assert constants.HF_HUB_CACHE == user_cache and "HF_HUB_CACHE" not in os.environ  # put back afterwards


@pytest.mark.slow
def test_train_and_push_local_hub_leaves_the_users_cache_alone(tmp_path):
    """The main command against the embedded local Hub, HF_HOME a temp dir: no models--/datasets-- folder of the
    local Hub's repos appears under $HF_HOME/hub (they are under the local Hub's root)."""
    from .conftest import REPO, run_cli

    home = tmp_path / "hf_home"
    res = run_cli(
        "train-and-push", "--config", str(REPO / "examples" / "train-and-push.yaml"),
        "--local-hub", str(tmp_path / "hub"), "-o", str(tmp_path / "run"),
        "--set", "data.max_samples=200", "--set", "data.eval_max_samples=64", "--set", "num_epochs=1",
        "--set", "export.quantize=null", "--min-metric", "accuracy=0.1", "--no-progress", "--json",
        env={"HF_HOME": str(home), "HF_HUB_OFFLINE": "1"},
    )
    assert res.returncode == 0, res.stderr[-3000:]
    leaked = [p.name for p in (home / "hub").glob("*--*")] if (home / "hub").exists() else []
    assert not leaked, f"the local Hub's repos were cached in the user's cache: {leaked}"
    assert list((tmp_path / "hub" / "client-cache" / "hub").glob("models--sentence-transformers--all-MiniLM-L6-v2"))
