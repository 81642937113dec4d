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
joins the recorded shards into OUTPUT and its sidecars (:mod:`.merge` joins the OUTPUTs of K sharded runs).

A SIGKILL at any point leaves a state ``--resume`` finishes: a shard is recorded only once its files are
complete; the manifest is marked complete before OUTPUT is written, so an interrupted assembly is redone;
OUTPUT.parts/ is renamed before it is removed, so a half-removed folder is never taken for a run to resume.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from hubtune.core.errors import ConfigError, OutputExistsError, OutputNotWritableError, PartError, ResumeMismatchError
from hubtune.predict.dataset import dataset_fingerprint
from hubtune.predict.options import PredictOptions
from hubtune.predict.shards import Writer, iter_tables, kill_point, write_errors, write_json

MANIFEST_VERSION = 2
# what changes a prediction, recorded in the manifest and compared on --resume (field -> the flag that sets it)
PREDICTION_FIELDS = {  # in the order a --resume compares them: the task first (it decides the others)
    "task": "--task", "backend": "--backend", "onnx_file": "--onnx-file", "onnx_sha256": "--onnx-file", "dtype": "--dtype",
    "max_length": "--max-length", "text_column": "--text-column", "text_pair_column": "--text-pair-column",
    "label_names": "--model", "long_text": "--long-text", "stride": "--stride",
    "threshold": "--threshold", "normalize": "--normalize", "pooling": "--model",
    # generation (hubtune.predict.generate)
    "prompt_column": "--prompt-column", "messages_column": "--messages-column", "system_prompt": "--system-prompt",
    "max_new_tokens": "--max-new-tokens", "do_sample": "--temperature", "temperature": "--temperature",
    "top_p": "--top-p", "top_k": "--top-k", "seed": "--seed", "stop": "--stop",
    "num_return_sequences": "--num-return-sequences",
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


def read_json(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def read_json_object(path: Path, what: str, fix: str) -> dict[str, Any]:
    """The JSON object in ``path``, or a PartError naming it (unreadable, not JSON, not an object) and ``fix``."""
    try:
        data = read_json(path)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise PartError(f"{what} {path} cannot be read ({type(exc).__name__}: {exc}); expected the JSON file "
                        f"batch-predict wrote: {fix}") from None
    if not isinstance(data, dict):
        raise PartError(f"{what} {path} holds a JSON {type(data).__name__}, expected an object as batch-predict "
                        f"writes it: {fix}")
    return data


def removing_name(parts: Path) -> Path:
    """Where OUTPUT.parts/ is moved before it is removed, so a kill during the removal leaves no half-removed
    OUTPUT.parts/ that a --resume would take for an interrupted run."""
    return parts.with_name(f".{parts.name}.removing")


def remove_parts(parts: Path) -> None:
    """Remove OUTPUT.parts/ of an assembled run: renamed first (atomic), then deleted."""
    gone = removing_name(parts)
    if gone.exists():
        shutil.rmtree(gone, ignore_errors=True)
    os.replace(parts, gone)
    kill_point("parts-removing")
    shutil.rmtree(gone, ignore_errors=True)


def refuse_directory(output: Path, flag: str = "--output") -> None:
    """An OUTPUT that is a directory (or whose name is taken by one) is refused before any work, --overwrite or not."""
    if output.is_dir():
        raise OutputExistsError(
            f"output {output} is a directory; expected a file name (e.g. {output / 'preds.parquet'}), which "
            f"--overwrite does not replace a directory with: choose another {flag}"
        )


def check_writable(folder: Path, output: Path) -> None:
    """Refuse an OUTPUT whose folder (or its nearest existing parent) cannot take a file, before any work;
    nothing is created (a probe file is written and removed)."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        if not existing.is_dir():
            raise NotADirectoryError(20, "Not a directory", str(existing))
        probe = existing / f".hubtune-write-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise OutputNotWritableError(
            f"cannot write the output {output} ({type(exc).__name__}: {exc.strerror or exc} in {existing}); "
            "expected a writable directory: choose another --output"
        ) from None


# --------------------------------------------------------------------------------------------------
# The manifest: a run's identity and its recorded shards (resume checks)
# --------------------------------------------------------------------------------------------------
def prepare_output(opts: PredictOptions, keep_old_parts: bool = False) -> tuple[Path, Path, dict[str, Any] | None]:
    """(OUTPUT, OUTPUT.parts/, the manifest of the run to resume or None), after refusing an OUTPUT that is a
    directory, an existing OUTPUT without --resume/--overwrite, and a manifest that does not read or whose recorded
    shards are gone; OUTPUT.parts/ exists and is writable. --overwrite removes an old OUTPUT.parts/ but keeps an
    old OUTPUT and its sidecars until the new run's assembly replaces them (bad input never deletes them);
    ``keep_old_parts``: the old OUTPUT.parts/ too (but its ONNX export), for the engine to replace once its checks
    passed (the local engine: its new manifest, and the old shards removed as unrecorded)."""
    output = Path(opts.output)
    parts = sidecar(output, ".parts")
    manifest_path = parts / "manifest.json"
    refuse_directory(output)
    dataset = Path(os.path.expanduser(opts.dataset))
    if dataset.exists() and (output.resolve() == dataset.resolve() or dataset.resolve() in output.resolve().parents):
        raise ConfigError(f"--output {output} is (or is inside) the --dataset {opts.dataset}, which the predictions "
                          "would replace; expected an output apart from the input: choose another --output")
    if parts.exists() and not parts.is_dir():
        raise OutputExistsError(f"{parts} is a file where batch-predict keeps the parts of {output.name}; expected "
                                "a folder or nothing there: move it away or choose another --output")
    if removing_name(parts).exists():  # a kill while an assembled run's parts were removed
        shutil.rmtree(removing_name(parts), ignore_errors=True)
    previous = None
    if opts.overwrite:
        if parts.is_dir() and not keep_old_parts:
            shutil.rmtree(parts)
        elif parts.is_dir():
            shutil.rmtree(parts / "_onnx_export", ignore_errors=True)
    elif opts.resume:
        if manifest_path.exists():
            previous = read_json_object(manifest_path, "the manifest", "pass --overwrite to start over")
            _check_recorded(previous, output, parts)
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


def _check_recorded(manifest: dict[str, Any], output: Path, parts: Path) -> None:
    """Every file the manifest records is in OUTPUT.parts/. A complete run whose OUTPUT and .meta.json exist but
    whose parts are partly gone was stopped while its parts were removed: the parts are removed and the output
    reported complete. Otherwise a missing shard is refused (PartError)."""
    shards = manifest.get("shards", [])
    if not isinstance(shards, list) or not all(
        isinstance(x, dict) and isinstance(x.get("file"), str)
        and all(isinstance(x.get(k), int) for k in ("start", "end", "rows", "errors")) for x in shards
    ) or not isinstance(manifest.get("range"), dict):
        raise PartError(f"the manifest {parts / 'manifest.json'} lists no valid shards; expected the file batch-predict "
                        "wrote: pass --overwrite to start over")
    missing = [x[k] for x in shards for k in ("file", "errors_file", "eval_file") if x.get(k) and not (parts / x[k]).is_file()]
    if not missing:
        return
    if manifest.get("complete") and output.is_file() and sidecar(output, ".meta.json").is_file():
        shutil.rmtree(parts, ignore_errors=True)
        raise OutputExistsError(
            f"output {output} is already complete (the run stopped while it removed {parts.name}/, now removed); "
            "pass --overwrite to predict again or choose another --output"
        )
    raise PartError(
        f"cannot resume {output}: {parts / missing[0]}, recorded in the manifest, is missing ({len(missing)} recorded "
        "file(s) gone); expected every recorded shard: pass --overwrite to start over"
    )


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


def _compare_model(prev: dict[str, Any], cm: dict[str, Any], output: Path) -> None:
    pm = prev.get("model") if isinstance(prev.get("model"), dict) else {}
    if (pm.get("weights_sha256"), pm.get("revision")) != (cm["weights_sha256"], cm["revision"]):
        raise ResumeMismatchError(
            f"cannot resume {output}: it was started with model {pm.get('source')!r} "
            f"(weights sha256 {str(pm.get('weights_sha256'))[:12]}, revision {pm.get('revision')}), this run has "
            f"{cm['source']!r} (weights sha256 {cm['weights_sha256'][:12]}, revision {cm['revision']}); "
            "pass the same --model, or --overwrite to start over"
        )


def compare_requested(prev: dict[str, Any], opts: PredictOptions, identity: dict[str, Any], output: Path) -> None:
    """Before a runner is made: the model and an explicit --backend / --dtype against the run to resume, so such
    a mismatch is refused before any export or warm-up (:func:`compare_manifest` checks the rest)."""
    _compare_model(prev, identity, output)
    pp = prev.get("prediction") if isinstance(prev.get("prediction"), dict) else {}
    for key, flag in (("backend", "--backend"), ("dtype", "--dtype")):
        want, before = getattr(opts, key), pp.get(key)
        if want != "auto" and before is not None and want != before:
            raise ResumeMismatchError(
                f"cannot resume {output}: {key} was {before!r}, this run has {want!r}, which changes the predictions; "
                f"pass the same {flag} as the interrupted run, or --overwrite to start over"
            )


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
    _compare_model(prev, cur["model"], output)
    pd, cd = prev.get("dataset") if isinstance(prev.get("dataset"), dict) else {}, cur["dataset"]
    if pd.get("fingerprint") != cd["fingerprint"] or pd.get("spec") != cd["spec"]:
        raise ResumeMismatchError(
            f"cannot resume {output}: it was started on dataset {pd.get('spec')!r} (fingerprint "
            f"{str(pd.get('fingerprint'))[:12]}), this run reads {cd['spec']!r} (fingerprint {cd['fingerprint'][:12]}); "
            "pass the same --dataset, or --overwrite to start over"
        )
    pp, cp = prev.get("prediction") if isinstance(prev.get("prediction"), dict) else {}, cur["prediction"]
    for key, flag in PREDICTION_FIELDS.items():
        before = pp.get(key, PREDICTION_DEFAULTS.get(key))
        if before != cp.get(key):
            raise ResumeMismatchError(
                f"cannot resume {output}: {key} was {before!r}, this run has {cp.get(key)!r}, which changes the "
                f"predictions; pass the same {flag} as the interrupted run, or --overwrite to start over"
            )
    po = prev.get("options") if isinstance(prev.get("options"), dict) else {}
    for key, value in cur["options"].items():
        if po.get(key) != value:
            raise ResumeMismatchError(
                f"cannot resume {output}: option {key} was {po.get(key)!r}, now {value!r}; "
                "pass the same options as the interrupted run, or --overwrite to start over"
            )


def take_over(parts: Path, manifest: dict[str, Any], previous: dict[str, Any] | None, output: Path) -> int:
    """Start recording ``manifest`` in OUTPUT.parts/ (both the classifier and the generation path): with --resume
    the interrupted run's manifest is compared first and its recorded shards taken over; leftovers of an interrupted
    shard write (never recorded) and, with --overwrite, the old run's shards (kept until here: bad input refused
    before leaves them as they were) are removed. Returns the rows (and row errors) already done."""
    if previous is not None:
        compare_manifest(previous, manifest, output)
        manifest["shards"] = previous.get("shards", [])
        manifest["complete"] = previous.get("complete", False)
    write_json(parts / "manifest.json", manifest)
    recorded = {s[k] for s in manifest["shards"] for k in ("file", "errors_file", "eval_file") if s.get(k)}
    for p in parts.iterdir():
        if p.is_file() and p.name.startswith((".shard-", "shard-")) and p.name not in recorded:
            p.unlink()
    return sum(s["rows"] + s["errors"] for s in manifest["shards"])


def prediction_settings(
    opts: PredictOptions, cols: Any, label_names: list[str] | None, max_length: int | None, onnx_path: Path | None,
    stride: int | None = None, task: str = "text-classification", threshold: float | None = None,
    pooling: Any = None,
) -> dict[str, Any]:
    """Everything besides the model and the data that changes a prediction (see PREDICTION_FIELDS); ``stride``:
    the resolved ``--stride`` of ``--long-text chunk``; ``task`` and the multi-label ``threshold`` as resolved;
    ``pooling``: a feature-extraction run's :class:`~hubtune.tasks.feature_extraction.Pooling` (mode, normalisation)."""
    from hubtune.core.parity import file_sha256

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
def assemble(
    opts: PredictOptions, output: Path, parts: Path, manifest: dict[str, Any], *, label_names: list[str], metrics_enabled: bool
) -> dict[str, Any]:
    """Mark the manifest complete and assemble OUTPUT and its sidecars (.errors.jsonl, .metrics.json, .meta.json)
    from the recorded shards, in manifest order; remove OUTPUT.parts/ unless keep_parts (renamed first: a kill
    during the removal leaves OUTPUT complete, not a half-removed OUTPUT.parts/). Shared by both engines. A kill
    at any point before the removal leaves the complete manifest, from which --resume assembles again."""
    manifest["complete"] = True
    write_json(parts / "manifest.json", manifest)
    kill_point("assembling")
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
    writer = Writer(output, meta)
    try:
        for t in iter_tables([parts / s["file"] for s in shards]):
            writer.write(t)
        writer.close()
    except BaseException:
        writer.abort()
        raise
    errors_path = sidecar(output, ".errors.jsonl")

    def err_rows() -> Iterator[dict[str, Any]]:
        for s in shards:
            if s.get("errors_file"):
                with open(parts / s["errors_file"], encoding="utf-8") as fh:
                    for line in fh:
                        yield json.loads(line)

    write_errors(errors_path, err_rows())
    metrics = None
    metrics_path = sidecar(output, ".metrics.json")
    eval_files = [parts / s["eval_file"] for s in shards if s.get("eval_file")]
    if metrics_enabled and eval_files and len(eval_files) == len([s for s in shards if s["rows"]]):
        from hubtune.core.metrics import classification_metrics

        loaded = [np.load(f) for f in eval_files]
        y_true = np.concatenate([z["y_true"] for z in loaded])
        y_pred = np.concatenate([z["y_pred"] for z in loaded])
        probs_all = np.concatenate([z["probs"] for z in loaded])
        if len(y_true):
            metrics = classification_metrics(y_true, y_pred, label_names, probs_all)
            if opts.metric_modules:
                from hubtune.core.metric_modules import module_metrics

                metrics["metric_modules"] = module_metrics(opts.metric_modules, y_true, y_pred, probs_all)
            write_json(metrics_path, {"model": opts.model, "dataset": opts.dataset, "metrics": metrics})
    if metrics is None and metrics_path.is_file():  # an --overwrite'n output's metrics, not this run's
        metrics_path.unlink()
    meta_path = sidecar(output, ".meta.json")
    write_json(meta_path, meta)
    kill_point("meta-written")
    if not opts.keep_parts:
        remove_parts(parts)
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
