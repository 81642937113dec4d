"""File-backed store of the local Hub: content-addressed blobs, per-repo commits, branches and tags.

Layout under ``root``::

    blobs/<sha256[:2]>/<sha256>                 file contents, content-addressed
    tmp/                                        partial uploads (renamed into blobs/ when complete)
    repos/<models|datasets|spaces>/<ns>/<name>/
        repo.json                               {"id", "type", "private", "createdAt"}
        refs.json                               {"branches": {..}, "tags": {..}, "pulls": {..}, "prTargets": {..},
                                                 "prMerged": [..]}  (swapped atomically)
        commits/<40-hex>.json                   full snapshot: {"id", "parents", "files": {path: entry}, ...}
        .lock                                   fcntl lock serialising writers across processes

A commit is atomic: blobs are written first, then the commit file, then ``refs.json`` is
replaced in one ``os.replace``. A writer killed at any point leaves the previous refs in place.
A pull request is opened from its ``parentCommit`` (else the target's head) and merges as a fast-forward only.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from hubtune.hub_server import discussions
from hubtune.hub_server.blobs import BlobStore
from hubtune.hub_server.validation import (
    DEFAULT_GITATTRIBUTES,
    LFS_SUFFIXES,
    MAX_REGULAR_SIZE,
    BadRequest,
    Conflict,
    EntryNotFound,
    RepoNotFound,
    RevisionNotFound,
    StaleParent,
    StoreError,
    TooLarge,
    Unprocessable,
    check_path,
    check_ref_name,
    check_repo_id,
    parse_gitattributes,
    upload_mode,
)

__all__ = [  # re-exported: the importer and the HTTP layer take these from here
    "CANONICAL_ORG", "DEFAULT_GITATTRIBUTES", "LFS_SUFFIXES", "MAX_REGULAR_SIZE", "REPO_TYPES", "BadRequest", "Commit", "Conflict",
    "EntryNotFound", "HubStore", "open_store", "Operation", "Repo", "RepoNotFound", "RevisionNotFound", "StaleParent",
    "StoreError", "TooLarge", "Unprocessable", "check_path", "check_ref_name", "check_repo_id", "git_blob_oid",
    "lfs_pointer", "upload_mode",
]

REPO_TYPES = ("model", "dataset", "space")
CANONICAL_ORG = "canonical"  # a canonical id (imdb) is stored as canonical/imdb and served as both
_HEX40_RE = re.compile(r"^[0-9a-f]{40}$")
_HEX64_RE = re.compile(r"^[0-9a-f]{64}$")
_PR_RE = re.compile(r"^refs/pr/([1-9][0-9]{0,8})$")
EMPTY_REFS: dict[str, dict[str, str]] = {"branches": {}, "tags": {}, "pulls": {}}


# --- helpers --------------------------------------------------------------------------------------
def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def git_blob_oid(data: bytes) -> str:
    """The sha1 git object id of a blob, as the Hub reports for regular files."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def _write_json_atomic(path: Path, obj: Any) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _valid_id(repo_id: str) -> bool:
    try:
        check_repo_id(repo_id)
    except StoreError:
        return False
    return True


@dataclass(frozen=True)
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    created_at: str
    path: Path


@dataclass
class Commit:
    id: str
    parents: list[str]
    title: str
    message: str
    date: str
    author: str
    files: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "parents": self.parents, "title": self.title, "message": self.message,
            "date": self.date, "author": self.author, "files": self.files,
        }


@dataclass
class Operation:
    """One line of the NDJSON commit payload, already decoded."""

    kind: str  # file | lfsFile | deletedFile | deletedFolder
    path: str
    content: bytes | None = None
    sha256: str | None = None
    size: int | None = None
    entry: dict[str, Any] | None = None  # a "file" whose content is already stored (see HubStore.stage)


