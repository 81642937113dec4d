"""Running an ONNX graph with onnxruntime (not a step): a session with hubtune's settings, the feeds a graph
takes from a tokenizer's output, and :class:`OrtClassifier` (a graph behind a transformers classifier's call
shape). A graph whose input sizes do not fit (a fixed size in the graph) is an :class:`ExportUnsupportedError`
naming ``--backend torch``, never an internal error. onnxruntime is imported when a session is made."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Sequence

from hubtune.core.errors import ExportUnsupportedError, MissingDependencyError, ModelLoadError

OUTPUT_NAME = "logits"


def session(path: Path, *, threads: int | None = None, providers: Sequence[str] | None = None, arena: bool = True) -> Any:
    try:
        import onnxruntime as ort
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise MissingDependencyError("ONNX needs onnxruntime; pip install onnxruntime") from exc
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = threads or (os.cpu_count() or 1)
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    # no memory arena: each run's buffers go back when it ends (a session that runs a few batches, such as the
    # fp32 reference of a reduced-precision check, then holds none of its peak beside the session that stays)
    so.enable_cpu_mem_arena = arena
    try:
        return ort.InferenceSession(str(path), sess_options=so, providers=list(providers or ["CPUExecutionProvider"]))
    except Exception as exc:  # noqa: BLE001
        raise ModelLoadError(f"could not load ONNX file {path} ({type(exc).__name__}: {exc}); re-export it with hubtune export") from exc


def open_session(source: Any, threads: int | None = None) -> tuple[Any, Path | None]:
    """(a session, its file): ``source`` a graph's path (an onnxruntime session of it), or a session already
    made (an onnxruntime or OpenVINO one: any object with ``run`` and ``get_inputs``), used as it is."""
    if isinstance(source, (str, os.PathLike)):
        return session(Path(source), threads=threads), Path(source)
    return source, getattr(source, "path", None)


def feeds_for(sess: Any, encoded: dict[str, Any]) -> dict[str, Any]:
    """The graph's inputs from a tokenizer's numpy output (zeros for a ``token_type_ids`` it did not make)."""
    import numpy as np

    names = [i.name for i in sess.get_inputs()]
    feeds = {k: np.asarray(encoded[k], dtype=np.int64) for k in names if k in encoded}
    if "token_type_ids" in names and "token_type_ids" not in feeds:
        feeds["token_type_ids"] = np.zeros_like(feeds["input_ids"])
    return feeds


def run_graph(sess: Any, outputs: list[str] | None, feeds: dict[str, Any]) -> list[Any]:
    """``sess.run``; a graph that refuses the feeds' sizes (a fixed batch or sequence size: "invalid dimensions
    for input") is an :class:`ExportUnsupportedError` naming the input and ``--backend torch``."""
    try:
        return sess.run(outputs, feeds)
    except Exception as exc:  # noqa: BLE001 - onnxruntime's own error types
        text = " ".join(str(exc).split())
        if "dimension" not in text.lower():
            raise
        shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in feeds.items())
        fixed = ", ".join(f"{i.name} {tuple(i.shape)}" for i in sess.get_inputs())
        raise ExportUnsupportedError(
            f"the ONNX graph takes inputs of a fixed size ({fixed}) and batch prediction feeds {shapes} "
            f"(onnxruntime: {text[:160]}); expected dynamic batch and sequence sizes: predict with PyTorch instead "
            "(batch-predict --backend torch)"
        ) from exc


class OrtClassifier:
    """An ONNX graph behind the call shape of a transformers classifier: ``model(**enc).logits``. ``path``: the
    graph's file (an onnxruntime session is made), or a session already made (an ``OvSession``)."""

    def __init__(self, path: Any, config: Any, *, threads: int | None = None) -> None:
        self.session, self.path = open_session(path, threads)
        self.config = config

    def __call__(self, **enc: Any) -> Any:
        import numpy as np
        import torch

        arrays = {k: (v.cpu().numpy() if hasattr(v, "cpu") else np.asarray(v)) for k, v in enc.items()}
        out = run_graph(self.session, [OUTPUT_NAME], feeds_for(self.session, arrays))[0]
        return SimpleNamespace(logits=torch.from_numpy(np.asarray(out, dtype=np.float32)))
