"""HTTP routes of the local Hub for Git LFS uploads (basic transfer only; Xet is never offered).

The batch answer signs each upload URL (HMAC of oid and size), so the PUT that follows needs no token;
the PUT is streamed to disk and refused as soon as it passes its declared size. A mixin of
``app.HubApp`` (its ``store``, ``config``, ``_repo``, ``_require_write``, ``_base``). Imports ``limits``.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from hubtune.hub_server.limits import HttpError, as_dict, as_int, as_list, as_str, declared_length, json_object
from hubtune.hub_server.validation import BadRequest, TooLarge


class LfsRoutes:
    store: Any
    config: Any
    _repo: Any
    _require_write: Any
    _base: Any

    def _sign(self, oid: str, size: int) -> str:
        return hmac.new(self.config.secret, f"{oid}:{size}".encode(), hashlib.sha256).hexdigest()

    async def _lfs_batch(self, request: Request, repo_type: str, repo_id: str) -> Response:
        self._repo(request, repo_type, repo_id, write=True)
        body = await json_object(request, "LFS batch body")
        if body.get("operation") != "upload":
            raise BadRequest("only the 'upload' LFS operation is supported: download through /resolve/")
        base = self._base(request)
        objects = []
        for obj in as_list(body.get("objects"), "'objects'"):
            obj = as_dict(obj, "each of 'objects'")
            oid, size = as_str(obj.get("oid"), "an object's 'oid'"), as_int(obj.get("size"), "an object's 'size'")
            self.store.blob_path(oid)  # validates the oid
            item: dict[str, Any] = {"oid": oid, "size": size, "authenticated": True}
            if self.store.has_blob(oid, size):
                self.store.keep_blob(oid)  # the commit that follows will reference it: spare it from the collector
            else:
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
        declared = declared_length(request)
        if declared is not None and declared > size:
            raise TooLarge(f"upload of {declared} bytes for an LFS object of {size} bytes")
        with self.store.blob_writer(oid, size) as out:  # completes only when every byte matched
            async for chunk in request.stream():
                out.write(chunk)
        return Response(status_code=200)

    async def _lfs_verify(self, request: Request, oid: str, size_s: str) -> Response:
        self._require_write(request)
        if not size_s.isdigit() or not self.store.has_blob(oid, int(size_s)):
            raise HttpError(404, f"LFS object {oid} was not uploaded", "EntryNotFound")
        return JSONResponse({"oid": oid, "size": int(size_s)})

