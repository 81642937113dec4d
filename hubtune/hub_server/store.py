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
from typing import Any, BinaryIO, Iterator

REPO_TYPES = ("model", "dataset", "space")
_NAME_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?$")
_HEX40_RE = re.compile(r"^[0-9a-f]{40}$")
_HEX64_RE = re.compile(r"^[0-9a-f]{64}$")
_PR_RE = re.compile(r"^refs/pr/([1-9][0-9]{0,8})$")
_REF_NAME_RE = re.compile(r"^[A-Za-z0-9._-]+(?:/[A-Za-z0-9._-]+)*$")
MAX_REGULAR_SIZE = 10 * 1024 * 1024
LFS_SUFFIXES = (
    ".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".onnx", ".h5", ".msgpack", ".parquet", ".arrow",
    ".npy", ".npz", ".pkl", ".gz", ".zip", ".tar", ".zst", ".model", ".gguf", ".tflite",
)
DEFAULT_GITATTRIBUTES = "".join(
    f"*{suffix} filter=lfs diff=lfs merge=lfs -text\n" for suffix in LFS_SUFFIXES
)
EMPTY_REFS: dict[str, dict[str, str]] = {"branches": {}, "tags": {}, "pulls": {}}


# --- errors ---------------------------------------------------------------------------------------
class StoreError(Exception):
    """An error the HTTP layer turns into a status code, an X-Error-Code and a JSON body."""

    status = 400
    code: str | None = None


class BadRequest(StoreError):
    status = 400


class RepoNotFound(StoreError):
    status = 404
    code = "RepoNotFound"


class RevisionNotFound(StoreError):
    status = 404
    code = "RevisionNotFound"


class EntryNotFound(StoreError):
    status = 404
    code = "EntryNotFound"


class Conflict(StoreError):
    status = 409


class StaleParent(StoreError):
    status = 412


class Unprocessable(StoreError):
    status = 422


