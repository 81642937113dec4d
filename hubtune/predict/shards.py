"""The files a run writes, each atomically (a temporary name, fsync, rename; the temporary file removed when
the write fails): :func:`write_shard` writes a chunk's NAME.parquet (the predictions), NAME.errors.jsonl (rows
that could not be processed) and NAME.eval.npz (labels and predictions, for the metrics), the parquet last; the
engine then records the shard (local: the manifest; Ray: a commit marker). :class:`Writer` streams tables into
OUTPUT, :func:`write_json` and :func:`write_errors` its sidecars.

A full disk (ENOSPC, EDQUOT) while writing becomes :class:`~hubtune.core.errors.DiskFullError` naming the path
(:func:`disk_guard`); :func:`kill_point` is a test hook that SIGKILLs the process at a named phase
(``HUBTUNE_PREDICT_KILL_AT=PHASE``), so the kill-point tests stop a real run exactly there.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import signal
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from hubtune.core.errors import DiskFullError, LabelError
from hubtune.predict.batching import Chunk
from hubtune.predict.heads import Head, task_columns
from hubtune.predict.options import output_format


def _shard_table(chunk: Chunk, logits: np.ndarray, keep: list[str], label_names: list[str], all_scores: bool,
                 head: Head | None = None) -> Any:
    import pyarrow as pa

    from hubtune.core.metrics import softmax

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
    try:
        notice = _write_files(parts, name, chunk, entry, table, probs, pred, label_column, feature, label_names, source)
    except BaseException:  # a chunk's files are all there or none (the parquet, written last, records it)
        for key in ("errors_file", "eval_file"):
            if entry.get(key):
                (parts / entry[key]).unlink(missing_ok=True)
        raise
    return entry, notice


def write_table_shard(parts: Path, name: str, start: int, size: int, table: Any, errors: Sequence[tuple[int, str]],
                      **counts: int) -> dict[str, Any]:
    """Write a chunk's table and row errors (NAME.parquet, NAME.errors.jsonl; atomically, the parquet last) and
    return its manifest entry (``counts``: figures recorded with it, e.g. a generation's token counts): the shard
    files of a run whose task builds its own table (generation)."""
    entry: dict[str, Any] = {"file": f"{name}.parquet", "start": start, "end": start + size, "rows": int(table.num_rows),
                             "errors": len(errors), "truncated": 0, **counts}
    try:
        if errors:
            lines = "".join(json.dumps({"row_id": start + p, "reason": r}) + "\n" for p, r in errors)
            entry["errors_file"] = f"{name}.errors.jsonl"
            _atomic_bytes(lines.encode("utf-8"), parts / entry["errors_file"])
        _atomic_parquet(table, parts / entry["file"])
    except BaseException:
        if entry.get("errors_file"):
            (parts / entry["errors_file"]).unlink(missing_ok=True)
        raise
    return entry


def _write_files(parts: Path, name: str, chunk: Chunk, entry: dict[str, Any], table: Any, probs: Any, pred: Any,
                 label_column: str | None, feature: Any, label_names: list[str], source: str) -> str | None:
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
    return notice


def _atomic_parquet(table: Any, path: Path) -> None:
    import pyarrow.parquet as pq

    tmp = path.with_name(f".{path.name}.tmp")
    with disk_guard(path, tmp):
        pq.write_table(table, tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)


def _atomic_bytes(data: bytes, path: Path, hint: str | None = None) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with disk_guard(path, tmp, hint=hint or RESUME_HINT):
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)


def _label_ids(values: list[Any], feature: Any, label_names: list[str], source: str) -> tuple[np.ndarray, np.ndarray]:
    """(positions with a label, their ids in the model's label order). Raises LabelError for unknown labels."""
    from hubtune.data.labels import is_missing, to_ids

    pos = [i for i, v in enumerate(values) if not is_missing(v)]
    ids = to_ids([values[i] for i in pos], feature, label_names, source, "pass --label-column or a model trained on these labels")
    return np.asarray(pos, dtype=np.int64), np.asarray(ids, dtype=np.int64)


# --------------------------------------------------------------------------------------------------
# Atomic writes, a full disk, kill points
# --------------------------------------------------------------------------------------------------
KILL_ENV = "HUBTUNE_PREDICT_KILL_AT"  # test hook: SIGKILL this process at the named phase (kill-point tests)
RESUME_HINT = "free some space (or pass an --output on another disk), then re-run the same command with --resume"


KILL_PHASES = ("shard-written", "shard-recorded", "assembling", "output-tmp", "output-renamed", "meta-written",
               "parts-removing")
MERGE_KILL_PHASES = ("output-tmp", "merge-staged", "output-renamed")  # merge-predictions


def sigkill(phase: str) -> None:
    """What :func:`kill_point` does at its phase: SIGKILL this process (the in-process tests replace it)."""
    os.kill(os.getpid(), signal.SIGKILL)


def kill_point(phase: str) -> None:
    """SIGKILL this process when ``HUBTUNE_PREDICT_KILL_AT`` names ``phase`` (a test hook; a no-op otherwise)."""
    if os.environ.get(KILL_ENV) == phase:
        sigkill(phase)


def is_disk_full(exc: BaseException) -> bool:
    """An OSError that says the device (or the quota) is full, pyarrow's included (errno or message)."""
    if not isinstance(exc, OSError):
        return False
    return exc.errno in (errno.ENOSPC, errno.EDQUOT) or "No space left on device" in str(exc)


def disk_full_error(path: Path | str, hint: str = RESUME_HINT) -> DiskFullError:
    return DiskFullError(f"no space left on the device writing {path}: the disk is full (nothing half-written is "
                         f"kept); {hint}")


@contextlib.contextmanager
def disk_guard(path: Path, *tmps: Path, hint: str = RESUME_HINT) -> Iterator[None]:
    """Remove the temporary files ``tmps`` when the block fails, and turn a full disk into DiskFullError."""
    try:
        yield
    except BaseException as exc:
        for tmp in tmps:
            with contextlib.suppress(OSError):
                tmp.unlink()
        if is_disk_full(exc):
            raise disk_full_error(path, hint) from None
        raise


def write_json(path: Path, data: Any, hint: str = RESUME_HINT) -> None:
    """Write ``data`` to ``path`` atomically (a temporary file, fsync, rename)."""
    text = json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"
    _atomic_bytes(text.encode("utf-8"), path, hint)


def write_errors(path: Path, errors: Iterator[dict[str, Any]], hint: str = RESUME_HINT) -> int:
    """Write the error rows to ``path`` atomically (none: remove ``path``); returns how many."""
    tmp = path.with_name(f".{path.name}.tmp")
    n = 0
    with disk_guard(path, tmp, hint=hint):
        with open(tmp, "w", encoding="utf-8") as fh:
            for e in errors:
                fh.write(json.dumps(e, ensure_ascii=False) + "\n")
                n += 1
            fh.flush()
            os.fsync(fh.fileno())
        if n:
            os.replace(tmp, path)
        else:
            tmp.unlink()
            if path.exists():
                path.unlink()
    return n


def unified_schema(files: Sequence[Path]) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schemas = [pq.read_schema(f) for f in files]
    try:
        return pa.unify_schemas(schemas, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
        return schemas[0]


def iter_tables(files: Sequence[Path]) -> Iterator[Any]:
    """The parquet ``files`` one table at a time, cast to one schema."""
    import pyarrow.parquet as pq

    schema = unified_schema(files) if files else None
    for f in files:
        t = pq.read_table(f)
        if schema is not None and t.schema != schema:
            try:
                t = t.select(schema.names).cast(schema)
            except Exception:  # noqa: BLE001 - fall back to strings for columns whose type drifted
                import pyarrow as pa

                t = pa.table({n: t[n].cast(pa.string()) if t.schema.field(n).type != schema.field(n).type else t[n] for n in schema.names})
        yield t


class Writer:
    """Stream tables into OUTPUT: written to ``.OUTPUT.tmp``, renamed by :meth:`close` (or kept for the caller
    to rename with ``commit=False``: :meth:`commit`); :meth:`abort` removes the temporary file."""

    def __init__(self, output: Path, metadata: dict[str, Any] | None = None, hint: str = RESUME_HINT) -> None:
        self.output = output
        self.fmt = output_format(output)
        self.tmp = output.with_name(f".{output.name}.tmp")
        self.metadata = metadata
        self.hint = hint
        self._pq: Any = None
        self._fh: Any = None
        self._header = True
        self._written = 0

    def write(self, table: Any) -> None:
        with disk_guard(self.output, hint=self.hint):
            self._write(table)
        self._written += 1
        if self._written == 1:
            kill_point("output-tmp")

    def _write(self, table: Any) -> None:
        if self.fmt == ".parquet":
            import pyarrow.parquet as pq

            if self._pq is None:
                schema = table.schema
                if self.metadata is not None:
                    schema = schema.with_metadata({b"hubtune": json.dumps(self.metadata, sort_keys=True, default=str).encode()})
                self._pq = pq.ParquetWriter(self.tmp, schema)
                self._schema = schema
            self._pq.write_table(table.cast(self._schema) if table.schema != self._schema else table)
        elif self.fmt == ".csv":
            import pyarrow.csv as pcsv

            if self._fh is None:
                self._fh = open(self.tmp, "wb")
            pcsv.write_csv(table, self._fh, write_options=pcsv.WriteOptions(include_header=self._header))
            self._header = False
        else:
            if self._fh is None:
                self._fh = open(self.tmp, "w", encoding="utf-8")
            for row in table.to_pylist():
                self._fh.write(json.dumps(row, ensure_ascii=False, default=str))
                self._fh.write("\n")

    def close(self, empty_schema: Any = None, commit: bool = True) -> None:
        """Finish the temporary file (fsync) and, with ``commit``, rename it to OUTPUT."""
        with disk_guard(self.output, self.tmp, hint=self.hint):
            if self._pq is None and self._fh is None:
                import pyarrow as pa

                self._write(pa.table({}, schema=empty_schema) if empty_schema is not None else pa.table({"row_id": pa.array([], pa.int64())}))
            if self._pq is not None:
                self._pq.close()
                self._pq = None
                with open(self.tmp, "rb") as fh:
                    os.fsync(fh.fileno())
            if self._fh is not None:
                self._fh.flush()
                os.fsync(self._fh.fileno())
                self._fh.close()
                self._fh = None
        if commit:
            self.commit()

    def commit(self) -> None:
        os.replace(self.tmp, self.output)
        kill_point("output-renamed")

    def abort(self) -> None:
        for handle in (self._pq, self._fh):
            with contextlib.suppress(Exception):
                if handle is not None:
                    handle.close()
        self._pq = self._fh = None
        with contextlib.suppress(OSError):
            self.tmp.unlink()
