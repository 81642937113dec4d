"""Seed a server root directly (no HTTP): ``hubtune hub import DIR REPO_ID --root ROOT``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from hubtune.errors import ConfigError, ImportRepoIdError
from hubtune.hub_server.store import (
    CANONICAL_ORG,
    REPO_TYPES,
    Commit,
    HubStore,
    Operation,
    RepoNotFound,
    StoreError,
    check_path,
    check_repo_id,
    git_blob_oid,
    upload_mode,
)
from hubtune.parity import file_sha256


def import_repo_id(repo_id: str) -> str:
    """The stored id of ``hubtune hub import``'s REPO_ID: ``ORG/NAME`` as is, a canonical ``NAME`` (``imdb``) as
    ``canonical/NAME``, which the local Hub also serves as ``NAME``, as huggingface.co serves ``imdb`` from an
    org repo. Anything else is refused, naming the argument that fixes it."""
    full = repo_id if "/" in repo_id else f"{CANONICAL_ORG}/{repo_id}"
    try:
        check_repo_id(full)
    except StoreError:
        raise ImportRepoIdError(
            f"repo id {repo_id!r} is malformed; expected ORG/NAME or a canonical NAME such as imdb (letters, digits, "
            "'-', '_', '.'): fix the REPO_ID argument of hubtune hub import"
        ) from None
    return full


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
    try:
        repo = store.get_repo(repo_type, repo_id)
    except RepoNotFound:
        repo = store.create_repo(repo_type, repo_id, private=private, author=author)
    head = store.resolve(repo, "main")
    ops: list[Operation] = []
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = check_path(file.relative_to(folder).as_posix())
        if rel.split("/")[0] in (".git", ".cache"):
            continue
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
    if not src.is_dir():
        raise ConfigError(f"folder to import {str(src)!r} is not a directory; expected a model or dataset folder")
    if repo_type not in REPO_TYPES:
        raise ConfigError(f"repo type {repo_type!r} is not supported; expected one of {REPO_TYPES}: use --repo-type")
    repo_id = import_repo_id(repo_id)
    try:
        commit, changed = import_folder(
            HubStore(root), repo_type, repo_id, src, private=private, message=f"import {src.name}"
        )
    except StoreError as exc:
        raise ConfigError(f"cannot import {str(src)!r} as {repo_id!r}: {exc}") from None
    return {"repo_id": repo_id, "repo_type": repo_type, "commit": commit.id, "committed": changed,
            "files": len(commit.files)}
