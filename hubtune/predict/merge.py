"""``merge-predictions``: the outputs of K sharded batch-predict runs (:mod:`.output` wrote each with its
.meta.json) joined into one, ordered by row id. Everything is checked before anything is written: each part's
metadata (:func:`read_meta`), that the parts come from one run and cover every row once, and every part and
errors file read in full; OUTPUT and its sidecars are then written under temporary names and replace an old
OUTPUT only once complete, so a refusal (or a full disk) leaves it as it was."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from hubtune.core.errors import ConfigError, OutputExistsError, PartError, PredictError, ResumeMismatchError
from hubtune.predict.options import MergeResult, output_format
from hubtune.predict.output import (
    PREDICTION_DEFAULTS,
    check_writable,
    long_text_summary,
    read_json_object,
    refuse_directory,
    sidecar,
)
from hubtune.predict.shards import Writer, disk_guard, kill_point, write_errors, write_json

MERGE_HINT = "free some space (or pass an --output on another disk), then re-run merge-predictions"
# what merge-predictions reads from a part's metadata, and the type it must have
META_FIELDS = {"model": dict, "dataset": dict, "options": dict, "range": dict, "rows": int, "errors": int}
OPTIONAL_META_FIELDS = {"prediction": dict, "long_text": dict, "truncated_rows": int}
PART_READ_ERRORS = (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError)  # pyarrow's ArrowInvalid: a ValueError


def read_meta(part: str | os.PathLike[str]) -> dict[str, Any]:
    """The batch-predict metadata of an output (its .meta.json, else a parquet output's own metadata), checked:
    a missing, unreadable or malformed part or metadata is a PartError naming the file."""
    p = Path(part)
    if p.is_dir():
        raise PartError(f"prediction part {p} is a directory; expected an output file of `hubtune batch-predict "
                        "--num-shards K` (preds.parquet, .jsonl or .csv)")
    if not p.is_file():
        raise PartError(f"prediction part {p} does not exist; pass the outputs of `hubtune batch-predict --num-shards K`")
    side = sidecar(p, ".meta.json")
    fix = f"restore {side.name} or re-run that part's batch-predict"
    meta = None
    if side.exists():
        meta = read_json_object(side, "the metadata", fix)
    elif p.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        try:
            md = pq.read_schema(p).metadata or {}
        except PART_READ_ERRORS as exc:
            raise PartError(f"prediction part {p} is not a readable parquet file ({type(exc).__name__}: {exc}); "
                            "expected an untouched batch-predict output: re-run that part's batch-predict") from None
        if b"hubtune" in md:
            try:
                meta = json.loads(md[b"hubtune"])
            except ValueError:
                meta = None
    if meta is None:
        raise PredictError(
            f"{p} has no batch-predict metadata (neither {side.name} beside it nor parquet metadata); "
            "expected an output of `hubtune batch-predict` (keep its .meta.json next to it)"
        )
    for key, kind in META_FIELDS.items():
        value = meta.get(key) if isinstance(meta, dict) else None
        ok = isinstance(value, kind) and not isinstance(value, bool)
        if ok and key == "range":
            ok = all(isinstance(value.get(k), int) for k in ("start", "end")) and value["start"] <= value["end"]
        if not ok:
            raise PartError(f"the metadata of {p} has no valid {key!r} (found {str(value)[:60]!r}); expected what "
                            f"batch-predict writes: {fix}")
    for key, kind in OPTIONAL_META_FIELDS.items():
        value = meta.get(key)
        if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
            raise PartError(f"the metadata of {p} has an invalid {key!r} (found {str(value)[:60]!r}); expected what "
                            f"batch-predict writes: {fix}")
    return meta


def _read_part(path: Path, columns: list[str] | None = None) -> Any:
    fmt = output_format(path)
    if fmt == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path, columns=columns)
    if fmt == ".csv":
        import pyarrow.csv as pcsv

        t = pcsv.read_csv(path)
    else:
        import pyarrow.json as pjson

        t = pjson.read_json(path)
    return t.select(columns) if columns else t


def _read_checked(p: Path, m: dict[str, Any], columns: list[str] | None = None) -> Any:
    """Part ``p`` (or its ``columns``), checked against its metadata ``m``: readable, the rows it says, row ids
    inside its range and increasing. A PartError otherwise."""
    try:
        t = _read_part(p, columns)
    except PART_READ_ERRORS as exc:
        raise PartError(f"prediction part {p} cannot be read ({type(exc).__name__}: {str(exc)[:200]}); expected an "
                        "untouched batch-predict output: re-run that part's batch-predict") from None
    if t.num_rows != m["rows"]:
        raise PartError(f"{p} holds {t.num_rows} rows but its metadata says {m['rows']}; expected an untouched "
                        "batch-predict output: re-run that part's batch-predict")
    if t.num_rows:
        try:
            ids = t["row_id"].to_numpy()
        except PART_READ_ERRORS:
            raise PartError(f"{p} has no row_id column; expected an untouched batch-predict output: re-run that "
                            "part's batch-predict") from None
        s, e = m["range"]["start"], m["range"]["end"]
        if ids.min() < s or ids.max() >= e or (len(ids) > 1 and not (np.diff(ids) > 0).all()):
            raise PartError(f"{p} holds row ids outside its range {s}..{e - 1} or out of order; expected an "
                            "untouched batch-predict output: re-run that part's batch-predict")
    return t


def _error_rows(p: Path) -> Iterator[dict[str, Any]]:
    ep = sidecar(p, ".errors.jsonl")
    if not ep.is_file():
        return
    try:
        with open(ep, encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                row = json.loads(line)
                if not isinstance(row, dict):
                    raise ValueError(f"line {n} is not an object")
                yield row
    except PART_READ_ERRORS as exc:
        raise PartError(f"the errors file {ep} cannot be read ({type(exc).__name__}: {exc}); expected the rows "
                        "batch-predict wrote: restore it or re-run that part's batch-predict") from None


def _check_one_run(metas: Sequence[tuple[Path, dict[str, Any]]]) -> None:
    """The parts come from one sharded run: one model, path, task, long-text setting, dataset and options."""
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


def merge_predictions(parts: Sequence[str], output: str, *, overwrite: bool = False) -> MergeResult:
    """Join the outputs of K sharded runs into one result ordered by row id; refuse overlaps, gaps, mismatches.
    Everything is checked before anything is written (every part read in full), and OUTPUT with its sidecars
    is replaced only once the new one is complete: a refusal leaves an old OUTPUT as it was."""
    out = Path(output)
    output_format(out)
    if not parts:
        raise ConfigError("no parts given; pass the outputs of the sharded batch-predict runs")
    refuse_directory(out)
    if out.exists() and not overwrite:
        raise OutputExistsError(f"{out} already exists; pass --overwrite or choose another --output")
    check_writable(out.parent, out)
    taken = {Path(p).resolve() for p in parts} | {sidecar(p, x).resolve() for p in parts for x in (".meta.json", ".errors.jsonl")}
    if {out.resolve(), sidecar(out, ".meta.json").resolve(), sidecar(out, ".errors.jsonl").resolve()} & taken:
        raise ConfigError(f"--output {out} is one of the parts (or their sidecars), which the merge would replace; "
                          "expected an output apart from the parts: choose another --output")
    metas = [(Path(p), read_meta(p)) for p in parts]
    _check_one_run(metas)
    m0 = metas[0][1]
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
        raise PredictError(f"the parts cover rows 0..{expect - 1} but the dataset has {total} rows (rows {expect}.."
                           f"{total - 1} are in no part); run the missing --shard-index and pass its output")
    for p, m in metas:  # every part and errors file reads, before anything is written
        _read_checked(p, m, ["row_id"] if p.suffix.lower() == ".parquet" else None)
        for _ in _error_rows(p):
            pass
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
    errors_path, meta_path = sidecar(out, ".errors.jsonl"), sidecar(out, ".meta.json")
    staged_errors, staged_meta = (out.with_name(f".{x.name}.staged") for x in (errors_path, meta_path))
    writer = Writer(out, meta, hint=MERGE_HINT)
    rows = 0
    try:
        with disk_guard(out, hint=MERGE_HINT):
            out.parent.mkdir(parents=True, exist_ok=True)
        for p, m in metas:
            t = _read_checked(p, m)
            rows += t.num_rows
            writer.write(t)
        writer.close(commit=False)
        n_err = write_errors(staged_errors, (e for p, _ in metas for e in _error_rows(p)), hint=MERGE_HINT)
        write_json(staged_meta, meta, hint=MERGE_HINT)
        kill_point("merge-staged")
    except BaseException:
        writer.abort()
        for staged in (staged_errors, staged_meta):
            if staged.exists():
                staged.unlink()
        raise
    # the new result is complete: its sidecars, then OUTPUT itself replace the old ones
    os.replace(staged_meta, meta_path)
    if n_err:
        os.replace(staged_errors, errors_path)
    elif errors_path.exists():
        errors_path.unlink()
    writer.commit()
    return MergeResult(rows=rows, errors=n_err, parts=len(metas), output=str(out), errors_path=str(errors_path) if n_err else None, meta_path=str(meta_path))
