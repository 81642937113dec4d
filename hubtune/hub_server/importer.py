"""Seed a server root directly (no HTTP): ``hubtune hub import DIR REPO_ID --root ROOT``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from hubtune.core.errors import ConfigError, DataError, ImportRepoIdError, UnsafePathError
from hubtune.hub_server.store import (
    CANONICAL_ORG,
    Commit,
    HubStore,
    Operation,
    RepoNotFound,
    StoreError,
    check_path,
    check_repo_id,
    git_blob_oid,
    open_store,
    upload_mode,
)
from hubtune.core.parity import file_sha256


def import_repo_id(repo_id: str) -> str:
    """The stored id of ``hubtune hub import``'s REPO_ID: ``ORG/NAME`` as is, a canonical ``NAME`` (``imdb``) as
    ``canonical/NAME``, which the local Hub also serves as ``NAME``, as huggingface.co serves ``imdb`` from an
    org repo. Anything else is refused, naming the argument that fixes it."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    full = repo_id if "/" in repo_id else f"{CANONICAL_ORG}/{repo_id}"
    try:
        check_repo_id(full)
        validate_repo_id(full)  # what the clients will download: no '--', at most 96 characters a part
    except (StoreError, HFValidationError):
        raise ImportRepoIdError(
            f"repo id {repo_id!r} is malformed; expected ORG/NAME or a canonical NAME such as imdb (letters, digits, "
            "'-', '_', '.'; no '--' or '..', at most 96 characters a part): fix the REPO_ID argument of hubtune hub import"
        ) from None
    return full


IMPORT_TYPES = ("model", "dataset", "space")  # a Space here is an evaluate metric module (`--metric ORG/NAME`)


def check_import_folder(folder: str | os.PathLike[str], repo_type: str, repo_id: str = "") -> list[Path]:
    """Refuse, before anything is written, what ``hub import`` cannot serve: a missing or empty folder, a repo type
    other than model/dataset/space, a symlink leaving the folder, a dataset without readable ``data/*.parquet``
    files (what ``--dataset ID:SPLIT`` loads) and a Space without its metric script ``NAME.py``. Returns the files."""
    src = Path(folder)
    if not src.is_dir():
        raise ConfigError(f"folder to import {str(src)!r} is not a directory; expected a model or dataset folder: "
                          "fix the FOLDER argument of hubtune hub import")
    if repo_type not in IMPORT_TYPES:
        raise ConfigError(f"--repo-type {repo_type!r} cannot be imported; expected one of {', '.join(IMPORT_TYPES)}: "
                          "pass --repo-type model or --repo-type dataset")
    name = repo_id.rsplit("/", 1)[-1]
    if repo_type == "space" and not (src / f"{name}.py").is_file():
        raise ConfigError(f"--repo-type space: {str(src)!r} has no {name}.py; a Space on the local Hub serves an "
                          f"evaluate metric module (--metric ORG/{name}), which is NAME.py: import a model or dataset "
                          "with --repo-type model / dataset, or add the metric script")
    files = _walk(src)
    if not files:
        raise ConfigError(f"folder to import {str(src)!r} holds no files; expected a model or dataset folder")
    if repo_type == "dataset":
        parquet = [f for f in files if f.parent == src / "data" and f.suffix == ".parquet"]
        if not parquet:
            raise DataError(f"dataset folder {str(src)!r} has no data/*.parquet file; expected one per split, e.g. "
                            "data/train-00000-of-00001.parquet: write the splits there (DataFrame.to_parquet)")
        import pyarrow.parquet as pq

        for f in parquet:
            try:
                pq.read_metadata(f)
            except Exception as exc:  # noqa: BLE001 - pyarrow raises ArrowInvalid, OSError, ...
                raise DataError(f"{str(f)!r} is not a readable parquet file ({' '.join(str(exc).split())[:160]}); "
                                "expected the split as parquet: write it again with DataFrame.to_parquet") from None
    return files