# --- helpers --------------------------------------------------------------------------------------
def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def git_blob_oid(data: bytes) -> str:
    """The sha1 git object id of a blob, as the Hub reports for regular files."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def check_repo_id(repo_id: str) -> tuple[str, str]:
    """``namespace/name`` -> (namespace, name); anything else is refused."""
    parts = repo_id.split("/")
    if len(parts) != 2 or not all(_NAME_RE.match(p) for p in parts) or any(".." in p for p in parts):
        raise BadRequest(
            f"invalid repo id {repo_id!r}: expected 'namespace/name' with letters, digits, '-', '_', '.'"
        )
    if parts[1].endswith(".git"):
        raise BadRequest(f"invalid repo id {repo_id!r}: a name may not end in '.git'")
    return parts[0], parts[1]


def check_path(path: str) -> str:
    """A relative path inside a repo; ``..``, absolute paths, backslashes and ``.git`` are refused."""
    if not isinstance(path, str) or not path:
        raise BadRequest("empty path in repo")
    if path.startswith("/") or "\\" in path or "\x00" in path or re.match(r"^[A-Za-z]:", path):
        raise BadRequest(f"invalid path {path!r}: expected a relative path with '/' separators")
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise BadRequest(f"invalid path {path!r}: '.', '..' and empty segments are not allowed")
    if parts[0] == ".git":
        raise BadRequest(f"invalid path {path!r}: '.git' is reserved")
    return path


def check_ref_name(name: str) -> str:
    if not _REF_NAME_RE.match(name) or ".." in name or name.endswith(".lock") or name.startswith("refs/"):
        raise BadRequest(f"invalid branch or tag name {name!r}")
    return name


def upload_mode(path: str, size: int, sample: bytes) -> str:
    """'lfs' for large or binary files, 'regular' otherwise (the rule the real Hub applies, simplified)."""
    if size == 0:
        return "regular"
    if size >= MAX_REGULAR_SIZE or path.lower().endswith(LFS_SUFFIXES) or b"\x00" in sample[:512]:
        return "lfs"
    return "regular"


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


class HubStore:
    """All state of the local Hub, on disk under ``root``; safe for threads and processes."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()
        for sub in ("blobs", "tmp", "repos"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    # --- blobs ------------------------------------------------------------------------------------
    def blob_path(self, sha256: str) -> Path:
        if not _HEX64_RE.match(sha256):
            raise BadRequest(f"invalid sha256 oid {sha256!r}: expected 64 lowercase hex digits")
        return self.root / "blobs" / sha256[:2] / sha256

    def has_blob(self, sha256: str, size: int | None = None) -> bool:
        path = self.blob_path(sha256)
        return path.is_file() and (size is None or path.stat().st_size == size)

    def put_blob_bytes(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        if not self.has_blob(sha, len(data)):
            with self.blob_writer(sha, len(data)) as f:
                f.write(data)
        return sha

    @contextlib.contextmanager
    def blob_writer(self, sha256: str, size: int) -> Iterator[BinaryIO]:
        """Write into a temp file; only a complete upload whose sha256 and size match becomes a blob."""
        target = self.blob_path(sha256)
        fd, tmp = tempfile.mkstemp(dir=self.root / "tmp", prefix=f"{sha256[:16]}.", suffix=".part")
        hasher = hashlib.sha256()
        written = 0
        ok = False
        try:
            with os.fdopen(fd, "wb") as raw:

                class _Hashing:
                    def write(self, chunk: bytes) -> int:
                        nonlocal written
                        hasher.update(chunk)
                        written += len(chunk)
                        return raw.write(chunk)

                yield _Hashing()  # type: ignore[misc]
                raw.flush()
                os.fsync(raw.fileno())
            if written != size or hasher.hexdigest() != sha256:
                raise Unprocessable(
                    f"uploaded content does not match its oid: got sha256 {hasher.hexdigest()} and {written} bytes, "
                    f"expected {sha256} and {size} bytes"
                )
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, target)
            ok = True
        finally:
            if not ok:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)

    # --- repos ------------------------------------------------------------------------------------
    def _repo_dir(self, repo_type: str, repo_id: str) -> Path:
        if repo_type not in REPO_TYPES:
            raise BadRequest(f"invalid repo type {repo_type!r}: expected one of {', '.join(REPO_TYPES)}")
        ns, name = check_repo_id(repo_id)
        return self.root / "repos" / f"{repo_type}s" / ns / name

    def get_repo(self, repo_type: str, repo_id: str) -> Repo:
        path = self._repo_dir(repo_type, repo_id)
        meta_file = path / "repo.json"
        if not meta_file.is_file():
            raise RepoNotFound(f"{repo_type} repository {repo_id!r} not found")
        meta = _read_json(meta_file)
        return Repo(repo_type, meta["id"], bool(meta["private"]), meta["createdAt"], path)

    def create_repo(self, repo_type: str, repo_id: str, *, private: bool, author: str = "hubtune") -> Repo:
        """Create a repo with an initial commit holding ``.gitattributes``; Conflict if it exists."""
        path = self._repo_dir(repo_type, repo_id)
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

    def _write_refs(self, repo: Repo, refs: dict[str, dict[str, str]]) -> None:
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
    def decode_header(line: dict[str, Any]) -> dict[str, Any]:
        """The first NDJSON line of a commit payload: its ``value`` (summary, description, parentCommit)."""
        if not isinstance(line, dict) or line.get("key") != "header" or not isinstance(line.get("value"), dict):
            raise BadRequest("commit payload must start with a 'header' line")
        return line["value"]

    @staticmethod
    def decode_line(line: dict[str, Any]) -> Operation:
        """One operation line of a commit payload, validated; raises BadRequest."""
        key, value = (line.get("key"), line.get("value")) if isinstance(line, dict) else (None, None)
        if not isinstance(value, dict):
            raise BadRequest(f"malformed commit line {line!r}"[:300])
        if key == "deletedFolder":
            return Operation(key, check_path(str(value.get("path", "")).rstrip("/")))
        path = check_path(value.get("path", ""))
        if key == "file":
            if value.get("encoding", "base64") != "base64":
                raise BadRequest(f"unsupported encoding {value.get('encoding')!r} for {path}: expected base64")
            try:
                content = base64.b64decode(value.get("content", ""), validate=True)
            except ValueError:
                raise BadRequest(f"invalid base64 content for {path}") from None
            return Operation(key, path, content=content)
        if key == "lfsFile":
            if value.get("algo", "sha256") != "sha256":
                raise BadRequest(f"unsupported LFS algo {value.get('algo')!r} for {path}: expected sha256")
            oid, size = str(value.get("oid", "")), value.get("size")
            if not _HEX64_RE.match(oid) or not isinstance(size, int) or size < 0:
                raise BadRequest(f"invalid lfsFile line for {path}: expected a sha256 oid and an integer size")
            return Operation(key, path, sha256=oid, size=size)
        if key == "deletedFile":
            return Operation(key, path)
        raise BadRequest(f"unsupported commit operation {key!r} (copies are not supported)")

    def decode_operations(self, lines: list[dict[str, Any]]) -> tuple[dict[str, Any], list[Operation]]:
        """Validate the NDJSON payload (header first) into operations; raises BadRequest."""
        if not lines:
            raise BadRequest("commit payload must start with a 'header' line")
        return self.decode_header(lines[0]), [self.decode_line(line) for line in lines[1:]]

    def content_entry(self, path: str, data: bytes) -> dict[str, Any]:
        """Store ``data`` (sent inline, base64) and describe it the way this Hub stores ``path``.

        Storage follows ``upload_mode``, not the wire: a large or binary file that a client sent inline
        (huggingface_hub >= 1.20 sends those when told "regular", see app.py) is kept as an LFS file,
        exactly as if it had come through the LFS batch API, so a repo looks the same whichever
        client version pushed it.
        """
        sha = self.put_blob_bytes(data)
        if upload_mode(path, len(data), data[:512]) == "lfs":
            return {"sha256": sha, "size": len(data), "oid": git_blob_oid(lfs_pointer(sha, len(data))), "lfs": True}
        return {"sha256": sha, "size": len(data), "oid": git_blob_oid(data), "lfs": False}

    def stage(self, op: Operation) -> Operation:
        """Store the content of a "file" operation now (its blob), keeping only its entry in memory."""
        if op.kind == "file" and op.entry is None:
            assert op.content is not None
            op.entry = self.content_entry(op.path, op.content)
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
                assert op.sha256 is not None and op.size is not None
                if not self.has_blob(op.sha256, op.size):
                    raise Unprocessable(
                        f"LFS object {op.sha256} ({op.size} bytes) for {op.path} was never uploaded: "
                        "upload it through the LFS batch endpoint first"
                    )
                entries[op.path] = {
                    "sha256": op.sha256, "size": op.size,
                    "oid": git_blob_oid(lfs_pointer(op.sha256, op.size)), "lfs": True,
                }
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
            commit = self._make_commit(
                [head.id], files, str(header.get("summary") or "Upload files"),
                str(header.get("description") or ""), author,
            )
            _write_json_atomic(repo.path / "commits" / f"{commit.id}.json", commit.to_json())
            pr_num: int | None = None
            if create_pr:
                pr_num = max((int(n) for n in refs["pulls"]), default=0) + 1
                refs["pulls"][str(pr_num)] = commit.id
                refs.setdefault("prTargets", {})[str(pr_num)] = revision.removeprefix("refs/heads/")
            elif pr_match:
                refs["pulls"][pr_match.group(1)] = commit.id
            else:
                refs["branches"][revision.removeprefix("refs/heads/")] = commit.id
            self._write_refs(repo, refs)  # the one atomic switch
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
            self._write_refs(repo, refs)
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
            self._write_refs(repo, refs)

    def merge_pr(self, repo: Repo, num: str) -> Commit:
        """Merge pull request ``num`` into the branch it targets, as a fast-forward only (Conflict otherwise)."""
        with self.locked(repo):
            refs = self.refs(repo)
            if num not in refs["pulls"]:
                raise RevisionNotFound(f"pull request #{num} not found in {repo.repo_id}")
            if num in refs.get("prMerged", []):
                raise Conflict(f"pull request #{num} is already merged")
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
            self._write_refs(repo, refs)
            return tip
