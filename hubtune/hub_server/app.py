"""The HTTP layer of the local Hub: the endpoints huggingface_hub (0.36, 1.x, 2.x), transformers and datasets use.

Routing is done on ``scope["raw_path"]`` split on ``/`` *before* percent-decoding, because
revisions and paths arrive encoded (``refs%2Fpr%2F1``, ``sub%2Fdir%2Ffile``).

Xet: this Hub announces none. huggingface_hub <= 1.19 negotiates the transfer in the LFS batch call
and gets "basic". From 1.20 the client alone decides: with hf_xet installed and HF_HUB_DISABLE_XET
unset it uploads every "lfs" file through Xet, which this Hub cannot take. So ``preupload`` tells
those clients "regular" for files up to ``INLINE_MAX`` bytes: the content then travels base64 in the
commit payload (streamed, one line at a time) and the store keeps it as an LFS file all the same.
Bigger files stay "lfs": clients with Xet disabled (``hubtune push`` disables it for a Hub without
Xet) upload them through the LFS batch API; a Xet client is answered 404 on ``xet-write-token``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable
from urllib.parse import parse_qs, quote, unquote

import yaml
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from hubtune.hub_server.store import (
    REPO_TYPES,
    BadRequest,
    Commit,
    Conflict,
    HubStore,
    Operation,
    Repo,
    RepoNotFound,
    StoreError,
    check_path,
    check_repo_id,
    git_blob_oid,
    lfs_pointer,
    upload_mode,
)

INVALID_CREDENTIALS = "Invalid credentials in Authorization header"
INLINE_MAX = 32 * 1024 * 1024  # biggest file a Xet-era client is told to send inline ("regular")
MAX_COMMIT_LINE = 4 * (INLINE_MAX // 3 + 1) + 64 * 1024  # one base64 line of the commit payload
NO_XET = (
    "this Hub does not offer Xet storage: upload through LFS (set HF_HUB_DISABLE_XET=1, "
    "or use `hubtune push`, which does so for a Hub without Xet)"
)
_HF_HUB_UA = re.compile(r"(?:^|[;\s])hf_hub/(\d+)\.(\d+)")
XET_ONLY_CLIENT = (1, 20)  # huggingface_hub from this version on never negotiates Xet away


class HttpError(StoreError):
    def __init__(
        self, status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.headers = headers or {}


@dataclass
class ServerConfig:
    """Who may do what. ``token`` None: anyone may write. ``orgs`` None: any namespace is writable."""

    token: str | None = None
    user: str = "hubtune"
    orgs: list[str] | None = None
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))


def _error(status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None) -> Response:
    hdrs = {"X-Error-Message": message.encode("ascii", "replace").decode()[:500].replace("\n", " ")}
    if code:
        hdrs["X-Error-Code"] = code
    hdrs.update(headers or {})
    return JSONResponse({"error": message}, status_code=status, headers=hdrs)


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "yes")


def _client_forces_xet(request: Request) -> bool:
    """True for huggingface_hub >= 1.20, which uploads "lfs" files through Xet whenever hf_xet is installed."""
    m = _HF_HUB_UA.search(request.headers.get("user-agent", ""))
    return m is not None and (int(m.group(1)), int(m.group(2))) >= XET_ONLY_CLIENT


def _card_data(readme: bytes) -> dict[str, Any] | None:
    text = readme.decode("utf-8", "replace")
    m = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", text, re.S)
    if not m:
        return None
    try:
        data = yaml.safe_load(m.group(1))
    except yaml.YAMLError:
        return None
    return data if isinstance(data, dict) else None


class HubApp:
    """Dispatches requests to the store; one instance per server."""

    def __init__(self, store: HubStore, config: ServerConfig) -> None:
        self.store = store
        self.config = config

    # --- auth -------------------------------------------------------------------------------------
    def _bearer(self, request: Request) -> str | None:
        auth = request.headers.get("authorization", "")
        return auth[7:].strip() if auth.lower().startswith("bearer ") else None

    def _authed(self, request: Request) -> bool:
        """True for a valid token; raises 401 for an invalid one; False when none was sent."""
        token = self._bearer(request)
        if token is None:
            return False
        if self.config.token is not None and not hmac.compare_digest(token.encode(), self.config.token.encode()):
            raise HttpError(401, INVALID_CREDENTIALS)
        return True

    def _require_write(self, request: Request, namespace: str | None = None) -> None:
        authed = self._authed(request)
        if self.config.token is not None and not authed:
            raise HttpError(401, "You must be authenticated (Authorization: Bearer <token>) to write to this Hub")
        if namespace is not None and self.config.orgs is not None:
            if namespace not in {self.config.user, *self.config.orgs}:
                raise HttpError(
                    403,
                    f'You don\'t have the rights to write under the namespace "{namespace}" '
                    f"(token of {self.config.user!r}, orgs {self.config.orgs})",
                )

    def _repo(self, request: Request, repo_type: str, repo_id: str, *, write: bool = False) -> Repo:
        if write:
            self._require_write(request, repo_id.split("/")[0])
        authed = self._authed(request) or self.config.token is None
        try:
            repo = self.store.get_repo(repo_type, repo_id)
        except RepoNotFound:
            raise RepoNotFound(f"Repository Not Found: {repo_id}") from None
        if repo.private and not authed:
            raise RepoNotFound(f"Repository Not Found: {repo_id}")
        return repo

    # --- entry point ------------------------------------------------------------------------------
    async def handle(self, request: Request) -> Response:
        raw = request.scope.get("raw_path") or request.url.path.encode()
        raw_path = raw.decode("latin-1").split("?", 1)[0]
        segs = raw_path.strip("/").split("/") if raw_path.strip("/") else []
        try:
            self._authed(request)  # an invalid token is refused everywhere, as on huggingface.co
            return await self._dispatch(request, segs)
        except StoreError as exc:
            headers = getattr(exc, "headers", None)
            return _error(exc.status, str(exc), exc.code, headers)
        except ClientDisconnect:
            return Response(status_code=400)

    async def _dispatch(self, request: Request, segs: list[str]) -> Response:
        m = request.method
        if segs[:1] == ["api"]:
            return await self._api(request, segs[1:])
        if segs[:2] == ["__lfs", "upload"] and m == "PUT" and len(segs) == 5:
            return await self._lfs_put(request, segs[2], segs[3], segs[4])
        if segs[:2] == ["__lfs", "verify"] and m == "POST" and len(segs) == 4:
            return await self._lfs_verify(request, segs[2], segs[3])
        repo_type = "model"
        if segs[:1] in (["datasets"], ["spaces"]):
            repo_type, segs = segs[0][:-1], segs[1:]
        if len(segs) >= 2 and segs[1].endswith(".git") and segs[2:] == ["info", "lfs", "objects", "batch"]:
            repo_id = f"{unquote(segs[0])}/{unquote(segs[1])[:-4]}"
            return await self._lfs_batch(request, repo_type, repo_id)
        if len(segs) >= 5 and segs[2] == "resolve" and m in ("GET", "HEAD"):
            repo_id = f"{unquote(segs[0])}/{unquote(segs[1])}"
            rev, rest = self._take_revision(segs[3:])
            return await run_in_threadpool(self._resolve_file, request, repo_type, repo_id, rev, "/".join(rest))
        raise HttpError(404, f"no route for {m} /{'/'.join(segs)}")

    @staticmethod
    def _take_revision(segs: list[str]) -> tuple[str, list[str]]:
        """The revision is one encoded segment; tolerate unencoded ``refs/pr/N`` and ``refs/heads/x``."""
        if segs and segs[0] == "refs" and len(segs) >= 3:
            return "/".join(unquote(s) for s in segs[:3]), segs[3:]
        return unquote(segs[0]) if segs else "main", segs[1:]

    async def _api(self, request: Request, segs: list[str]) -> Response:
        m = request.method
        if segs == ["whoami-v2"] and m == "GET":
            return self._whoami(request)
        if segs == ["validate-yaml"] and m == "POST":
            return JSONResponse({"errors": [], "warnings": []})
        if segs == ["repos", "create"] and m == "POST":
            return await self._create_repo(request)
        if segs == ["repos", "delete"] and m == "DELETE":
            return await self._delete_repo(request)
        if len(segs) < 3 or segs[0] not in ("models", "datasets", "spaces"):
            raise HttpError(404, f"no API route for {m} /api/{'/'.join(segs)}")
        repo_type = segs[0][:-1]
        repo_id = f"{unquote(segs[1])}/{unquote(segs[2])}"
        check_repo_id(repo_id)
        action, rest = (segs[3] if len(segs) > 3 else ""), segs[4:]
        if action == "" and m == "GET":
            return await run_in_threadpool(self._info, request, repo_type, repo_id, "main")
        if action == "revision" and m == "GET" and rest:
            rev, _ = self._take_revision(rest)
            return await run_in_threadpool(self._info, request, repo_type, repo_id, rev)
        if action == "tree" and m == "GET":
            rev, path_segs = self._take_revision(rest)
            path = unquote("/".join(path_segs))
            return await run_in_threadpool(self._tree, request, repo_type, repo_id, rev, path)
        if action == "paths-info" and m == "POST":
            rev, _ = self._take_revision(rest)
            form = parse_qs((await request.body()).decode("utf-8", "replace"), keep_blank_values=True)
            paths = form.get("paths", [])
            expand = _truthy((form.get("expand") or [""])[0])
            return await run_in_threadpool(self._paths_info, request, repo_type, repo_id, rev, paths, expand)
        if action == "refs" and m == "GET":
            return self._refs(request, repo_type, repo_id)
        if action == "commits" and m == "GET":
            rev, _ = self._take_revision(rest)
            return await run_in_threadpool(self._commits, request, repo_type, repo_id, rev)
        if action == "preupload" and m == "POST":
            rev, _ = self._take_revision(rest)
            body = await self._json(request)
            return await run_in_threadpool(self._preupload, request, repo_type, repo_id, rev, body)
        if action == "commit" and m == "POST":
            rev, _ = self._take_revision(rest)
            return await self._commit(request, repo_type, repo_id, rev)
        if action in ("branch", "tag") and rest:
            return await self._ref(request, repo_type, repo_id, action, unquote("/".join(rest)))
        if action == "discussions" and m == "POST" and len(rest) == 2 and rest[0].isdigit() and rest[1] == "merge":
            repo = self._repo(request, repo_type, repo_id, write=True)  # merge_pull_request: fast-forward only
            await run_in_threadpool(self.store.merge_pr, repo, str(int(rest[0])))
            return JSONResponse({"status": "merged"})
        if action in ("xet-write-token", "xet-read-token"):
            self._repo(request, repo_type, repo_id, write=action == "xet-write-token")
            raise HttpError(404, NO_XET, "XetNotSupported")
        if action == "settings" and m == "PUT":
            return await self._settings(request, repo_type, repo_id)
        raise HttpError(404, f"no API route for {m} /api/{'/'.join(segs)}")

    @staticmethod
    async def _json(request: Request) -> dict[str, Any]:
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            raise BadRequest("request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise BadRequest("request body must be a JSON object")
        return body

    # --- account and repos ------------------------------------------------------------------------
    def _whoami(self, request: Request) -> Response:
        if not self._authed(request):
            raise HttpError(401, "Invalid username or password.")
        orgs = self.config.orgs or []
        return JSONResponse({
            "type": "user", "id": "0" * 24, "name": self.config.user, "fullname": self.config.user,
            "email": None, "emailVerified": False, "isPro": False, "canPay": False,
            "orgs": [{"type": "org", "name": o, "fullname": o, "roleInOrg": "admin"} for o in orgs],
            "auth": {"type": "access_token", "accessToken": {"displayName": "local", "role": "write"}},
        })

    def _repo_url(self, request: Request, repo_type: str, repo_id: str) -> str:
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        return f"{self._base(request)}/{prefix}{repo_id}"

    @staticmethod
    def _base(request: Request) -> str:
        return str(request.base_url).rstrip("/")

    def _type_and_id(self, body: dict[str, Any]) -> tuple[str, str]:
        repo_type = body.get("type") or "model"
        if repo_type not in REPO_TYPES:
            raise BadRequest(f"invalid repo type {repo_type!r}: expected one of {', '.join(REPO_TYPES)}")
        name, org = body.get("name"), body.get("organization") or self.config.user
        if not isinstance(name, str) or not isinstance(org, str):
            raise BadRequest("expected 'name' (and optionally 'organization') strings")
        repo_id = f"{org}/{name}"
        check_repo_id(repo_id)
        return repo_type, repo_id

    async def _create_repo(self, request: Request) -> Response:
        body = await self._json(request)
        repo_type, repo_id = self._type_and_id(body)
        self._require_write(request, repo_id.split("/")[0])
        private = bool(body.get("private", False)) or body.get("visibility") == "private"
        url = self._repo_url(request, repo_type, repo_id)
        try:
            await run_in_threadpool(self.store.create_repo, repo_type, repo_id, private=private, author=self.config.user)
        except Conflict as exc:
            return JSONResponse({"error": str(exc), "url": url}, status_code=409, headers={"X-Error-Message": str(exc)})
        return JSONResponse({"url": url, "name": repo_id, "id": repo_id})

    async def _delete_repo(self, request: Request) -> Response:
        body = await self._json(request)
        repo_type, repo_id = self._type_and_id(body)
        repo = self._repo(request, repo_type, repo_id, write=True)
        await run_in_threadpool(self.store.delete_repo, repo)
        return Response(status_code=200)

    async def _settings(self, request: Request, repo_type: str, repo_id: str) -> Response:
        repo = self._repo(request, repo_type, repo_id, write=True)
        body = await self._json(request)
        if "private" in body:
            await run_in_threadpool(self.store.set_private, repo, bool(body["private"]))
        return JSONResponse({"private": self.store.get_repo(repo_type, repo_id).private})

    # --- reading ----------------------------------------------------------------------------------
    def _info(self, request: Request, repo_type: str, repo_id: str, rev: str) -> Response:
        repo = self._repo(request, repo_type, repo_id)
        commit = self.store.resolve(repo, rev)
        files = commit.files
        card: dict[str, Any] | None = None
        if "README.md" in files:
            card = _card_data(self.store.blob_path(files["README.md"]["sha256"]).read_bytes())
        pipeline_tag = (card or {}).get("pipeline_tag")
        library_name = (card or {}).get("library_name")
        if "config.json" in files and repo_type == "model":
            library_name = library_name or "transformers"
            if pipeline_tag is None:
                pipeline_tag = self._pipeline_from_config(files["config.json"])
        tags = [t for t in [library_name, pipeline_tag] if t]
        card_tags = (card or {}).get("tags") or []
        tags += [str(t) for t in (card_tags if isinstance(card_tags, list) else [card_tags]) if str(t) not in tags]
        siblings = []
        for path, e in sorted(files.items()):
            sib: dict[str, Any] = {"rfilename": path, "size": e["size"], "blobId": e["oid"]}
            if e["lfs"]:
                sib["lfs"] = {"sha256": e["sha256"], "size": e["size"],
                              "pointerSize": len(lfs_pointer(e["sha256"], e["size"]))}
            siblings.append(sib)
        info: dict[str, Any] = {
            "_id": hashlib.sha1(repo_id.encode()).hexdigest()[:24], "id": repo_id,
            "author": repo_id.split("/")[0], "sha": commit.id, "private": repo.private, "gated": False,
            "disabled": False, "downloads": 0, "likes": 0, "tags": tags, "createdAt": repo.created_at,
            "lastModified": commit.date, "cardData": card, "siblings": siblings,
            "usedStorage": sum(e["size"] for e in files.values()),
        }
        if repo_type == "model":
            info.update({"modelId": repo_id, "pipeline_tag": pipeline_tag, "library_name": library_name})
        return JSONResponse(info)

    def _pipeline_from_config(self, entry: dict[str, Any]) -> str | None:
        try:
            config = json.loads(self.store.blob_path(entry["sha256"]).read_bytes())
        except ValueError:
            return None
        archs = config.get("architectures") or [] if isinstance(config, dict) else []
        suffixes = {
            "ForSequenceClassification": "text-classification", "ForTokenClassification": "token-classification",
            "ForQuestionAnswering": "question-answering", "ForMaskedLM": "fill-mask",
            "ForCausalLM": "text-generation", "ForConditionalGeneration": "text2text-generation",
        }
        for arch in archs:
            for suffix, tag in suffixes.items():
                if str(arch).endswith(suffix):
                    return tag
        return None

    def _entry_json(self, repo: Repo, commit: Commit, path: str, expand: bool) -> dict[str, Any]:
        e = commit.files[path]
        out: dict[str, Any] = {"type": "file", "oid": e["oid"], "size": e["size"], "path": path}
        if e["lfs"]:
            out["lfs"] = {"oid": e["sha256"], "size": e["size"],
                          "pointerSize": len(lfs_pointer(e["sha256"], e["size"]))}
        if expand:
            last = self._last_commit(repo, commit, path)
            out["lastCommit"] = {"id": last.id, "title": last.title, "date": last.date}
        return out

    def _last_commit(self, repo: Repo, commit: Commit, path: str) -> Commit:
        """The newest commit (first-parent walk) that changed ``path``."""
        current = commit
        while current.parents:
            parent = self.store.get_commit(repo, current.parents[0])
            if parent.files.get(path) != current.files.get(path):
                return current
            current = parent
        return current

    @staticmethod
    def _dir_json(commit: Commit, path: str) -> dict[str, Any]:
        listing = "\n".join(f"{p}:{e['oid']}" for p, e in sorted(commit.files.items()) if p.startswith(path + "/"))
        return {"type": "directory", "oid": git_blob_oid(listing.encode()), "size": 0, "path": path}

    def _tree(self, request: Request, repo_type: str, repo_id: str, rev: str, path: str) -> Response:
        repo = self._repo(request, repo_type, repo_id)
        commit = self.store.resolve(repo, rev)
        recursive = _truthy(request.query_params.get("recursive"))
        expand = _truthy(request.query_params.get("expand"))
        path = check_path(path.strip("/")) if path.strip("/") else ""
        prefix = path + "/" if path else ""
        under = [p for p in commit.files if p.startswith(prefix)]
        if path and not under:
            raise HttpError(404, f"Entry not found: {path}", "EntryNotFound", {"X-Repo-Commit": commit.id})
        files: list[str] = []
        dirs: set[str] = set()
        for p in sorted(under):
            rel_parts = p[len(prefix):].split("/")
            for depth in range(1, len(rel_parts)):
                if depth == 1 or recursive:
                    dirs.add(prefix + "/".join(rel_parts[:depth]))
            if len(rel_parts) == 1 or recursive:
                files.append(p)
        out = [self._dir_json(commit, d) for d in sorted(dirs)]
        out += [self._entry_json(repo, commit, p, expand) for p in files]
        out.sort(key=lambda item: item["path"])
        return JSONResponse(out)

    def _paths_info(
        self, request: Request, repo_type: str, repo_id: str, rev: str, paths: list[str], expand: bool
    ) -> Response:
        repo = self._repo(request, repo_type, repo_id)
        commit = self.store.resolve(repo, rev)
        out = []
        for raw in paths:
            path = check_path(raw.strip("/"))
            if path in commit.files:
                out.append(self._entry_json(repo, commit, path, expand))
            elif any(p.startswith(path + "/") for p in commit.files):
                out.append(self._dir_json(commit, path))
        return JSONResponse(out)

    def _refs(self, request: Request, repo_type: str, repo_id: str) -> Response:
        repo = self._repo(request, repo_type, repo_id)
        refs = self.store.refs(repo)

        def fmt(kind: str, name: str, target: str) -> dict[str, str]:
            return {"name": name, "ref": f"refs/{kind}/{name}", "targetCommit": target}

        body: dict[str, Any] = {
            "branches": [fmt("heads", n, t) for n, t in sorted(refs["branches"].items())],
            "tags": [fmt("tags", n, t) for n, t in sorted(refs["tags"].items())],
            "converts": [],
        }
        if _truthy(request.query_params.get("include_prs")):
            body["pullRequests"] = [fmt("pr", n, t) for n, t in sorted(refs["pulls"].items(), key=lambda x: int(x[0]))]
        return JSONResponse(body)

    def _commits(self, request: Request, repo_type: str, repo_id: str, rev: str) -> Response:
        repo = self._repo(request, repo_type, repo_id)
        return JSONResponse([
            {"id": c.id, "title": c.title, "message": c.message, "date": c.date,
             "authors": [{"user": c.author}], "parents": c.parents}
            for c in self.store.history(repo, rev)
        ])

    def _resolve_file(self, request: Request, repo_type: str, repo_id: str, rev: str, raw_rest: str) -> Response:
        repo = self._repo(request, repo_type, repo_id)
        commit = self.store.resolve(repo, rev)
        path = check_path(unquote(raw_rest))
        entry = commit.files.get(path)
        if entry is None:
            raise HttpError(404, f"Entry not found: {path}", "EntryNotFound", {"X-Repo-Commit": commit.id})
        etag = entry["sha256"] if entry["lfs"] else entry["oid"]
        headers = {
            "X-Repo-Commit": commit.id,
            "ETag": f'"{etag}"',
            "Accept-Ranges": "bytes",
            "Content-Disposition": f"inline; filename*=UTF-8''{quote(path.rsplit('/', 1)[-1])}",
        }
        if entry["lfs"]:
            headers["X-Linked-Etag"] = f'"{etag}"'
            headers["X-Linked-Size"] = str(entry["size"])
        return FileResponse(
            self.store.blob_path(entry["sha256"]), headers=headers, media_type="application/octet-stream"
        )

    # --- writing ----------------------------------------------------------------------------------
    def _preupload(self, request: Request, repo_type: str, repo_id: str, rev: str, body: dict[str, Any]) -> Response:
        repo = self._repo(request, repo_type, repo_id, write=True)
        try:
            files = self.store.resolve(repo, rev).files
        except StoreError:
            files = {}  # a new pull request or branch: nothing to compare with
        forces_xet = _client_forces_xet(request)
        out = []
        for item in body.get("files") or []:
            path = check_path(str(item.get("path", "")))
            try:
                sample = base64.b64decode(item.get("sample") or "")
            except ValueError:
                sample = b""
            size = int(item.get("size") or 0)
            mode = upload_mode(path, size, sample)
            if mode == "lfs" and size <= INLINE_MAX and forces_xet:
                mode = "regular"  # sent inline, stored as LFS: see the module docstring
            existing = files.get(path)
            oid = None  # what the client compares with: sha256 for "lfs", the content's git blob id for "regular"
            if existing is not None:
                if mode == "lfs":
                    oid = existing["sha256"]
                elif not existing["lfs"] or existing["size"] == size:  # else it differs anyway: skip the hashing
                    oid = self.store.raw_git_oid(existing)
            out.append({"path": path, "uploadMode": mode, "shouldIgnore": False, "oid": oid})
        return JSONResponse({"files": out, "commitOid": None})

    async def _commit(self, request: Request, repo_type: str, repo_id: str, rev: str) -> Response:
        repo = self._repo(request, repo_type, repo_id, write=True)
        create_pr = _truthy(request.query_params.get("create_pr"))
        header: dict[str, Any] | None = None
        ops: list[Operation] = []

        def parse(line: bytes, first: bool) -> dict[str, Any] | Operation:
            try:
                obj = json.loads(line)
            except ValueError:
                raise BadRequest("commit payload is not valid NDJSON") from None
            if first:
                return self.store.decode_header(obj)
            return self.store.stage(self.store.decode_line(obj))  # a file's blob is stored now

        async def take(line: bytes) -> None:
            nonlocal header
            if not line.strip():
                return
            parsed = await run_in_threadpool(parse, line, header is None)  # big lines: off the event loop
            if isinstance(parsed, Operation):
                ops.append(parsed)
            else:
                header = parsed

        # Read line by line, holding one line in memory at a time. A client that dies mid-payload leaves
        # at most unreferenced blobs, never a commit.
        buf = bytearray()
        async for chunk in request.stream():
            scan = len(buf)
            buf.extend(chunk)
            start = 0
            while (nl := buf.find(b"\n", scan)) >= 0:
                await take(bytes(buf[start:nl]))
                start = scan = nl + 1
            del buf[:start]
            if len(buf) > MAX_COMMIT_LINE:
                raise HttpError(413, f"a commit payload line is over {MAX_COMMIT_LINE} bytes: send big files as LFS")
        await take(bytes(buf))
        if header is None:
            raise BadRequest("commit payload must start with a 'header' line")
        commit, pr_num = await run_in_threadpool(
            self.store.commit, repo, rev, header, ops, author=self.config.user, create_pr=create_pr
        )
        url = self._repo_url(request, repo_type, repo_id)
        return JSONResponse({
            "success": True, "commitOid": commit.id, "commitUrl": f"{url}/commit/{commit.id}",
            "pullRequestUrl": f"{url}/discussions/{pr_num}" if pr_num is not None else None,
            "hookOutput": "",
        })

    async def _ref(self, request: Request, repo_type: str, repo_id: str, kind: str, name: str) -> Response:
        """POST/DELETE ``branch/NAME`` (body: startingPoint) and ``tag/REV`` (body: tag; DELETE: ``tag/NAME``)."""
        repo = self._repo(request, repo_type, repo_id, write=True)
        if request.method == "POST":
            body = await self._json(request)
            ref, target = (name, str(body.get("startingPoint") or "main")) if kind == "branch" else (body.get("tag"), name)
            if not isinstance(ref, str):
                raise BadRequest("expected a 'tag' string")
            await run_in_threadpool(self.store.create_ref, repo, kind, ref, target)
            return JSONResponse({"name": ref})
        if request.method == "DELETE":
            await run_in_threadpool(self.store.delete_ref, repo, kind, name)
            return Response(status_code=200)
        raise HttpError(405, f"{request.method} not allowed on {kind}s")

    # --- LFS (basic transfer only; Xet is never offered) --------------------------------------------
    def _sign(self, oid: str, size: int) -> str:
        return hmac.new(self.config.secret, f"{oid}:{size}".encode(), hashlib.sha256).hexdigest()

    async def _lfs_batch(self, request: Request, repo_type: str, repo_id: str) -> Response:
        self._repo(request, repo_type, repo_id, write=True)
        body = await self._json(request)
        if body.get("operation") != "upload":
            raise BadRequest("only the 'upload' LFS operation is supported: download through /resolve/")
        base = self._base(request)
        objects = []
        for obj in body.get("objects") or []:
            oid, size = str(obj.get("oid", "")), obj.get("size")
            if not isinstance(size, int) or size < 0:
                raise BadRequest(f"invalid size for LFS object {oid}")
            self.store.blob_path(oid)  # validates the oid
            item: dict[str, Any] = {"oid": oid, "size": size, "authenticated": True}
            if not self.store.has_blob(oid, size):
                sig = self._sign(oid, size)
                item["actions"] = {
                    "upload": {"href": f"{base}/__lfs/upload/{oid}/{size}/{sig}"},
                    "verify": {"href": f"{base}/__lfs/verify/{oid}/{size}"},
                }
            objects.append(item)
        return JSONResponse({"transfer": "basic", "objects": objects, "hash_algo": "sha256"},
                            media_type="application/vnd.git-lfs+json")

    async def _lfs_put(self, request: Request, oid: str, size_s: str, sig: str) -> Response:
        size = int(size_s) if size_s.isdigit() else -1
        if size < 0 or not hmac.compare_digest(sig, self._sign(oid, size)):
            raise HttpError(403, "invalid or forged LFS upload URL: ask the batch endpoint for a new one")
        if self.store.has_blob(oid, size):
            return Response(status_code=200)
        with self.store.blob_writer(oid, size) as out:  # completes only when every byte matched
            async for chunk in request.stream():
                out.write(chunk)
        return Response(status_code=200)

    async def _lfs_verify(self, request: Request, oid: str, size_s: str) -> Response:
        self._require_write(request)
        if not size_s.isdigit() or not self.store.has_blob(oid, int(size_s)):
            raise HttpError(404, f"LFS object {oid} was not uploaded", "EntryNotFound")
        return JSONResponse({"oid": oid, "size": int(size_s)})


def make_app(store: HubStore, config: ServerConfig | None = None) -> Starlette:
    """The ASGI application serving ``store``."""
    handler: Callable[[Request], Awaitable[Response]] = HubApp(store, config or ServerConfig()).handle
    methods = ["GET", "HEAD", "POST", "PUT", "DELETE"]
    return Starlette(routes=[Route("/", handler, methods=methods), Route("/{path:path}", handler, methods=methods)])
