"""Seed a server root directly (no HTTP): ``hubtune hub import DIR REPO_ID --root ROOT``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hubtune.errors import ConfigError
from hubtune.hub_server.store import REPO_TYPES, HubStore, StoreError


def import_into_store(
    root: str | os.PathLike[str], folder: str | os.PathLike[str], repo_id: str, *,
    repo_type: str = "model", private: bool = False,
) -> dict[str, Any]:
    """Commit every file of ``folder`` to ``repo_id``'s main branch in the store at ``root``."""
    src = Path(folder)
    if not src.is_dir():
        raise ConfigError(f"folder to import {str(src)!r} is not a directory; expected a model or dataset folder")
    if repo_type not in REPO_TYPES:
        raise ConfigError(f"repo type {repo_type!r} is not supported; expected one of {REPO_TYPES}: use --type")
    try:
        commit, changed = HubStore(root).import_folder(
            repo_type, repo_id, src, private=private, message=f"import {src.name}"
        )
    except StoreError as exc:
        raise ConfigError(f"cannot import {str(src)!r} as {repo_id!r}: {exc}") from None
    return {"repo_id": repo_id, "repo_type": repo_type, "commit": commit.id, "committed": changed,
            "files": len(commit.files)}
