"""What the local Hub says about repos: one repo's info (``model_info``) and the listings
(``list_models``, ``list_datasets``, ``list_spaces``: author, search, filter, sort, limit, pages).

Imports the store.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import yaml

from hubtune.hub_server.store import Commit, HubStore, Repo, StoreError, lfs_pointer

PAGE_SIZE = 1000
_SORT_KEYS = {"lastModified": "lastModified", "createdAt": "createdAt", "id": "id", "downloads": "downloads",
              "likes": "likes", "trendingScore": "likes"}
_ARCH_TASKS = {
    "ForSequenceClassification": "text-classification", "ForTokenClassification": "token-classification",
    "ForQuestionAnswering": "question-answering", "ForMaskedLM": "fill-mask",
    "ForCausalLM": "text-generation", "ForConditionalGeneration": "text2text-generation",
}


def card_data(readme: bytes) -> dict[str, Any] | None:
    text = readme.decode("utf-8", "replace")
    m = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", text, re.S)
    if not m:
        return None
    try:
        data = yaml.safe_load(m.group(1))
    except (yaml.YAMLError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _pipeline_from_config(store: HubStore, entry: dict[str, Any]) -> str | None:
    if entry["size"] > 1024 * 1024:
        return None
    try:
        config = json.loads(store.blob_path(entry["sha256"]).read_bytes())
    except (ValueError, RecursionError):
        return None
    archs = (config.get("architectures") or []) if isinstance(config, dict) else []
    for arch in archs if isinstance(archs, list) else []:
        for suffix, tag in _ARCH_TASKS.items():
            if str(arch).endswith(suffix):
                return tag
    return None


def repo_info(store: HubStore, repo: Repo, commit: Commit, *, siblings: bool = True) -> dict[str, Any]:
    """The JSON of ``GET /api/{type}s/{id}[/revision/{rev}]`` (and of one listing item)."""
    files = commit.files
    card: dict[str, Any] | None = None
    if "README.md" in files and files["README.md"]["size"] <= 1024 * 1024:
        card = card_data(store.blob_path(files["README.md"]["sha256"]).read_bytes())
    pipeline_tag = (card or {}).get("pipeline_tag")
    library_name = (card or {}).get("library_name")
    if "config.json" in files and repo.repo_type == "model":
        library_name = library_name or "transformers"
        if pipeline_tag is None:
            pipeline_tag = _pipeline_from_config(store, files["config.json"])
    tags = [str(t) for t in [library_name, pipeline_tag] if t]
    card_tags = (card or {}).get("tags") or []
    tags += [str(t) for t in (card_tags if isinstance(card_tags, list) else [card_tags]) if str(t) not in tags]
    info: dict[str, Any] = {
        "_id": hashlib.sha1(repo.repo_id.lower().encode()).hexdigest()[:24], "id": repo.repo_id,
        "author": repo.repo_id.split("/")[0], "sha": commit.id, "private": repo.private, "gated": False,
        "disabled": False, "downloads": 0, "likes": 0, "tags": tags, "createdAt": repo.created_at,
        "lastModified": commit.date, "cardData": card,
    }
    if siblings:
        out = []
        for path, e in sorted(files.items()):
            sib: dict[str, Any] = {"rfilename": path, "size": e["size"], "blobId": e["oid"]}
            if e["lfs"]:
                sib["lfs"] = {"sha256": e["sha256"], "size": e["size"],
                              "pointerSize": len(lfs_pointer(e["sha256"], e["size"]))}
            out.append(sib)
        info["siblings"] = out
        info["usedStorage"] = sum(e["size"] for e in files.values())
    if repo.repo_type == "model":
        info.update({"modelId": repo.repo_id, "pipeline_tag": pipeline_tag, "library_name": library_name})
    return info


def list_repos(
    store: HubStore, repo_type: str, *, can_see_private: bool, author: str | None, search: list[str],
    filters: list[str], sort: str | None, descending: bool, full: bool,
) -> list[dict[str, Any]]:
    """Every repo of ``repo_type`` this caller may see, filtered and sorted (the caller pages)."""
    items = []
    for path in store.repo_dirs(repo_type):
        try:
            meta = json.loads((path / "repo.json").read_text(encoding="utf-8"))
            repo = store.get_repo(repo_type, meta["id"])
        except (StoreError, ValueError, KeyError, OSError):
            continue  # a repo being created, moved or deleted meanwhile
        if repo.private and not can_see_private:
            continue
        if author and repo.repo_id.split("/")[0].lower() != author.lower():
            continue
        if any(s.lower() not in repo.repo_id.lower() for s in search):
            continue
        try:
            info = repo_info(store, repo, store.resolve(repo, "main"), siblings=full)
        except StoreError:
            continue
        tags = {t.lower() for t in info["tags"]}
        if any(f.lower() not in tags for f in filters):
            continue
        items.append(info)
    key = _SORT_KEYS.get(sort or "id", "id")
    items.sort(key=lambda i: (i[key], i["id"].lower()) if key != "id" else i["id"].lower(), reverse=descending)
    return items
