"""The Hub endpoint the clients talk to (not a step): its name in messages, a fast check that it answers,
and library error text reduced to whole sentences about that endpoint.

huggingface_hub, transformers and datasets retry an unreachable endpoint for a minute or more (a retry line
each time) before failing: :func:`check_reachable` opens one TCP connection first and fails at once, pointing
at ``HF_HUB_OFFLINE``. Imports nothing from hubtune but ``errors``.
"""

from __future__ import annotations

import os
import re
import socket
import urllib.request
from urllib.parse import urlsplit

from hubtune.core.errors import HubUnreachableError

DEFAULT_ENDPOINT = "https://huggingface.co"
CONNECT_TIMEOUT_S = 5.0
_TRUE = ("1", "on", "yes", "true")
_reachable: set[str] = set()


def hub_endpoint() -> str:
    """The endpoint the Hugging Face clients use in this process: ``HF_ENDPOINT``, else huggingface.co."""
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def is_public_hub(endpoint: str | None = None) -> bool:
    host = urlsplit(endpoint or hub_endpoint()).hostname or ""
    return host == "huggingface.co" or host.endswith(".huggingface.co")


def describe_endpoint(endpoint: str | None = None) -> str:
    """``the Hugging Face Hub (https://huggingface.co)`` or ``the Hub at http://127.0.0.1:8765``."""
    ep = (endpoint or hub_endpoint()).rstrip("/")
    return f"the Hugging Face Hub ({ep})" if is_public_hub(ep) else f"the Hub at {ep}"


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def _behind_proxy(url: str, host: str) -> bool:
    """A proxy would carry the request (HTTPS_PROXY & co. without NO_PROXY for the host): not probed directly."""
    proxies = urllib.request.getproxies()
    scheme = urlsplit(url).scheme or "https"
    return bool(proxies.get(scheme) or proxies.get("all")) and not urllib.request.proxy_bypass(host)


def check_reachable(what: str, endpoint: str | None = None, timeout_s: float = CONNECT_TIMEOUT_S, *,
                    fix: str = "fix HF_ENDPOINT, or set HF_HUB_OFFLINE=1 to use only what is already in the cache") -> None:
    """Fail at once with :class:`HubUnreachableError` when nothing answers at the endpoint (no retries).

    Skipped with ``HF_HUB_OFFLINE=1`` (the clients read only their cache then) and behind a proxy.
    """
    ep = (endpoint or hub_endpoint()).rstrip("/")
    if offline() or ep in _reachable:
        return
    parts = urlsplit(ep)
    host = parts.hostname
    if not host or _behind_proxy(ep, host):
        return
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except socket.timeout:
        reason = f"no answer within {timeout_s:g} s"
    except socket.gaierror:
        reason = f"cannot resolve {host}"
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
    else:
        _reachable.add(ep)
        return
    raise HubUnreachableError(
        f"{what}: cannot reach {describe_endpoint(ep)} ({reason.lower()}); expected a reachable Hub: {fix}"
    )


def whole_sentences(text: str, limit: int = 240, endpoint: str | None = None) -> str:
    """Library error text as whole sentences (never cut mid-sentence), at most ``limit`` characters where a
    first sentence allows; sentences about huggingface.co are left out when the endpoint is another Hub."""
    flat = " ".join(str(text).split())
    sentences = [s for s in re.split(r"(?<=[.!?])\s+(?=[A-Z`'\"(])", flat) if s]
    if not is_public_hub(endpoint):
        kept = [s for s in sentences if "huggingface.co" not in s]
        sentences = kept or sentences
    out: list[str] = []
    for sentence in sentences:
        if out and len(" ".join(out + [sentence])) > limit:
            break
        out.append(sentence)
    return " ".join(out).rstrip(".")