class HubStore(BlobStore):
    """All state of the local Hub, on disk under ``root``; safe for threads and processes."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        super().__init__(root)
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    # --- repos ------------------------------------------------------------------------------------
    def _repo_dir(self, repo_type: str, repo_id: str) -> Path:
        """Where ``repo_id`` lives: ids are case-insensitive (stored lower-case), the id keeps its case in repo.json."""
        if repo_type not in REPO_TYPES:
            raise BadRequest(f"invalid repo type {repo_type!r}: expected one of {', '.join(REPO_TYPES)}")
        ns, name = check_repo_id(repo_id)
        return self.root / "repos" / f"{repo_type}s" / ns.lower() / name.lower()

    def _existing_dir(self, repo_type: str, repo_id: str) -> Path:
        """The folder of an existing repo: lower-case, or as spelled by a store from before ids were folded."""
        path = self._repo_dir(repo_type, repo_id)
        if not (path / "repo.json").is_file():
            ns, name = check_repo_id(repo_id)
            legacy = self.root / "repos" / f"{repo_type}s" / ns / name
            if (legacy / "repo.json").is_file():
                return legacy
        return path

    def repo_dirs(self, repo_type: str) -> list[Path]:
        """Every repo folder of ``repo_type`` (for listings and the garbage collector)."""
        return sorted(p.parent for p in (self.root / "repos" / f"{repo_type}s").glob("*/*/repo.json"))

    def exists(self, repo_type: str, repo_id: str) -> bool:
        return (self._existing_dir(repo_type, repo_id) / "repo.json").is_file() if _valid_id(repo_id) else False

    def get_repo(self, repo_type: str, repo_id: str) -> Repo:
        path = self._existing_dir(repo_type, repo_id)
        meta_file = path / "repo.json"
        if not meta_file.is_file():
            raise RepoNotFound(f"{repo_type} repository {repo_id!r} not found")
        meta = _read_json(meta_file)
        return Repo(repo_type, meta["id"], bool(meta["private"]), meta["createdAt"], path)

    def create_repo(self, repo_type: str, repo_id: str, *, private: bool, author: str = "hubtune") -> Repo:
        """Create a repo with an initial commit holding ``.gitattributes``; Conflict if it exists."""
        path = self._repo_dir(repo_type, repo_id)
        if self._existing_dir(repo_type, repo_id) != path:
            raise Conflict(f"You already created this {repo_type} repo: {repo_id}")
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.parent / f".{path.name}.{uuid.uuid4().hex}.creating"
        staging.mkdir()
        try:
            (staging / "commits").mkdir()
            created = now_iso()
            data = DEFAULT_GITATTRIBUTES.encode()
            entry = self._regular_entry(data)
            commit = self._make_commit([], {".gitattributes": entry}, "initial commit", "", author)
            _write_json_atomic(staging / "commits" / f"{commit.id}.json", commit.to_json())
            _write_json_atomic(staging / "refs.json", {**EMPTY_REFS, "branches": {"main": commit.id}})
            _write_json_atomic(
                staging / "repo.json",
                {"id": repo_id, "type": repo_type, "private": private, "createdAt": created},
            )
            try:
                os.rename(staging, path)  # fails if the repo appeared meanwhile
            except OSError:
                raise Conflict(f"You already created this {repo_type} repo: {repo_id}") from None
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        return self.get_repo(repo_type, repo_id)

    def delete_repo(self, repo: Repo) -> None:
        with self.locked(repo):
            trash = self.root / "tmp" / f"deleted-{uuid.uuid4().hex}"
            os.rename(repo.path, trash)
        shutil.rmtree(trash, ignore_errors=True)

    def set_private(self, repo: Repo, private: bool) -> None:
        with self.locked(repo):
            meta = _read_json(repo.path / "repo.json")
            meta["private"] = private
            _write_json_atomic(repo.path / "repo.json", meta)

    def move_repo(self, repo: Repo, new_id: str) -> Repo:
        """Rename ``repo`` to ``new_id`` (same type); Conflict if that id is taken. Refs and history move with it."""
        new_path = self._repo_dir(repo.repo_type, new_id)
        with self.locked(repo):
            if new_path != repo.path:
                if (self._existing_dir(repo.repo_type, new_id) / "repo.json").is_file() or new_path.exists():
                    raise Conflict(f"{repo.repo_type} repository {new_id!r} already exists")
                new_path.parent.mkdir(parents=True, exist_ok=True)
                os.rename(repo.path, new_path)
            meta = _read_json(new_path / "repo.json")
            meta["id"] = new_id
            _write_json_atomic(new_path / "repo.json", meta)
        return self.get_repo(repo.repo_type, new_id)

    def super_squash(self, repo: Repo, branch: str, message: str, author: str) -> Commit:
        """Replace ``branch``'s history by one commit with the same files (older commits become garbage)."""
        with self.locked(repo):
            refs = self.refs(repo)
            if branch not in refs["branches"]:
                raise RevisionNotFound(f"Invalid rev id: {branch} (no such branch in {repo.repo_id})")
            head = self.get_commit(repo, refs["branches"][branch])
            commit = self._make_commit([], head.files, message, "", author)
            _write_json_atomic(repo.path / "commits" / f"{commit.id}.json", commit.to_json())
            refs["branches"][branch] = commit.id
            self.write_refs(repo, refs)
            return commit

    @contextlib.contextmanager
    def locked(self, repo: Repo) -> Iterator[None]:
        """Serialise writers of one repo: a thread lock, then an fcntl lock for other processes."""
        key = str(repo.path)
        with self._locks_guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            with open(repo.path / ".lock", "a+b") as fh:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    # --- refs and commits -------------------------------------------------------------------------
    def refs(self, repo: Repo) -> dict[str, dict[str, str]]:
        return {**EMPTY_REFS, **_read_json(repo.path / "refs.json")}

    def write_refs(self, repo: Repo, refs: dict[str, dict[str, str]]) -> None:
        _write_json_atomic(repo.path / "refs.json", refs)

    def get_commit(self, repo: Repo, commit_id: str) -> Commit:
        path = repo.path / "commits" / f"{commit_id}.json"
        if not _HEX40_RE.match(commit_id) or not path.is_file():
            raise RevisionNotFound(f"commit {commit_id!r} not found in {repo.repo_id}")
        return Commit(**_read_json(path))

    def resolve(self, repo: Repo, revision: str) -> Commit:
        """A branch, tag, ``refs/heads|tags/X``, ``refs/pr/N`` or full commit id -> commit."""
        refs = self.refs(repo)
        rev = revision
        commit_id: str | None = None
        if rev.startswith("refs/heads/"):
            commit_id = refs["branches"].get(rev[len("refs/heads/"):])
        elif rev.startswith("refs/tags/"):
            commit_id = refs["tags"].get(rev[len("refs/tags/"):])
        elif m := _PR_RE.match(rev):
            commit_id = refs["pulls"].get(m.group(1))
        elif rev in refs["branches"]:
            commit_id = refs["branches"][rev]
        elif rev in refs["tags"]:
            commit_id = refs["tags"][rev]
        elif _HEX40_RE.match(rev) and (repo.path / "commits" / f"{rev}.json").is_file():
            commit_id = rev
        if commit_id is None:
            raise RevisionNotFound(f"Invalid rev id: {revision} (no such branch, tag or commit in {repo.repo_id})")
        return self.get_commit(repo, commit_id)

    def history(self, repo: Repo, revision: str) -> list[Commit]:
        commit: Commit | None = self.resolve(repo, revision)
        out = []
        while commit is not None:
            out.append(commit)
            commit = self.get_commit(repo, commit.parents[0]) if commit.parents else None
        return out

    def _regular_entry(self, data: bytes) -> dict[str, Any]:
        sha = self.put_blob_bytes(data)
        return {"sha256": sha, "size": len(data), "oid": git_blob_oid(data), "lfs": False}

    @staticmethod
    def _make_commit(parents: list[str], files: dict[str, Any], title: str, message: str, author: str) -> Commit:
        date = now_iso()
        body = json.dumps(
            {"parents": parents, "files": files, "title": title, "message": message, "date": date,
             "author": author, "nonce": uuid.uuid4().hex},
            sort_keys=True,
        )
        return Commit(hashlib.sha1(body.encode()).hexdigest(), parents, title, message, date, author, files)

    @staticmethod
    def decode_header(line: Any) -> dict[str, Any]:
        """The first NDJSON line of a commit payload: its ``value`` (summary, description, parentCommit)."""
        if not isinstance(line, dict) or line.get("key") != "header" or not isinstance(line.get("value"), dict):
            raise BadRequest("commit payload must start with a 'header' line: {\"key\": \"header\", \"value\": {...}}")
        value = line["value"]
        for key in ("summary", "description", "parentCommit"):
            if value.get(key) is not None and not isinstance(value[key], str):
                raise BadRequest(f"commit header {key!r} must be a string")
        return value

    @staticmethod
    def decode_line(line: Any) -> Operation:
        """One operation line of a commit payload, validated; raises BadRequest."""
        key, value = (line.get("key"), line.get("value")) if isinstance(line, dict) else (None, None)
        if not isinstance(value, dict) or not isinstance(value.get("path", ""), str):
            raise BadRequest(f"malformed commit line {line!r}"[:300] + ": expected {\"key\": ..., \"value\": {\"path\": ...}}")
        if key == "deletedFolder":
            return Operation(key, check_path(str(value.get("path", "")).rstrip("/")))
        path = check_path(value.get("path", ""))
        if key == "file":
            content = value.get("content", "")
            if value.get("encoding", "base64") != "base64" or not isinstance(content, str):
                raise BadRequest(f"unsupported encoding {value.get('encoding')!r} for {path}: expected base64 text")
            try:
                data = base64.b64decode(content, validate=True)
            except ValueError:
                raise BadRequest(f"invalid base64 content for {path}") from None
            return Operation(key, path, content=data)
        if key == "lfsFile":
            if value.get("algo", "sha256") != "sha256":
                raise BadRequest(f"unsupported LFS algo {value.get('algo')!r} for {path}: expected sha256")
            oid, size = value.get("oid"), value.get("size")  # no size: a copy of a stored LFS file
            if (not isinstance(oid, str) or not _HEX64_RE.match(oid)
                    or size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0)):
                raise BadRequest(f"invalid lfsFile line for {path}: expected a sha256 oid and an integer size")
            return Operation(key, path, sha256=oid, size=size)
        if key == "deletedFile":
            return Operation(key, path)
        raise BadRequest(f"unsupported commit operation {str(key)[:50]!r}: expected file, lfsFile, deletedFile "
                         "or deletedFolder")

    def decode_operations(self, lines: list[dict[str, Any]]) -> tuple[dict[str, Any], list[Operation]]:
        """Validate the NDJSON payload (header first) into operations; raises BadRequest."""
        if not lines:
            raise BadRequest("commit payload must start with a 'header' line")
        return self.decode_header(lines[0]), [self.decode_line(line) for line in lines[1:]]

    def lfs_rules(self, commit: Commit | None) -> list[Any]:
        """The LFS rules of ``commit``'s own ``.gitattributes`` (none: nothing is LFS by name)."""
        entry = commit.files.get(".gitattributes") if commit is not None else None
        if entry is None or entry["size"] > 1024 * 1024:
            return [] if commit is not None else parse_gitattributes(DEFAULT_GITATTRIBUTES)
        return parse_gitattributes(self.blob_path(entry["sha256"]).read_bytes().decode("utf-8", "replace"))

    def content_entry(self, path: str, data: bytes, rules: list[Any] | None = None) -> dict[str, Any]:
        """Store ``data`` (sent inline, base64) and describe it the way this Hub stores ``path``.

        Storage follows ``upload_mode`` under the repo's ``.gitattributes`` (``rules``), not the wire: a
        large or binary file that a client sent inline (huggingface_hub >= 1.20 sends those when told
        "regular", see app.py) is kept as an LFS file, exactly as if it had come through the LFS batch
        API, so a repo looks the same whichever client version pushed it.
        """
        sha = self.put_blob_bytes(data)
        if upload_mode(path, len(data), data[:512], rules) == "lfs":
            return {"sha256": sha, "size": len(data), "oid": git_blob_oid(lfs_pointer(sha, len(data))), "lfs": True}
        return {"sha256": sha, "size": len(data), "oid": git_blob_oid(data), "lfs": False}

    def stage(self, op: Operation, rules: list[Any] | None = None) -> Operation:
        """Store the content of a "file" operation now (its blob), keeping only its entry in memory."""
        if op.kind == "file" and op.entry is None:
            assert op.content is not None
            op.entry = self.content_entry(op.path, op.content, rules)
            op.content = None
        return op

    def raw_git_oid(self, entry: dict[str, Any]) -> str:
        """The git blob id of an entry's *content* (for LFS entries ``oid`` is the pointer's)."""
        if not entry["lfs"]:
            return str(entry["oid"])
        h = hashlib.sha1(b"blob %d\0" % entry["size"])
        with open(self.blob_path(entry["sha256"]), "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        return h.hexdigest()

    def _lfs_entry(self, op: Operation) -> dict[str, Any]:
        assert op.sha256 is not None
        size = op.size if op.size is not None else self.blob_size(op.sha256)
        if size is None or not self.has_blob(op.sha256, size):
            raise Unprocessable(
                f"LFS object {op.sha256} ({op.size if op.size is not None else '?'} bytes) for {op.path} was never "
                "uploaded: upload it through the LFS batch endpoint first"
            )
        self.keep_blob(op.sha256)
        return {"sha256": op.sha256, "size": size, "oid": git_blob_oid(lfs_pointer(op.sha256, size)), "lfs": True}

    def commit(
        self,
        repo: Repo,
        revision: str,
        header: dict[str, Any],
        ops: list[Operation],
        *,
        author: str,
        create_pr: bool = False,
    ) -> tuple[Commit, int | None]:
        """Apply ``ops`` on top of ``revision`` as one commit; returns (commit, pr number or None)."""
        # Regular contents become blobs before taking the lock; LFS blobs must already exist.
        entries: dict[str, dict[str, Any]] = {}
        for op in ops:
            if op.kind == "file":
                entries[op.path] = self.stage(op).entry  # type: ignore[assignment]
            elif op.kind == "lfsFile":
                entries[op.path] = self._lfs_entry(op)
        with self.locked(repo):
            refs = self.refs(repo)
            pr_match = _PR_RE.match(revision)
            if pr_match and not create_pr:
                if pr_match.group(1) not in refs["pulls"]:
                    raise RevisionNotFound(f"pull request {revision} not found in {repo.repo_id}")
            elif revision.removeprefix("refs/heads/") not in refs["branches"]:
                raise RevisionNotFound(
                    f"Invalid rev id: {revision}: commits go to an existing branch (create it first)"
                )
            head = self.resolve(repo, revision)
            parent = header.get("parentCommit")
            if create_pr and parent is not None:  # as on the Hub: a pull request opened from parentCommit
                head = self.get_commit(repo, str(parent))
            elif parent is not None and parent != head.id:
                raise StaleParent(
                    f"parentCommit {parent} is not the head of {revision} ({head.id}): "
                    "someone pushed meanwhile; pull and retry"
                )
            files = dict(head.files)
            for op in ops:
                if op.kind in ("file", "lfsFile"):
                    for other in list(files):  # a file replaces a folder of the same name and vice versa
                        if other.startswith(op.path + "/") or op.path.startswith(other + "/"):
                            raise BadRequest(f"{op.path} conflicts with existing {other}")
                    files[op.path] = entries[op.path]
                elif op.kind == "deletedFile":
                    if op.path not in files:
                        raise EntryNotFound(f"A file with this name doesn't exist: {op.path}")
                    del files[op.path]
                else:  # deletedFolder
                    doomed = [p for p in files if p.startswith(op.path + "/")]
                    if not doomed:
                        raise EntryNotFound(f"A folder with this name doesn't exist: {op.path}")
                    for p in doomed:
                        del files[p]
            title = str(header.get("summary") or "Upload files")
            commit = self._make_commit([head.id], files, title, str(header.get("description") or ""), author)
            _write_json_atomic(repo.path / "commits" / f"{commit.id}.json", commit.to_json())
            pr_num: int | None = None
            commit_event = discussions.event("commit", author, {"subject": title, "oid": commit.id})
            if create_pr:
                pr_num = discussions.next_number(refs)
                target = revision.removeprefix("refs/heads/")
                refs["pulls"][str(pr_num)] = commit.id
                refs.setdefault("prTargets", {})[str(pr_num)] = target
                discussions.open_discussion(refs, pr_num, title=title, description=commit.message, author=author,
                                            is_pr=True, target=target)
                discussions.record(refs, str(pr_num), commit_event)
            elif pr_match:
                refs["pulls"][pr_match.group(1)] = commit.id
                discussions.record(refs, pr_match.group(1), commit_event)
            else:
                refs["branches"][revision.removeprefix("refs/heads/")] = commit.id
            self.write_refs(repo, refs)  # the one atomic switch
            return commit, pr_num

    def create_ref(self, repo: Repo, kind: str, name: str, target: str) -> str:
        """Create a branch or tag ``name`` at revision ``target``; Conflict if it exists."""
        check_ref_name(name)
        with self.locked(repo):
            commit = self.resolve(repo, target)
            refs = self.refs(repo)
            bucket = refs["branches" if kind == "branch" else "tags"]
            if name in bucket:
                raise Conflict(f"{kind} {name!r} already exists in {repo.repo_id}")
            bucket[name] = commit.id
            self.write_refs(repo, refs)
            return commit.id

    def delete_ref(self, repo: Repo, kind: str, name: str) -> None:
        with self.locked(repo):
            refs = self.refs(repo)
            bucket = refs["branches" if kind == "branch" else "tags"]
            if name not in bucket:
                raise RevisionNotFound(f"{kind} {name!r} not found in {repo.repo_id}")
            if kind == "branch" and name == "main":
                raise BadRequest("the main branch cannot be deleted")
            del bucket[name]
            self.write_refs(repo, refs)

    def merge_pr(self, repo: Repo, num: str, *, author: str = "hubtune", comment: str | None = None) -> Commit:
        """Merge pull request ``num`` into the branch it targets, as a fast-forward only (Conflict otherwise)."""
        with self.locked(repo):
            refs = self.refs(repo)
            entry = discussions.get(refs, num)
            if not entry["isPullRequest"]:
                raise BadRequest(f"#{num} is a discussion, not a pull request: there is nothing to merge")
            if num in refs.get("prMerged", []) or entry["status"] == "merged":
                raise Conflict(f"pull request #{num} is already merged")
            if entry["status"] == "closed":
                raise Conflict(f"pull request #{num} is closed: reopen it (change_discussion_status) to merge it")
            target = refs.get("prTargets", {}).get(num, "main")
            if target not in refs["branches"]:
                raise RevisionNotFound(f"branch {target!r}, the target of pull request #{num}, is gone")
            tip, head = self.get_commit(repo, refs["pulls"][num]), refs["branches"][target]
            current: Commit | None = tip
            while current is not None and current.id != head:  # the target's head must be an ancestor
                current = self.get_commit(repo, current.parents[0]) if current.parents else None
            if current is None:
                raise Conflict(f"pull request #{num} is not a fast-forward of {target} (now at {head}): "
                               "this Hub merges fast-forwards only; open it again from the branch's head")
            refs["branches"][target] = tip.id
            refs["prMerged"] = [*refs.get("prMerged", []), num]
            if comment:
                discussions.record(refs, num, discussions.comment_event(author, comment))
            discussions.record(refs, num, discussions.event("status-change", author, {"status": "merged"}))
            refs["discussions"][num].update(status="merged", mergeCommitId=tip.id)
            self.write_refs(repo, refs)
            return tip


def open_store(root: str | os.PathLike[str], flag: str = "--root") -> HubStore:
    """The store at ``root``, created when missing; a root that is a file, or cannot be created or written, is
    :class:`~hubtune.core.errors.ServerStartError` with nothing left behind (the folders this call made are removed)."""
    from hubtune.core.errors import ServerStartError

    path = Path(root).absolute()
    if path.exists() and not path.is_dir():
        raise ServerStartError(f"{flag} {str(root)!r} is a file; expected a folder for the local Hub's repos and "
                               f"blobs (created if missing): pass another {flag}")
    first_new = next((p for p in [*reversed(path.parents), path] if not p.exists()), None)
    try:
        store = HubStore(path)
        probe = store.root / "tmp" / f".write-check-{uuid.uuid4().hex}"
        probe.write_bytes(b"")
        probe.unlink()
        return store
    except OSError as exc:
        if first_new is not None:
            shutil.rmtree(first_new, ignore_errors=True)
        raise ServerStartError(
            f"{flag} {str(root)!r} cannot be used ({exc.strerror or type(exc).__name__}); expected a folder this "
            f"user can create and write: pass another {flag}"
        ) from None
