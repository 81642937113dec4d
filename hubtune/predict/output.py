"""What a run writes, and how it is put together (both engines):

    OUTPUT                      preds.parquet | preds.jsonl | preds.csv  (row_id, kept columns, label, score[, score_<label>...];
                                the other tasks' columns: hubtune.predict.heads)
    OUTPUT.parts/               while running: one set of shard files per chunk + manifest.json (removed once OUTPUT is assembled)
    OUTPUT.errors.jsonl         rows that could not be processed: {"row_id", "reason"}
    OUTPUT.metrics.json         when the dataset has labels: metrics.classification_metrics of the predictions
    OUTPUT.meta.json            model identity, dataset fingerprint, row range: what merge_predictions checks

:func:`prepare_output` checks OUTPUT (``--resume``, ``--overwrite``) and makes OUTPUT.parts/; the manifest
(:func:`new_manifest`) records the run's identity and the shards written so far (:mod:`.shards`), and
:func:`compare_manifest` refuses to resume with another model, dataset, options or engine; :func:`assemble`
joins the recorded shards into OUTPUT and its sidecars; :func:`merge_predictions` joins the OUTPUTs of K
sharded runs.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from hubtune.errors import (
    ConfigError,
    DataError,
    OutputExistsError,
    OutputNotWritableError,
    PredictError,
    ResumeMismatchError,
)
from hubtune.predict.dataset import dataset_fingerprint
from hubtune.predict.options import MergeResult, PredictOptions, output_format

MANIFEST_VERSION = 2
# what changes a prediction, recorded in the manifest and compared on --resume (field -> the flag that sets it)
PREDICTION_FIELDS = {
    "backend": "--backend", "onnx_file": "--onnx-file", "onnx_sha256": "--onnx-file", "dtype": "--dtype",
    "max_length": "--max-length", "text_column": "--text-column", "text_pair_column": "--text-pair-column",
    "label_names": "--model", "long_text": "--long-text", "stride": "--stride", "task": "--task",
    "threshold": "--threshold", "normalize": "--normalize", "pooling": "--model",
}
# what a manifest written before a field existed meant by it
PREDICTION_DEFAULTS = {"long_text": "truncate", "stride": None, "task": "text-classification", "threshold": None,
                       "normalize": None, "pooling": None}


# --------------------------------------------------------------------------------------------------
# Paths and JSON files
# --------------------------------------------------------------------------------------------------
def sidecar(output: str | os.PathLike[str], suffix: str) -> Path:
    """OUTPUT + suffix (``preds.parquet`` -> ``preds.parquet.meta.json``)."""
    p = Path(output)
    return p.with_name(p.name + suffix)


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` to ``path`` atomically (a temporary file, fsync, rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, sort_keys=True, default=str)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


# --------------------------------------------------------------------------------------------------
# The manifest: a run's identity and its recorded shards (resume checks)
# --------------------------------------------------------------------------------------------------
def prepare_output(opts: PredictOptions) -> tuple[Path, Path, dict[str, Any] | None]:
    """(OUTPUT, OUTPUT.parts/, the manifest of the run to resume or None), after applying --overwrite and
    refusing an existing OUTPUT without --resume/--overwrite; OUTPUT.parts/ exists and is writable."""
    output = Path(opts.output)
    parts = sidecar(output, ".parts")
    manifest_path = parts / "manifest.json"
    previous = None
    if opts.overwrite:
        for p in (output, sidecar(output, ".errors.jsonl"), sidecar(output, ".metrics.json"), sidecar(output, ".meta.json")):
            if p.is_file():
                p.unlink()
        if parts.is_dir():
            shutil.rmtree(parts)
    elif opts.resume:
        if manifest_path.is_file():
            previous = read_json(manifest_path)
        elif output.exists():
            raise OutputExistsError(
                f"output {output} is already complete (no {parts.name}/ to resume from); "
                "pass --overwrite to predict again or choose another --output"
            )
    else:
        if output.exists() or parts.exists():
            what = output if output.exists() else parts
            raise OutputExistsError(
                f"{what} already exists; pass --resume to continue an interrupted run, --overwrite to start over, "
                "or choose another --output"
            )
    try:
        parts.mkdir(parents=True, exist_ok=True)
        probe = parts / ".write-probe"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise OutputNotWritableError(
            f"cannot write the output {output} ({type(exc).__name__}: {exc.strerror or exc}); "
            "expected a writable directory: choose another --output"
        ) from None
    return output, parts, previous


def discard_unfinished(parts: Path) -> bool:
    """Remove OUTPUT.parts/ of a run that failed before it finished a shard (nothing to resume), so the corrected
    command is not refused as an existing output; a run with finished shards keeps them for --resume."""
    if not parts.is_dir():
        return False
    try:
        manifest = read_json(parts / "manifest.json")
    except (OSError, ValueError):
        manifest = {}
    if manifest.get("shards") or any(parts.glob("chunk-*.json")):
        return False
    shutil.rmtree(parts, ignore_errors=True)
    return True


def compare_manifest(prev: dict[str, Any], cur: dict[str, Any], output: Path) -> None:
    """Refuse to resume ``prev`` (the interrupted run's manifest) with another engine, model, dataset or options."""
    pe, ce = prev.get("engine", "local"), cur.get("engine", "local")
    if pe != ce:  # the engines name and record their shards differently
        raise ResumeMismatchError(
            f"cannot resume {output}: it was started with --engine {pe}, this run uses --engine {ce}; "
            "resume with the same --engine, or pass --overwrite to start over"
        )
    if prev.get("version") != cur.get("version"):
        raise ResumeMismatchError(
            f"cannot resume {output}: it was started by another hubtune (manifest version {prev.get('version')}, this "
            f"one writes {cur.get('version')}); expected the same: pass --overwrite to start over"
        )
    pm, cm = prev.get("model", {}), cur["model"]
    if (pm.get("weights_sha256"), pm.get("revision")) != (cm["weights_sha256"], cm["revision"]):
        raise ResumeMismatchError(
            f"cannot resume {output}: it was started with model {pm.get('source')!r} "
            f"(weights sha256 {str(pm.get('weights_sha256'))[:12]}, revision {pm.get('revision')}), this run has "
            f"{cm['source']!r} (weights sha256 {cm['weights_sha256'][:12]}, revision {cm['revision']}); "
            "pass the same --model, or --overwrite to start over"
        )
    pd, cd = prev.get("dataset", {}), cur["dataset"]
    if pd.get("fingerprint") != cd["fingerprint"] or pd.get("spec") != cd["spec"]:
        raise ResumeMismatchError(
            f"cannot resume {output}: it was started on dataset {pd.get('spec')!r} (fingerprint "
            f"{str(pd.get('fingerprint'))[:12]}), this run reads {cd['spec']!r} (fingerprint {cd['fingerprint'][:12]}); "
            "pass the same --dataset, or --overwrite to start over"
        )
    pp, cp = prev.get("prediction", {}), cur["prediction"]
    for key, flag in PREDICTION_FIELDS.items():
        before = pp.get(key, PREDICTION_DEFAULTS.get(key))
        if before != cp.get(key):
            raise ResumeMismatchError(
                f"cannot resume {output}: {key} was {before!r}, this run has {cp.get(key)!r}, which changes the "
                f"predictions; pass the same {flag} as the interrupted run, or --overwrite to start over"
            )
    for key, value in cur["options"].items():
        if prev.get("options", {}).get(key) != value:
            raise ResumeMismatchError(
                f"cannot resume {output}: option {key} was {prev.get('options', {}).get(key)!r}, now {value!r}; "
                "pass the same options as the interrupted run, or --overwrite to start over"
            )


def prediction_settings(
    opts: PredictOptions, cols: Any, label_names: list[str] | None, max_length: int | None, onnx_path: Path | None,
    stride: int | None = None, task: str = "text-classification", threshold: float | None = None,
    pooling: Any = None,
) -> dict[str, Any]:
    """Everything besides the model and the data that changes a prediction (see PREDICTION_FIELDS); ``stride``:
    the resolved ``--stride`` of ``--long-text chunk``; ``task`` and the multi-label ``threshold`` as resolved;
    ``pooling``: a feature-extraction run's :class:`~hubtune.embeddings.Pooling` (mode, normalisation)."""
    from hubtune.parity import file_sha256

    onnx = opts.backend == "onnx" and onnx_path is not None
    return {
        "backend": opts.backend,
        "dtype": opts.dtype,
        "max_length": max_length,
        "onnx_file": onnx_path.name if onnx else None,
        "onnx_sha256": file_sha256(onnx_path) if onnx else None,
        "text_column": cols.text,
        "text_pair_column": cols.text_pair,
        "label_names": list(label_names) if label_names is not None else None,
        "long_text": opts.long_text,
        "stride": stride,
        "task": task,
        "threshold": threshold,
        "normalize": pooling.normalize if pooling is not None else None,
        "pooling": pooling.mode if pooling is not None else None,
    }


def long_text_summary(shards: Sequence[dict[str, Any]], prediction: dict[str, Any] | None, rows: int) -> dict[str, Any]:
    """What happened to texts longer than max_length over the recorded shards: ``truncated_rows`` (rows that lost
    tokens), ``long_text`` (mode, max_length, stride, rows scored over 2+ windows) and the notice to show."""
    pred = prediction or {}
    mode = pred.get("long_text", PREDICTION_DEFAULTS["long_text"])
    truncated = sum(int(s.get("truncated", 0)) for s in shards)
    info: dict[str, Any] = {"mode": mode, "max_length": pred.get("max_length")}
    notices = []
    if mode == "chunk":
        info.update(stride=pred.get("stride"), chunked_rows=sum(int(s.get("chunked", 0)) for s in shards),
                    windows=sum(int(s.get("windows", 0)) for s in shards))
    if truncated:
        limit = f"{pred['max_length']} tokens" if pred.get("max_length") else "max_length"
        notices.append(
            f"{truncated} of {rows} rows were longer than {limit} and lost the tokens beyond (truncated); pass "
            "--long-text chunk to score every token over overlapping windows, or a larger --max-length (up to the "
            "model's limit)"
        )
    return {"truncated_rows": truncated, "long_text": info, "notices": notices}


def new_manifest(
    opts: PredictOptions, identity: dict[str, Any], label_names: list[str] | None, spec: Any, ds: Any, cols: Any,
    keep: list[str], fmt: str, start: int, end: int | None, total: int | None, prediction: dict[str, Any],
) -> dict[str, Any]:
    """The manifest of a run (what a resume and merge-predictions compare), with no shards yet."""
    return {
        "version": MANIFEST_VERSION,
        "model": identity,
        "prediction": prediction,
        "label_names": label_names,
        "dataset": {
            "spec": opts.dataset,
            "fingerprint": dataset_fingerprint(spec, ds, opts.revision),
            "text_column": cols.text,
            "text_pair_column": cols.text_pair,
            "label_column": cols.label,
        },
        "options": {
            "keep_columns": keep,
            "all_scores": opts.all_scores,
            "limit": opts.limit,
            "num_shards": opts.num_shards,
            "shard_index": opts.shard_index,
            "format": fmt,
        },
        "range": {"start": start, "end": end, "total": total},
        "shards": [],
        "complete": False,
    }


# --------------------------------------------------------------------------------------------------
# Assembly of OUTPUT and its sidecars
# --------------------------------------------------------------------------------------------------
def _unified_schema(files: Sequence[Path]) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schemas = [pq.read_schema(f) for f in files]
    try:
        return pa.unify_schemas(schemas, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
        return schemas[0]


def _iter_tables(files: Sequence[Path]) -> Iterator[Any]:
    import pyarrow.parquet as pq

    schema = _unified_schema(files) if files else None
    for f in files:
        t = pq.read_table(f)
        if schema is not None and t.schema != schema:
            try:
                t = t.select(schema.names).cast(schema)
            except Exception:  # noqa: BLE001 - fall back to strings for columns whose type drifted
                import pyarrow as pa

                t = pa.table({n: t[n].cast(pa.string()) if t.schema.field(n).type != schema.field(n).type else t[n] for n in schema.names})
        yield t


class _Writer:
    """Stream tables into OUTPUT (written to a temp name, renamed at close)."""

    def __init__(self, output: Path, metadata: dict[str, Any] | None = None) -> None:
        self.output = output
        self.fmt = output_format(output)
        self.tmp = output.with_name(f".{output.name}.tmp")
        self.metadata = metadata
        self._pq: Any = None
        self._fh: Any = None
        self._header = True

    def write(self, table: Any) -> None:
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

    def close(self, empty_schema: Any = None) -> None:
        if self._pq is None and self._fh is None:
            import pyarrow as pa

            self.write(pa.table({}, schema=empty_schema) if empty_schema is not None else pa.table({"row_id": pa.array([], pa.int64())}))
        if self._pq is not None:
            self._pq.close()
        if self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
        os.replace(self.tmp, self.output)


def _write_errors(path: Path, errors: Iterator[dict[str, Any]]) -> int:
    tmp = path.with_name(f".{path.name}.tmp")
    n = 0
    with open(tmp, "w", encoding="utf-8") as fh:
        for e in errors:
            fh.write(json.dumps(e, ensure_ascii=False) + "\n")
            n += 1
    if n:
        os.replace(tmp, path)
    else:
        tmp.unlink()
        if path.exists():
            path.unlink()
    return n


def assemble(
    opts: PredictOptions, output: Path, parts: Path, manifest: dict[str, Any], *, label_names: list[str], metrics_enabled: bool
) -> dict[str, Any]:
    """Mark the manifest complete and assemble OUTPUT and its sidecars (.errors.jsonl, .metrics.json, .meta.json)
    from the recorded shards, in manifest order; remove OUTPUT.parts/ unless keep_parts. Shared by both engines."""
    manifest["complete"] = True
    write_json(parts / "manifest.json", manifest)
    shards = manifest["shards"]
    start, end, total = manifest["range"]["start"], manifest["range"]["end"], manifest["range"]["total"]
    identity = manifest["model"]
    n_rows = sum(s["rows"] for s in shards)
    n_err = sum(s["errors"] for s in shards)
    last = shards[-1]["end"] if shards else start
    meta = {
        "hubtune_batch_predict": MANIFEST_VERSION,
        "model": identity,
        "label_names": label_names,
        "dataset": manifest["dataset"],
        "options": manifest["options"],
        "prediction": manifest.get("prediction"),
        "choice": manifest.get("choice"),
        "range": {"start": start, "end": end if end is not None else last, "total": total if total is not None else (last if opts.num_shards == 1 else None)},
        "rows": n_rows,
        "errors": n_err,
    }
    long_text = long_text_summary(shards, manifest.get("prediction"), n_rows)
    meta.update(truncated_rows=long_text["truncated_rows"], long_text=long_text["long_text"], notices=long_text["notices"])
    writer = _Writer(output, meta)
    for t in _iter_tables([parts / s["file"] for s in shards]):
        writer.write(t)
    writer.close()
    errors_path = sidecar(output, ".errors.jsonl")

    def err_rows() -> Iterator[dict[str, Any]]:
        for s in shards:
            if s.get("errors_file"):
                with open(parts / s["errors_file"], encoding="utf-8") as fh:
                    for line in fh:
                        yield json.loads(line)

    _write_errors(errors_path, err_rows())
    metrics = None
    metrics_path = sidecar(output, ".metrics.json")
    eval_files = [parts / s["eval_file"] for s in shards if s.get("eval_file")]
    if metrics_enabled and eval_files and len(eval_files) == len([s for s in shards if s["rows"]]):
        from hubtune.metrics import classification_metrics

        loaded = [np.load(f) for f in eval_files]
        y_true = np.concatenate([z["y_true"] for z in loaded])
        y_pred = np.concatenate([z["y_pred"] for z in loaded])
        probs_all = np.concatenate([z["probs"] for z in loaded])
        if len(y_true):
            metrics = classification_metrics(y_true, y_pred, label_names, probs_all)
            if opts.metric_modules:
                from hubtune.metric_modules import module_metrics

                metrics["metric_modules"] = module_metrics(opts.metric_modules, y_true, y_pred, probs_all)
            write_json(metrics_path, {"model": opts.model, "dataset": opts.dataset, "metrics": metrics})
    meta_path = sidecar(output, ".meta.json")
    write_json(meta_path, meta)
    if not opts.keep_parts:
        shutil.rmtree(parts, ignore_errors=True)
    return {
        "rows": n_rows,
        "errors": n_err,
        "errors_path": str(errors_path) if n_err else None,
        "metrics_path": str(metrics_path) if metrics is not None else None,
        "meta_path": str(meta_path),
        "metrics": metrics,
        "row_range": [start, meta["range"]["end"]],
        "task": (manifest.get("prediction") or {}).get("task", PREDICTION_DEFAULTS["task"]),
        **long_text,
    }


# --------------------------------------------------------------------------------------------------
# merge-predictions
# --------------------------------------------------------------------------------------------------
def read_meta(part: str | os.PathLike[str]) -> dict[str, Any]:
    p = Path(part)
    if not p.is_file():
        raise DataError(f"prediction part {p} does not exist; pass the outputs of `hubtune batch-predict --num-shards K`")
    side = sidecar(p, ".meta.json")
    if side.is_file():
        return read_json(side)
    if p.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        md = pq.read_schema(p).metadata or {}
        if b"hubtune" in md:
            return json.loads(md[b"hubtune"])
    raise PredictError(
        f"{p} has no batch-predict metadata (neither {side.name} beside it nor parquet metadata); "
        "expected an output of `hubtune batch-predict` (keep its .meta.json next to it)"
    )


def _read_part(path: Path) -> Any:
    fmt = output_format(path)
    if fmt == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path)
    if fmt == ".csv":
        import pyarrow.csv as pcsv

        return pcsv.read_csv(path)
    import pyarrow.json as pjson

    return pjson.read_json(path)


def merge_predictions(parts: Sequence[str], output: str, *, overwrite: bool = False) -> MergeResult:
    """Join the outputs of K sharded runs into one result ordered by row id; refuse overlaps, gaps, mismatches."""
    out = Path(output)
    output_format(out)
    if not parts:
        raise ConfigError("no parts given; pass the outputs of the sharded batch-predict runs")
    if out.exists() and not overwrite:
        raise OutputExistsError(f"{out} already exists; pass --overwrite or choose another --output")
    metas = [(Path(p), read_meta(p)) for p in parts]
    p0, m0 = metas[0]
    for p, m in metas[1:]:
        if (m["model"].get("weights_sha256"), m["model"].get("revision")) != (
            m0["model"].get("weights_sha256"), m0["model"].get("revision")
        ):
            raise ResumeMismatchError(
                f"{p} was predicted with model {m['model'].get('source')!r} (weights sha256 "
                f"{str(m['model'].get('weights_sha256'))[:12]}), {p0} with {m0['model'].get('source')!r} "
                f"({str(m0['model'].get('weights_sha256'))[:12]}); expected one model: re-run the odd part"
            )
        path, path0 = m.get("prediction") or {}, m0.get("prediction") or {}
        if (path.get("backend"), path.get("dtype")) != (path0.get("backend"), path0.get("dtype")):
            raise ResumeMismatchError(
                f"{p} was predicted with {path.get('backend')}/{path.get('dtype')}, {p0} with "
                f"{path0.get('backend')}/{path0.get('dtype')} (auto chooses per machine); expected one path for every "
                f"part: re-run the odd part with --backend {path0.get('backend')} --dtype {path0.get('dtype')}"
            )
        lt, lt0 = (path.get("long_text", "truncate"), path.get("stride")), (path0.get("long_text", "truncate"), path0.get("stride"))
        tk, tk0 = ((x.get("task", PREDICTION_DEFAULTS["task"]), x.get("threshold")) for x in (path, path0))
        if tk != tk0:
            raise ResumeMismatchError(
                f"{p} was predicted as {tk[0]} (threshold {tk[1]}), {p0} as {tk0[0]} (threshold {tk0[1]}); expected one "
                f"task for every part: re-run the odd part with --task {tk0[0]}"
            )
        if lt != lt0:
            raise ResumeMismatchError(
                f"{p} was predicted with --long-text {lt[0]} (stride {lt[1]}), {p0} with --long-text {lt0[0]} (stride "
                f"{lt0[1]}); expected one setting for every part: re-run the odd part with --long-text {lt0[0]}"
            )
        if m["dataset"].get("fingerprint") != m0["dataset"].get("fingerprint") or m["options"] | {"shard_index": 0} != m0["options"] | {"shard_index": 0}:
            raise ResumeMismatchError(
                f"{p} and {p0} come from different datasets or options ({m['dataset'].get('spec')!r} vs "
                f"{m0['dataset'].get('spec')!r}); expected parts of one sharded run"
            )
    metas.sort(key=lambda pm: pm[1]["range"]["start"])
    total = m0["range"].get("total")
    expect = 0
    for p, m in metas:
        s, e = m["range"]["start"], m["range"]["end"]
        if s < expect:
            raise PredictError(f"{p} covers rows {s}..{e - 1}, which overlap the previous part (up to row {expect - 1}); pass each part once")
        if s > expect:
            raise PredictError(f"rows {expect}..{s - 1} are in no part (gap before {p}); run the missing --shard-index and pass its output")
        expect = e
    if total is not None and expect != total:
        raise PredictError(f"the parts cover rows 0..{expect - 1} but the dataset has {total} rows; run the missing shards and pass their outputs")
    if out.exists():
        out.unlink()
    meta = dict(m0)
    meta["range"] = {"start": 0, "end": expect, "total": total}
    meta["options"] = dict(m0["options"], num_shards=1, shard_index=0)
    meta["rows"] = sum(m["rows"] for _, m in metas)
    meta["errors"] = sum(m["errors"] for _, m in metas)
    summed = {"truncated": sum(int(m.get("truncated_rows", 0)) for _, m in metas)}
    for key, field_ in (("chunked", "chunked_rows"), ("windows", "windows")):
        summed[key] = sum(int((m.get("long_text") or {}).get(field_, 0)) for _, m in metas)
    long_text = long_text_summary([summed], m0.get("prediction"), meta["rows"])
    meta.update(truncated_rows=long_text["truncated_rows"], long_text=long_text["long_text"], notices=long_text["notices"])
    meta["merged_from"] = [str(p) for p, _ in metas]
    writer = _Writer(out, meta)
    rows = 0
    for p, m in metas:
        t = _read_part(p)
        if t.num_rows:
            ids = t["row_id"].to_numpy()
            s, e = m["range"]["start"], m["range"]["end"]
            if ids.min() < s or ids.max() >= e or (len(ids) > 1 and not (np.diff(ids) > 0).all()):
                raise PredictError(f"{p} holds row ids outside its range {s}..{e - 1} or out of order; expected an untouched batch-predict output")
        if t.num_rows != m["rows"]:
            raise PredictError(f"{p} holds {t.num_rows} rows but its metadata says {m['rows']}; expected an untouched batch-predict output")
        rows += t.num_rows
        writer.write(t)
    writer.close()
    errors_path = sidecar(out, ".errors.jsonl")

    def errs() -> Iterator[dict[str, Any]]:
        for p, _ in metas:
            ep = sidecar(p, ".errors.jsonl")
            if ep.is_file():
                with open(ep, encoding="utf-8") as fh:
                    for line in fh:
                        yield json.loads(line)

    n_err = _write_errors(errors_path, errs())
    meta_path = sidecar(out, ".meta.json")
    write_json(meta_path, meta)
    return MergeResult(rows=rows, errors=n_err, parts=len(metas), output=str(out), errors_path=str(errors_path) if n_err else None, meta_path=str(meta_path))
