"""Discussions and pull requests of the local Hub, as ``get_repo_discussions`` & co. read them.

They live in the repo's ``refs.json`` under ``"discussions"`` (number -> title, status, author, events),
so that opening a pull request, its ``refs/pr/N`` ref and its first event switch in one atomic write.
Discussions and pull requests share one numbering, as on the Hub. A pull request made before this
file existed (only ``pulls`` in refs.json) is shown from its ref. The operations take the store
(``HubStore``) as an argument and use its public lock/refs API; the store imports only the pure helpers.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timezone
from typing import Any

from hubtune.hub_server.validation import BadRequest, Conflict, StoreError

PAGE_SIZE = 50
STATUSES = ("open", "closed", "merged", "draft")


class DiscussionNotFound(StoreError):
    status = 404


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def event(kind: str, author: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"id": secrets.token_hex(12), "type": kind, "createdAt": _now(), "author": {"name": author},
            "data": data}


def comment_event(author: str, text: str) -> dict[str, Any]:
    return event("comment", author, {"edited": False, "hidden": False, "numEdits": 0,
                                     "latest": {"raw": text, "html": text, "updatedAt": _now()}})


def next_number(refs: dict[str, Any]) -> int:
    nums = [int(n) for n in refs.get("pulls", {})] + [int(n) for n in refs.get("discussions", {})]
    return max(nums, default=0) + 1


def open_discussion(
    refs: dict[str, Any], num: int, *, title: str, description: str, author: str, is_pr: bool,
    target: str | None = None,
) -> dict[str, Any]:
    """Record discussion ``num`` in ``refs`` (not written: the caller writes refs)."""
    entry = {"num": num, "title": title[:500] or f"Discussion #{num}", "status": "open", "isPullRequest": is_pr,
             "author": author, "createdAt": _now(), "target": target, "events": [comment_event(author, description)]}
    refs.setdefault("discussions", {})[str(num)] = entry
    return entry


def get(refs: dict[str, Any], num: str) -> dict[str, Any]:
    """Discussion ``num`` (a legacy pull request is synthesised from its ref); 404 if none."""
    found = refs.get("discussions", {}).get(num)
    if found is not None:
        return found
    if num in refs.get("pulls", {}):
        merged = num in refs.get("prMerged", [])
        return {"num": int(num), "title": f"Pull request #{num}", "status": "merged" if merged else "open",
                "isPullRequest": True, "author": "hubtune", "createdAt": _now(),
                "target": refs.get("prTargets", {}).get(num, "main"), "events": []}
    raise DiscussionNotFound(f"discussion #{num} not found")


def record(refs: dict[str, Any], num: str, new: dict[str, Any]) -> None:
    """Append an event to discussion ``num`` (materialising a legacy pull request first)."""
    entry = get(refs, num)
    refs.setdefault("discussions", {})[num] = entry
    entry["events"].append(new)


def summary(entry: dict[str, Any], repo_id: str, repo_type: str) -> dict[str, Any]:
    return {"num": entry["num"], "title": entry["title"], "status": entry["status"],
            "isPullRequest": entry["isPullRequest"], "createdAt": entry["createdAt"],
            "author": {"name": entry["author"]}, "repo": {"name": repo_id, "type": repo_type},
            "pinned": False, "numComments": sum(e["type"] == "comment" for e in entry["events"]),
            "topReactions": []}


def details(entry: dict[str, Any], repo_id: str, repo_type: str, refs: dict[str, Any]) -> dict[str, Any]:
    out = {**summary(entry, repo_id, repo_type), "events": entry["events"]}
    if entry["isPullRequest"]:
        num = str(entry["num"])
        changes: dict[str, Any] = {"base": f"refs/heads/{entry.get('target') or 'main'}"}
        if entry.get("mergeCommitId"):
            changes["mergeCommitId"] = entry["mergeCommitId"]
        out.update({"changes": changes, "filesWithConflicts": [], "diff": "",
                    "headCommit": refs.get("pulls", {}).get(num)})
    return out


# --- operations (take the store) -----------------------------------------------------------------
def list_page(
    store: Any, repo: Any, *, page: int, kind: str, status: str, author: str | None,
) -> dict[str, Any]:
    refs = store.refs(repo)
    nums = sorted({*refs.get("pulls", {}), *refs.get("discussions", {})}, key=int, reverse=True)
    items = []
    for num in nums:
        entry = get(refs, num)
        if kind == "pull_request" and not entry["isPullRequest"] or kind == "discussion" and entry["isPullRequest"]:
            continue
        if status == "open" and entry["status"] not in ("open", "draft"):
            continue
        if status == "closed" and entry["status"] not in ("closed", "merged"):
            continue
        if author and entry["author"] != author:
            continue
        items.append(summary(entry, repo.repo_id, repo.repo_type))
    start = max(page, 0) * PAGE_SIZE
    return {"discussions": items[start:start + PAGE_SIZE], "count": len(items), "start": start,
            "numClosedDiscussions": sum(i["status"] in ("closed", "merged") for i in items)}


def create(store: Any, repo: Any, *, title: str, description: str, author: str, pull_request: bool) -> int:
    """A new discussion, or an empty pull request (``refs/pr/N`` at main's head) to push commits to."""
    with store.locked(repo):
        refs = store.refs(repo)
        num = next_number(refs)
        if pull_request:
            refs["pulls"][str(num)] = refs["branches"]["main"]
            refs.setdefault("prTargets", {})[str(num)] = "main"
        open_discussion(refs, num, title=title, description=description, author=author, is_pr=pull_request,
                        target="main" if pull_request else None)
        store.write_refs(repo, refs)
        return num


def change_status(store: Any, repo: Any, num: str, status: str, comment: str | None, author: str) -> dict[str, Any]:
    if status not in ("open", "closed"):
        raise BadRequest(f"invalid status {status!r}: expected 'open' or 'closed'")
    with store.locked(repo):
        refs = store.refs(repo)
        entry = get(refs, num)
        if entry["status"] == "merged":
            raise Conflict(f"discussion #{num} is merged: its status cannot change")
        if comment:
            record(refs, num, comment_event(author, comment))
        change = event("status-change", author, {"status": status})
        record(refs, num, change)
        refs["discussions"][num]["status"] = status
        store.write_refs(repo, refs)
        return change


def add_comment(store: Any, repo: Any, num: str, text: str, author: str) -> dict[str, Any]:
    with store.locked(repo):
        refs = store.refs(repo)
        new = comment_event(author, text)
        record(refs, num, new)
        store.write_refs(repo, refs)
        return new


def rename(store: Any, repo: Any, num: str, title: str, author: str) -> dict[str, Any]:
    with store.locked(repo):
        refs = store.refs(repo)
        entry = get(refs, num)
        new = event("title-change", author, {"from": entry["title"], "to": title[:500]})
        record(refs, num, new)
        refs["discussions"][num]["title"] = title[:500]
        store.write_refs(repo, refs)
        return new
