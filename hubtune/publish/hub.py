"""Publish a folder to a Hub (huggingface.co or the local ``hubtune hub serve``) in one commit.

``push(PushOptions(folder, repo_id))`` creates the repo when needed (private by default) and makes the
branch mirror the folder in ONE commit through ``HfApi.create_commit`` (README.md included: never through
``ModelCard.push_to_hub``, which validates against huggingface.co): changed files are added, remote files the
folder lacks are deleted (but ``.gitattributes`` and ``keep_remote`` paths), and no commit at all is made
when the remote already equals the folder (sha1 git-blob oids for regular files, sha256 for LFS).

The two-step ``stage`` / ``promote`` of ``train-and-push`` live in ``hubtune.publish.staging`` and use the
session and commit steps here (``open_session``, ``open_repo``, ``plan_mirror``, ``commit_plan``).

Excluded, and listed in ``PushResult.excluded`` (never silently): ``.git/``, ``.cache/``,
``__pycache__/``, ``*.pyc``, trainer checkpoints ``checkpoint-*/`` and ``checkpoints/``.

The token comes from ``PushOptions.token``, ``HF_TOKEN`` or the stored login; it is never
printed, logged, written or put in a result.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import logging
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

from hubtune import __version__
from hubtune.core.config import check_tag_template, resolve_tag
from hubtune.core.errors import ConfigError, HubAuthError, HubError, HubRepoNotFoundError, HubUnreachableError
from hubtune.core.parity import file_sha256
from hubtune.core.publishable import check_branch, check_repo_id, folder_files

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_EXCLUDES: tuple[str, ...] = (
    ".git/*", ".cache/*", "*/__pycache__/*", "__pycache__/*", "*.pyc",
    "checkpoint-*/*", "checkpoints/*",
)
DEFAULT_KEEP_REMOTE: tuple[str, ...] = (".gitattributes",)  # remote files a mirroring push never deletes
REPO_TYPES = ("model", "dataset")
INVALID_CREDENTIALS = "Invalid credentials in Authorization header"


@dataclass
class PushOptions:
    folder: Path
    repo_id: str
    repo_type: str = "model"
    private: bool = True
    revision: str | None = None  # a branch; created from main when missing
    tag: str | None = None  # a name, or a template: v{n}, {date}-{short_sha} (see config.resolve_tag)
    create_pr: bool = False
    commit_message: str | None = None
    endpoint: str | None = None  # default: HF_ENDPOINT, else huggingface.co
    token: str | None = None  # default: HF_TOKEN, else the stored login
    excludes: tuple[str, ...] = DEFAULT_EXCLUDES
    keep_remote: tuple[str, ...] = ()  # remote paths (fnmatch) kept although the folder lacks them
    retries: int = 4
    backoff_s: float = 0.5


@dataclass
class PushResult:
    repo_id: str
    repo_type: str
    url: str
    endpoint: str
    revision: str
    commit_oid: str
    commit_url: str
    committed: bool  # False: remote already had identical files, no commit made
    created: bool  # True: the repo did not exist before
    private: bool
    tag: str | None = None
    pr_url: str | None = None
    message: str = ""
    files: list[str] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)  # added or updated by the commit
    deleted: list[str] = field(default_factory=list)  # remote files the folder lacks, deleted by the commit
    kept: list[str] = field(default_factory=list)  # remote files the folder lacks, kept (keep_remote, .gitattributes)


# --- local side --------------------------------------------------------------------------------------
def git_blob_oid(path: Path) -> str:
    """The sha1 git object id of a file (what the Hub reports for regular files)."""
    h = hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


sha256_of = file_sha256  # what the Hub reports for LFS files


def list_local_files(folder: Path, excludes: tuple[str, ...] = DEFAULT_EXCLUDES) -> tuple[list[str], list[str]]:
    """(files to publish, files excluded), sorted posix paths relative to ``folder`` (see ``folder_files``)."""
    keep, dropped = [], []
    for rel, _ in folder_files(folder):
        (dropped if any(fnmatch.fnmatch(rel, pat) for pat in excludes) else keep).append(rel)
    return keep, dropped


def changed_files(folder: Path, files: list[str], remote: dict[str, tuple[str, str | None]]) -> list[str]:
    """Local files whose content differs from ``remote`` (path -> (git oid, lfs sha256 or None))."""
    out = []
    for rel in files:
        if rel not in remote:
            out.append(rel)
            continue
        blob_id, lfs_sha = remote[rel]
        local = folder / rel
        same = sha256_of(local) == lfs_sha if lfs_sha else git_blob_oid(local) == blob_id
        if not same:
            out.append(rel)
    return out


def _git_sha(cwd: Path | None = None) -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    sha = out.stdout.strip()
    return sha if out.returncode == 0 and len(sha) == 40 else None


def _ci_run_url() -> str | None:
    server, repo, run = (os.environ.get(k) for k in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID"))
    return f"{server.rstrip('/')}/{repo}/actions/runs/{run}" if server and repo and run else None


def commit_text(folder: Path, files: list[str], title: str | None, deleted: list[str] | None = None) -> tuple[str, str]:
    """(title, description) saying what was published (and deleted), from which git commit and CI run."""
    sha, run = _git_sha(), _ci_run_url()
    where = f", git {sha[:12]}" if sha else ""
    gone = f", {len(deleted)} deleted" if deleted else ""
    summary = title or f"hubtune: publish {folder.name} ({len(files)} files{gone}{where})"
    lines = [f"Published by hubtune {__version__} from folder '{folder.name}'."]
    if sha:
        lines.append(f"Source git commit: {sha}")
    if run:
        lines.append(f"CI run: {run}")
    for head, paths in (("Files:", files), ("Deleted (gone from the folder):", deleted or [])):
        if paths:
            lines.append(head)
            lines += [f"- {f}" for f in paths[:200]] + ([f"- ... and {len(paths) - 200} more"] if len(paths) > 200 else [])
    return summary, "\n".join(lines)


# --- client side ---------------------------------------------------------------------------------------
def resolve_endpoint(endpoint: str | None) -> str:
    from huggingface_hub import constants

    return (endpoint or os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def resolve_token(token: str | None) -> str:
    from huggingface_hub import get_token

    found = token or get_token()
    if not found:
        raise HubAuthError(
            "no Hub token found: expected HF_TOKEN in the environment or a stored login; "
            "set HF_TOKEN=<token> or run `hf auth login` (any string works for a local hub without --token)"
        )
    return found


@contextlib.contextmanager
def _constant(name: str, value: Any, when: bool = True) -> Iterator[None]:
    """Set ``huggingface_hub.constants.<name>`` to ``value`` meanwhile (when ``when`` and the constant exists)."""
    from huggingface_hub import constants

    if not when or not hasattr(constants, name):
        yield
        return
    saved = getattr(constants, name)
    setattr(constants, name, value)
    try:
        yield
    finally:
        setattr(constants, name, saved)


def client_endpoint(endpoint: str) -> contextlib.AbstractContextManager[None]:
    """huggingface_hub 0.36 parses commit URLs against ``constants.ENDPOINT`` (read from HF_ENDPOINT at
    import; the name is the same in 1.x and 2.x): point it at ``endpoint`` meanwhile when the two differ."""
    from huggingface_hub import constants

    return _constant("ENDPOINT", endpoint, constants.ENDPOINT.rstrip("/") != endpoint)


def _xet_enabled() -> bool:
    """Whether huggingface_hub would upload LFS files through Xet (hf_xet installed, not disabled)."""
    import importlib.util

    from huggingface_hub import constants

    return not getattr(constants, "HF_HUB_DISABLE_XET", False) and importlib.util.find_spec("hf_xet") is not None


def hub_offers_xet(endpoint: str, token: str | None, repo_id: str, repo_type: str = "model",
                   revision: str = "main", *, create_pr: bool = False) -> bool | None:
    """Ask the Hub for a Xet write token, as a Xet client would: True when it hands one out (with its
    CAS URL), False when it has no such endpoint (404/405/501: a Hub without Xet, like
    ``hubtune hub serve``), None when the answer says nothing either way."""
    from urllib.parse import quote

    from huggingface_hub.utils import build_hf_headers, get_session

    url = f"{endpoint}/api/{repo_type}s/{repo_id}/xet-write-token/{quote(revision, safe='')}"
    if create_pr:
        url += "?create_pr=1"
    response = get_session().get(url, headers=build_hf_headers(token=token), timeout=30)
    status = response.status_code
    if status in (404, 405, 501):
        return False
    if 200 <= status < 300:
        return "X-Xet-Cas-Url" in response.headers  # case-insensitive in requests, httpx and httpx2
    return None


def _xet_disabled(disable: bool) -> contextlib.AbstractContextManager[None]:
    """Make this process' huggingface_hub upload through LFS meanwhile (``HF_HUB_DISABLE_XET``, read at
    call time by 0.36, 1.x and 2.x alike)."""
    return _constant("HF_HUB_DISABLE_XET", True, disable)


def _library_errors() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    """(HTTP status errors, transport errors) of the HTTP stack the installed huggingface_hub uses.

    huggingface_hub 0.36 raises ``requests`` errors; 1.x ``httpx`` ones and 2.x ``httpx2`` ones, with
    ``HfHubHTTPError`` (carrying ``.response``) for every HTTP status error in all three. Only
    libraries already imported can have raised, so nothing extra is imported here.
    """
    import sys

    from huggingface_hub.errors import HfHubHTTPError

    status: list[type[BaseException]] = [HfHubHTTPError]
    transport: list[type[BaseException]] = [ConnectionError]  # hf_xet's network errors are builtin ones
    requests = sys.modules.get("requests")
    if requests is not None:
        status.append(requests.HTTPError)
        transport += [requests.ConnectionError, requests.Timeout]
    for name in ("httpx", "httpx2"):
        lib = sys.modules.get(name)
        if lib is not None:
            status.append(lib.HTTPStatusError)
            transport.append(lib.TransportError)  # connect/read/write errors, timeouts, dropped connections
    return tuple(status), tuple(transport)


def _call(retries: int, backoff_s: float, endpoint: str, what: str, fn: Callable[[], T]) -> T:
    """Run one Hub call with bounded retries on connection errors and 502/503/504; map HTTP errors."""
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    http_errors, transport_errors = _library_errors()
    attempts = max(1, retries)
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except http_errors as exc:
            response = getattr(exc, "response", None)
            status = getattr(response, "status_code", None)
            headers = getattr(response, "headers", None) or {}
            server_msg = headers.get("X-Error-Message", "") or ""
            if (status == 401 and not isinstance(exc, RepositoryNotFoundError)) or server_msg == INVALID_CREDENTIALS:
                raise HubAuthError(
                    f"{what}: the Hub at {endpoint} rejected the token (401 invalid credentials); expected a "
                    "valid write token for this Hub: set HF_TOKEN or run `hf auth login`"
                ) from None
            if isinstance(exc, RevisionNotFoundError):
                raise HubRepoNotFoundError(
                    f"{what}: revision not found on {endpoint}; expected an existing branch or tag: check --revision"
                ) from None
            if isinstance(exc, RepositoryNotFoundError):
                raise HubRepoNotFoundError(
                    f"{what}: repository not found on {endpoint} (or private and invisible to your token); "
                    "expected an existing repo: check --repo-id and the token's owner"
                ) from None
            if status == 403:
                raise HubAuthError(
                    f"{what}: forbidden by {endpoint} (403: {server_msg or 'no write access'}); expected a repo "
                    "in a namespace your token may write to: use --repo-id <your-user-or-org>/<name>"
                ) from None
            if status in (502, 503, 504) and attempt < attempts:
                time.sleep(backoff_s * 2 ** (attempt - 1))
                continue
            lines = str(exc).splitlines()
            detail = server_msg or (lines[0] if lines else type(exc).__name__)
            raise HubError(f"{what}: the Hub at {endpoint} answered {status}: {detail}") from None
        except transport_errors as exc:
            if attempt < attempts:
                log.info("%s: %s unreachable (attempt %d/%d), retrying", what, endpoint, attempt, attempts)
                time.sleep(backoff_s * 2 ** (attempt - 1))
                continue
            raise HubUnreachableError(
                f"{what}: could not reach the Hub at {endpoint} after {attempts} attempts "
                f"({type(exc).__name__}); expected a reachable endpoint: check HF_ENDPOINT/--endpoint "
                "or start a local one with `hubtune hub serve --root DIR`"
            ) from None
    raise AssertionError("unreachable")


class HubSession:
    """One authenticated client of one Hub, with retries and mapped errors on every call."""

    def __init__(self, endpoint: str, token: str | bool | None, retries: int, backoff_s: float) -> None:
        from huggingface_hub import HfApi

        self.endpoint, self.token, self.retries, self.backoff_s = endpoint, token, retries, backoff_s
        self.api = HfApi(endpoint=endpoint, token=token)

    def call(self, what: str, fn: Callable[[], T]) -> T:
        return _call(self.retries, self.backoff_s, self.endpoint, what, fn)

    def refs(self, repo_id: str, repo_type: str) -> tuple[dict[str, str], dict[str, str]]:
        """(branches, tags) of a repo, each name -> commit."""
        refs = self.call("listing refs", lambda: self.api.list_repo_refs(repo_id, repo_type=repo_type))
        return ({b.name: b.target_commit for b in refs.branches}, {t.name: t.target_commit for t in refs.tags})

    def tree(self, repo_id: str, repo_type: str, revision: str) -> dict[str, tuple[str, str | None]]:
        """path -> (git blob oid, LFS sha256 or None) of every file at ``revision``."""
        tree = self.call(f"listing {repo_id}@{revision[:12]}", lambda: list(self.api.list_repo_tree(
            repo_id, repo_type=repo_type, revision=revision, recursive=True)))
        return {e.path: (e.blob_id, e.lfs.sha256 if e.lfs else None) for e in tree if hasattr(e, "blob_id")}

    def commit_url(self, repo_id: str, repo_type: str, commit: str) -> str:
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        return f"{self.endpoint}/{prefix}{repo_id}/commit/{commit}"


@dataclass
class _Plan:
    """What one commit must do so that ``base`` becomes the folder."""

    base: str  # the commit compared with: the branch's head
    changed: list[str]  # local files missing or different remotely
    deleted: list[str]  # remote files the folder lacks (not kept)
    kept: list[str]  # remote files the folder lacks, kept by ``keep_remote`` (and .gitattributes)

    @property
    def empty(self) -> bool:
        return not self.changed and not self.deleted


def check_folder(opts: PushOptions) -> tuple[Path, list[str], list[str]]:
    folder = Path(opts.folder)
    if not folder.is_dir():
        raise ConfigError(f"folder to push {str(folder)!r} does not exist or is not a directory; "
                          "expected the output folder of `hubtune train`/`merge`/`export`")
    if opts.repo_type not in REPO_TYPES:
        raise ConfigError(f"repo type {opts.repo_type!r} is not supported; expected one of {REPO_TYPES}: use --type")
    check_repo_id(opts.repo_id)  # before any remote call: nothing is created for an id or branch the Hub refuses
    if opts.revision is not None:
        check_branch(opts.revision)
    files, excluded = list_local_files(folder, opts.excludes)
    if not files:
        raise ConfigError(f"folder {str(folder)!r} has no files to publish (excluded: {len(excluded)}); "
                          "expected a saved model or dataset folder")
    for rel in files:
        if any(seg in ("", ".", "..") for seg in rel.split("/")) or "\\" in rel or any(ord(c) < 32 for c in rel):
            raise ConfigError(f"file {rel!r} in {str(folder)!r} has a path the Hub refuses ('..', a backslash or a "
                              "control character); expected a plain file name: rename it")
    if opts.tag is not None:
        check_tag_template(opts.tag)
    return folder, files, excluded


def open_repo(hub: HubSession, opts: PushOptions, revision: str) -> tuple[str, bool]:
    """Create the repo (and the branch, from main) when missing; (repo url, created)."""
    hub.call("checking the token", lambda: hub.api.whoami())
    created = True
    try:
        hub.api.repo_info(opts.repo_id, repo_type=opts.repo_type)
        created = False
    except Exception:  # noqa: BLE001 - any failure here is re-checked by create_repo below
        pass
    repo_url = hub.call(f"creating {opts.repo_id}", lambda: hub.api.create_repo(
        opts.repo_id, repo_type=opts.repo_type, private=opts.private, exist_ok=True))
    if revision != "main":
        hub.call(f"creating branch {revision}", lambda: hub.api.create_branch(
            opts.repo_id, branch=revision, repo_type=opts.repo_type, exist_ok=True))
    return str(repo_url), created


def plan_mirror(hub: HubSession, opts: PushOptions, folder: Path, files: list[str], revision: str) -> _Plan:
    """Compare the folder with the head of ``revision`` (read once, then listed at that exact commit)."""
    branches, _ = hub.refs(opts.repo_id, opts.repo_type)
    if revision not in branches:
        raise HubRepoNotFoundError(f"branch {revision!r} not found on {opts.repo_id}; expected an existing "
                                   "branch: check --revision")
    base = branches[revision]
    remote = hub.tree(opts.repo_id, opts.repo_type, base)
    keep = (*DEFAULT_KEEP_REMOTE, *opts.keep_remote)
    local = set(files)
    gone = sorted(p for p in remote if p not in local)
    kept = [p for p in gone if any(fnmatch.fnmatch(p, pat) for pat in keep)]
    return _Plan(base=base, changed=changed_files(folder, files, remote),
                 deleted=[p for p in gone if p not in kept], kept=kept)


def commit_plan(hub: HubSession, opts: PushOptions, folder: Path, files: list[str], plan: _Plan, revision: str,
                create_pr: bool) -> Any:
    """ONE commit adding/updating ``plan.changed`` and deleting ``plan.deleted``, on top of ``plan.base``."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    ops: list[Any] = [CommitOperationAdd(path_in_repo=rel, path_or_fileobj=str(folder / rel)) for rel in plan.changed]
    ops += [CommitOperationDelete(path_in_repo=rel) for rel in plan.deleted]
    title, description = commit_text(folder, files, opts.commit_message, plan.deleted)
    # A Xet-capable client falls back to LFS against a Hub that offers no Xet (huggingface_hub >= 1.20 no
    # longer negotiates that itself).
    no_xet = _xet_enabled() and hub.call("checking Xet support", lambda: hub_offers_xet(
        hub.endpoint, hub.token, opts.repo_id, opts.repo_type, revision, create_pr=create_pr)) is False
    if no_xet:
        log.info("%s offers no Xet storage: uploading through LFS", hub.endpoint)
    with _xet_disabled(no_xet):
        return hub.call(f"uploading to {opts.repo_id}", lambda: hub.api.create_commit(
            opts.repo_id, ops, commit_message=title, commit_description=description, repo_type=opts.repo_type,
            revision=revision, create_pr=create_pr, parent_commit=plan.base,
        ))


