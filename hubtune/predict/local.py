"""``batch-predict --engine local``: the whole run in this process.

    open the model (source) and the rows (dataset) -> the row range of this runner (--num-shards/--shard-index)
      -> the manifest (a new run, or the interrupted one to --resume; output)
      -> chunks of ``chunk_size`` rows, read and tokenized in a thread (batching.prefetch, prepare_chunk)
      -> logits in length-sorted batches (batching.run_chunk on a runners.Runner)
      -> OUTPUT.parts/shard-NNNNN.* (shards.write_shard), recorded in the manifest after each chunk
      -> OUTPUT and its sidecars (output.assemble)

Input is read streaming, so memory stays flat. A shard is written to a temporary name, renamed, and only then
recorded in the manifest (atomically), so after a crash ``resume=True`` continues from the last recorded shard
and every input row ends up exactly once.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import shutil
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from hubtune.core.errors import EmptyDatasetError, OptionRangeError, RowError
from hubtune.predict.batching import Chunk, prefetch, prepare_chunk, resolve_stride, run_chunk
from hubtune.predict.choose import choose_runner
from hubtune.predict.dataset import count_rows, label_feature, open_input
from hubtune.predict.heads import run_head
from hubtune.predict.options import PredictOptions, PredictResult, check_options, make_result
from hubtune.predict.output import (
    assemble,
    compare_requested,
    discard_unfinished,
    new_manifest,
    prediction_settings,
    prepare_output,
    take_over,
    write_json,
)
from hubtune.predict.shards import disk_full_error, is_disk_full, kill_point, write_shard
from hubtune.predict.source import model_identity, resolve_model_dir

THROTTLE_ENV = "HUBTUNE_PREDICT_THROTTLE_S"  # test hook: sleep after each shard (kill -9 tests)


def warm_import(module: str) -> threading.Thread:
    """Import ``module`` in a background thread while the model runs (torch and onnxruntime release the GIL in
    their kernels), so the step that needs it at the end does not wait for the import (scikit-learn: ~0.8 s)."""
    thread = threading.Thread(target=importlib.import_module, args=(module,), daemon=True, name=f"import {module}")
    thread.start()
    return thread


def batch_predict_local(opts: PredictOptions) -> PredictResult:
    """Predict every row of ``opts.dataset`` into ``opts.output`` in this process (see the module docstring)."""
    t0 = time.perf_counter()
    fmt = check_options(opts)
    return guarded(opts, lambda output, parts, previous: _run(opts, t0, fmt, output, parts, previous))


def guarded(opts: PredictOptions, run: Callable[[Path, Path, dict[str, Any] | None], PredictResult]) -> PredictResult:
    """``run(OUTPUT, OUTPUT.parts/, the manifest to resume)`` once the output is prepared; a run that fails before
    it finished a shard removes the OUTPUT.parts/ it made, so the corrected command is not refused as an existing
    output; a full disk is a DiskFullError (the shards recorded so far are kept for --resume)."""
    made = _first_missing(Path(opts.output).parent)  # a folder this run creates, removed again if it fails early
    output, parts, previous = prepare_output(opts, keep_old_parts=True)
    try:
        return run(output, parts, previous)
    except BaseException as exc:
        if previous is None and discard_unfinished(parts) and made is not None:
            _remove_empty_tree(made)
        if is_disk_full(exc):
            raise disk_full_error(output) from None
        raise


def _first_missing(folder: Path) -> Path | None:
    """The outermost folder of ``folder``'s path that does not exist yet (None: it exists)."""
    missing = None
    for p in [folder, *folder.parents]:
        if p.exists():
            break
        missing = p
    return missing


def _remove_empty_tree(folder: Path) -> None:
    """Remove ``folder`` when it holds nothing but empty folders."""
    if folder.is_dir() and not any(p.is_file() or p.is_symlink() for p in folder.rglob("*")):
        shutil.rmtree(folder, ignore_errors=True)


def check_max_length(opts: PredictOptions, model_dir: Path, pair: bool) -> None:
    """Refuse, before the model runs, a --max-length beyond the model's absolute position embeddings (the forward
    pass would fail on a longer text) or one that leaves no token for the text beside the special tokens."""
    n = opts.max_length
    if n is None:
        return
    try:
        cfg = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        cfg = {}
    limit = cfg.get("max_position_embeddings") if isinstance(cfg, dict) else None
    absolute = isinstance(cfg, dict) and not cfg.get("relative_attention") and cfg.get("position_biased_input", True) \
        and cfg.get("position_embedding_type", "absolute") == "absolute"
    if isinstance(limit, int) and 0 < limit < n and absolute:
        raise OptionRangeError(
            f"--max-length {n} is above what the model takes: {limit} positions (max_position_embeddings in its "
            f"config.json); expected at most {limit}: pass a smaller --max-length, or --long-text chunk to score longer "
            "texts over windows"
        )
    if n < 16:  # rare: then the tokenizer is asked how many special tokens it adds
        from transformers import AutoTokenizer

        specials = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=opts.trust_remote_code).num_special_tokens_to_add(pair=pair)
        if n <= specials:
            raise OptionRangeError(
                f"--max-length {n} leaves no room for text: the tokenizer adds {specials} special tokens to each "
                f"{'pair' if pair else 'text'}; expected at least {specials + 1}: pass a larger --max-length"
            )


