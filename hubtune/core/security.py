"""Guards for advised-vulnerable library versions (not a step): checked before anything is loaded.

* CVE-2026-4372 (transformers 4.56.0 to 5.2.x): a crafted ``config.json`` whose attention implementation
  names Hub code makes ``from_pretrained`` fetch and run that code even with ``trust_remote_code=False``.
  On such a transformers, :func:`check_model_config` reads the config file alone (a JSON file, nothing run)
  and refuses one that carries such a field.
* CVE-2026-1839 (transformers before 5.0.0rc3): ``Trainer._load_rng_state`` calls ``torch.load`` without
  ``weights_only``. :func:`check_checkpoint` loads every ``rng_state*.pth`` of a checkpoint with
  ``weights_only=True`` first and refuses to resume from one that needs more.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from hubtune.core.compat import transformers_version, version_tuple
from hubtune.core.errors import UnsafeCheckpointError, UnsafeModelError


@dataclass(frozen=True)
class Advisory:
    id: str
    first: str  # first affected version
    fixed: str  # first fixed version
    what: str


CONFIG_CODE_ADVISORY = Advisory(
    "CVE-2026-4372", "4.56.0", "5.3.0",
    "a config.json whose attention implementation points at Hub code is run despite trust_remote_code=False",
)
RNG_STATE_ADVISORY = Advisory(
    "CVE-2026-1839", "0", "5.0.0rc3", "Trainer._load_rng_state calls torch.load without weights_only",
)
ADVISORIES = (CONFIG_CODE_ADVISORY, RNG_STATE_ADVISORY)

# config keys through which transformers picks an attention (or experts) kernel
IMPLEMENTATION_KEYS = (
    "_attn_implementation_internal",
    "_attn_implementation",
    "attn_implementation",
    "_experts_implementation_internal",
    "experts_implementation",
)


def affected(advisory: Advisory, version: str | None = None) -> bool:
    v = version_tuple(version or transformers_version())
    return version_tuple(advisory.first) <= v < version_tuple(advisory.fixed)


def _walk(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for k, v in node.items():
            key = f"{path}.{k}" if path else str(k)
            yield key, v
            yield from _walk(v, key)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, f"{path}[{i}]")


def hub_code_fields(config: dict[str, Any]) -> list[tuple[str, str]]:
    """(key path, value) of every implementation field that names Hub code (``org/repo``, ``kernels-...``)."""
    found = []
    for key, value in _walk(config):
        leaf = key.rsplit(".", 1)[-1]
        if leaf in IMPLEMENTATION_KEYS and isinstance(value, str):
            v = value.strip()
            if "/" in v or ":" in v or v.startswith("kernels"):
                found.append((key, value))
    return found


def _read_config(source: str, revision: str | None, token: str | None) -> dict[str, Any] | None:
    local = Path(source)
    if local.is_dir():
        path = local / "config.json"
        if not path.is_file():
            return None
    else:
        try:
            from huggingface_hub import hf_hub_download

            path = Path(hf_hub_download(source, "config.json", revision=revision, token=token))
        except Exception:  # noqa: BLE001 - no such repo/file: the load itself reports it
            return None
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def check_model_config(source: str, *, revision: str | None = None, token: str | None = None, version: str | None = None) -> None:
    """On a transformers affected by CVE-2026-4372, refuse a model whose config names Hub code to run."""
    if not affected(CONFIG_CODE_ADVISORY, version):
        return
    config = _read_config(os.fspath(source), revision, token)
    if not config:
        return
    bad = hub_code_fields(config)
    if bad:
        key, value = bad[0]
        raise UnsafeModelError(
            f"model {source!r} has config field {key}={value!r}, which makes transformers "
            f"{version or transformers_version()} fetch and run Hub code ({CONFIG_CODE_ADVISORY.id}); expected a "
            f"built-in attention implementation: upgrade with pip install 'transformers>={CONFIG_CODE_ADVISORY.fixed}' "
            "or remove the field from config.json"
        )


def _numpy_allowlist() -> list[Any]:
    import numpy as np

    core = getattr(np, "_core", None) or np.core
    return [core.multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]


def check_checkpoint(checkpoint: str | os.PathLike[str]) -> None:
    """Refuse to resume from a checkpoint whose ``rng_state*.pth`` does not load with ``weights_only=True``."""
    import torch

    for path in sorted(Path(checkpoint).glob("rng_state*.pth")):
        try:
            with torch.serialization.safe_globals(_numpy_allowlist()):
                torch.load(path, weights_only=True, map_location="cpu")
        except Exception as exc:  # noqa: BLE001 - any refusal of the safe unpickler
            text = " ".join(str(exc).split())[:160]
            raise UnsafeCheckpointError(
                f"checkpoint file {path} does not load with torch.load(weights_only=True) ({text}); expected the "
                f"tensors and numpy RNG state a Trainer writes ({RNG_STATE_ADVISORY.id}): delete that checkpoint or "
                "start over with --overwrite"
            ) from None
