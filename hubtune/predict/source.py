"""Where the model comes from and what it is: a local folder, a ``hubtune train`` run directory or a Hub id
resolved to a local folder (downloaded when needed), and its identity (weights sha256, Hub revision), which a
resume and ``merge-predictions`` compare."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Sequence

from hubtune.core.errors import ModelLoadError

WEIGHT_GLOBS = ("*.safetensors", "*.bin", "adapter_model.*", "bottleneck/*.safetensors")  # bottleneck/: mode adapter


def resolve_model_dir(source: str, *, revision: str | None, backend: str) -> tuple[Path, str | None]:
    """A local directory for ``source`` (a model folder, a run directory, a Hub id or ``packaged:minilm``: the
    references every command reads, :func:`hubtune.core.modeling.resolve_model_ref`) and its Hub commit."""
    from hubtune.core.modeling import download_model, resolve_model_ref

    ref = resolve_model_ref(source)
    if ref.is_local:
        local = Path(os.path.expanduser(ref.path))
        if not (local / "config.json").is_file():
            raise ModelLoadError(
                f"model directory {local} has no config.json; expected a saved text-classification model "
                "(a `hubtune train` run directory, its model/ folder, or a Hub id)"
            )
        return local, None
    patterns = ["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja", "tokenizer*"]
    if backend == "onnx":
        patterns.append("onnx/*")
    if backend in ("openvino", "auto"):  # OpenVINO's IR where the repo publishes one (auto measures it on a CPU)
        patterns.append("openvino/*")
    if backend == "openvino":  # else the ONNX graph it compiles
        patterns += ["onnx/model.onnx", "onnx/model.onnx_data", "onnx/export_info.json"]
    path = download_model(source, revision=revision, patterns=patterns)
    return path, path.name


def _sha256_files(paths: Sequence[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.name.encode())
        with open(p, "rb") as fh:
            while block := fh.read(1 << 22):
                h.update(block)
    return h.hexdigest()


def model_identity(source: str, model_dir: Path, commit: str | None) -> dict[str, Any]:
    """What a resume must match: the weights' hash (and the Hub commit when there is one)."""
    files = sorted({p for g in WEIGHT_GLOBS for p in model_dir.glob(g) if p.is_file()})
    if not files:
        files = sorted(p for p in (model_dir / "onnx").glob("*.onnx") if p.is_file()) or sorted(model_dir.glob("*.onnx"))
    cfg = model_dir / "config.json"
    digest = _sha256_files(files + ([cfg] if cfg.is_file() else [])) if files or cfg.is_file() else "none"
    return {"source": source, "revision": commit, "weights_sha256": digest}
