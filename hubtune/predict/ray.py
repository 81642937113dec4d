"""``batch-predict --engine ray``: the same runners, batches and shard files as the local engine, on a pool of
Ray actors.

    read, streamed (``datasets`` streaming, as the local engine reads: local files and Hub datasets)
      -> chunks of exactly ``chunk_size`` rows on a global grid, each tagged with its row ids, read and put in the
         object store only as the actors take them (at most 2 waiting per actor): the input is never loaded whole
      -> an ActorPool of _ChunkPredictor actors (num_workers)   one actor = one model replica
           (runners.make_runner + batching.prepare_chunk, run_chunk + shards.write_shard: what the local engine runs)
      -> OUTPUT.parts/chunk-<first row id>.{parquet,errors.jsonl,eval.npz,json}
      -> output.assemble (the manifest and final assembly the local engine uses too)

Exactly-once: chunk k always holds rows [k*chunk_size, (k+1)*chunk_size) whatever the reader's block
boundaries, its files are named by its first row id and written atomically (the ``.json`` commit marker
last), and an actor that finds the marker of its chunk returns it without recomputing. A chunk retried after
its actor died (Ray restarts the actor and retries the task: ``max_restarts``/``max_task_retries``)
therefore overwrites or reuses its own files and never duplicates rows; the driver checks that the chunks
tile the row range exactly before assembling. ``--resume`` reuses the committed chunks of an interrupted run.

Every path (model, dataset, output) must be visible to every Ray node (a shared filesystem or a Hub id).
Ray is imported lazily: the base install does not need it (``pip install 'hubtune[ray]'``).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator

from hubtune.core.errors import ConfigError, EmptyDatasetError, HubtuneError, MissingDependencyError, PredictError, RowError
from hubtune.predict.batching import Chunk, prepare_chunk, resolve_stride, run_chunk
from hubtune.predict.dataset import label_feature, open_input
from hubtune.predict.heads import run_head
from hubtune.predict.options import PredictOptions, PredictResult, check_options, make_result
from hubtune.predict.output import (
    assemble,
    compare_manifest,
    discard_unfinished,
    new_manifest,
    prediction_settings,
    prepare_output,
    read_json,
    write_json,
)
from hubtune.predict.choose import choose_runner
from hubtune.predict.runners import make_runner
from hubtune.predict.shards import write_shard
from hubtune.predict.source import model_identity, resolve_model_dir

CRASH_ONCE_ENV = "HUBTUNE_RAY_CRASH_ONCE"  # test hook: path of a marker file; the first actor call that creates it exits
MAX_RESTARTS = 3  # actor restarts (and task retries) before a chunk counts as failed


def import_ray() -> Any:
    """``ray`` (its core: actors and ActorPool; Ray Data itself, ~1 s more to import, is not used), or a
    MissingDependencyError that says how to install it."""
    try:
        import ray
        import ray.util  # noqa: F401 - ActorPool
    except ImportError as exc:
        found = f"{type(exc).__name__}: {' '.join(str(exc).split())[:120]}"
        raise MissingDependencyError(
            f"--engine ray needs Ray Data, which cannot be imported ({found}); "
            "pip install 'hubtune[ray]' (or 'ray[data]>=2.40,<3'), or use --engine local"
        ) from None
    return ray


# --------------------------------------------------------------------------------------------------
# The actor: one model replica, one chunk per call
# --------------------------------------------------------------------------------------------------
class _ChunkPredictor:
    def __init__(
        self, model_dir: str, opts: PredictOptions, parts: str, text: str, pair: str | None, label: str | None,
        keep: list[str], feature: Any, crash_marker: str | None,
    ) -> None:
        self.opts = opts
        self.parts = Path(parts)
        self.text, self.pair, self.label, self.keep, self.feature = text, pair, label, keep, feature
        self.crash_marker = crash_marker
        # Ray loses an exception's type on its way to the driver: hubtune errors travel back as data ("fatal")
        self.init_error: HubtuneError | None = None
        try:
            self.runner = make_runner(Path(model_dir), opts, self.parts / "_onnx_export")
            self.max_length = opts.max_length or self.runner.max_length
            # the run's task and what its columns need (the tokenizer's offsets for entities), in this replica
            self.head = run_head(self.runner, opts, SimpleNamespace(text=text, text_pair=pair), self.max_length)
        except HubtuneError as exc:
            self.init_error = exc

    def predict(self, table: Any) -> Any:
        """One chunk (a table with ``row_id``) -> a table of one JSON ``entry`` (the shard, or a fatal error)."""
        return self(table)

    def __call__(self, table: Any) -> Any:
        import pyarrow as pa

        try:
            return self._predict(table)
        except HubtuneError as exc:
            fatal = {"type": type(exc).__name__, "message": str(exc)}
            start = int(table.column("row_id")[0].as_py()) if table.num_rows else 0
            return pa.table({"entry": [json.dumps({"fatal": fatal, "start": start})]})

    def _predict(self, table: Any) -> Any:
        import pyarrow as pa

        if self.init_error is not None:
            raise self.init_error
        if self.crash_marker and not os.path.exists(self.crash_marker):
            Path(self.crash_marker).write_text(str(os.getpid()))
            os._exit(1)  # a worker dying mid-job (test hook)
        info = {"label_names": self.runner.label_names, "device": self.runner.device, "notices": self.runner.notices}
        if table.num_rows == 0:
            return pa.table({"entry": pa.array([], pa.string())})
        ids = table.column("row_id").to_numpy()
        start, size, step = int(ids[0]), len(ids), self.opts.chunk_size
        if start % step or int(ids[-1]) != start + size - 1 or size > step:
            raise PredictError(
                f"the Ray engine got rows {start}..{int(ids[-1])} ({size} rows) as one batch; expected one chunk of "
                f"{step} rows starting at a multiple of {step} (a hubtune bug: report it; --engine local works)"
            )
        name = f"chunk-{start:012d}"
        marker = self.parts / f"{name}.json"
        if marker.is_file():  # committed by an earlier attempt (retry) or run (--resume): reuse, never duplicate
            entry = dict(read_json(marker), reused=True)
            return pa.table({"entry": [json.dumps(dict(entry, **info))]})
        columns = table.drop_columns(["row_id"]).to_pydict()
        chunk = prepare_chunk(Chunk(index=start // step, start=start, columns=columns, valid=None, errors=[]),  # type: ignore[arg-type]
                         self.runner.tokenizer, self.text, self.pair, self.max_length, self.opts.stride)
        if chunk.errors and self.opts.on_error == "fail":
            pos, reason = chunk.errors[0]
            raise RowError(
                f"row {start + pos} cannot be predicted: {reason}; fix the data, or pass --on-error skip "
                "to record such rows in the errors file and go on"
            )
        logits = run_chunk(self.runner, chunk, self.opts.batch_size, self.opts.max_batch_tokens)
        entry, notice = write_shard(
            self.parts, name, chunk, logits, keep=self.keep, label_names=self.runner.label_names,
            all_scores=self.opts.all_scores, label_column=self.label if self.head.scores_metrics else None,
            feature=self.feature, source=self.opts.dataset, head=self.head,
        )
        entry = {"index": chunk.index, **entry, "notice": notice}
        write_json(marker, entry)  # the commit point of this chunk
        return pa.table({"entry": [json.dumps(dict(entry, reused=False, **info))]})


def _stream_chunks(ray: Any, opts: PredictOptions, ds: Any, needed: list[str]) -> Iterator[tuple[int, int, Any]]:
    """(first row id, rows, object ref of the chunk with a leading ``row_id`` column), chunk by chunk: the input
    opened streaming (``datasets``: local files and Hub datasets, exactly the rows, types and order the local
    engine reads) is read here one chunk at a time, each put in the object store only when an actor will take it
    soon (see the back-pressure in :func:`_run`): never whole, whatever its size."""
    import pyarrow as pa

    stream = ds.select_columns(needed)
    if opts.limit is not None:
        stream = stream.take(opts.limit)
    start = 0
    for batch in stream.iter(batch_size=opts.chunk_size):
        t = pa.table(batch)
        t = t.add_column(0, "row_id", pa.array(range(start, start + t.num_rows), type=pa.int64()))
        yield start, t.num_rows, ray.put(t)
        start += t.num_rows


def _hubtune_cause(exc: BaseException) -> HubtuneError | None:
    """The HubtuneError an actor raised, out of Ray's wrappers (RayTaskError, UserCodeException)."""
    seen: set[int] = set()
    todo: list[Any] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, HubtuneError):
            return e
        todo += [getattr(e, "cause", None), e.__cause__, e.__context__]
    return None