def _run(opts: PredictOptions, t0: float, fmt: str, output: Path, parts: Path, previous: dict[str, Any] | None) -> PredictResult:
    spec, ds, cols, keep = open_input(opts)
    model_dir, commit = resolve_model_dir(opts.model, revision=opts.revision, backend=opts.backend)
    identity = model_identity(opts.model, model_dir, commit)
    if previous is not None:
        compare_requested(previous, opts, identity, output)
    check_max_length(opts, model_dir, cols.text_pair is not None)
    texts = [c for c in (cols.text, cols.text_pair) if c]
    runner, choice = choose_runner(opts, model_dir, identity, lambda n: ds.select_columns(texts).take(n if opts.limit is None else min(n, opts.limit)), cols,
                                   parts / "_onnx_export", previous)
    label_names = runner.label_names
    max_length = opts.max_length or runner.max_length
    head = run_head(runner, opts, cols, max_length)
    stride = resolve_stride(runner.tokenizer, max_length, opts.long_text, opts.stride, cols.text_pair)
    notices = list(runner.notices)

    # the row range of this runner
    total: int | None = opts.limit
    start, end = 0, opts.limit
    if opts.num_shards > 1:
        n_all = count_rows(ds, spec, cols.text)
        total = min(n_all, opts.limit) if opts.limit is not None else n_all
        start = total * opts.shard_index // opts.num_shards
        end = total * (opts.shard_index + 1) // opts.num_shards
    resolved = replace(opts, backend=choice["backend"], dtype=choice["dtype"])
    prediction = prediction_settings(resolved, cols, label_names, max_length, getattr(runner, "onnx_path", None), stride,
                                     head.task, head.threshold, getattr(runner, "pooling", None))
    manifest = new_manifest(opts, identity, label_names, spec, ds, cols, keep, fmt, start, end, total, prediction)
    manifest["choice"] = choice
    done = resumed = take_over(parts, manifest, previous, output)

    from_row = start + done
    n_todo = None if end is None else max(0, end - from_row)
    feature = label_feature(ds, cols.label)
    metrics_enabled = cols.label is not None and bool(label_names) and head.scores_metrics
    if cols.label is not None and not head.scores_metrics:
        notices.append(f"no metrics: batch-predict scores text-classification labels, and this model's task is "
                       f"{head.task} (column {cols.label!r} is not compared)")

    needed = [c for c in dict.fromkeys([cols.text, cols.text_pair, cols.label, *keep]) if c]
    if metrics_enabled and not manifest["complete"]:
        warm_import("sklearn.metrics")  # the metrics at the end then do not wait for it

    def chunks() -> Iterator[Chunk]:
        if manifest["complete"] or n_todo == 0:
            return
        stream = ds.select_columns(needed)
        if from_row:
            stream = stream.skip(from_row)
        if n_todo is not None:
            stream = stream.take(n_todo)
        idx = len(manifest["shards"])
        row = from_row
        for batch in stream.iter(batch_size=opts.chunk_size):
            chunk = Chunk(index=idx, start=row, columns=batch, valid=np.zeros(0, np.int64), errors=[])
            yield prepare_chunk(chunk, runner.tokenizer, cols.text, cols.text_pair, max_length, stride)
            row += chunk.size
            idx += 1

    from tqdm.auto import tqdm

    bar_total = None if end is None else end - start
    bar = tqdm(total=bar_total, initial=done, unit="rows", unit_scale=True, disable=not opts.progress, dynamic_ncols=True, desc="batch-predict")
    throttle = float(os.environ.get(THROTTLE_ENV, "0") or 0)
    processed = 0
    t_run = time.perf_counter()
    try:
        with contextlib.closing(prefetch(chunks())) as stream:
            for chunk in stream:
                if chunk.errors and opts.on_error == "fail":
                    pos, reason = chunk.errors[0]
                    raise RowError(
                        f"row {chunk.start + pos} cannot be predicted: {reason}; fix the data, or pass --on-error skip "
                        "to record such rows in the errors file and go on"
                    )
                logits = run_chunk(runner, chunk, opts.batch_size, opts.max_batch_tokens)
                entry, notice = write_shard(
                    parts, f"shard-{chunk.index:05d}", chunk, logits, keep=keep, label_names=label_names,
                    all_scores=opts.all_scores, label_column=cols.label if metrics_enabled else None,
                    feature=feature, source=opts.dataset, head=head,
                )
                entry = {"index": chunk.index, **entry}
                kill_point("shard-written")  # written, not yet recorded: a resume predicts the chunk again
                if notice:
                    metrics_enabled = False
                    notices.append(notice)
                manifest["shards"].append(entry)
                write_json(parts / "manifest.json", manifest)
                kill_point("shard-recorded")
                processed += chunk.size
                bar.update(chunk.size)
                if throttle:
                    time.sleep(throttle)
    finally:
        bar.close()
    seconds_run = time.perf_counter() - t_run

    if not manifest["shards"] and previous is None and processed == 0 and (n_todo is None or n_todo > 0) and start == 0:
        raise EmptyDatasetError(f"dataset {opts.dataset} has no rows to predict (check the spec or --limit)")
    done_info = assemble(opts, output, parts, manifest, label_names=label_names, metrics_enabled=metrics_enabled)
    notices += done_info["notices"]
    return make_result(opts, done_info, output=output, started=t0, seconds_run=seconds_run, processed=processed,
                       device=runner.device, resumed=resumed, identity=identity, notices=notices, choice=choice)
