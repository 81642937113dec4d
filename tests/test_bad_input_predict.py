"""Issue 35: the bad-input battery of batch-predict and merge-predictions.

Each case runs the real CLI (in this process) on bad input and asserts one ``error:`` line, an exit code other
than 0 and 70 (the case's own), no traceback, nothing written or deleted under the watched folders (no partial
output, a good output kept), and - where a fix is given - that the same command succeeds once it is applied.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ._bad_input import cli, refused_cleanly, succeeds
from .test_predict import TWEETS, _save_tiny

N_ROWS = 50
FAST = ["--backend", "torch", "--dtype", "fp32", "--chunk-size", "20", "--no-progress"]


def readonly_target(tmp_path: Path) -> Path:
    """A folder that refuses writes: 0555 (or, as root, who writes anywhere, a path under /sys)."""
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        return ro
    if not Path("/sys").is_dir():
        pytest.skip("root without /sys: no folder refuses writes")
    return Path("/sys") / f"hubtune-test-{os.getpid()}"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Two tiny classifiers, a 50-row csv (and a reversed copy), the two parts of a 2-shard run of it, a part of
    shard 1 by the other model and by the other data, and an interrupted single run (parts kept, no output)."""
    from hubtune.predict import PredictOptions, batch_predict

    root = tmp_path_factory.mktemp("bad_predict")
    tiny = _save_tiny(root / "tiny", seed=0)
    other = _save_tiny(root / "other", seed=1)
    df = pd.read_csv(TWEETS).iloc[:N_ROWS]
    data = root / "data.csv"
    df.to_csv(data, index=False)
    rev = root / "rev.csv"
    df.iloc[::-1].to_csv(rev, index=False)
    parts = root / "parts"
    parts.mkdir()

    def run(model, dataset, output, **kw):
        batch_predict(PredictOptions(model=str(model), dataset=str(dataset), output=str(output), backend="torch",
                                     dtype="fp32", chunk_size=20, progress=False, **kw))

    for i in range(2):
        run(tiny, data, parts / f"p{i}.parquet", num_shards=2, shard_index=i)
    run(other, data, parts / "other1.parquet", num_shards=2, shard_index=1)
    run(tiny, rev, parts / "rev1.parquet", num_shards=2, shard_index=1)
    interrupted = root / "interrupted"
    interrupted.mkdir()
    run(tiny, data, interrupted / "p.parquet", keep_parts=True)
    for f in interrupted.iterdir():  # as if killed after the last shard: the parts are what is left
        if f.is_file():
            f.unlink()
    return {"root": root, "tiny": tiny, "other": other, "data": data, "rev": rev, "parts": parts,
            "interrupted": interrupted}


@dataclass
class Case:
    id: str
    args: Callable[[dict], list]  # the command (ctx: the case's paths)
    setup: Callable[[dict], None] = lambda ctx: None
    fix: Callable[[dict], list] | None = None  # applies the fix, returns the command to retry (None: no retry)
    code: int | None = None
    needles: tuple = ()
    watch: tuple = ("out",)
    skip_root_fix: bool = False
    extra: dict = field(default_factory=dict)


def _bp(ctx, *more, output=None, dataset=None, model=None):
    return ["batch-predict", "-m", str(model or ctx["tiny"]), "-d", str(dataset or ctx["data"]),
            "-o", str(output or ctx["out"] / "p.parquet"), *FAST, *more]


def _mp(ctx, *parts, output=None, more=()):
    return ["merge-predictions", *[str(ctx["in"] / p) for p in parts], "-o", str(output or ctx["out"] / "m.parquet"),
            *more]


def _write(path: Path, content: bytes | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content if isinstance(content, bytes) else content.encode())


def _old_output(ctx, name="m.parquet"):
    _write(ctx["out"] / name, "OLD\n")


def _edit_json(path, fn):
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


def _edit_meta(ctx, part, fn):
    _edit_json(ctx["in"] / f"{part}.meta.json", fn)


def _restore(ctx, *names):
    for n in names:
        shutil.copy2(ctx["world"]["parts"] / n, ctx["in"] / n)


def _rewrite_part(ctx, part, fn):
    t = pq.read_table(ctx["in"] / part)
    schema_md = t.schema.metadata
    t = fn(t).replace_schema_metadata(schema_md)
    pq.write_table(t, ctx["in"] / part)