def _walk(src: Path) -> list[Path]:
    """Every file under ``src``; a symlink leaving it (or pointing at nothing) is refused."""
    real_top = src.resolve()
    out = []
    for file in sorted(src.rglob("*")):
        if file.is_symlink():
            target = file.resolve()
            if not target.exists() or not (target == real_top or real_top in target.parents):
                hint = ("copy the snapshot with `cp -rL` (a Hugging Face cache links its files into ../../blobs)"
                        if target.parent.name == "blobs" else "copy the file in, or remove the link")
                raise UnsafePathError(f"{file.relative_to(src).as_posix()!r} in {str(src)!r} is a symlink leaving the "
                                      f"folder (to {os.readlink(file)!r}); nothing was imported; expected files "
                                      f"inside the folder: {hint}")
        if file.is_file():
            out.append(file)
    return out


def list_repos(root: str | os.PathLike[str], repo_type: str = "model") -> list[str]:
    """Repo ids of ``repo_type`` in the store at ``root``, the most recently changed first."""
    found = []
    for meta in (Path(root) / "repos" / f"{repo_type}s").glob("*/*/repo.json"):
        refs = meta.parent / "refs.json"
        try:
            found.append(((refs if refs.is_file() else meta).stat().st_mtime, str(json.loads(meta.read_text())["id"])))
        except (OSError, ValueError, KeyError):
            continue  # a repo being created or deleted
    return [rid for _, rid in sorted(found, reverse=True)]


def import_folder(
    store: HubStore, repo_type: str, repo_id: str, folder: Path, *, private: bool, message: str,
    author: str = "hubtune",
) -> tuple[Commit, bool]:
    """Put every file of ``folder`` on main in one commit; (head, False) when nothing changed."""
    files = [(file, rel) for file in _walk(folder)  # every path checked before the repo is created
             if (rel := file.relative_to(folder).as_posix()).split("/")[0] not in (".git", ".cache")]
    for _, rel in files:
        check_path(rel)
    try:
        repo = store.get_repo(repo_type, repo_id)
    except RepoNotFound:
        repo = store.create_repo(repo_type, repo_id, private=private, author=author)
    head = store.resolve(repo, "main")
    ops: list[Operation] = []
    for file, rel in files:
        size = file.stat().st_size
        with open(file, "rb") as f:
            sample = f.read(512)
        if upload_mode(rel, size, sample) == "regular":
            content = file.read_bytes()
            if head.files.get(rel, {}).get("oid") != git_blob_oid(content):
                ops.append(Operation("file", rel, content=content))
            continue
        sha = file_sha256(file)
        if head.files.get(rel, {}).get("sha256") == sha:
            continue
        if not store.has_blob(sha, size):
            with store.blob_writer(sha, size) as out, open(file, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    out.write(chunk)
        ops.append(Operation("lfsFile", rel, sha256=sha, size=size))
    if not ops:
        return head, False
    commit, _ = store.commit(repo, "main", {"summary": message, "parentCommit": head.id}, ops, author=author)
    return commit, True


def import_into_store(
    root: str | os.PathLike[str], folder: str | os.PathLike[str], repo_id: str, *,
    repo_type: str = "model", private: bool = False,
) -> dict[str, Any]:
    """Commit every file of ``folder`` to ``repo_id``'s main branch in the store at ``root``."""
    src = Path(folder)
    check_import_folder(src, repo_type, repo_id)
    repo_id = import_repo_id(repo_id)
    store = open_store(root)
    try:
        commit, changed = import_folder(
            store, repo_type, repo_id, src, private=private, message=f"import {src.name}"
        )
    except StoreError as exc:
        raise ConfigError(f"cannot import {str(src)!r} as {repo_id!r}: {exc}") from None
    return {"repo_id": repo_id, "repo_type": repo_type, "commit": commit.id, "committed": changed,
            "files": len(commit.files)}
