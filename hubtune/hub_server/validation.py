"""The store's errors, and what the local Hub accepts as a repo id, a path in a repo, a ref name or a revision, and what it stores as LFS.

The rules are the Hub's where the Hub documents them (huggingface_hub refuses ``.git`` anywhere in a path,
the Hub stores files of 10 MB and more, binary files and what the repo's ``.gitattributes`` marks
``filter=lfs`` through LFS) and a filesystem's where a cloned repo must fit on disk (255 bytes a name,
4096 a path). Imports nothing from hubtune.
"""

from __future__ import annotations

import fnmatch
import re
from typing import Any

_NAME_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?$")
_REF_NAME_RE = re.compile(r"^[A-Za-z0-9._-]+(?:/[A-Za-z0-9._-]+)*$")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
MAX_PATH_BYTES = 4096
MAX_NAME_BYTES = 255
MAX_REVISION_CHARS = 256
MAX_REGULAR_SIZE = 10 * 1024 * 1024
LFS_SUFFIXES = (
    ".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".onnx", ".h5", ".msgpack", ".parquet", ".arrow",
    ".npy", ".npz", ".pkl", ".gz", ".zip", ".tar", ".zst", ".model", ".gguf", ".tflite",
)
DEFAULT_GITATTRIBUTES = "".join(
    f"*{suffix} filter=lfs diff=lfs merge=lfs -text\n" for suffix in LFS_SUFFIXES
)


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


class TooLarge(StoreError):
    status = 413


def has_control_chars(text: str) -> bool:
    return bool(_CONTROL_RE.search(text))


def check_repo_id(repo_id: str) -> tuple[str, str]:
    """``namespace/name`` -> (namespace, name); anything else is refused."""
    parts = repo_id.split("/") if isinstance(repo_id, str) else []
    if len(parts) != 2 or not all(_NAME_RE.match(p) for p in parts) or any(".." in p for p in parts):
        raise BadRequest(
            f"invalid repo id {repo_id!r}: expected 'namespace/name' with letters, digits, '-', '_', '.'"
        )
    if parts[1].lower().endswith(".git"):
        raise BadRequest(f"invalid repo id {repo_id!r}: a name may not end in '.git'")
    return parts[0], parts[1]


def check_path(path: str) -> str:
    """A relative path inside a repo; refused: ``..``, absolute paths, backslashes, control characters
    (newlines included), a ``.git`` component anywhere, names over 255 bytes and paths over 4096."""
    if not isinstance(path, str) or not path:
        raise BadRequest("empty path in repo: expected a relative path such as 'config.json'")
    shown = repr(path[:200] + ("..." if len(path) > 200 else ""))
    if len(path.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise BadRequest(f"invalid path {shown}: longer than {MAX_PATH_BYTES} bytes")
    if has_control_chars(path):
        raise BadRequest(f"invalid path {shown}: control characters (newlines, CR, NUL) are not allowed")
    if path.startswith("/") or "\\" in path or re.match(r"^[A-Za-z]:", path):
        raise BadRequest(f"invalid path {shown}: expected a relative path with '/' separators")
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise BadRequest(f"invalid path {shown}: '.', '..' and empty segments are not allowed")
    if any(part.lower() == ".git" for part in parts):
        raise BadRequest(f"invalid path {shown}: '.git' is reserved")
    if any(len(part.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES for part in parts):
        raise BadRequest(f"invalid path {shown}: a file or folder name is longer than {MAX_NAME_BYTES} bytes")
    return path


def check_ref_name(name: str) -> str:
    if (not isinstance(name, str) or not _REF_NAME_RE.match(name) or ".." in name or name.endswith(".lock")
            or name.startswith("refs/") or len(name) > MAX_REVISION_CHARS):
        raise BadRequest(f"invalid branch or tag name {str(name)[:200]!r}: expected letters, digits, '.', '_', '-'")
    return name


def check_revision(revision: str) -> str:
    """A branch, tag, ``refs/...`` name or commit id as sent; control characters and huge values are refused."""
    if not revision or len(revision) > MAX_REVISION_CHARS or has_control_chars(revision):
        raise BadRequest(
            f"invalid revision {revision[:100]!r}: expected a branch, tag or commit id without control characters"
        )
    return revision


# --- .gitattributes -------------------------------------------------------------------------------
def _glob_to_regex(pattern: str) -> re.Pattern[str]:
    """A gitattributes pattern (wildmatch: ``**`` crosses folders, ``*`` does not) as a regex on the full path."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[" and (end := pattern.find("]", i + 1)) > i:
            out.append(fnmatch.translate(pattern[i:end + 1])[4:-3])
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def parse_gitattributes(text: str) -> list[tuple[bool, re.Pattern[str], bool]]:
    """[(anchored to the full path, pattern, is LFS)] in file order; the last match wins, as in git."""
    rules = []
    for line in text.splitlines()[:10_000]:
        fields = line.strip().split()
        if not fields or fields[0].startswith("#"):
            continue
        pattern, attrs = fields[0], fields[1:]
        if "filter=lfs" in attrs:
            lfs = True
        elif any(a in ("-filter", "!filter") or a.startswith("filter=") for a in attrs):
            lfs = False
        else:
            continue
        anchored = "/" in pattern.rstrip("/")
        rules.append((anchored, _glob_to_regex(pattern.lstrip("/")), lfs))
    return rules


DEFAULT_RULES = parse_gitattributes(DEFAULT_GITATTRIBUTES)


def lfs_by_attributes(path: str, rules: list[tuple[bool, re.Pattern[str], bool]]) -> bool:
    found = False
    name = path.rsplit("/", 1)[-1]
    for anchored, regex, lfs in rules:
        if regex.match(path if anchored else name):
            found = lfs
    return found


def upload_mode(path: str, size: int, sample: bytes, rules: Any = None) -> str:
    """'lfs' for files of 10 MB and more, binary files and what ``.gitattributes`` marks; 'regular' otherwise.

    ``rules`` are the repo's parsed ``.gitattributes`` (``parse_gitattributes``); None: this Hub's default one.
    """
    if size == 0:
        return "regular"
    if size >= MAX_REGULAR_SIZE or b"\x00" in sample[:512]:
        return "lfs"
    return "lfs" if lfs_by_attributes(path, DEFAULT_RULES if rules is None else rules) else "regular"