def open_session(opts: PushOptions) -> HubSession:
    from hubtune.core.endpoint import check_reachable, describe_endpoint, offline

    endpoint = resolve_endpoint(opts.endpoint)
    if offline():
        raise HubUnreachableError(f"publishing {opts.repo_id} to {describe_endpoint(endpoint)} with HF_HUB_OFFLINE=1 "
                                  "set: nothing was pushed; expected online mode: unset HF_HUB_OFFLINE")
    check_reachable(f"publishing {opts.repo_id}", endpoint, fix="fix HF_ENDPOINT or --endpoint, or start a local "
                    "Hub with `hubtune hub serve --root DIR`; nothing was pushed")  # at once, not after retries
    return HubSession(endpoint, resolve_token(opts.token), opts.retries, opts.backoff_s)


def push(opts: PushOptions) -> PushResult:
    """Make ``opts.repo_id`` mirror ``opts.folder`` in one commit (or none when nothing changed).

    The commit adds and updates what changed and deletes the remote files the folder lacks, except
    ``.gitattributes`` and the paths ``opts.keep_remote`` names (fnmatch), so the new revision equals the folder.
    """
    folder, files, excluded = check_folder(opts)
    hub = open_session(opts)
    revision = opts.revision or "main"
    with client_endpoint(hub.endpoint):
        repo_url, created = open_repo(hub, opts, revision)
        plan = plan_mirror(hub, opts, folder, files, revision)
        pr_url: str | None = None
        if plan.empty:
            commit_oid, committed = plan.base, False
            commit_url = hub.commit_url(opts.repo_id, opts.repo_type, commit_oid)
            log.info("%s: remote already has identical files at %s, no commit", opts.repo_id, commit_oid)
        else:
            info_c = commit_plan(hub, opts, folder, files, plan, revision, opts.create_pr)
            commit_oid, commit_url, committed = str(info_c.oid), str(info_c.commit_url), True
            pr_url = str(info_c.pr_url) if info_c.pr_url else None
        tag = _tag(hub, opts.repo_id, opts.repo_type, opts.tag, commit_oid) if opts.tag else None
        private = bool(hub.call("reading the repo", lambda: hub.api.repo_info(
            opts.repo_id, repo_type=opts.repo_type)).private)
    return PushResult(
        repo_id=opts.repo_id, repo_type=opts.repo_type, url=repo_url, endpoint=hub.endpoint,
        revision=f"refs/pr/{pr_url.rsplit('/', 1)[-1]}" if pr_url else revision, commit_oid=commit_oid,
        commit_url=commit_url, committed=committed, created=created, private=private, tag=tag,
        pr_url=pr_url, message=commit_text(folder, files, opts.commit_message, plan.deleted)[0], files=files,
        excluded=excluded, changed=plan.changed if committed else [], deleted=plan.deleted if committed else [],
        kept=plan.kept,
    )