# --------------------------------------------------------------------------------------------------
# The step
# --------------------------------------------------------------------------------------------------
def batch_predict_ray(opts: PredictOptions) -> PredictResult:
    """``batch_predict`` on Ray actors (see the module docstring); same output files and columns as the local engine."""
    t0 = time.perf_counter()
    fmt = check_options(opts)
    workers = opts.num_workers if opts.num_workers is not None else 1
    if workers < 1:
        raise ConfigError(f"--num-workers must be >= 1, found {workers}")
    if opts.gpus_per_worker < 0:
        raise ConfigError(f"--gpus-per-worker must be >= 0, found {opts.gpus_per_worker}")
    if opts.num_shards > 1:
        raise ConfigError(
            f"--num-shards {opts.num_shards} is for --engine local (one process per shard); --engine ray spreads one "
            "run over --num-workers actors: drop --num-shards/--shard-index"
        )
    ray = import_ray()
    output, parts, previous = prepare_output(opts)
    try:
        return _run(ray, opts, t0, fmt, workers, output, parts, previous)
    except BaseException:
        if previous is None:
            discard_unfinished(parts)  # nothing finished: the corrected command must not be refused
        raise


def _run(ray: Any, opts: PredictOptions, t0: float, fmt: str, workers: int, output: Path, parts: Path,
         previous: dict[str, Any] | None) -> PredictResult:
    spec, ds, cols, keep = open_input(opts)
    model_dir, commit = resolve_model_dir(opts.model, revision=opts.revision, backend=opts.backend)
    identity = model_identity(opts.model, model_dir, commit)
    notices: list[str] = []
    # backend/dtype resolved once here (measured, cached, checked); the actors run the resolved ones
    texts = [c for c in (cols.text, cols.text_pair) if c]
    probe, choice = choose_runner(opts, model_dir, identity, lambda n: ds.select_columns(texts).take(n if opts.limit is None else min(n, opts.limit)), cols,
                                  parts / "_onnx_export", previous)
    notices += probe.notices
    head = run_head(probe, opts, cols, opts.max_length or probe.max_length)  # the task's options checked once, here
    pooling = getattr(probe, "pooling", None)
    onnx_path = getattr(probe, "onnx_path", None)
    stride = resolve_stride(probe.tokenizer, opts.max_length or probe.max_length, opts.long_text, opts.stride, cols.text_pair)
    del probe
    opts = replace(opts, backend=choice["backend"], dtype=choice["dtype"], stride=stride,
                   onnx_file=str(onnx_path) if onnx_path is not None else opts.onnx_file)
    prediction = prediction_settings(opts, cols, None, opts.max_length, onnx_path, stride, head.task, head.threshold, pooling)
    manifest = new_manifest(opts, identity, None, spec, ds, cols, keep, fmt, 0, opts.limit, opts.limit, prediction)
    manifest["engine"] = "ray"
    manifest["choice"] = choice
    if previous is not None:
        compare_manifest(previous, manifest, output)  # also refuses a run started by the other engine
    write_json(parts / "manifest.json", manifest)
    # chunks committed by the interrupted run (--resume); a retried chunk of this run is not "resumed"
    committed_before = {p.name[: -len(".json")] for p in parts.glob("chunk-*.json")} if previous is not None else set()
    feature = label_feature(ds, cols.label)
    needed = [c for c in dict.fromkeys([cols.text, cols.text_pair, cols.label, *keep]) if c]

    started = False
    if not ray.is_initialized():
        try:
            ray.init(address=opts.address, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
        except Exception as exc:  # noqa: BLE001 - connection errors come in many types
            raise ConfigError(
                f"could not start or reach Ray at --address {opts.address or '(local)'} ({type(exc).__name__}: "
                f"{' '.join(str(exc).split())[:200]}); expected 'auto' with a running `ray start --head`, "
                "ray://HOST:10001, or no --address for a local Ray"
            ) from None
        started = True
    elif opts.address:
        notices.append(f"Ray was already initialised in this process; --address {opts.address} was not used")
    try:
        worker_opts = replace(opts, num_threads=opts.num_threads or max(1, (os.cpu_count() or 1) // workers), progress=False)
        crash = os.environ.get(CRASH_ONCE_ENV) or None
        # bounded restarts (Ray's default for actors is none): a dead actor restarts and its chunk is retried
        actor_cls = ray.remote(_ChunkPredictor).options(
            num_cpus=1, num_gpus=opts.gpus_per_worker or 0, max_restarts=MAX_RESTARTS, max_task_retries=MAX_RESTARTS
        )
        kwargs = {"model_dir": str(model_dir), "opts": worker_opts, "parts": str(parts), "text": cols.text,
                  "pair": cols.text_pair, "label": cols.label, "keep": keep, "feature": feature, "crash_marker": crash}
        pool = ray.util.ActorPool([actor_cls.remote(**kwargs) for _ in range(workers)])
        entries: list[dict[str, Any]] = []

        def collect() -> None:
            table = pool.get_next_unordered()
            for raw in table.column("entry").to_pylist():
                entry = json.loads(raw)
                if "fatal" in entry:  # raise it here, with its own type (exit code); stops the job
                    import hubtune.core.errors as errors_module

                    cls = getattr(errors_module, entry["fatal"]["type"], PredictError)
                    raise (cls if isinstance(cls, type) and issubclass(cls, HubtuneError) else PredictError)(entry["fatal"]["message"])
                entries.append(entry)
                bar.update(entry["end"] - entry["start"])

        from tqdm.auto import tqdm

        bar = tqdm(total=opts.limit, unit="rows", unit_scale=True, disable=not opts.progress, dynamic_ncols=True,
                   desc="batch-predict (ray)")
        t_run = time.perf_counter()
        n = 0
        in_flight = 0
        try:
            # the input streams: a chunk is read only when fewer than 2 per actor are waiting (back-pressure)
            for _start, rows, ref in _stream_chunks(ray, opts, ds, needed):
                n += rows
                pool.submit(lambda actor, chunk: actor.predict.remote(chunk), ref)
                in_flight += 1
                while in_flight >= 2 * workers:
                    collect()
                    in_flight -= 1
            while pool.has_next():
                collect()
        except HubtuneError:
            raise
        except Exception as exc:  # noqa: BLE001 - Ray/pyarrow readers and tasks raise many types
            cause = _hubtune_cause(exc)
            if cause is not None:
                raise cause from None
            raise PredictError(
                f"the Ray job failed reading or predicting {opts.dataset} ({type(exc).__name__}: "
                f"{' '.join(str(exc).split())[:300]}); expected a well-formed input (pyarrow parses csv/json with one "
                f"type per column); the committed chunks are kept in {parts}: fix the cause and re-run with --resume, "
                "or use --engine local"
            ) from None
        finally:
            bar.close()
        if n == 0:
            raise EmptyDatasetError(f"dataset {opts.dataset} has no rows to predict (check the spec or --limit)")
        seconds_run = time.perf_counter() - t_run
    finally:
        if started:
            ray.shutdown()

    entries.sort(key=lambda e: e["start"])
    expect = 0
    for e in entries:  # every row exactly once: the chunks tile 0..n
        if e["start"] != expect:
            what = "twice" if e["start"] < expect else "in no chunk"
            raise PredictError(
                f"rows {min(expect, e['start'])}..{max(expect, e['start']) - 1} are {what} after the Ray job; expected "
                f"each row once: re-run with --overwrite"
            )
        expect = e["end"]
    if expect != n:
        raise PredictError(f"the Ray job covered rows 0..{expect - 1} of {n}; re-run with --resume")
    label_names = entries[0]["label_names"]
    device = entries[0]["device"]
    for e in entries:
        notices += [m for m in e.get("notices", []) if m not in notices]
    metrics_enabled = cols.label is not None and bool(label_names) and head.scores_metrics
    if cols.label is not None and not head.scores_metrics:
        notices.append(f"no metrics: batch-predict scores text-classification labels, and this model's task is "
                       f"{head.task} (column {cols.label!r} is not compared)")
    for e in entries:
        if e.get("notice"):
            metrics_enabled = False
            if e["notice"] not in notices:
                notices.append(e["notice"])
    keys = ("index", "file", "start", "end", "rows", "errors", "errors_file", "eval_file", "truncated", "windows", "chunked")
    manifest["shards"] = [{k: e[k] for k in keys if k in e} for e in entries]
    manifest["label_names"] = label_names
    resumed = sum(e["end"] - e["start"] for e in entries if Path(e["file"]).stem in committed_before)
    processed = n - resumed
    done = assemble(opts, output, parts, manifest, label_names=label_names, metrics_enabled=metrics_enabled)
    notices += done["notices"]
    return make_result(opts, done, output=output, started=t0, seconds_run=seconds_run, processed=processed,
                       device=device, resumed=resumed, identity=identity, notices=notices, choice=choice, engine="ray",
                       workers=workers)


__all__ = ["batch_predict_ray", "import_ray", "CRASH_ONCE_ENV"]
