"""batch-predict and texts longer than max_length: the rows truncation cut are counted (result, --json,
.meta.json, a notice) per run, shard and resume; ``--long-text chunk`` scores overlapping windows and averages
their probabilities, on torch and ONNX, and a resume with another --long-text is refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hubtune.core.errors import ConfigError, ResumeMismatchError, RowError

from ._tiny_runs import make_tiny_base
from .conftest import TWEETS_TEST

MAXLEN, STRIDE = 64, 16


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_tiny_base(tmp_path_factory.mktemp("tinylong") / "model")


@pytest.fixture(scope="module")
def long_csv(tmp_path_factory) -> Path:
    """50 labeled tweets; every 5th (10 rows) repeated to ~100 tokens, far beyond MAXLEN."""
    df = pd.read_csv(TWEETS_TEST).iloc[:50].copy()
    long = df.index % 5 == 0
    df.loc[long, "text"] = [(t + " ") * 6 for t in df.loc[long, "text"]]
    path = tmp_path_factory.mktemp("longdata") / "long.csv"
    df.to_csv(path, index=False)
    return path


def _opts(**kw):
    from hubtune.predict import PredictOptions

    kw.setdefault("progress", False)
    kw.setdefault("backend", "torch")
    kw.setdefault("dtype", "fp32")
    kw.setdefault("max_length", MAXLEN)
    return PredictOptions(**kw)


def _predict(**kw):
    from hubtune.predict import batch_predict

    return batch_predict(_opts(**kw))


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_truncated_rows_are_counted_in_result_meta_and_notice(tiny, long_csv, tmp_path):
    out = tmp_path / "p.jsonl"
    res = _predict(model=str(tiny), dataset=str(long_csv), output=str(out))
    assert res.truncated_rows == 10
    meta = json.loads((tmp_path / "p.jsonl.meta.json").read_text())
    assert meta["truncated_rows"] == 10 and meta["long_text"]["mode"] == "truncate"
    assert meta["prediction"]["long_text"] == "truncate"
    [notice] = [n for n in res.notices if "truncated" in n]
    assert notice.startswith("10 of 50 rows") and "--long-text chunk" in notice and "--max-length" in notice
    assert meta["notices"] == [notice]


def test_cli_json_and_summary_report_truncated_rows_and_windows(tiny, long_csv, tmp_path):
    from typer.testing import CliRunner

    from hubtune.cli.main import app

    base = ["batch-predict", "--model", str(tiny), "--dataset", str(long_csv), "--backend", "torch", "--dtype", "fp32",
            "--max-length", str(MAXLEN)]
    res = CliRunner().invoke(app, [*base, "--output", str(tmp_path / "p.csv"), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["truncated_rows"] == 10 and any(n.startswith("10 of 50 rows") for n in out["notices"])
    res = CliRunner().invoke(app, [*base, "--output", str(tmp_path / "c.csv"), "--long-text", "chunk", "--stride", "16"])
    assert res.exit_code == 0, res.output
    assert "long texts: 10 rows scored over" in res.stdout and "(stride 16)" in res.stdout and "truncated" not in res.stdout


def test_shards_count_their_own_rows_and_merge_sums(tiny, long_csv, tmp_path):
    from hubtune.predict import merge_predictions, read_meta

    parts = []
    for i in range(2):
        out = tmp_path / f"part{i}.parquet"
        res = _predict(model=str(tiny), dataset=str(long_csv), output=str(out), num_shards=2, shard_index=i)
        assert res.truncated_rows == 5  # rows 0, 5, .. 20 and 25, .. 45
        parts.append(str(out))
    merged = merge_predictions(parts, str(tmp_path / "all.parquet"))
    meta = read_meta(merged.output)
    assert meta["truncated_rows"] == 10 and meta["notices"][0].startswith("10 of 50 rows")


def test_resume_counts_the_interrupted_runs_shards_and_refuses_another_long_text(tiny, long_csv, tmp_path):
    df = pd.read_csv(long_csv)
    df.loc[49, "text"] = ""  # a row error in the last chunk stops the first run after 4 recorded shards
    data = tmp_path / "stop.csv"
    df.to_csv(data, index=False)
    out = tmp_path / "p.jsonl"
    base = dict(model=str(tiny), dataset=str(data), output=str(out), chunk_size=10)
    with pytest.raises(RowError):
        _predict(**base, on_error="fail")
    manifest = json.loads((tmp_path / "p.jsonl.parts" / "manifest.json").read_text())
    assert [s["truncated"] for s in manifest["shards"]] == [2, 2, 2, 2]
    with pytest.raises(ResumeMismatchError, match="long_text was 'truncate', this run has 'chunk'.*--long-text"):
        _predict(**base, resume=True, long_text="chunk")
    res = _predict(**base, resume=True)
    assert res.resumed_rows == 40 and res.truncated_rows == 10 and res.errors == 1


def _window_probs(model_dir: Path, text: str) -> np.ndarray:
    """The windows built by hand from the untruncated ids (MAXLEN - 2 text tokens, STRIDE shared), each run alone."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from hubtune.core.metrics import softmax

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    ids = tok(text, add_special_tokens=False)["input_ids"]
    room, step = MAXLEN - 2, MAXLEN - 2 - STRIDE
    starts = list(range(0, max(len(ids) - STRIDE, 1), step))
    windows = [[tok.cls_token_id, *ids[s : s + room], tok.sep_token_id] for s in starts]
    assert len(windows) >= 3 and len(ids) > room
    with torch.inference_mode():
        logits = np.stack([model(input_ids=torch.tensor([w])).logits[0].numpy() for w in windows])
    return softmax(logits)


