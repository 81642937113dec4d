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
import binascii
import hmac
import logging
import re
import secrets
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable
from urllib.parse import parse_qs, unquote

from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from hubtune.hub_server.community import CommunityRoutes
from hubtune.hub_server.limits import (
    MAX_COMMIT_BODY,
    MAX_COMMIT_LINES,
    MAX_FORM_BODY,
    HttpError,
    as_dict,
    as_int,
    as_list,
    as_str,
    declared_length,
    error_response,
    json_object,
    parse_json,
    read_body,
)
from hubtune.hub_server.lfs import LfsRoutes
from hubtune.hub_server.reading import ReadRoutes
from hubtune.hub_server.store import (
    CANONICAL_ORG,
    REPO_TYPES,
    BadRequest,
    Commit,
    Conflict,
    HubStore,
    Operation,
    Repo,
    RepoNotFound,
    StoreError,
    TooLarge,
    check_path,
    check_repo_id,
    upload_mode,
)
from hubtune.hub_server.validation import check_revision, parse_gitattributes

log = logging.getLogger(__name__)

INVALID_CREDENTIALS = "Invalid credentials in Authorization header"
INLINE_MAX = 32 * 1024 * 1024  # biggest file a Xet-era client is told to send inline ("regular")
MAX_COMMIT_LINE = 4 * (INLINE_MAX // 3 + 1) + 64 * 1024  # one base64 line of the commit payload
NO_XET = (
    "this Hub does not offer Xet storage: upload through LFS (set HF_HUB_DISABLE_XET=1, "
    "or use `hubtune push`, which does so for a Hub without Xet)"
)
_HF_HUB_UA = re.compile(r"(?:^|[;\s])hf_hub/(\d+)\.(\d+)")
XET_ONLY_CLIENT = (1, 20)  # huggingface_hub from this version on never negotiates Xet away
_REPO_ACTIONS = frozenset(  # what may follow a canonical id (imdb) in /api/{type}s/imdb/...
    "revision tree paths-info refs commits preupload commit branch tag discussions xet-write-token xet-read-token "
    "settings auth-check super-squash".split())


@dataclass
class ServerConfig:
    """Who may do what. ``token`` None: anyone may write. ``orgs`` None: any namespace is writable."""

    token: str | None = None
    user: str = "hubtune"
    orgs: list[str] | None = None
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))

    def __post_init__(self) -> None:
        if self.token is not None and not self.token.strip():
            self.token = None  # an empty token is no token: anyone may write, as the server says


def _error(status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None) -> Response:
    return error_response(status, message, code, headers)


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "yes")


def _client_forces_xet(request: Request) -> bool:
    """True for huggingface_hub >= 1.20, which uploads "lfs" files through Xet whenever hf_xet is installed."""
    m = _HF_HUB_UA.search(request.headers.get("user-agent", ""))
    return m is not None and (int(m.group(1)), int(m.group(2))) >= XET_ONLY_CLIENT


