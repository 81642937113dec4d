"""Request bodies of the local Hub, read defensively: capped, parsed without tracebacks, checked for shape.

Every handler authenticates *before* it reads a body (see app.py); bodies then go through here:
``read_body`` refuses a declared ``Content-Length`` over the cap at once and stops reading as soon as
a streamed body passes it, so a hostile client costs the server at most the cap. The bodies that may
legitimately be large (commit payloads, LFS uploads) are streamed to disk elsewhere, one line or one
chunk at a time. Imports the store's error classes only.
"""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from hubtune.hub_server.validation import BadRequest, StoreError, TooLarge

MAX_JSON_BODY = 8 * 1024 * 1024  # preupload, LFS batch, repo create/move, refs, discussions
MAX_FORM_BODY = 8 * 1024 * 1024  # paths-info
MAX_COMMIT_BODY = 64 * 1024 ** 3  # a whole commit payload (its files go to disk as they arrive)
MAX_COMMIT_LINES = 100_000  # operations in one commit
_UNSAFE_HEADER_CHARS = re.compile(r"[\x00-\x1f\x7f]")


class HttpError(StoreError):
    def __init__(
        self, status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.headers = headers or {}


def header_safe(text: str) -> str:
    """A value that can go in a response header: ASCII, no CR/LF or other control characters."""
    return _UNSAFE_HEADER_CHARS.sub(" ", text.encode("ascii", "replace").decode())[:500]


def error_response(status: int, message: str, code: str | None = None,
                   headers: dict[str, str] | None = None, body: dict[str, Any] | None = None) -> Response:
    hdrs = {"X-Error-Message": header_safe(message)}
    if code:
        hdrs["X-Error-Code"] = code
    hdrs.update({k: header_safe(v) for k, v in (headers or {}).items()})
    return JSONResponse({"error": message, **(body or {})}, status_code=status, headers=hdrs)


def declared_length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    if value is None:
        return None
    if not value.strip().isdigit():
        raise BadRequest(f"invalid Content-Length {value[:40]!r}: expected a number of bytes")
    return int(value)


async def read_body(request: Request, cap: int = MAX_JSON_BODY) -> bytes:
    """The whole body, at most ``cap`` bytes (413 past it, without reading the rest)."""
    declared = declared_length(request)
    if declared is not None and declared > cap:
        raise TooLarge(f"request body of {declared} bytes is over this endpoint's limit of {cap} bytes")
    buf = bytearray()
    async for chunk in request.stream():
        buf.extend(chunk)
        if len(buf) > cap:
            raise TooLarge(f"request body is over this endpoint's limit of {cap} bytes")
    return bytes(buf)


def parse_json(raw: bytes | str, what: str = "request body") -> Any:
    """JSON, or a 400 naming ``what`` (never a traceback: deep nesting is a RecursionError in the parser)."""
    try:
        return json.loads(raw)
    except RecursionError:
        raise BadRequest(f"{what} is nested too deeply: expected plain JSON") from None
    except ValueError:
        raise BadRequest(f"{what} is not valid JSON") from None


async def json_object(request: Request, what: str = "request body", *, empty_ok: bool = True) -> dict[str, Any]:
    raw = await read_body(request)
    if not raw.strip() and empty_ok:
        return {}
    return as_dict(parse_json(raw, what), what)


def as_dict(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadRequest(f"{what} must be a JSON object, got {type(value).__name__}")
    return value


def as_list(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadRequest(f"{what} must be a JSON list, got {type(value).__name__}")
    return value


def as_str(value: Any, what: str, default: str | None = None) -> str:
    if value is None and default is not None:
        return default
    if not isinstance(value, str):
        raise BadRequest(f"{what} must be a string, got {type(value).__name__}")
    return value


def as_int(value: Any, what: str, default: int | None = None) -> int:
    if value is None and default is not None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise BadRequest(f"{what} must be a non-negative integer, got {str(value)[:40]!r}")
    return value