def test_chunk_is_the_mean_of_the_window_probabilities_and_leaves_short_texts(tiny, long_csv, tmp_path):
    _predict(model=str(tiny), dataset=str(long_csv), output=str(tmp_path / "t.jsonl"), all_scores=True)
    res = _predict(model=str(tiny), dataset=str(long_csv), output=str(tmp_path / "c.jsonl"), all_scores=True,
                   long_text="chunk", stride=STRIDE)
    assert res.truncated_rows == 0 and not [n for n in res.notices if "truncated" in n]
    assert res.long_text["chunked_rows"] == 10 and res.long_text["stride"] == STRIDE
    trunc, chunk = _rows(tmp_path / "t.jsonl"), _rows(tmp_path / "c.jsonl")
    names = ["negative", "neutral", "positive"]
    texts = pd.read_csv(long_csv)["text"].tolist()
    for i in (0, 25):
        expected = _window_probs(tiny, texts[i]).mean(0)
        got = np.array([chunk[i][f"score_{n}"] for n in names])
        np.testing.assert_allclose(got, expected, atol=1e-5)
        assert chunk[i]["label"] == names[int(expected.argmax())]
    for i in range(50):
        if i % 5:  # short texts: one window, the same scores as truncate
            assert chunk[i]["label"] == trunc[i]["label"]
            np.testing.assert_allclose([chunk[i][f"score_{n}"] for n in names],
                                       [trunc[i][f"score_{n}"] for n in names], atol=1e-6)
    meta = json.loads((tmp_path / "c.jsonl.meta.json").read_text())
    assert meta["prediction"]["long_text"] == "chunk" and meta["prediction"]["stride"] == STRIDE
    assert meta["long_text"]["windows"] > 50


def test_chunk_on_onnx_equals_torch(tiny, long_csv, tmp_path):
    import shutil

    from hubtune.core.onnx_tools import export_onnx

    model = tmp_path / "model"
    shutil.copytree(tiny, model)
    export_onnx(model, model / "onnx")
    kw = dict(model=str(model), dataset=str(long_csv), all_scores=True, long_text="chunk", stride=STRIDE, limit=12)
    _predict(output=str(tmp_path / "pt.jsonl"), **kw)
    _predict(output=str(tmp_path / "ort.jsonl"), **dict(kw, backend="onnx"))
    pt, ort = _rows(tmp_path / "pt.jsonl"), _rows(tmp_path / "ort.jsonl")
    assert [r["label"] for r in pt] == [r["label"] for r in ort]
    np.testing.assert_allclose([r["score"] for r in pt], [r["score"] for r in ort], atol=1e-4)


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"stride": 4}, "is for --long-text chunk"),
        ({"long_text": "chunk", "stride": 62}, "between 0 and 61"),
        ({"long_text": "chunk", "text_pair_column": "label"}, "text pairs"),
        ({"long_text": "window"}, "expected one of truncate, chunk"),
    ],
)
def test_long_text_option_errors(tiny, long_csv, tmp_path, kw, match):
    with pytest.raises(ConfigError, match=match):
        _predict(model=str(tiny), dataset=str(long_csv), output=str(tmp_path / "p.jsonl"), **kw)
    assert not (tmp_path / "p.jsonl.parts").exists()


@pytest.mark.slow
def test_ray_engine_counts_truncation_and_chunks_like_local(tiny, long_csv, tmp_path):
    pytest.importorskip("ray.data", reason="ray[data] is not installed (pip install 'hubtune[ray]')")
    for mode in ("truncate", "chunk"):
        kw = dict(model=str(tiny), dataset=str(long_csv), long_text=mode, chunk_size=20, all_scores=True)
        local = _predict(output=str(tmp_path / f"l-{mode}.jsonl"), **kw)
        ray = _predict(output=str(tmp_path / f"r-{mode}.jsonl"), engine="ray", num_workers=1, **kw)
        assert ray.truncated_rows == local.truncated_rows == (10 if mode == "truncate" else 0)
        assert ray.long_text == local.long_text
        a, b = _rows(tmp_path / f"l-{mode}.jsonl"), _rows(tmp_path / f"r-{mode}.jsonl")
        assert [r["label"] for r in a] == [r["label"] for r in b]
        np.testing.assert_allclose([r["score"] for r in a], [r["score"] for r in b], atol=1e-6)


def test_workflow_shard_summary_shows_the_truncation_notice(tmp_path):
    import os
    import subprocess

    from .test_workflows import _summary_step

    script = _summary_step("batch-predict.yml", "predict", "always()")
    notice = "10 of 50 rows were longer than 64 tokens and lost the tokens beyond (truncated); pass --long-text chunk"
    (tmp_path / "preds-0.json").write_text(json.dumps({"rows": 50, "errors": 0, "rows_per_s": 9.0, "backend": "torch",
                                                        "dtype": "fp32", "device": "cpu", "truncated_rows": 10,
                                                        "notices": [notice]}))
    (tmp_path / "preds-0.exit").write_text("0")
    env = {**os.environ, "PRED_DIR": str(tmp_path), "SHARD": "0", "GITHUB_STEP_SUMMARY": str(tmp_path / "s.md")}
    subprocess.run(["bash", "-ec", script], cwd=tmp_path, check=True, env=env)
    assert f"Notice: {notice}" in (tmp_path / "s.md").read_text()