# --- release tags ---------------------------------------------------------------------------------------
def _tag(hub: HubSession, repo_id: str, repo_type: str, template: str, commit_oid: str) -> str:
    """Tag ``commit_oid`` with the name ``template`` gives (none when it is already released); the name."""
    _, tags = hub.refs(repo_id, repo_type)
    name, exists = resolve_tag(template, tags, commit_oid)
    if exists:
        return name
    if name in tags:
        raise HubError(
            f"tag {name!r} already exists on {repo_id} at {tags[name][:12]}, not at the published commit "
            f"{commit_oid[:12]}; expected an unused tag: pass a template such as --tag 'v{{n}}' (publish.tag)"
        )
    hub.call(f"tagging {name}", lambda: hub.api.create_tag(
        repo_id, tag=name, revision=commit_oid, repo_type=repo_type, tag_message=f"hubtune: {name}"))
    return name


def download_snapshot(repo_id: str, revision: str | None = None, cache_dir: str | os.PathLike[str] | None = None, *,
                      repo_type: str = "model", endpoint: str | None = None, token: str | bool | None = None,
                      retries: int = 3) -> Path:
    """Download (or reuse from the cache) every file of ``repo_id`` at ``revision``; returns the folder."""
    from huggingface_hub import snapshot_download

    ep = resolve_endpoint(endpoint)
    with client_endpoint(ep):
        path = _call(retries, 0.5, ep, f"downloading {repo_id}@{revision or 'main'}", lambda: snapshot_download(
            repo_id, revision=revision, cache_dir=cache_dir, repo_type=repo_type, endpoint=ep, token=token,
        ))
    return Path(path)


def verify_published(
    folder: str | os.PathLike[str],
    repo_id: str,
    revision: str | None = None,
    *,
    repo_type: str = "model",
    endpoint: str | None = None,
    token: str | bool | None = None,
) -> list[str]:
    """Local files of ``folder`` missing or different at ``repo_id@revision`` (empty: all published)."""
    hub = HubSession(resolve_endpoint(endpoint), token, 3, 0.5)
    files, _ = list_local_files(Path(folder))
    with client_endpoint(hub.endpoint):
        return changed_files(Path(folder), files, hub.tree(repo_id, repo_type, revision or "main"))


def tag_release(repo_id: str, commit_oid: str, tag: str, *, repo_type: str = "model", endpoint: str | None = None,
                token: str | None = None, retries: int = 4) -> str:
    """Tag ``commit_oid`` (after it was verified) with ``tag``, a name or a template (see ``resolve_tag``);
    returns the tag's name. A name already on another commit is an error."""
    hub = HubSession(resolve_endpoint(endpoint), resolve_token(token), retries, 0.5)
    with client_endpoint(hub.endpoint):
        return _tag(hub, repo_id, repo_type, tag, commit_oid)
