"""Publish a folder to a Hub (huggingface.co or the local ``hubtune hub serve``) in one commit.

``push(PushOptions(folder, repo_id))`` creates the repo when needed (private by default), uploads
every file in ONE commit through ``HfApi.create_commit`` (README.md included: never through
``ModelCard.push_to_hub``, which validates against huggingface.co), and makes no commit at all
when the remote files already match (sha1 git-blob oids for regular files, sha256 for LFS).

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
from hubtune.errors import ConfigError, HubAuthError, HubError, HubRepoNotFoundError, HubUnreachableError

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_EXCLUDES: tuple[str, ...] = (
    ".git/*", ".cache/*", "*/__pycache__/*", "__pycache__/*", "*.pyc",
    "checkpoint-*/*", "checkpoints/*",
)
REPO_TYPES = ("model", "dataset")
INVALID_CREDENTIALS = "Invalid credentials in Authorization header"


@dataclass
class PushOptions:
    folder: Path
    repo_id: str
    repo_type: str = "model"
    private: bool = True
    revision: str | None = None  # a branch; created from main when missing
    tag: str | None = None
    create_pr: bool = False
    commit_message: str | None = None
    endpoint: str | None = None  # default: HF_ENDPOINT, else huggingface.co
    token: str | None = None  # default: HF_TOKEN, else the stored login
    excludes: tuple[str, ...] = DEFAULT_EXCLUDES
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


# --- local side --------------------------------------------------------------------------------------
def git_blob_oid(path: Path) -> str:
    """The sha1 git object id of a file (what the Hub reports for regular files)."""
    h = hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def list_local_files(folder: Path, excludes: tuple[str, ...] = DEFAULT_EXCLUDES) -> tuple[list[str], list[str]]:
    """(files to publish, files excluded), as sorted posix paths relative to ``folder``."""
    keep, dropped = [], []
    for p in sorted(folder.rglob("*")):
        if not p.is_file():
            continue
        rel = p.relative_to(folder).as_posix()
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


def commit_text(folder: Path, files: list[str], title: str | None) -> tuple[str, str]:
    """(title, description) saying what was published, from which git commit and CI run."""
    sha, run = _git_sha(), _ci_run_url()
    where = f", git {sha[:12]}" if sha else ""
    summary = title or f"hubtune: publish {folder.name} ({len(files)} files{where})"
    lines = [f"Published by hubtune {__version__} from folder '{folder.name}'."]
    if sha:
        lines.append(f"Source git commit: {sha}")
    if run:
        lines.append(f"CI run: {run}")
    lines.append("Files:")
    lines += [f"- {f}" for f in files[:200]]
    if len(files) > 200:
        lines.append(f"- ... and {len(files) - 200} more")
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
def _client_endpoint(endpoint: str) -> Iterator[None]:
    """huggingface_hub 0.36 parses commit URLs against ``constants.ENDPOINT`` (read from HF_ENDPOINT at
    import; the name is the same in 1.x and 2.x); point it at ``endpoint`` for the duration of a call
    when the two differ."""
    from huggingface_hub import constants

    saved = constants.ENDPOINT
    if saved.rstrip("/") == endpoint:
        yield
        return
    constants.ENDPOINT = endpoint
    try:
        yield
    finally:
        constants.ENDPOINT = saved


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


@contextlib.contextmanager
def _xet_disabled(disable: bool) -> Iterator[None]:
    """Make this process' huggingface_hub upload through LFS meanwhile (``HF_HUB_DISABLE_XET``, read at
    call time by 0.36, 1.x and 2.x alike)."""
    from huggingface_hub import constants

    if not disable or not hasattr(constants, "HF_HUB_DISABLE_XET"):
        yield
        return
    saved = constants.HF_HUB_DISABLE_XET
    constants.HF_HUB_DISABLE_XET = True
    try:
        yield
    finally:
        constants.HF_HUB_DISABLE_XET = saved


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


def push(opts: PushOptions) -> PushResult:
    """Publish ``opts.folder`` to ``opts.repo_id`` in one commit (or none when nothing changed)."""
    from huggingface_hub import CommitOperationAdd, HfApi
    from huggingface_hub.errors import RevisionNotFoundError

    folder = Path(opts.folder)
    if not folder.is_dir():
        raise ConfigError(f"folder to push {str(folder)!r} does not exist or is not a directory; "
                          "expected the output folder of `hubtune train`/`merge`/`export`")
    if opts.repo_type not in REPO_TYPES:
        raise ConfigError(f"repo type {opts.repo_type!r} is not supported; expected one of {REPO_TYPES}: use --type")
    parts = opts.repo_id.split("/")
    if len(parts) != 2 or not all(parts):
        raise ConfigError(f"repo id {opts.repo_id!r} is malformed; expected ORG/NAME: pass --repo-id ORG/NAME")
    files, excluded = list_local_files(folder, opts.excludes)
    if not files:
        raise ConfigError(f"folder {str(folder)!r} has no files to publish (excluded: {len(excluded)}); "
                          "expected a saved model or dataset folder")
    for rel in files:
        if any(seg in ("", ".", "..") for seg in rel.split("/")) or "\\" in rel:
            raise ConfigError(f"file {rel!r} in {str(folder)!r} has a path the Hub refuses; rename it")

    endpoint = resolve_endpoint(opts.endpoint)
    token = resolve_token(opts.token)
    api = HfApi(endpoint=endpoint, token=token)
    revision = opts.revision or "main"

    def call(what: str, fn: Callable[[], T]) -> T:
        return _call(opts.retries, opts.backoff_s, endpoint, what, fn)

    with _client_endpoint(endpoint):
        call("checking the token", lambda: api.whoami())
        created = True
        try:
            api.repo_info(opts.repo_id, repo_type=opts.repo_type)
            created = False
        except Exception:  # noqa: BLE001 - any failure here is re-checked by create_repo below
            pass
        repo_url = call(
            f"creating {opts.repo_id}",
            lambda: api.create_repo(opts.repo_id, repo_type=opts.repo_type, private=opts.private, exist_ok=True),
        )
        if revision != "main":
            call(f"creating branch {revision}",
                 lambda: api.create_branch(opts.repo_id, branch=revision, repo_type=opts.repo_type, exist_ok=True))

        def remote_files() -> dict[str, tuple[str, str | None]]:
            try:
                tree = api.list_repo_tree(opts.repo_id, repo_type=opts.repo_type, revision=revision, recursive=True)
                return {e.path: (e.blob_id, e.lfs.sha256 if e.lfs else None) for e in tree if hasattr(e, "blob_id")}
            except RevisionNotFoundError:
                return {}

        remote = call("listing remote files", remote_files)
        changed = changed_files(folder, files, remote)
        title, description = commit_text(folder, files, opts.commit_message)
        pr_url: str | None = None
        if not changed and not opts.create_pr:
            info = call("reading the repo", lambda: api.repo_info(opts.repo_id, repo_type=opts.repo_type,
                                                                  revision=revision))
            commit_oid, committed = str(info.sha), False
            prefix = "" if opts.repo_type == "model" else f"{opts.repo_type}s/"
            commit_url = f"{endpoint}/{prefix}{opts.repo_id}/commit/{commit_oid}"
            log.info("%s: remote already has identical files at %s, no commit", opts.repo_id, commit_oid)
        else:
            ops = [CommitOperationAdd(path_in_repo=rel, path_or_fileobj=str(folder / rel)) for rel in files]
            # A Xet-capable client falls back to LFS against a Hub that offers no Xet (huggingface_hub
            # >= 1.20 no longer negotiates that itself).
            no_xet = _xet_enabled() and call("checking Xet support", lambda: hub_offers_xet(
                endpoint, token, opts.repo_id, opts.repo_type, revision, create_pr=opts.create_pr)) is False
            if no_xet:
                log.info("%s offers no Xet storage: uploading through LFS", endpoint)
            with _xet_disabled(no_xet):
                info_c = call(
                    f"uploading to {opts.repo_id}",
                    lambda: api.create_commit(
                        opts.repo_id, ops, commit_message=title, commit_description=description,
                        repo_type=opts.repo_type, revision=revision, create_pr=opts.create_pr,
                    ),
                )
            commit_oid, commit_url, committed = str(info_c.oid), str(info_c.commit_url), True
            pr_url = str(info_c.pr_url) if info_c.pr_url else None
        if opts.tag:
            _tag(api, call, opts, commit_oid)
        private = bool(call("reading the repo", lambda: api.repo_info(opts.repo_id, repo_type=opts.repo_type)).private)
    return PushResult(
        repo_id=opts.repo_id, repo_type=opts.repo_type, url=str(repo_url), endpoint=endpoint,
        revision=f"refs/pr/{pr_url.rsplit('/', 1)[-1]}" if pr_url else revision, commit_oid=commit_oid,
        commit_url=commit_url, committed=committed, created=created, private=private, tag=opts.tag,
        pr_url=pr_url, message=title, files=files, excluded=excluded,
    )


def _tag(api: Any, call: Callable[[str, Callable[[], Any]], Any], opts: PushOptions, commit_oid: str) -> None:
    refs = call("listing tags", lambda: api.list_repo_refs(opts.repo_id, repo_type=opts.repo_type))
    existing = {t.name: t.target_commit for t in refs.tags}
    if opts.tag in existing:
        if existing[opts.tag] != commit_oid:
            raise HubError(
                f"tag {opts.tag!r} already exists on {opts.repo_id} at {existing[opts.tag][:12]}, not at the "
                f"published commit {commit_oid[:12]}; expected a new tag name: pass a different --tag"
            )
        return
    call(f"tagging {opts.tag}", lambda: api.create_tag(
        opts.repo_id, tag=opts.tag, revision=commit_oid, repo_type=opts.repo_type,
        tag_message=f"hubtune: {opts.tag}",
    ))


def download_snapshot(
    repo_id: str,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    repo_type: str = "model",
    endpoint: str | None = None,
    token: str | bool | None = None,
    retries: int = 3,
) -> Path:
    """Download (or reuse from the cache) every file of ``repo_id`` at ``revision``; returns the folder."""
    from huggingface_hub import snapshot_download

    ep = resolve_endpoint(endpoint)
    with _client_endpoint(ep):
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
    from huggingface_hub import HfApi

    ep = resolve_endpoint(endpoint)
    api = HfApi(endpoint=ep, token=token)
    files, _ = list_local_files(Path(folder))
    with _client_endpoint(ep):
        tree = _call(3, 0.5, ep, f"listing {repo_id}", lambda: list(api.list_repo_tree(
            repo_id, repo_type=repo_type, revision=revision, recursive=True)))
    remote = {e.path: (e.blob_id, e.lfs.sha256 if e.lfs else None) for e in tree if hasattr(e, "blob_id")}
    return changed_files(Path(folder), files, remote)


def tag_release(
    repo_id: str,
    commit_oid: str,
    tag: str,
    *,
    repo_type: str = "model",
    endpoint: str | None = None,
    token: str | None = None,
    retries: int = 4,
) -> None:
    """Tag ``commit_oid`` as ``tag`` (after it was verified); an existing tag elsewhere is an error."""
    from huggingface_hub import HfApi

    ep = resolve_endpoint(endpoint)
    api = HfApi(endpoint=ep, token=resolve_token(token))
    opts = PushOptions(folder=Path("."), repo_id=repo_id, repo_type=repo_type, tag=tag, endpoint=ep, retries=retries)

    def call(what: str, fn: Callable[[], T]) -> T:
        return _call(retries, 0.5, ep, what, fn)

    with _client_endpoint(ep):
        _tag(api, call, opts, commit_oid)
