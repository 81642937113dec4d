"""The embedded local Hub: start it in-process and point this process' Hugging Face clients at it.

Used by ``hubtune train-and-push --local-hub`` so the whole flow runs offline or air-gapped.
"""

from __future__ import annotations

import os
import secrets
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from hubtune.hub_server.runner import start_server

_ENV_KEYS = ("HF_ENDPOINT", "HF_TOKEN", "HF_HUB_DISABLE_XET", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")


@dataclass
class EmbeddedHub:
    url: str
    root: Path
    token: str

    def subprocess_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({"HF_ENDPOINT": self.url, "HF_TOKEN": self.token, "HF_HUB_DISABLE_XET": "1"})
        for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
            env.pop(k, None)
        return env


def _patch_constants(url: str) -> list[tuple[Any, str, Any]]:
    """huggingface_hub and datasets copy HF_ENDPOINT into constants at import; patch loaded copies."""
    saved: list[tuple[Any, str, Any]] = []

    def setattr_saved(obj: Any, name: str, value: Any) -> None:
        saved.append((obj, name, getattr(obj, name)))
        setattr(obj, name, value)

    if "huggingface_hub" in sys.modules:
        from huggingface_hub import constants, file_download, hf_api

        template = url + "/{repo_id}/resolve/{revision}/{filename}"
        setattr_saved(constants, "ENDPOINT", url)
        setattr_saved(constants, "HUGGINGFACE_CO_URL_TEMPLATE", template)
        setattr_saved(file_download, "HUGGINGFACE_CO_URL_TEMPLATE", template)
        setattr_saved(hf_api.api, "endpoint", url)
        setattr_saved(constants, "HF_HUB_OFFLINE", False)
        setattr_saved(constants, "HF_HUB_DISABLE_XET", True)
    if "datasets" in sys.modules:
        import datasets.config

        setattr_saved(datasets.config, "HF_ENDPOINT", url)
        setattr_saved(datasets.config, "HF_HUB_OFFLINE", False)
    return saved


@contextmanager
def embedded_hub(root: str | os.PathLike[str], *, port: int = 0) -> Iterator[EmbeddedHub]:
    """Serve ``root`` on loopback with a fresh random token; HF clients of this process use it meanwhile."""
    token = "hf_local_" + secrets.token_hex(16)
    server = start_server(Path(root), port=port, token=token)
    old_env = {k: os.environ.get(k) for k in _ENV_KEYS}
    saved: list[tuple[Any, str, Any]] = []
    try:
        os.environ.update({"HF_ENDPOINT": server.url, "HF_TOKEN": token, "HF_HUB_DISABLE_XET": "1"})
        for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
            os.environ.pop(k, None)
        saved = _patch_constants(server.url)
        yield EmbeddedHub(url=server.url, root=Path(root), token=token)
    finally:
        for obj, name, value in reversed(saved):
            setattr(obj, name, value)
        for k, v in old_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.stop()
