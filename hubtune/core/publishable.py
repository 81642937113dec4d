"""What may be published, checked before any remote call (not a step): a repo id and a branch the Hub accepts,
and the files of a folder, none of them a symlink that leaves it.

Repo ids go through huggingface_hub's own validator (``validate_repo_id``: ``me/bad..id``, ``me/a--b``, spaces,
names over 96 characters), plus the ``ORG/NAME`` form every publish needs. Branch names follow git's
``check-ref-format`` rules and the characters the Hub (and the local one) accept; a pull-request ref
(``refs/pr/1``) is not a branch. Imports nothing from hubtune but ``errors``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from hubtune.core.errors import RepoIdError, UnsafePathError

MAX_BRANCH_CHARS = 256
_BRANCH_RE = re.compile(r"^[A-Za-z0-9._/-]+$")


def _shown(value: str, limit: int = 120) -> str:
    return repr(value if len(value) <= limit else value[:limit] + "...")


def check_repo_id(repo_id: str, flag: str = "--repo-id") -> str:
    """``repo_id`` when it is ``ORG/NAME`` and huggingface_hub accepts it; else :class:`RepoIdError`."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    reason = ""
    if not isinstance(repo_id, str) or repo_id.count("/") != 1 or not all(repo_id.split("/")):
        reason = "not of the form ORG/NAME"
    else:
        try:
            validate_repo_id(repo_id)
        except HFValidationError as exc:
            reason = " ".join(str(exc).split()).rsplit(": ", 1)[0].rstrip(".")
    if reason:
        raise RepoIdError(
            f"repo id {_shown(str(repo_id))} is refused by the Hub ({reason}); nothing was created; expected ORG/NAME "
            f"of letters, digits, '-', '_', '.' (no '--' or '..', at most 96 characters a part): fix {flag}"
        )
    return repo_id


def check_branch(revision: str, flag: str = "--revision") -> str:
    """``revision`` when it is a branch name git and the Hub accept; else :class:`RepoIdError`."""
    why = ""
    if not revision:
        why = "empty"
    elif revision.startswith("refs/"):
        why = "a ref such as refs/pr/N is not a branch (a pull request is opened with --create-pr)"
    elif len(revision) > MAX_BRANCH_CHARS:
        why = f"longer than {MAX_BRANCH_CHARS} characters"
    elif not _BRANCH_RE.match(revision):
        why = "holds characters a branch cannot (spaces, newlines, control characters, ~^:?*[\\@{})"
    elif (".." in revision or "//" in revision or revision.endswith((".lock", "/", "."))
          or any(part.startswith((".", "-")) for part in revision.split("/"))):
        why = "not a valid git branch name ('..', '//', a part starting with '.' or '-', or ending in '.lock', '/', '.')"
    if why:
        raise RepoIdError(
            f"branch {_shown(str(revision))} is refused ({why}); nothing was created; expected a branch name of "
            f"letters, digits, '.', '_', '-', '/' such as 'main' or 'dev': fix {flag}"
        )
    return revision


def copy_hint(target: Path) -> str:
    """How to fix a folder with a symlink leaving it (a Hugging Face cache snapshot links into ``../../blobs``)."""
    if target.parent.name == "blobs":
        return ("a Hugging Face cache snapshot links its files into the cache: copy the snapshot with "
                "`hf download ORG/NAME --local-dir DIR` (or `cp -rL`) and use DIR")
    return "copy the file in, or remove the link"


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def folder_files(folder: str | os.PathLike[str]) -> list[tuple[str, Path]]:
    """Every file of ``folder`` as (posix path relative to it, path to read), sorted by the relative path.

    A symlink is followed only while it stays inside ``folder`` (published as its target's content); a symlink
    that leaves it, or points at nothing, is refused with :class:`UnsafePathError` naming it. Other non-regular
    entries (sockets, FIFOs) are not files and are skipped.
    """
    top = Path(folder)
    real_top = top.resolve()
    out: dict[str, Path] = {}
    pending: list[tuple[Path, str, tuple[Path, ...]]] = [(top, "", (real_top,))]
    while pending:
        directory, prefix, chain = pending.pop()
        with os.scandir(directory) as entries:
            items = sorted(entries, key=lambda e: e.name)
        for entry in items:
            rel = f"{prefix}{entry.name}"
            path = Path(entry.path)
            if entry.is_symlink():
                target = path.resolve()
                if not target.exists():
                    raise UnsafePathError(
                        f"{rel!r} in {str(top)!r} is a symlink to {os.readlink(path)!r}, which does not exist; "
                        "nothing was published; expected regular files: remove the link or copy the file in its place"
                    )
                if not _inside(target, real_top):
                    raise UnsafePathError(
                        f"{rel!r} in {str(top)!r} is a symlink leaving the folder (to {str(target)!r}); nothing "
                        f"was published; expected files inside the folder: {copy_hint(target)}"
                    )
            if entry.is_dir():  # follows a link that stays inside, but never back into a folder it is under
                real = path.resolve()
                if real not in chain:
                    pending.append((path, rel + "/", (*chain, real)))
            elif entry.is_file():
                out[rel] = path
    return sorted(out.items())