class HubApp(CommunityRoutes, LfsRoutes, ReadRoutes):
    """Dispatches requests to the store; one instance per server."""

    def __init__(self, store: HubStore, config: ServerConfig) -> None:
        self.store = store
        self.config = config

    # --- auth -------------------------------------------------------------------------------------
    def _bearer(self, request: Request) -> str | None:
        auth = request.headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        return token or None  # "Bearer " with nothing after it is no credential

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
            if namespace.lower() not in {n.lower() for n in (self.config.user, *self.config.orgs)}:  # case-blind
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
        except Exception as exc:  # a bug: logged with its traceback, answered without it
            log.exception("local Hub: internal error on %s %s", request.method, request.url.path)
            return _error(500, f"internal error in the local Hub ({type(exc).__name__}): please report it")

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
        if len(segs) >= 4 and segs[1] == "resolve" and m in ("GET", "HEAD"):  # a canonical id: /imdb/resolve/...
            rev, rest = self._take_revision(segs[2:])
            repo_id = f"{CANONICAL_ORG}/{unquote(segs[0])}"
            return await run_in_threadpool(self._resolve_file, request, repo_type, repo_id, rev, "/".join(rest))
        raise HttpError(404, f"no route for {m} /{'/'.join(segs)}")

    @staticmethod
    def _take_revision(segs: list[str]) -> tuple[str, list[str]]:
        """The revision is one encoded segment; tolerate unencoded ``refs/pr/N`` and ``refs/heads/x``."""
        if segs and segs[0] == "refs" and len(segs) >= 3:
            return check_revision("/".join(unquote(s) for s in segs[:3])), segs[3:]
        return check_revision(unquote(segs[0])) if segs else "main", segs[1:]

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
        if segs == ["repos", "move"] and m == "POST":
            return await self._move_repo(request)
        if len(segs) == 1 and segs[0] in ("models", "datasets", "spaces") and m == "GET":
            return await run_in_threadpool(self._list, request, segs[0][:-1])
        if len(segs) < 2 or segs[0] not in ("models", "datasets", "spaces"):
            raise HttpError(404, f"no API route for {m} /api/{'/'.join(segs)}")
        repo_type = segs[0][:-1]
        canonical = f"{CANONICAL_ORG}/{unquote(segs[1])}"
        if len(segs) == 2 or (segs[2] in _REPO_ACTIONS and self.store.exists(repo_type, canonical)):
            segs = [segs[0], CANONICAL_ORG, *segs[1:]]  # a canonical id: /api/datasets/imdb/... is canonical/imdb
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
            self._repo(request, repo_type, repo_id)  # who may read it, before reading the body
            form = parse_qs((await read_body(request, MAX_FORM_BODY)).decode("utf-8", "replace"),
                            keep_blank_values=True)
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
            self._repo(request, repo_type, repo_id, write=True)  # authenticated before the body is read
            body = await json_object(request, "preupload body")
            return await run_in_threadpool(self._preupload, request, repo_type, repo_id, rev, body)
        if action == "commit" and m == "POST":
            rev, _ = self._take_revision(rest)
            return await self._commit(request, repo_type, repo_id, rev)
        if action in ("branch", "tag") and rest:
            return await self._ref(request, repo_type, repo_id, action, unquote("/".join(rest)))
        if action == "discussions":
            return await self._discussions(request, repo_type, repo_id, rest)
        if action == "auth-check" and m == "GET" and rest in ([], ["write"]):
            self._repo(request, repo_type, repo_id, write=rest == ["write"])
            return JSONResponse({"accessRequest": None})
        if action == "super-squash" and m == "POST" and len(rest) == 1:
            repo = self._repo(request, repo_type, repo_id, write=True)
            body = await json_object(request, "super-squash body")
            message = as_str(body.get("message"), "'message'", "Super-squash")
            commit = await run_in_threadpool(self.store.super_squash, repo, check_revision(unquote(rest[0])),
                                             message, self.config.user)
            return JSONResponse({"commitId": commit.id})
        if action in ("xet-write-token", "xet-read-token"):
            self._repo(request, repo_type, repo_id, write=action == "xet-write-token")
            raise HttpError(404, NO_XET, "XetNotSupported")
        if action == "settings" and m == "PUT":
            return await self._settings(request, repo_type, repo_id)
        raise HttpError(404, f"no API route for {m} /api/{'/'.join(segs)}")

    @staticmethod
    async def _json(request: Request) -> dict[str, Any]:
        return await json_object(request)

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
        self._require_write(request)  # authenticated before the body is read; the namespace after
        body = await self._json(request)
        repo_type, repo_id = self._type_and_id(body)
        self._require_write(request, repo_id.split("/")[0])
        private = bool(body.get("private", False)) or body.get("visibility") == "private"
        url = self._repo_url(request, repo_type, repo_id)
        try:
            await run_in_threadpool(self.store.create_repo, repo_type, repo_id, private=private, author=self.config.user)
        except Conflict as exc:
            try:
                existing = self.store.get_repo(repo_type, repo_id).repo_id  # as first spelled
            except StoreError:
                existing = repo_id
            return error_response(409, str(exc), body={"url": self._repo_url(request, repo_type, existing)})
        return JSONResponse({"url": url, "name": repo_id, "id": repo_id})

    async def _move_repo(self, request: Request) -> Response:
        """``move_repo``: ``{"fromRepo", "toRepo", "type"}``; both namespaces must be writable."""
        self._require_write(request)
        body = await self._json(request)
        repo_type = as_str(body.get("type"), "'type'", "model")
        src, dst = as_str(body.get("fromRepo"), "'fromRepo'"), as_str(body.get("toRepo"), "'toRepo'")
        check_repo_id(dst)
        self._require_write(request, dst.split("/")[0])
        repo = self._repo(request, repo_type, src, write=True)
        moved = await run_in_threadpool(self.store.move_repo, repo, dst)
        return JSONResponse({"url": self._repo_url(request, repo_type, moved.repo_id)})

    async def _delete_repo(self, request: Request) -> Response:
        self._require_write(request)
        body = await self._json(request)
        repo_type, repo_id = self._type_and_id(body)
        repo = self._repo(request, repo_type, repo_id, write=True)
        await run_in_threadpool(self.store.delete_repo, repo)
        return Response(status_code=200)

    async def _settings(self, request: Request, repo_type: str, repo_id: str) -> Response:
        repo = self._repo(request, repo_type, repo_id, write=True)
        body = await self._json(request)
        private = body.get("private")
        if body.get("visibility") in ("private", "public"):  # huggingface_hub >= 1.x sends visibility
            private = body["visibility"] == "private"
        if private is not None:
            await run_in_threadpool(self.store.set_private, repo, bool(private))
        return JSONResponse({"private": self.store.get_repo(repo_type, repo_id).private})

    # --- writing ----------------------------------------------------------------------------------
    def _preupload(self, request: Request, repo_type: str, repo_id: str, rev: str, body: dict[str, Any]) -> Response:
        repo = self._repo(request, repo_type, repo_id, write=True)
        try:
            head: Commit | None = self.store.resolve(repo, rev)
        except StoreError:
            head = None  # a new pull request or branch: nothing to compare with
        files = head.files if head is not None else {}
        rules = self.store.lfs_rules(head)  # the repo's own .gitattributes decides what is LFS
        forces_xet = _client_forces_xet(request)
        out = []
        for item in as_list(body.get("files"), "'files'"):
            item = as_dict(item, "each of 'files'")
            path = check_path(as_str(item.get("path"), "a file's 'path'"))
            try:
                sample = base64.b64decode(as_str(item.get("sample"), "a file's 'sample'", ""))
            except (ValueError, binascii.Error):
                sample = b""
            size = as_int(item.get("size"), "a file's 'size'", 0)
            mode = upload_mode(path, size, sample, rules)
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
        declared = declared_length(request)
        if declared is not None and declared > MAX_COMMIT_BODY:
            raise TooLarge(f"commit payload of {declared} bytes is over {MAX_COMMIT_BODY} bytes: split the commit")
        header: dict[str, Any] | None = None
        ops: list[Operation] = []
        try:
            head: Commit | None = self.store.resolve(repo, rev)
        except StoreError:
            head = None  # the commit itself will say why
        rules = [self.store.lfs_rules(head)]  # the repo's .gitattributes, or the one this commit brings

        def parse(line: bytes, first: bool) -> dict[str, Any] | Operation:
            obj = parse_json(line, "a commit payload line (NDJSON)")
            if first:
                return self.store.decode_header(obj)
            op = self.store.decode_line(obj)
            if op.kind == "file" and op.path == ".gitattributes" and op.content is not None:
                rules[0] = parse_gitattributes(op.content.decode("utf-8", "replace"))
            return self.store.stage(op, rules[0])  # a file's blob is stored now

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
        total = 0
        async for chunk in request.stream():
            total += len(chunk)
            if total > MAX_COMMIT_BODY or len(ops) > MAX_COMMIT_LINES:
                raise TooLarge(f"commit payload over {MAX_COMMIT_BODY} bytes or {MAX_COMMIT_LINES} operations: "
                               "split the commit")
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
            if kind == "branch":
                ref, target = name, check_revision(as_str(body.get("startingPoint"), "'startingPoint'", "main"))
            else:
                ref, target = as_str(body.get("tag"), "'tag'"), check_revision(name)
            await run_in_threadpool(self.store.create_ref, repo, kind, ref, target)
            return JSONResponse({"name": ref})
        if request.method == "DELETE":
            await run_in_threadpool(self.store.delete_ref, repo, kind, name)
            return Response(status_code=200)
        raise HttpError(405, f"{request.method} not allowed on {kind}s")


def _has_body(request: Request) -> bool:
    length = request.headers.get("content-length", "0").strip()
    return "transfer-encoding" in request.headers or not length.isdigit() or int(length) > 0


def make_app(store: HubStore, config: ServerConfig | None = None) -> Callable[..., Awaitable[None]]:
    """The ASGI application serving ``store``: every HTTP request goes to ``HubApp.handle``.

    No router in between: Starlette's path routes do not match a path holding a (percent-encoded) newline,
    and such a request must get the same 400 with a message as any other malformed one.
    """
    hub = HubApp(store, config or ServerConfig())

    async def app(scope: dict[str, Any], receive: Callable[..., Awaitable[Any]], send: Callable[..., Awaitable[None]]) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        response = await hub.handle(request)
        if response.status_code >= 400 and _has_body(request):
            response.headers["Connection"] = "close"  # an unread body is dropped with the connection, not read
        await response(scope, receive, send)

    return app
