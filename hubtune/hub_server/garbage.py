"""Garbage collection of the local Hub: partial uploads, leftovers of interrupted writes, unreachable
commits and unreferenced blobs. Run on every server start and by ``hubtune hub gc``.

Safe while servers or importers write to the same root: a partial upload is removed only when its
writer no longer holds its ``flock`` (blobs.py); a blob or commit only when nothing references it
*and* it is older than ``min_age_s`` (an LFS upload waiting for its commit, a commit written a moment
before its ref moves). Reusing a blob refreshes its mtime. Imports the store.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import shutil
import time
from pathlib import Path
from typing import Any

from hubtune.core.errors import ConfigError
from hubtune.hub_server.store import REPO_TYPES, HubStore

DEFAULT_MIN_AGE_S = 3600.0
PARTIAL_GRACE_S = 2.0  # between a partial file's creation and its writer's lock
STAGING_GRACE_S = 60.0  # a repo being created, a JSON file being replaced


def _age(path: Path, now: float) -> float:
    try:
        return now - path.stat().st_mtime
    except FileNotFoundError:
        return -1.0


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def _remove_unlocked(path: Path) -> int:
    """Delete a partial file nobody is writing (its writer's flock is gone); bytes freed, -1 if skipped."""
    try:
        with open(path, "rb") as fh:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return -1  # an upload in progress
            size = path.stat().st_size
            path.unlink()
            return size
    except FileNotFoundError:
        return -1


def _reachable(commits_dir: Path, refs: dict[str, Any]) -> set[str]:
    heads = [*refs.get("branches", {}).values(), *refs.get("tags", {}).values(), *refs.get("pulls", {}).values()]
    seen: set[str] = set()
    while heads:
        cid = heads.pop()
        if cid in seen:
            continue
        seen.add(cid)
        with contextlib.suppress(FileNotFoundError, ValueError):
            heads.extend(json.loads((commits_dir / f"{cid}.json").read_text(encoding="utf-8"))["parents"])
    return seen


def collect_garbage(store: HubStore, *, min_age_s: float = DEFAULT_MIN_AGE_S) -> dict[str, int]:
    """Remove what no repo needs; returns counts and bytes freed."""
    now = time.time()
    report = {"partial_files": 0, "leftovers": 0, "commits": 0, "blobs": 0, "bytes_freed": 0}
    for path in sorted((store.root / "tmp").iterdir()):
        if path.is_dir() and path.name.startswith("deleted-"):  # a deleted repo whose removal was cut short
            report["bytes_freed"] += _size(path)
            shutil.rmtree(path, ignore_errors=True)
            report["leftovers"] += 1
        elif path.is_file() and _age(path, now) > PARTIAL_GRACE_S and (freed := _remove_unlocked(path)) >= 0:
            report["partial_files"] += 1
            report["bytes_freed"] += freed
    referenced: set[str] = set()
    for repo_type in REPO_TYPES:
        type_dir = store.root / "repos" / f"{repo_type}s"
        for stale in [*type_dir.glob("*/.*.creating"), *type_dir.glob("*/*/.*.tmp")]:
            if _age(stale, now) > STAGING_GRACE_S:
                report["bytes_freed"] += _size(stale)
                shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)
                report["leftovers"] += 1
        for repo_dir in store.repo_dirs(repo_type):
            try:
                refs = json.loads((repo_dir / "refs.json").read_text(encoding="utf-8"))
            except (FileNotFoundError, ValueError):
                continue  # moved or deleted meanwhile: its blobs stay until the next run
            reachable = _reachable(repo_dir / "commits", refs)
            for commit_file in (repo_dir / "commits").glob("*.json"):
                if commit_file.stem not in reachable and _age(commit_file, now) > min_age_s:
                    report["bytes_freed"] += commit_file.stat().st_size
                    commit_file.unlink(missing_ok=True)
                    report["commits"] += 1
                    continue
                with contextlib.suppress(FileNotFoundError, ValueError):
                    files = json.loads(commit_file.read_text(encoding="utf-8"))["files"]
                    referenced.update(entry["sha256"] for entry in files.values())
    for blob in (store.root / "blobs").glob("*/*"):
        if blob.name not in referenced and blob.is_file() and _age(blob, now) > min_age_s:
            report["bytes_freed"] += blob.stat().st_size
            blob.unlink(missing_ok=True)
            report["blobs"] += 1
    return report


def collect_root(root: str | Path, *, min_age_s: float = DEFAULT_MIN_AGE_S) -> dict[str, int]:
    """``hubtune hub gc``: collect the store at ``root``, which must exist."""
    root = Path(root)
    if not (root / "repos").is_dir() or not (root / "blobs").is_dir():
        raise ConfigError(f"{str(root)!r} is not a local Hub root (no repos/ and blobs/): expected the folder "
                          "given to `hubtune hub serve --root`; pass that as --root")
    if min_age_s < 0:
        raise ConfigError(f"--min-age {min_age_s} is negative: expected seconds >= 0")
    return collect_garbage(HubStore(root), min_age_s=min_age_s)
