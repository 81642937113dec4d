"""Issue 38: batch-predict's start-up. A local file streams through pyarrow (no ``datasets``, so no torch under an
ONNX run); a malformed CSV is a DataError naming the file, the line and the fix."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from ._bad_input import cli, refused_cleanly, succeeds
from .test_predict import TWEETS, _save_tiny

FAST = ["--chunk-size", "16", "--no-progress"]


@pytest.fixture(scope="module")
def onnx_tiny(tmp_path_factory) -> Path:
    from hubtune.core.onnx_tools import export_onnx

    model = _save_tiny(tmp_path_factory.mktemp("startup") / "tiny", seed=0)
    export_onnx(model, model / "onnx")
    return model


def _bp(model: Path, data: Path, out: Path, *more: str) -> list[str]:
    return ["batch-predict", "-m", str(model), "-d", str(data), "-o", str(out), "--backend", "onnx", *FAST, *more]


@pytest.mark.parametrize("text,line", [
    ("text\ngood day\nhello, world\nbad day\n", 3),  # an unquoted comma in a one-column file
    ("text,label\ngood day,positive\nfine,neutral\nhello, world,negative\n", 4),
])
def test_malformed_csv_names_the_file_line_and_fix(onnx_tiny, tmp_path, text, line):
    data = tmp_path / "in" / "bad.csv"
    data.parent.mkdir()
    data.write_text(text)
    out = tmp_path / "out"
    out.mkdir()
    refused_cleanly(_bp(onnx_tiny, data, out / "p.parquet"), [out, data.parent], "bad.csv", f"line {line}",
                    "quote", ".jsonl", code=3)
    fixed = text.replace("hello, world", '"hello, world"')
    data.write_text(fixed)
    succeeds(_bp(onnx_tiny, data, out / "p.parquet"))
    got = pd.read_parquet(out / "p.parquet")
    assert len(got) == len(fixed.strip().splitlines()) - 1


def test_local_formats_read_alike(onnx_tiny, tmp_path):
    """csv, tsv, jsonl, a JSON array and parquet of the same rows: the same predictions, the label column scored,
    and the row count and order kept (chunks of 16 over 50 rows)."""
    df = pd.read_csv(TWEETS).iloc[:50]
    files = {"csv": tmp_path / "d.csv", "tsv": tmp_path / "d.tsv", "jsonl": tmp_path / "d.jsonl",
             "json": tmp_path / "d.json", "parquet": tmp_path / "d.parquet"}
    df.to_csv(files["csv"], index=False)
    df.to_csv(files["tsv"], index=False, sep="\t")
    df.to_json(files["jsonl"], orient="records", lines=True)
    df.to_json(files["json"], orient="records")
    df.to_parquet(files["parquet"], index=False)
    results = {}
    for name, path in files.items():
        out = tmp_path / f"{name}.parquet"
        res = succeeds(_bp(onnx_tiny, path, out, "--keep-columns", "text", "--json"))
        results[name] = pd.read_parquet(out)
        assert json.loads(res.stdout)["metrics"]["accuracy"] is not None
    first = results.pop("csv")
    assert list(first["row_id"]) == list(range(50))
    assert list(first["text"]) == list(df["text"])
    for name, got in results.items():
        pd.testing.assert_frame_equal(got, first, obj=name)


def test_resume_and_shards_on_a_streamed_file(onnx_tiny, tmp_path):
    """--num-shards counts the rows of a jsonl; the two shards together are the whole file."""
    df = pd.read_csv(TWEETS).iloc[:40]
    data = tmp_path / "d.jsonl"
    df.to_json(data, orient="records", lines=True)
    parts = []
    for i in range(2):
        out = tmp_path / f"p{i}.parquet"
        succeeds(_bp(onnx_tiny, data, out, "--num-shards", "2", "--shard-index", str(i)))
        parts.append(pd.read_parquet(out))
    assert [list(p["row_id"]) for p in parts] == [list(range(20)), list(range(20, 40))]


def test_onnx_run_on_a_local_file_never_imports_datasets(onnx_tiny, tmp_path):
    """A fresh process running batch-predict --backend onnx on a jsonl: ``datasets`` never imported (torch still
    is: transformers 5's AutoConfig, which the ONNX runner loads, imports it)."""
    data = tmp_path / "d.jsonl"
    pd.read_csv(TWEETS).iloc[:20].to_json(data, orient="records", lines=True)
    args = _bp(onnx_tiny, data, tmp_path / "p.parquet")
    code = (
        "import sys, runpy\n"
        f"sys.argv = ['hubtune', *{args!r}]\n"
        "try:\n"
        "    runpy.run_module('hubtune', run_name='__main__', alter_sys=True)\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "print('LOADED', sorted(m for m in ('datasets',) if m in sys.modules))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert res.returncode == 0, res.stderr[-3000:]
    assert "LOADED []" in res.stdout, res.stdout + res.stderr[-2000:]
    assert len(pd.read_parquet(tmp_path / "p.parquet")) == 20


def test_cli_in_process_still_reads_a_csv_with_blank_text(onnx_tiny, tmp_path):
    """An empty text cell is a row error (skipped and recorded), as before."""
    data = tmp_path / "nan.csv"
    data.write_text("text,label\ngood day,positive\n,neutral\nbad day,negative\n")
    res = cli(*_bp(onnx_tiny, data, tmp_path / "p.parquet", "--json"))
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["errors"] == 1
