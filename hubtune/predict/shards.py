"""The files of one chunk: :func:`write_shard` writes NAME.parquet (the predictions), NAME.errors.jsonl (rows
that could not be processed) and NAME.eval.npz (labels and predictions, for the metrics), each atomically, the
parquet last; the engine then records the shard (local: the manifest; Ray: a commit marker)."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from hubtune.errors import LabelError
from hubtune.predict.batching import Chunk
from hubtune.predict.heads import Head, task_columns


def _shard_table(chunk: Chunk, logits: np.ndarray, keep: list[str], label_names: list[str], all_scores: bool,
                 head: Head | None = None) -> Any:
    import pyarrow as pa

    from hubtune.metrics import softmax

    if head is not None and not head.scores_metrics:  # multi-label, regression, token classification
        cols = {"row_id": pa.array(chunk.start + chunk.valid, type=pa.int64())}
        for c in keep:
            cols[c] = pa.array([chunk.columns[c][i] for i in chunk.valid])
        texts = [chunk.columns[head.text_column][i] for i in chunk.valid] if head.text_column else []
        cols.update(task_columns(head, logits, texts))
        return pa.table(cols), None, None
    probs = softmax(logits) if len(logits) else np.zeros((0, len(label_names)), dtype=np.float32)
    pred = probs.argmax(-1) if len(probs) else np.zeros(0, dtype=np.int64)
    valid = chunk.valid
    cols: dict[str, Any] = {"row_id": pa.array(chunk.start + valid, type=pa.int64())}
    for c in keep:
        values = chunk.columns[c]
        cols[c] = pa.array([values[i] for i in valid])
    names = label_names or [str(i) for i in range(probs.shape[-1])]
    cols["label"] = pa.array([names[i] for i in pred], type=pa.string())
    cols["score"] = pa.array(probs[np.arange(len(pred)), pred] if len(pred) else [], type=pa.float32())
    if all_scores:
        for j, name in enumerate(names):
            cols[f"score_{name}"] = pa.array(probs[:, j], type=pa.float32())
    return pa.table(cols), probs, pred


def write_shard(
    parts: Path,
    name: str,
    chunk: Chunk,
    logits: np.ndarray,
    *,
    keep: list[str],
    label_names: list[str],
    all_scores: bool,
    label_column: str | None,
    feature: Any,
    source: str,
    head: Head | None = None,
) -> tuple[dict[str, Any], str | None]:
    """Write one chunk's files under ``parts`` (NAME.parquet, NAME.errors.jsonl, NAME.eval.npz; each atomically,
    the parquet last) and return its manifest entry, plus a notice when its labels cannot be scored
    (``label_column=None``: no eval file). ``head``: the run's task (None: text-classification); only a
    single-label task writes the eval file. Shared by the local and the Ray engine."""
    table, probs, pred = _shard_table(chunk, logits, keep, label_names, all_scores, head)
    entry: dict[str, Any] = {
        "file": f"{name}.parquet",
        "start": chunk.start,
        "end": chunk.start + chunk.size,
        "rows": int(len(chunk.valid)),
        "errors": len(chunk.errors),
        "truncated": int(chunk.truncated),  # valid rows that lost tokens beyond max_length
    }
    if chunk.windows is not None:  # --long-text chunk: windows scored, rows scored over 2+ windows
        counts = np.bincount(chunk.windows, minlength=len(chunk.valid))
        entry.update(windows=int(counts.sum()), chunked=int((counts > 1).sum()))
    notice = None
    if chunk.errors:
        lines = "".join(json.dumps({"row_id": chunk.start + p, "reason": r}) + "\n" for p, r in chunk.errors)
        entry["errors_file"] = f"{name}.errors.jsonl"
        _atomic_bytes(lines.encode("utf-8"), parts / entry["errors_file"])
    if label_column is not None and label_names and probs is not None:
        try:
            labels_raw = [chunk.columns[label_column][i] for i in chunk.valid]
            pos, ids = _label_ids(labels_raw, feature, label_names, source)
            buf = io.BytesIO()
            np.savez(buf, y_true=ids, y_pred=pred[pos], probs=probs[pos].astype(np.float32))
            entry["eval_file"] = f"{name}.eval.npz"
            _atomic_bytes(buf.getvalue(), parts / entry["eval_file"])
        except LabelError as exc:
            notice = f"no metrics: {exc}"
    _atomic_parquet(table, parts / entry["file"])
    return entry, notice


def _atomic_parquet(table: Any, path: Path) -> None:
    import pyarrow.parquet as pq

    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _atomic_bytes(data: bytes, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _label_ids(values: list[Any], feature: Any, label_names: list[str], source: str) -> tuple[np.ndarray, np.ndarray]:
    """(positions with a label, their ids in the model's label order). Raises LabelError for unknown labels."""
    from hubtune.labels import is_missing, to_ids

    pos = [i for i, v in enumerate(values) if not is_missing(v)]
    ids = to_ids([values[i] for i in pos], feature, label_names, source, "pass --label-column or a model trained on these labels")
    return np.asarray(pos, dtype=np.int64), np.asarray(ids, dtype=np.int64)
