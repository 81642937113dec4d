"""The embedded local Hub: start it in-process and point this process' Hugging Face clients at it.

Used by ``hubtune train-and-push --local-hub`` so the whole flow runs offline or air-gapped.

Pointing clients at a Hub is done the documented way first: ``HF_ENDPOINT`` (and friends) in the
environment, which every huggingface_hub version (0.36, 1.x, 2.x), transformers and datasets read
at import. Modules imported *before* that copied the values into module constants; ``client_patches``
lists those copies, by name and only where the installed version has them (getattr/hasattr: the set
moved between 0.36, 1.x and 2.x), so callers can set and restore them.
"""

from __future__ import annotations

import importlib
import os
import re
import secrets
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from hubtune.hub_server.runner import start_server

_ENV_KEYS = ("HF_ENDPOINT", "HF_TOKEN", "HF_HUB_DISABLE_XET", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
OFFLINE_ENV_KEYS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")


@dataclass
class EmbeddedHub:
    url: str
    root: Path
    token: str

    def subprocess_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({"HF_ENDPOINT": self.url, "HF_TOKEN": self.token, "HF_HUB_DISABLE_XET": "1"})
        for k in OFFLINE_ENV_KEYS:
            env.pop(k, None)
        return env


def _optional_module(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def load_client_modules() -> None:
    """Import the modules that copy Hub settings at import time, *before* the environment changes.

    huggingface_hub loads its submodules lazily: a ``constants`` first imported while HF_ENDPOINT
    points at a temporary Hub would keep that endpoint after the environment is restored.
    """
    if "huggingface_hub" in sys.modules:
        for name in ("huggingface_hub.constants", "huggingface_hub.file_download", "huggingface_hub.hf_api"):
            _optional_module(name)


def client_patches(
    url: str, *, home: str | os.PathLike[str] | None = None, disable_xet: bool = True
) -> list[tuple[Any, str, Any]]:
    """(object, attribute, new value) for every copy of the Hub settings the *loaded* clients hold.

    Only modules already imported are touched (importing datasets costs seconds) and only attributes
    the installed version defines: huggingface_hub 0.36 also copies the URL template into
    ``file_download``, 1.x/2.x read it from ``constants`` only.
    """
    out: list[tuple[Any, str, Any]] = []

    def add(obj: Any, name: str, value: Any) -> None:
        if obj is not None and hasattr(obj, name):
            out.append((obj, name, value))

    url = url.rstrip("/")
    if "huggingface_hub" in sys.modules:
        from huggingface_hub import constants

        # Import the two modules that copy settings at import, so that restoring covers them too.
        file_download = _optional_module("huggingface_hub.file_download")
        hf_api = _optional_module("huggingface_hub.hf_api")
        template = url + "/{repo_id}/resolve/{revision}/{filename}"
        add(constants, "ENDPOINT", url)
        add(constants, "HUGGINGFACE_CO_URL_TEMPLATE", template)
        add(file_download, "HUGGINGFACE_CO_URL_TEMPLATE", template)  # 0.36 only
        add(getattr(hf_api, "api", None), "endpoint", url)  # the module-level HfApi behind the functions
        add(constants, "HF_HUB_OFFLINE", False)
        add(constants, "HF_HUB_DISABLE_XET", disable_xet)
        if home is not None:
            home_s = str(home)
            add(constants, "HF_HOME", home_s)
            for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
                add(constants, name, os.path.join(home_s, "hub"))
            add(constants, "HF_TOKEN_PATH", os.path.join(home_s, "token"))
            add(constants, "HF_STORED_TOKENS_PATH", os.path.join(home_s, "stored_tokens"))
    if "datasets.config" in sys.modules:
        dconfig = sys.modules["datasets.config"]
        add(dconfig, "HF_ENDPOINT", url)
        add(dconfig, "HUB_DATASETS_URL", url + "/datasets/{repo_id}/resolve/{revision}/{path}")
        add(dconfig, "HF_HUB_OFFLINE", False)
    return out


CACHE_ENV_KEYS = ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_DATASETS_CACHE")


def cache_patches(cache: str | os.PathLike[str]) -> list[tuple[Any, str, Any]]:
    """(object, attribute, new value) that make the loaded clients cache under ``cache`` (``hub/``, ``datasets/``):
    huggingface_hub's (and transformers', datasets' Hub downloads through it) and datasets' own copies."""
    out: list[tuple[Any, str, Any]] = []
    hub, data = os.path.join(cache, "hub"), Path(cache) / "datasets"
    wanted: list[tuple[str, str, Any]] = [
        ("huggingface_hub.constants", "HF_HUB_CACHE", hub), ("huggingface_hub.constants", "HUGGINGFACE_HUB_CACHE", hub),
        ("transformers.utils.hub", "TRANSFORMERS_CACHE", hub), ("transformers.utils.hub", "HUGGINGFACE_HUB_CACHE", hub),
        ("datasets.config", "HF_DATASETS_CACHE", data),
        ("datasets.config", "DOWNLOADED_DATASETS_PATH", data / "downloads"),
        ("datasets.config", "EXTRACTED_DATASETS_PATH", data / "downloads" / "extracted"),
    ]
    for module, name, value in wanted:
        obj = sys.modules.get(module)
        if obj is not None and hasattr(obj, name):
            out.append((obj, name, value if not isinstance(getattr(obj, name), str) else str(value)))
    return out


def endpoint_cache_dir(endpoint: str, home: str | os.PathLike[str] | None = None) -> Path:
    """Where what comes from a Hub other than huggingface.co is cached: ``$HF_HOME/hubtune/hubs/HOST_PORT``, apart
    from the real Hub's cache, so a copy from it is never taken for the real Hub's under the same id."""
    from urllib.parse import urlsplit

    from huggingface_hub import constants

    parts = urlsplit(endpoint.rstrip("/"))
    slug = re.sub(r"[^A-Za-z0-9.-]+", "_", f"{parts.hostname or 'hub'}_{parts.port or ''}{parts.path}").strip("_")
    return Path(home or constants.HF_HOME) / "hubtune" / "hubs" / slug


@contextmanager
def separate_cache(cache: str | os.PathLike[str]) -> Iterator[Path]:
    """Meanwhile this process' clients (and the processes it starts) cache under ``cache`` instead of the user's
    Hugging Face cache: HF_HUB_CACHE / HF_DATASETS_CACHE and the copies loaded modules made of them."""
    _optional_module("datasets.config")  # copies the cache paths at import: load it before they change
    old_env = {k: os.environ.get(k) for k in CACHE_ENV_KEYS}
    saved = []
    try:
        os.environ.update({"HF_HUB_CACHE": os.path.join(cache, "hub"), "HUGGINGFACE_HUB_CACHE": os.path.join(cache, "hub"),
                           "HF_DATASETS_CACHE": os.path.join(cache, "datasets")})
        for obj, name, value in cache_patches(cache):
            saved.append((obj, name, getattr(obj, name)))
            setattr(obj, name, value)
        yield Path(cache)
    finally:
        for obj, name, value in reversed(saved):
            setattr(obj, name, value)
        _restore_env(old_env)


def _restore_env(old_env: dict[str, str | None]) -> None:
    for k, v in old_env.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _patch_constants(url: str) -> list[tuple[Any, str, Any]]:
    """Apply ``client_patches(url)``; returns what to restore (object, attribute, old value)."""
    saved: list[tuple[Any, str, Any]] = []
    for obj, name, value in client_patches(url):
        saved.append((obj, name, getattr(obj, name)))
        setattr(obj, name, value)
    return saved


CLIENT_CACHE = "client-cache"  # in the local Hub's root: what the clients downloaded from it (not a repo, not gc-ed)


@contextmanager
def embedded_hub(root: str | os.PathLike[str], *, port: int = 0) -> Iterator[EmbeddedHub]:
    """Serve ``root`` on loopback with a fresh random token; HF clients of this process use it meanwhile, caching
    what they download under ``ROOT/client-cache`` (never in the user's cache under the real Hub's ids)."""
    token = "hf_local_" + secrets.token_hex(16)
    server = start_server(Path(root), port=port, token=token)
    old_env = {k: os.environ.get(k) for k in _ENV_KEYS}
    saved: list[tuple[Any, str, Any]] = []
    try:
        load_client_modules()
        os.environ.update({"HF_ENDPOINT": server.url, "HF_TOKEN": token, "HF_HUB_DISABLE_XET": "1"})
        for k in OFFLINE_ENV_KEYS:
            os.environ.pop(k, None)
        saved = _patch_constants(server.url)
        with separate_cache(server.root / CLIENT_CACHE):
            yield EmbeddedHub(url=server.url, root=Path(root), token=token)
    finally:
        for obj, name, value in reversed(saved):
            setattr(obj, name, value)
        _restore_env(old_env)
        server.stop()