def _shift_ids(t):
    return t.set_column(0, "row_id", pa.array([x + 1 for x in t["row_id"].to_pylist()], pa.int64()))


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _csv(ctx, name, text):
    _write(ctx["in"] / name, text)
    return ctx["in"] / name


def _fix_data(ctx, name, *more, **kw):
    shutil.copy2(ctx["data"], ctx["in"] / name)
    return _bp(ctx, *more, dataset=ctx["in"] / name, **kw)


def _interrupted(ctx):
    shutil.copytree(ctx["world"]["interrupted"], ctx["out"], dirs_exist_ok=True)


def _resume(ctx, *more, **kw):
    return _bp(ctx, "--resume", *more, **kw)


BP = "batch-predict"
CASES: list[Case] = [
    # ---- the input ---------------------------------------------------------------------------------------------
    Case("bp-missing-dataset", lambda c: _bp(c, dataset=c["in"] / "nope.csv"), code=3, needles=("nope.csv",),
         fix=lambda c: _fix_data(c, "nope.csv")),
    Case("bp-empty-csv-file", lambda c: _bp(c, dataset=_csv(c, "empty.csv", ""))
         , fix=lambda c: _fix_data(c, "empty.csv")),
    Case("bp-header-only-csv", lambda c: _bp(c, dataset=_csv(c, "h.csv", "text,label\n")),
         fix=lambda c: _fix_data(c, "h.csv")),
    Case("bp-empty-jsonl", lambda c: _bp(c, dataset=_csv(c, "e.jsonl", "")),
         fix=lambda c: _bp(c, dataset=_csv(c, "e.jsonl", '{"text": "fine day"}\n'))),
    Case("bp-wrong-text-column", lambda c: _bp(c, "--text-column", "txt"), code=3, needles=("txt", "--text-column"),
         fix=lambda c: _bp(c, "--text-column", "text")),
    Case("bp-wrong-text-pair-column", lambda c: _bp(c, "--text-pair-column", "pair"), code=3, needles=("pair",),
         fix=lambda c: _bp(c)),
    Case("bp-wrong-label-column", lambda c: _bp(c, "--label-column", "gold"), code=3, needles=("gold",),
         fix=lambda c: _bp(c, "--label-column", "label")),
    Case("bp-wrong-keep-columns", lambda c: _bp(c, "--keep-columns", "uid"), code=3, needles=("--keep-columns",),
         fix=lambda c: _bp(c, "--keep-columns", "text")),
    Case("bp-non-utf8-csv", lambda c: _bp(c, dataset=_csv(c, "l1.csv", "text,label\ncaf\xe9 ol\xe9,positive\n"
                                                              .encode("latin-1"))), code=3, needles=("--encoding",),
         fix=lambda c: _bp(c, "--encoding", "latin-1", dataset=c["in"] / "l1.csv")),
    Case("bp-nan-text-on-error-fail", lambda c: _bp(c, "--on-error", "fail", dataset=_csv(
        c, "nan.csv", "text,label\ngood day,positive\n,neutral\nbad day,negative\n")), code=32, needles=("row 1",),
         fix=lambda c: _bp(c, dataset=c["in"] / "nan.csv")),
    Case("bp-dataset-is-empty-dir", lambda c: _bp(c, dataset=(c["in"] / "d").mkdir() or c["in"] / "d"),
         fix=lambda c: _bp(c, dataset=shutil.copy2(c["data"], c["in"] / "d" / "x.csv") and c["in"] / "d")),
    Case("bp-dataset-dir-of-text", lambda c: _bp(c, dataset=_csv(c, "d2/notes.txt", "hello").parent),
         fix=lambda c: _bp(c, dataset=shutil.copy2(c["data"], c["in"] / "d2" / "x.csv") and c["in"] / "d2")),
    # ---- the model ---------------------------------------------------------------------------------------------
    Case("bp-missing-model", lambda c: _bp(c, model=c["in"] / "nomodel"), code=5, needles=("nomodel",),
         fix=lambda c: _bp(c, model=shutil.copytree(c["tiny"], c["in"] / "nomodel"))),
    Case("bp-model-without-config", lambda c: _bp(c, model=(c["in"] / "m").mkdir() or c["in"] / "m"), code=5,
         needles=("config.json",), fix=lambda c: _bp(c, model=shutil.copytree(c["tiny"], c["in"] / "m",
                                                                               dirs_exist_ok=True))),
    # ---- the options -------------------------------------------------------------------------------------------
    Case("bp-shard-index-too-big", lambda c: _bp(c, "--num-shards", "2", "--shard-index", "2"), code=2,
         needles=("--shard-index",), fix=lambda c: _bp(c, "--num-shards", "2", "--shard-index", "1")),
    Case("bp-shard-index-negative", lambda c: _bp(c, "--shard-index", "-1"), code=2, needles=("--shard-index",),
         fix=lambda c: _bp(c, "--shard-index", "0")),
    Case("bp-num-shards-zero", lambda c: _bp(c, "--num-shards", "0"), code=2, needles=("--num-shards",),
         fix=lambda c: _bp(c, "--num-shards", "1")),
    Case("bp-chunk-size-zero", lambda c: _bp(c, "--chunk-size", "0"), code=2, needles=("--chunk-size",),
         fix=lambda c: _bp(c, "--chunk-size", "25")),
    Case("bp-batch-size-zero", lambda c: _bp(c, "--batch-size", "0"), code=2, needles=("--batch-size",),
         fix=lambda c: _bp(c, "--batch-size", "8")),
    Case("bp-negative-limit", lambda c: _bp(c, "--limit", "-1"), code=2, needles=("--limit",),
         fix=lambda c: _bp(c, "--limit", "10")),
    Case("bp-max-length-zero", lambda c: _bp(c, "--max-length", "0"), code=2, needles=("--max-length",),
         fix=lambda c: _bp(c, "--max-length", "32")),
    Case("bp-max-length-no-room-for-text", lambda c: _bp(c, "--max-length", "1"), code=17,
         needles=("--max-length", "special tokens"), fix=lambda c: _bp(c, "--max-length", "16")),
    Case("bp-max-length-above-the-model", lambda c: _bp(c, "--max-length", "5000", dataset=_csv(
        c, "long.csv", "text\n" + "word " * 900 + "\nshort one\n")), code=17, needles=("--max-length", "512"),
         fix=lambda c: _bp(c, "--max-length", "512", dataset=c["in"] / "long.csv")),
    Case("bp-unknown-on-error", lambda c: _bp(c, "--on-error", "ignore"), code=2, needles=("--on-error",),
         fix=lambda c: _bp(c, "--on-error", "skip")),
    Case("bp-stride-without-chunk", lambda c: _bp(c, "--stride", "8"), code=2, needles=("--stride",),
         fix=lambda c: _bp(c, "--stride", "8", "--long-text", "chunk")),
    Case("bp-threshold-out-of-range", lambda c: _bp(c, "--threshold", "2"), code=2, needles=("--threshold",),
         fix=lambda c: _bp(c)),
    Case("bp-output-bad-extension", lambda c: _bp(c, output=c["out"] / "p.txt"), code=2, needles=(".parquet",),
         fix=lambda c: _bp(c, output=c["out"] / "p.jsonl")),
    Case("bp-resume-and-overwrite", lambda c: _bp(c, "--resume", "--overwrite"), code=2, needles=("--resume",),
         fix=lambda c: _bp(c, "--overwrite")),
    # ---- the output --------------------------------------------------------------------------------------------
    Case("bp-existing-output", lambda c: _bp(c), setup=lambda c: _old_output(c, "p.parquet"), code=4,
         needles=("--overwrite",), fix=lambda c: _bp(c, "--overwrite")),
    Case("bp-output-is-dir", lambda c: _bp(c), setup=lambda c: (c["out"] / "p.parquet").mkdir(parents=True),
         code=4, needles=("directory",), fix=lambda c: _bp(c, output=c["out"] / "q.parquet")),
    Case("bp-output-is-dir-overwrite", lambda c: _bp(c, "--overwrite"),
         setup=lambda c: _write(c["out"] / "p.parquet" / "keep.txt", "mine"), code=4, needles=("directory",),
         fix=lambda c: _bp(c, "--overwrite", output=c["out"] / "q.parquet")),
    Case("bp-output-parent-is-file", lambda c: _bp(c, output=c["out"] / "f" / "p.parquet"),
         setup=lambda c: _write(c["out"] / "f", "x"), code=40, needles=("--output",),
         fix=lambda c: _bp(c, output=c["out"] / "g" / "p.parquet")),
    Case("bp-readonly-output", lambda c: _bp(c, output=c["ro"] / "p.parquet"), code=40, needles=("--output",),
         watch=("out", "ro"), fix=lambda c: _bp(c, output=c["out"] / "p.parquet")),
    Case("bp-overwrite-keeps-good-output-on-bad-column", lambda c: _bp(c, "--overwrite", "--text-column", "txt"),
         setup=lambda c: _old_output(c, "p.parquet"), code=3, fix=lambda c: _bp(c, "--overwrite")),
    Case("bp-new-output-folder-bad-column", lambda c: _bp(c, "--text-column", "txt",
                                                         output=c["out"] / "new" / "deeper" / "p.parquet"), code=3,
         fix=lambda c: _bp(c, output=c["out"] / "new" / "deeper" / "p.parquet")),
    Case("bp-output-is-the-dataset", lambda c: _bp(c, "--overwrite", dataset=c["in"] / "x.csv",
                                                  output=c["in"] / "x.csv"),
         setup=lambda c: shutil.copy2(c["data"], c["in"] / "x.csv"), code=2, needles=("--dataset", "--output"),
         fix=lambda c: _bp(c, "--overwrite", dataset=c["in"] / "x.csv", output=c["out"] / "x.csv")),
    Case("bp-overwrite-keeps-interrupted-parts-on-bad-column", lambda c: _bp(c, "--overwrite", "--text-column", "txt"),
         setup=_interrupted, code=3, needles=("txt",), fix=lambda c: _bp(c, "--overwrite")),
    # ---- resume ------------------------------------------------------------------------------------------------
    Case("bp-resume-other-model", lambda c: _resume(c, model=c["other"]), setup=_interrupted, code=31,
         needles=("model",), fix=lambda c: _resume(c)),
    Case("bp-resume-other-dataset", lambda c: _resume(c, dataset=c["rev"]), setup=_interrupted, code=31,
         needles=("dataset",), fix=lambda c: _resume(c)),
    Case("bp-resume-other-text-column", lambda c: _resume(c, "--text-column", "label"), setup=_interrupted,
         code=31, needles=("text_column",), fix=lambda c: _resume(c)),
    Case("bp-resume-other-dtype", lambda c: _resume(c, "--dtype", "bf16"), setup=_interrupted, code=31,
         needles=("dtype",), fix=lambda c: _resume(c)),
    Case("bp-resume-other-backend", lambda c: _resume(c, "--backend", "onnx"), setup=_interrupted, code=31,
         needles=("backend",), fix=lambda c: _resume(c)),
    Case("bp-resume-other-max-length", lambda c: _resume(c, "--max-length", "16"), setup=_interrupted, code=31,
         needles=("max_length",), fix=lambda c: _resume(c)),
    Case("bp-resume-other-limit", lambda c: _resume(c, "--limit", "30"), setup=_interrupted, code=31,
         needles=("limit",), fix=lambda c: _resume(c)),
    Case("bp-resume-other-keep-columns", lambda c: _resume(c, "--keep-columns", "text"), setup=_interrupted,
         code=31, needles=("keep_columns",), fix=lambda c: _resume(c)),
    Case("bp-resume-complete-output", lambda c: _resume(c), setup=lambda c: _old_output(c, "p.parquet"), code=4,
         needles=("complete",), fix=lambda c: _bp(c, "--overwrite")),
    Case("bp-resume-corrupt-manifest", lambda c: _resume(c),
         setup=lambda c: _write(c["out"] / "p.parquet.parts" / "manifest.json", "{not json"), code=33,
         needles=("manifest.json", "--overwrite"), fix=lambda c: _bp(c, "--overwrite")),
    Case("bp-resume-manifest-not-an-object", lambda c: _resume(c),
         setup=lambda c: _write(c["out"] / "p.parquet.parts" / "manifest.json", "[1, 2]"), code=33,
         needles=("manifest.json",), fix=lambda c: _bp(c, "--overwrite")),
    Case("bp-resume-recorded-shard-missing", lambda c: _resume(c),
         setup=lambda c: (_interrupted(c), (c["out"] / "p.parquet.parts" / "shard-00001.parquet").unlink()),
         code=33, needles=("shard-00001.parquet", "--overwrite"), fix=lambda c: _bp(c, "--overwrite")),
    Case("bp-resume-manifest-shard-without-rows", lambda c: _resume(c),
         setup=lambda c: (_interrupted(c), _edit_json(c["out"] / "p.parquet.parts" / "manifest.json",
                                                      lambda m: m["shards"][0].pop("rows"))),
         code=33, needles=("manifest.json", "--overwrite"), fix=lambda c: _bp(c, "--overwrite")),
    # ---- merge-predictions -------------------------------------------------------------------------------------
    Case("mp-missing-part", lambda c: _mp(c, "p0.parquet", "p9.parquet"), code=33, needles=("p9.parquet",),
         fix=lambda c: _mp(c, "p0.parquet", "p1.parquet")),
    Case("mp-part-is-dir", lambda c: _mp(c, "p0.parquet", "dir.parquet"),
         setup=lambda c: (c["in"] / "dir.parquet").mkdir(), code=33, needles=("dir.parquet",),
         fix=lambda c: _mp(c, "p0.parquet", "p1.parquet")),
    Case("mp-part-not-parquet", lambda c: _mp(c, "p0.parquet", "p1.parquet"),
         setup=lambda c: _write(c["in"] / "p1.parquet", "hello, not parquet\n"), code=33, needles=("p1.parquet",),
         fix=lambda c: (_restore(c, "p1.parquet"), _mp(c, "p0.parquet", "p1.parquet"))[1]),
    Case("mp-truncated-part", lambda c: _mp(c, "p0.parquet", "p1.parquet"),
         setup=lambda c: _truncate(c["in"] / "p1.parquet"), code=33, needles=("p1.parquet",),
         fix=lambda c: (_restore(c, "p1.parquet"), _mp(c, "p0.parquet", "p1.parquet"))[1]),
    Case("mp-truncated-part-overwrite-keeps-old", lambda c: _mp(c, "p0.parquet", "p1.parquet", more=["--overwrite"]),
         setup=lambda c: (_old_output(c), _truncate(c["in"] / "p1.parquet")), code=33, needles=("p1.parquet",),
         fix=lambda c: (_restore(c, "p1.parquet"), _mp(c, "p0.parquet", "p1.parquet", more=["--overwrite"]))[1]),
    Case("mp-shifted-ids-overwrite-keeps-old", lambda c: _mp(c, "p0.parquet", "p1.parquet", more=["--overwrite"]),
         setup=lambda c: (_old_output(c), _rewrite_part(c, "p1.parquet", _shift_ids)), code=33,
         needles=("row ids",),
         fix=lambda c: (_restore(c, "p1.parquet"), _mp(c, "p0.parquet", "p1.parquet", more=["--overwrite"]))[1]),
    Case("mp-row-dropped", lambda c: _mp(c, "p0.parquet", "p1.parquet"),
         setup=lambda c: _rewrite_part(c, "p1.parquet", lambda t: t.slice(0, t.num_rows - 1)), code=33,
         needles=("p1.parquet",), fix=lambda c: (_restore(c, "p1.parquet"), _mp(c, "p0.parquet", "p1.parquet"))[1]),
    Case("mp-corrupt-meta", lambda c: _mp(c, "p0.parquet", "p1.parquet"),
         setup=lambda c: _write(c["in"] / "p1.parquet.meta.json", "{truncated"), code=33,
         needles=("p1.parquet.meta.json",),
         fix=lambda c: (_restore(c, "p1.parquet.meta.json"), _mp(c, "p0.parquet", "p1.parquet"))[1]),
    Case("mp-meta-not-an-object", lambda c: _mp(c, "p0.parquet", "p1.parquet"),
         setup=lambda c: _write(c["in"] / "p1.parquet.meta.json", "[]"), code=33, needles=("p1.parquet.meta.json",),
         fix=lambda c: (_restore(c, "p1.parquet.meta.json"), _mp(c, "p0.parquet", "p1.parquet"))[1]),
    Case("mp-meta-without-range", lambda c: _mp(c, "p0.parquet", "p1.parquet"),
         setup=lambda c: _edit_meta(c, "p1.parquet", lambda m: m.pop("range")), code=33, needles=("range",),
         fix=lambda c: (_restore(c, "p1.parquet.meta.json"), _mp(c, "p0.parquet", "p1.parquet"))[1]),
    Case("mp-meta-prediction-not-an-object", lambda c: _mp(c, "p0.parquet", "p1.parquet"),
         setup=lambda c: _edit_meta(c, "p1.parquet", lambda m: m.update(prediction="torch")), code=33,
         needles=("prediction",),
         fix=lambda c: (_restore(c, "p1.parquet.meta.json"), _mp(c, "p0.parquet", "p1.parquet"))[1]),
    Case("mp-corrupt-errors-sidecar", lambda c: _mp(c, "p0.parquet", "p1.parquet"),
         setup=lambda c: _write(c["in"] / "p1.parquet.errors.jsonl", '{"row_id": 3, "rea'), code=33,
         needles=("p1.parquet.errors.jsonl",),
         fix=lambda c: ((c["in"] / "p1.parquet.errors.jsonl").unlink(), _mp(c, "p0.parquet", "p1.parquet"))[1]),
    Case("mp-overlapping-parts", lambda c: _mp(c, "p0.parquet", "p0.parquet", "p1.parquet"), code=30,
         needles=("overlap",), fix=lambda c: _mp(c, "p0.parquet", "p1.parquet")),
    Case("mp-gap-first-part-missing", lambda c: _mp(c, "p1.parquet"), code=30, needles=("in no part",),
         fix=lambda c: _mp(c, "p0.parquet", "p1.parquet")),
    Case("mp-last-part-missing", lambda c: _mp(c, "p0.parquet"), code=30, needles=("--shard-index", "25"),
         fix=lambda c: _mp(c, "p0.parquet", "p1.parquet")),
    Case("mp-parts-from-different-models", lambda c: _mp(c, "p0.parquet", "other1.parquet"), code=31,
         needles=("model",), fix=lambda c: _mp(c, "p0.parquet", "p1.parquet")),
    Case("mp-parts-from-different-datasets", lambda c: _mp(c, "p0.parquet", "rev1.parquet"), code=31,
         needles=("dataset",), fix=lambda c: _mp(c, "p0.parquet", "p1.parquet")),
    Case("mp-parts-with-different-dtype", lambda c: _mp(c, "p0.parquet", "p1.parquet"),
         setup=lambda c: _edit_meta(c, "p1.parquet", lambda m: m["prediction"].update(dtype="bf16")), code=31,
         needles=("--dtype",),
         fix=lambda c: (_restore(c, "p1.parquet.meta.json"), _mp(c, "p0.parquet", "p1.parquet"))[1]),
    Case("mp-parts-with-different-task", lambda c: _mp(c, "p0.parquet", "p1.parquet"),
         setup=lambda c: _edit_meta(c, "p1.parquet", lambda m: m["prediction"].update(task="regression")), code=31,
         needles=("--task",),
         fix=lambda c: (_restore(c, "p1.parquet.meta.json"), _mp(c, "p0.parquet", "p1.parquet"))[1]),
    Case("mp-part-without-metadata", lambda c: _mp(c, "p0.parquet", "bare.csv"),
         setup=lambda c: _write(c["in"] / "bare.csv", "row_id,label\n25,neutral\n"), code=30,
         needles=("bare.csv", ".meta.json"), fix=lambda c: _mp(c, "p0.parquet", "p1.parquet")),
    Case("mp-existing-output", lambda c: _mp(c, "p0.parquet", "p1.parquet"), setup=_old_output, code=4,
         needles=("--overwrite",), fix=lambda c: _mp(c, "p0.parquet", "p1.parquet", more=["--overwrite"])),
    Case("mp-output-is-dir", lambda c: _mp(c, "p0.parquet", "p1.parquet"),
         setup=lambda c: (c["out"] / "m.parquet").mkdir(parents=True), code=4, needles=("directory",),
         fix=lambda c: _mp(c, "p0.parquet", "p1.parquet", output=c["out"] / "n.parquet")),
    Case("mp-output-is-dir-overwrite", lambda c: _mp(c, "p0.parquet", "p1.parquet", more=["--overwrite"]),
         setup=lambda c: _write(c["out"] / "m.parquet" / "keep.txt", "mine"), code=4, needles=("directory",),
         fix=lambda c: _mp(c, "p0.parquet", "p1.parquet", output=c["out"] / "n.parquet", more=["--overwrite"])),
    Case("mp-readonly-output", lambda c: _mp(c, "p0.parquet", "p1.parquet", output=c["ro"] / "m.parquet"),
         code=40, needles=("--output",), watch=("out", "ro"), fix=lambda c: _mp(c, "p0.parquet", "p1.parquet")),
    Case("mp-output-parent-is-file", lambda c: _mp(c, "p0.parquet", "p1.parquet", output=c["out"] / "f" / "m.parquet"),
         setup=lambda c: _write(c["out"] / "f", "x"), code=40, needles=("--output",),
         fix=lambda c: _mp(c, "p0.parquet", "p1.parquet")),
    Case("mp-output-is-a-part", lambda c: _mp(c, "p0.parquet", "p1.parquet", output=c["in"] / "p0.parquet",
                                              more=["--overwrite"]), code=2, needles=("--output",),
         fix=lambda c: _mp(c, "p0.parquet", "p1.parquet", more=["--overwrite"])),
    Case("mp-output-bad-extension", lambda c: _mp(c, "p0.parquet", "p1.parquet", output=c["out"] / "m.txt"), code=2,
         needles=(".parquet",), fix=lambda c: _mp(c, "p0.parquet", "p1.parquet", output=c["out"] / "m.csv")),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(world, tmp_path, case: Case):
    ctx = {"world": world, "tiny": world["tiny"], "other": world["other"], "data": world["data"], "rev": world["rev"],
           "in": tmp_path / "in", "out": tmp_path / "out"}
    shutil.copytree(world["parts"], ctx["in"])
    ctx["out"].mkdir()
    if "ro" in case.watch:
        ctx["ro"] = readonly_target(tmp_path)
    case.setup(ctx)
    watch = [ctx[w] for w in case.watch] + [ctx["in"]]
    refused_cleanly(case.args(ctx), watch, *case.needles, code=case.code)
    if case.fix is not None:
        succeeds(case.fix(ctx))


def test_resume_with_another_batch_size_is_allowed(world, tmp_path):
    """--batch-size (and --max-batch-tokens) do not change a prediction: an interrupted run resumes with another."""
    ctx = {"tiny": world["tiny"], "data": world["data"], "out": tmp_path, "world": world}
    _interrupted(ctx)
    (tmp_path / "p.parquet.parts" / "shard-00002.parquet").unlink()
    _edit_json(tmp_path / "p.parquet.parts" / "manifest.json",
               lambda m: m.update(complete=False, shards=m["shards"][:2]))
    res = succeeds(_bp(ctx, "--resume", "--batch-size", "3", "--max-batch-tokens", "512", "--json"))
    assert json.loads(res.stdout)["resumed_rows"] == 40
    assert list(pd.read_parquet(tmp_path / "p.parquet")["row_id"]) == list(range(N_ROWS))


def test_overwrite_replaces_the_parts_of_another_model(world, tmp_path):
    """--overwrite over an interrupted run of another model: none of the old shards is taken into the result."""
    from hubtune.predict import PredictOptions, batch_predict

    ctx = {"tiny": world["tiny"], "data": world["data"], "out": tmp_path, "world": world}
    _interrupted(ctx)
    succeeds(_bp(ctx, "--overwrite", model=world["other"]))
    ref = tmp_path / "ref.parquet"
    batch_predict(PredictOptions(model=str(world["other"]), dataset=str(world["data"]), output=str(ref),
                                 backend="torch", dtype="fp32", chunk_size=20, progress=False))
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "p.parquet"), pd.read_parquet(ref))
    assert not (tmp_path / "p.parquet.parts").exists()
    meta = json.loads((tmp_path / "p.parquet.meta.json").read_text())
    assert meta["model"]["source"] == str(world["other"])


def test_battery_size():
    assert len(CASES) >= 45
