"""Pytest plugin: ``local_hub``, a local Hub server on a free loopback port for one test.

Enable with ``pytest_plugins = ["tests.hub_fixtures"]`` in tests/conftest.py (or ``-p tests.hub_fixtures``).
The fixture points every Hugging Face client of this process at the server (env vars *and* the
constants huggingface_hub read at import time) and gives ``.env`` for subprocesses.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

from hubtune.hub_server import RunningServer, start_server
from hubtune.hub_server.embedded import client_patches, load_client_modules

HUB_TOKEN = "hf_local_test_token"
_CLEARED = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "HUGGINGFACE_HUB_CACHE",
            "HF_HUB_CACHE", "HF_DATASETS_CACHE", "TRANSFORMERS_CACHE", "HF_TOKEN_PATH")


@dataclass
class LocalHub:
    url: str
    token: str
    root: Path
    home: Path  # the temporary HF_HOME
    env: dict[str, str]  # full environment for subprocesses
    server: RunningServer

    def api(self, token: str | bool | None = None) -> Any:
        """An ``HfApi`` on this hub with the fixture's token (``token=False``: anonymous)."""
        from huggingface_hub import HfApi

        return HfApi(endpoint=self.url, token=self.token if token is None else token)

    def client_env(self, *, token: bool = False) -> dict[str, str]:
        """A minimal environment: HF_ENDPOINT and an empty HF_HOME (plus the token if asked)."""
        keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR",
                                                               "VIRTUAL_ENV", "PYTHONPATH", "SYSTEMROOT")}
        fresh = self.home.parent / f"hf_home_client_{len(list(self.home.parent.glob('hf_home_client_*')))}"
        fresh.mkdir()
        env = {**keep, "HF_ENDPOINT": self.url, "HF_HOME": str(fresh), "HF_HUB_DISABLE_TELEMETRY": "1",
               "HF_HUB_DISABLE_XET": "1", "TOKENIZERS_PARALLELISM": "false"}
        if token:
            env["HF_TOKEN"] = self.token
        return env


def _point_clients_at(monkeypatch: pytest.MonkeyPatch, url: str, home: Path, *, disable_xet: bool = True) -> None:
    """huggingface_hub (and datasets) copy env vars into constants at import: patch those copies too.

    Which copies exist depends on the installed versions (0.36, 1.x, 2.x): ``client_patches`` lists
    only the attributes that are there, so nothing here names a library internal that may have moved.
    """
    for obj, name, value in client_patches(url, home=home, disable_xet=disable_xet):
        monkeypatch.setattr(obj, name, value)
    from huggingface_hub import constants

    if hasattr(constants, "HF_HUB_DISABLE_TELEMETRY"):
        monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)


@pytest.fixture
def local_hub(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalHub]:
    base = tmp_path_factory.mktemp("local_hub")
    root, home = base / "root", base / "hf_home"
    home.mkdir()
    load_client_modules()  # before the environment changes: see its docstring
    server = start_server(root, token=HUB_TOKEN)
    try:
        for name in _CLEARED:
            monkeypatch.delenv(name, raising=False)
        env_vars = {"HF_ENDPOINT": server.url, "HF_TOKEN": HUB_TOKEN, "HF_HOME": str(home),
                    "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_XET": "1",
                    "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
        for key, value in env_vars.items():
            monkeypatch.setenv(key, value)
        _point_clients_at(monkeypatch, server.url, home)
        yield LocalHub(server.url, HUB_TOKEN, server.root, home, dict(os.environ), server)
    finally:
        server.stop()
