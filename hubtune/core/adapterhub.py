"""Bottleneck adapters (Houlsby / Pfeiffer) with the ``adapters`` library (AdapterHub): ``mode: adapter``.

peft has no bottleneck adapters; AdapterHub's ``adapters`` does. Its releases pin one transformers line each
(adapters 1.3.0 requires ``transformers ~=4.57.6``; no release supports transformers 5), so ``mode: adapter``
runs where that holds: the Optimum lane, with ``pip install 'hubtune[adapters]'``. Elsewhere it is refused
(:class:`~hubtune.core.errors.AdaptersUnavailableError`, exit 57) with the constraint named.

The adapter is added to an ``AutoModelForSequenceClassification`` (``adapters.init``), so the classifier keeps
its static head and trains on the plain Trainer: ``train_adapter`` freezes the base and leaves the adapter and
the head trainable; weights the base checkpoint lacks (e.g. a pooler) are made trainable too and saved.

The saved folder (``model/``) holds ``config.json`` (labels), the tokenizer, :data:`MARKER` and ``bottleneck/``:
``adapter_config.json`` + ``adapter.safetensors`` + the head (``save_adapter``'s own files) and
``extra.safetensors`` (the weights the base lacked). It holds no ``model.safetensors``: ``pipeline()`` cannot
load a bottleneck adapter from a repo alone (it does not merge into the weights), and a folder it could load
without the adapter would predict differently without a word. :func:`load_bottleneck` loads it back.

Imports ``compat``, ``errors``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hubtune.core.compat import installed_version
from hubtune.core.errors import AdaptersUnavailableError, ModelLoadError

MARKER = "hubtune_adapter.json"
SUBDIR = "bottleneck"
EXTRA_FILE = "extra.safetensors"
LOCAL_BASE_FILE = "bottleneck_base.json"  # in the run directory, beside model/: the base as the run named it
ADAPTER_NAME = "hubtune"
CONFIGS = {"pfeiffer": "SeqBnConfig", "houlsby": "DoubleSeqBnConfig"}
SUPPORTED = "adapters 1.3.x (it requires transformers ~=4.57.6: the Optimum lane); no adapters release supports transformers 5"


def require_adapters() -> Any:
    """The ``adapters`` module, or AdaptersUnavailableError naming the version constraint."""
    tf = installed_version("transformers") or "none"
    ad = installed_version("adapters")
    if ad is None:
        raise AdaptersUnavailableError(
            f"--mode adapter needs the adapters library (AdapterHub), not installed here (transformers {tf}); "
            f"expected {SUPPORTED}: pip install 'hubtune[adapters]' in that environment, or use --mode lora"
        )
    try:
        import adapters
    except Exception as exc:  # noqa: BLE001 - an adapters release built for another transformers fails at import
        raise AdaptersUnavailableError(
            f"adapters {ad} does not import with transformers {tf} ({type(exc).__name__}: "
            f"{' '.join(str(exc).split())[:160]}); expected {SUPPORTED}; or use --mode lora"
        ) from None
    return adapters


def is_bottleneck_dir(path: str | Path) -> bool:
    return (Path(path) / MARKER).is_file()


def apply_bottleneck(model: Any, *, config: str, reduction_factor: int, extra_modules: list[str]) -> Any:
    """Add a bottleneck adapter to a sequence classifier in place; base frozen, adapter + head (+ extra) trainable."""
    adapters = require_adapters()
    adapters.init(model)
    cfg_cls = getattr(adapters, CONFIGS[config])
    model.add_adapter(ADAPTER_NAME, config=cfg_cls(reduction_factor=reduction_factor))
    model.train_adapter(ADAPTER_NAME)  # freezes the base, activates the adapter; the static head stays trainable
    for name, param in model.named_parameters():
        if any(name == m or name.startswith(m + ".") for m in extra_modules):
            param.requires_grad = True
    model.hubtune_bottleneck = {"config": config, "reduction_factor": reduction_factor, "extra_modules": list(extra_modules)}
    return model


def save_bottleneck(model: Any, folder: Path, *, base_model: str, local_base: str | None = None) -> None:
    """Write the adapter, the head, the extra weights, config.json and the marker into ``folder``; ``base_model``
    is the public reference (Hub id or folder name). ``local_base`` (the run's own reference, maybe a local path)
    goes to :data:`LOCAL_BASE_FILE` beside ``folder`` in the run directory, never into the published folder."""
    from safetensors.torch import save_file

    info = dict(getattr(model, "hubtune_bottleneck", {}))
    sub = folder / SUBDIR
    sub.mkdir(parents=True, exist_ok=True)
    model.save_adapter(str(sub), ADAPTER_NAME, with_head=True, use_safetensors=True)
    extra = {n: p.detach().cpu().contiguous() for n, p in model.state_dict().items()
             if any(n == m or n.startswith(m + ".") for m in info.get("extra_modules", []))}
    if extra:
        save_file(extra, str(sub / EXTRA_FILE))
    model.config.save_pretrained(str(folder))  # label names; the base model's own config otherwise
    meta = {"library": "adapters", "adapters_version": installed_version("adapters"), "adapter_name": ADAPTER_NAME,
            "config": info.get("config"), "reduction_factor": info.get("reduction_factor"), "base_model": base_model,
            "subfolder": SUBDIR, "extra_weights": EXTRA_FILE if extra else None}
    (folder / MARKER).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if local_base:
        (folder.parent / LOCAL_BASE_FILE).write_text(json.dumps({"base_model": local_base}) + "\n", encoding="utf-8")


def bottleneck_base(folder: Path) -> str:
    """The base model of a saved adapter: the marker's (a Hub id or folder name), or, inside a run directory,
    the base the run was trained on (:data:`LOCAL_BASE_FILE`, which may name a local folder)."""
    local = folder.parent / LOCAL_BASE_FILE
    if local.is_file():  # inside the run directory that trained it: exactly the base it was trained on
        return str(json.loads(local.read_text(encoding="utf-8"))["base_model"])
    return str(json.loads((folder / MARKER).read_text(encoding="utf-8")).get("base_model") or "")


def attach_bottleneck(model: Any, folder: Path) -> Any:
    """Load the adapter, head and extra weights of ``folder`` into ``model`` (the base classifier), activated."""
    from safetensors.torch import load_file

    adapters = require_adapters()
    meta = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    sub = folder / str(meta.get("subfolder") or SUBDIR)
    adapters.init(model)
    try:
        name = model.load_adapter(str(sub), load_as=ADAPTER_NAME, with_head=True, use_safetensors=True, set_active=True)
    except Exception as exc:  # noqa: BLE001 - adapters raises plain errors for bad folders
        raise ModelLoadError(
            f"could not load the bottleneck adapter in {sub.name}/ ({type(exc).__name__}: {' '.join(str(exc).split())[:200]}); "
            "expected the folder hubtune train --mode adapter wrote"
        ) from exc
    model.set_active_adapters(name)
    if meta.get("extra_weights"):
        missing, unexpected = model.load_state_dict(load_file(str(sub / meta["extra_weights"])), strict=False)
        if unexpected:
            raise ModelLoadError(f"{meta['extra_weights']} holds weights the model lacks ({unexpected[:3]}); expected "
                                 "the base model the adapter was trained on")
    return model
