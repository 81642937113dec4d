"""Issue 14 (batch-predict half): --backend auto / --dtype auto (chosen from the machine, measured on the input,
cached per model and machine, recorded), reduced precision checked against fp32, batches bounded by a token
budget; issue 15: a failed run leaves no OUTPUT.parts/ behind, --on-error fail stops its threads cleanly."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hubtune.core.errors import ResumeMismatchError, RowError

from .test_predict import LABELS, ROOT, TWEETS, _save_tiny, cli, opts

PLAIN_CPU = {"cuda": False, "gpu": None, "gpu_bf16": False, "amx": False, "cpu": "Test CPU", "flags": ["avx2"]}
AMX_CPU = dict(PLAIN_CPU, amx=True, flags=["amx_tile", "avx512_bf16"])
BF16_CPU = dict(PLAIN_CPU, flags=["avx512_bf16", "avx512_vnni"], cpu_bf16=True)  # AVX-512 BF16, measured fast


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return _save_tiny(tmp_path_factory.mktemp("tiny") / "model", seed=0)


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory) -> Path:
    """A tiny classifier with onnx/model.onnx exported from its weights."""
    from hubtune.core.onnx_tools import export_onnx

    model = _save_tiny(tmp_path_factory.mktemp("tinyo") / "model", seed=0)
    export_onnx(model, model / "onnx")
    return model


@pytest.fixture(scope="module")
def near_tie(tmp_path_factory) -> Path:
    """A tiny classifier whose classes are almost tied: bf16 rounding flips many of its labels."""
    import torch
    from transformers import AutoModelForSequenceClassification

    path = _save_tiny(tmp_path_factory.mktemp("tie") / "model", seed=2)
    m = AutoModelForSequenceClassification.from_pretrained(path)
    with torch.no_grad():
        w = m.classifier.weight
        w.copy_(w[0:1].expand_as(w) + 1e-3 * w)  # the classes share most of their weights: their logits differ
        m.classifier.bias.zero_()  # by less than bf16's rounding of them
    m.save_pretrained(path)
    return path


def hw(monkeypatch, facts):
    import hubtune.predict.choose as choose

    monkeypatch.setattr(choose, "detect_hardware", lambda device=None: dict(facts))


# --------------------------------------------------------------------------------------------------
# the choice
# --------------------------------------------------------------------------------------------------
def test_candidates_on_made_up_machines():
    from hubtune.predict.choose import candidates

    o = opts(model="m", dataset="d", output="o.parquet")
    assert (o.backend, o.dtype) == ("auto", "auto")  # the defaults
    gpu = dict(PLAIN_CPU, cuda=True, gpu="A100", gpu_bf16=True)
    assert candidates(o, gpu, True, False)[0] == [("torch", "bf16")]
    assert candidates(o, gpu, True, True)[0] == [("torch", "bf16"), ("onnx", "fp32")]  # ORT CUDA measured beside
    assert candidates(o, dict(gpu, gpu_bf16=False, gpu="T4"), False, False)[0] == [("torch", "fp16")]
    pairs, why = candidates(o, AMX_CPU, True, False)
    assert pairs == [("torch", "bf16")] and "AMX" in why
    assert candidates(o, PLAIN_CPU, True, False)[0] == [("torch", "fp32"), ("onnx", "fp32")]
    assert candidates(o, PLAIN_CPU, False, False)[0] == [("torch", "fp32")]
    explicit = opts(model="m", dataset="d", output="o.parquet", backend="torch", dtype="fp32")
    assert candidates(explicit, AMX_CPU, True, False)[0] == [("torch", "fp32")]
    assert candidates(opts(model="m", dataset="d", output="o.parquet", dtype="int8"), PLAIN_CPU, True, False)[0] == [("onnx", "int8")]
    assert candidates(opts(model="m", dataset="d", output="o.parquet", backend="torch"), AMX_CPU, False, False)[0] == [("torch", "bf16")]
    assert candidates(opts(model="m", dataset="d", output="o.parquet", backend="onnx"), AMX_CPU, True, False)[0] == [("onnx", "fp32")]
    # no AMX but native bf16 that measured fast: bf16 joins the warm-up (it is measured, not assumed)
    pairs, why = candidates(o, BF16_CPU, True, False)
    assert pairs == [("torch", "fp32"), ("onnx", "fp32"), ("torch", "bf16")] and "AVX-512 BF16" in why
    assert candidates(o, BF16_CPU, False, False)[0] == [("torch", "fp32"), ("torch", "bf16")]
    assert candidates(explicit, BF16_CPU, True, False)[0] == [("torch", "fp32")]
    assert candidates(opts(model="m", dataset="d", output="o.parquet", dtype="fp32"), BF16_CPU, True, False)[0] == \
        [("torch", "fp32"), ("onnx", "fp32")]


def test_text_length_class_keys_the_cache():
    from hubtune.predict.choose import cache_key, text_length

    short, long_ = [{"text": "a tweet"}] * 5, [{"text": "word " * 400}] * 5
    assert (text_length(short, ["text"]), text_length(long_, ["text"])) == ("short", "long")
    assert text_length([{"a": "x" * 200, "b": "y" * 200}], ["a", "b"]) == "medium"  # pairs count both sides
    o, pairs = opts(model="m", dataset="d", output="o.parquet"), [("torch", "fp32"), ("onnx", "fp32")]
    assert cache_key("w", PLAIN_CPU, pairs, o, None, "short") != cache_key("w", PLAIN_CPU, pairs, o, None, "long")


def test_auto_measures_torch_and_onnx_then_uses_the_cache(tiny_onnx, tmp_path, monkeypatch):
    from hubtune.predict import batch_predict
    from hubtune.predict.choose import cache_path

    hw(monkeypatch, PLAIN_CPU)
    base = dict(model=str(tiny_onnx), dataset=str(TWEETS), limit=200, chunk_size=100)
    res = batch_predict(opts(output=str(tmp_path / "a.parquet"), **base))
    c = res.choice
    assert c["asked"] == {"backend": "auto", "dtype": "auto"} and res.dtype == "fp32"
    assert set(c["rows_per_s"]) == {"torch/fp32", "onnx/fp32"} and all(v > 0 for v in c["rows_per_s"].values())
    fastest = max(c["rows_per_s"], key=c["rows_per_s"].get).split("/")[0]
    assert res.backend == c["backend"] == fastest and "rows/s" in c["reason"]
    assert cache_path().is_file() and str(cache_path()).startswith(str(Path(__import__("os").environ["HF_HOME"])))
    meta = json.loads(Path(res.meta_path).read_text())
    assert meta["choice"]["backend"] == meta["prediction"]["backend"] == res.backend  # recorded resolved
    assert meta["prediction"]["dtype"] == "fp32"

    again = batch_predict(opts(output=str(tmp_path / "b.parquet"), **base))
    assert again.backend == res.backend and "cached" in again.choice["reason"]
    assert again.choice["rows_per_s"] == c["rows_per_s"]  # not measured again
    assert list(pd.read_parquet(tmp_path / "a.parquet")["label"]) == list(pd.read_parquet(tmp_path / "b.parquet")["label"])


def test_auto_without_onnx_folder_uses_torch_and_says_why(tiny, tmp_path, monkeypatch):
    from hubtune.predict import batch_predict

    hw(monkeypatch, PLAIN_CPU)
    res = batch_predict(opts(model=str(tiny), dataset=str(TWEETS), output=str(tmp_path / "p.parquet"), limit=50))
    assert (res.backend, res.dtype) == ("torch", "fp32")
    assert "no onnx/" in res.choice["reason"] and "hubtune export" in res.choice["reason"]
    assert not (tiny / "onnx").exists() and "rows_per_s" not in res.choice  # nothing exported, nothing measured


def test_auto_bf16_on_amx_is_checked_against_fp32(tiny, tmp_path, monkeypatch):
    from hubtune.predict import batch_predict

    hw(monkeypatch, AMX_CPU)
    out = tmp_path / "p.parquet"
    res = batch_predict(opts(model=str(tiny), dataset=str(TWEETS), output=str(out), limit=300, keep_parts=True))
    assert (res.backend, res.dtype) == ("torch", "bf16")
    agree = res.choice["agreement"]
    assert agree["against"] == "torch/fp32" and agree["rows"] == 256 and agree["value"] >= 0.995
    assert "AMX" in res.choice["reason"] and "agrees with fp32" in res.choice["reason"]
    manifest = json.loads((tmp_path / "p.parquet.parts" / "manifest.json").read_text())
    assert manifest["prediction"]["dtype"] == "bf16" and manifest["choice"]["agreement"]["value"] == agree["value"]
    # a resume keeps the resolved choice; asking for another backend or dtype is refused
    again = batch_predict(opts(model=str(tiny), dataset=str(TWEETS), output=str(out), limit=300, resume=True, keep_parts=True))
    assert again.dtype == "bf16" and again.choice["reason"].startswith("resumed")
    with pytest.raises(ResumeMismatchError, match="dtype was 'bf16', this run has 'fp32'"):
        batch_predict(opts(model=str(tiny), dataset=str(TWEETS), output=str(out), limit=300, resume=True, dtype="fp32"))


def test_auto_bf16_that_flips_labels_falls_back_to_fp32(near_tie, tmp_path, monkeypatch):
    from hubtune.predict import batch_predict

    hw(monkeypatch, AMX_CPU)
    res = batch_predict(opts(model=str(near_tie), dataset=str(TWEETS), output=str(tmp_path / "a.parquet"), limit=300))
    agree = res.choice["agreement"]
    assert agree["value"] < 0.995 and agree["fallback"] is True
    assert (res.backend, res.dtype) == ("torch", "fp32") and "fp32 instead" in res.choice["reason"]
    # a lower --min-agreement accepts it; an explicit --dtype bf16 is honoured, its agreement reported
    low = batch_predict(opts(model=str(near_tie), dataset=str(TWEETS), output=str(tmp_path / "b.parquet"), limit=300,
                             min_agreement=0.0))
    assert low.dtype == "bf16" and low.choice["agreement"]["value"] == pytest.approx(agree["value"])
    hw(monkeypatch, PLAIN_CPU)
    asked = batch_predict(opts(model=str(near_tie), dataset=str(TWEETS), output=str(tmp_path / "c.parquet"), limit=300,
                               dtype="bf16"))
    assert asked.dtype == "bf16" and asked.choice["agreement"]["value"] < 0.995 and "asked for" in asked.choice["reason"]


def _is_bf16(runner) -> bool:
    import torch

    model = getattr(getattr(runner, "loaded", None), "model", None)
    return model is not None and next(model.parameters()).dtype == torch.bfloat16


def test_bf16_cpu_measures_three_paths_and_falls_back_to_the_fastest_fp32(near_tie, tiny_onnx, tmp_path, monkeypatch):
    import shutil

    from hubtune.predict import batch_predict

    hw(monkeypatch, BF16_CPU)
    res = batch_predict(opts(model=str(tiny_onnx), dataset=str(TWEETS), output=str(tmp_path / "a.parquet"), limit=300))
    speeds = res.choice["rows_per_s"]
    assert set(speeds) == {"torch/fp32", "onnx/fp32", "torch/bf16"} and "AVX-512 BF16" in res.choice["reason"]
    fastest = max(speeds, key=speeds.get)
    if (res.choice.get("agreement") or {}).get("fallback"):  # bf16 measured fastest but flipped labels of this tiny model
        assert fastest == "torch/bf16" and res.dtype == "fp32"
    else:
        assert f"{res.backend}/{res.dtype}" == fastest
    # a model whose labels bf16 flips: if bf16 measured fastest it is checked, and the fallback is the faster fp32
    tie = tmp_path / "tie"
    shutil.copytree(near_tie, tie)
    from hubtune.core.onnx_tools import export_onnx

    export_onnx(tie, tie / "onnx")
    import hubtune.predict.choose as choose

    real = choose.rows_per_second
    monkeypatch.setattr(choose, "rows_per_second", lambda r, c, o: 1e6 if _is_bf16(r) else real(r, c, o))
    res = batch_predict(opts(model=str(tie), dataset=str(TWEETS), output=str(tmp_path / "b.parquet"), limit=300))
    speeds = res.choice["rows_per_s"]
    faster_fp32 = max(("torch/fp32", "onnx/fp32"), key=speeds.get)
    assert res.choice["agreement"]["fallback"] is True and res.dtype == "fp32"
    assert res.choice["agreement"]["against"] == "torch/fp32"  # the lighter reference
    assert f"{res.backend}/{res.dtype}" == faster_fp32 and f"{faster_fp32} instead" in res.choice["reason"]


def test_an_input_smaller_than_the_check_runs_in_fp32(tiny, tmp_path, monkeypatch):
    """Checking bf16 on 256 rows would run every row of a 40-row input in fp32 anyway: auto takes fp32."""
    import hubtune.predict.choose as choose
    from hubtune.predict import batch_predict

    real = choose.rows_per_second
    monkeypatch.setattr(choose, "rows_per_second", lambda r, c, o: 1e6 if _is_bf16(r) else real(r, c, o))  # bf16 wins
    for facts in (AMX_CPU, BF16_CPU):
        hw(monkeypatch, facts)
        res = batch_predict(opts(model=str(tiny), dataset=str(TWEETS), output=str(tmp_path / "a.parquet"), limit=40,
                                 overwrite=True))
        assert (res.backend, res.dtype) == ("torch", "fp32") and res.choice["agreement"] is None
        assert "only 40 rows" in res.choice["reason"]
    asked = batch_predict(opts(model=str(tiny), dataset=str(TWEETS), output=str(tmp_path / "b.parquet"), limit=40,
                               dtype="bf16"))
    assert asked.dtype == "bf16" and asked.choice["agreement"]["rows"] == 40  # asked for: honoured and measured


def test_cli_prints_the_choice_and_records_it_in_json(tiny, tmp_path):
    r = cli("batch-predict", "--model", str(tiny), "--dataset", str(TWEETS), "--output", str(tmp_path / "p.jsonl"),
            "--limit", "40", "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["choice"]["asked"] == {"backend": "auto", "dtype": "auto"}
    assert summary["backend"] == summary["choice"]["backend"] and summary["dtype"] == summary["choice"]["dtype"]
    line = [x for x in r.stderr.splitlines() if x.startswith("backend: ")]
    assert line and summary["choice"]["reason"] in line[0]


def test_option_checks(tiny, tmp_path):
    from hubtune.core.errors import ConfigError
    from hubtune.predict import batch_predict

    base = dict(model=str(tiny), dataset=str(TWEETS), output=str(tmp_path / "p.parquet"))
    for bad, pattern in [({"max_batch_tokens": 0}, "--max-batch-tokens"), ({"min_agreement": 99.5}, "--min-agreement"),
                         ({"backend": "onnx", "dtype": "bf16"}, "bf16 runs on --backend torch or openvino"),
                         ({"backend": "openvino", "dtype": "fp16"}, "fp16 on torch"),
                         ({"backend": "torch", "dtype": "int8"}, "int8 on --backend onnx")]:
        with pytest.raises(ConfigError, match=pattern):
            batch_predict(opts(**base, **bad))
    assert not (tmp_path / "p.parquet.parts").exists()


# --------------------------------------------------------------------------------------------------
# the token budget
# --------------------------------------------------------------------------------------------------
class _Spy:
    """A runner that records the shape of every batch; its logits are a function of each row alone."""

    label_names = LABELS
    device = "cpu"
    notices: list = []

    def __init__(self):
        self.tokenizer = type("T", (), {"pad_token_id": 0})()
        self.shapes = []

    def __call__(self, feeds):
        ids, mask = feeds["input_ids"], feeds["attention_mask"]
        self.shapes.append(ids.shape)
        total = (ids * mask).sum(1).astype(np.float32)
        return np.stack([total, mask.sum(1).astype(np.float32), -total], axis=1)


def test_batches_never_exceed_the_token_budget():
    from hubtune.predict.batching import Chunk, Encoded, run_chunk

    rng = np.random.default_rng(0)
    lengths = np.concatenate([rng.integers(3, 40, 500), rng.integers(400, 513, 60), [2000]])
    rng.shuffle(lengths)
    seqs = [list(rng.integers(1, 30000, n)) for n in lengths]
    chunk = Chunk(0, 0, {}, np.arange(len(seqs)), [], Encoded.from_lists(seqs))
    spy = _Spy()
    logits = run_chunk(spy, chunk, batch_size=256, max_batch_tokens=4096)
    for rows, width in spy.shapes:
        assert rows <= 256 and (rows * width <= 4096 or rows == 1), (rows, width)
    assert sum(r for r, _ in spy.shapes) == len(seqs)
    assert max(r for r, _ in spy.shapes) > 64  # short rows fill a batch by the budget
    expected = np.array([[sum(s), len(s), -sum(s)] for s in seqs], dtype=np.float32)
    np.testing.assert_allclose(logits, expected, rtol=1e-6)  # every row's logits, in chunk order


# --------------------------------------------------------------------------------------------------
# issue 15: a failed run, --on-error fail
# --------------------------------------------------------------------------------------------------
def test_failed_run_leaves_no_parts_and_the_corrected_command_runs(tiny, tmp_path):
    out = tmp_path / "p.parquet"
    base = ["batch-predict", "--model", str(tiny), "--dataset", str(TWEETS), "--output", str(out), "--limit", "30"]
    r = cli(*base, "--text-column", "nope")
    assert r.returncode == 3, r.stderr
    assert not (tmp_path / "p.parquet.parts").exists() and not out.exists()
    r = cli(*base, "--text-column", "text")
    assert r.returncode == 0, r.stderr
    assert len(pd.read_parquet(out)) == 30


def test_failed_run_keeps_finished_shards_for_resume(tiny, tmp_path):
    from hubtune.predict import batch_predict

    df = pd.read_csv(TWEETS).iloc[:300].copy()
    df.loc[5, "text"] = ""
    first = tmp_path / "first.csv"
    df.to_csv(first, index=False)
    with pytest.raises(RowError):  # in the first chunk: nothing finished, nothing left
        batch_predict(opts(model=str(tiny), dataset=str(first), output=str(tmp_path / "a.parquet"), on_error="fail", chunk_size=100))
    assert not (tmp_path / "a.parquet.parts").exists()
    df.loc[5, "text"] = "fine"
    df.loc[250, "text"] = ""
    later = tmp_path / "later.csv"
    df.to_csv(later, index=False)
    with pytest.raises(RowError):  # in the third chunk: two finished shards are kept for --resume
        batch_predict(opts(model=str(tiny), dataset=str(later), output=str(tmp_path / "b.parquet"), on_error="fail", chunk_size=100))
    manifest = json.loads((tmp_path / "b.parquet.parts" / "manifest.json").read_text())
    assert len(manifest["shards"]) == 2


@pytest.fixture(scope="module")
def long_rows(tmp_path_factory) -> Path:
    """6,000 review-length texts (tweets joined) with an empty text in row 3: tokenizing a chunk takes a while."""
    tweets = pd.read_csv(TWEETS)["text"].tolist()
    texts = [" ".join(tweets[(i * 7) % 900 : (i * 7) % 900 + 25]) for i in range(6000)]
    texts[3] = ""
    path = tmp_path_factory.mktemp("long") / "rows.jsonl"
    pd.DataFrame({"text": texts}).to_json(path, orient="records", lines=True)
    return path


def test_on_error_fail_stops_the_tokenizer_thread(tiny, long_rows, tmp_path):
    """The error is raised while the next chunk is being tokenized: the thread is stopped before the call returns
    (a thread left in native code while the interpreter exits is what aborted runs with SIGABRT)."""
    from hubtune.predict import batch_predict

    with pytest.raises(RowError, match="row 3 "):
        batch_predict(opts(model=str(tiny), dataset=str(long_rows), output=str(tmp_path / "p.parquet"), on_error="fail",
                           chunk_size=2000, backend="torch", dtype="fp32"))
    alive = [t.name for t in threading.enumerate() if t.name == "hubtune-tokenize"]
    assert not alive


@pytest.mark.slow
def test_on_error_fail_exits_with_its_code_every_time(tiny, long_rows, tmp_path):
    """Issue 15: 2 of 7 runs aborted (SIGABRT, exit -6/134). Four runs (a 2-in-7 abort shows in 74% of such
    series), each the RowError's exit code."""
    codes = []
    for i in range(4):
        r = subprocess.run(
            [sys.executable, "-m", "hubtune", "batch-predict", "--model", str(tiny), "--dataset", str(long_rows),
             "--output", str(tmp_path / f"p{i}.parquet"), "--on-error", "fail", "--chunk-size", "2000", "--no-progress"],
            capture_output=True, text=True, cwd=ROOT, timeout=300,
        )
        codes.append(r.returncode)
        assert "terminate called" not in r.stderr, r.stderr
    assert codes == [RowError.exit_code] * 4


def test_a_labelled_run_imports_the_metrics_library_while_the_model_runs(tiny, tmp_path, monkeypatch):
    """Start-up (issue 14): scikit-learn's import (~0.4-0.8 s) overlaps prediction instead of delaying the end."""
    import sys

    import hubtune.predict.local as local
    from hubtune.predict import batch_predict

    hw(monkeypatch, PLAIN_CPU)
    calls = []
    monkeypatch.setattr(local, "warm_import", lambda m: calls.append(m))
    res = batch_predict(opts(model=str(tiny), dataset=str(TWEETS), output=str(tmp_path / "a.parquet"), limit=40))
    assert calls == ["sklearn.metrics"] and res.metrics  # labelled input: metrics at the end
    unlabelled = tmp_path / "u.csv"
    pd.read_csv(TWEETS)[["text"]].head(40).to_csv(unlabelled, index=False)
    calls.clear()
    batch_predict(opts(model=str(tiny), dataset=str(unlabelled), output=str(tmp_path / "u.parquet")))
    assert calls == []  # no labels, no metrics, nothing to import
    monkeypatch.undo()
    thread = local.warm_import("json.tool")
    thread.join(10)
    assert not thread.is_alive() and "json.tool" in sys.modules


def test_auto_leaves_out_an_onnx_path_that_fails_its_warm_up(tiny_onnx, tmp_path, monkeypatch):
    """Issue 24: batch-predict's auto never picks a path that fails: an ONNX session that fails on the warm-up
    is left out (and said), and the run goes on with PyTorch."""
    import hubtune.predict.choose as choose
    from hubtune.predict import batch_predict
    from hubtune.predict.runners import OnnxRunner

    hw(monkeypatch, PLAIN_CPU)
    real = choose.rows_per_second

    def failing_onnx(runner, chunk, o):
        if isinstance(runner, OnnxRunner):
            raise RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Non-zero status code")
        return real(runner, chunk, o)

    monkeypatch.setattr(choose, "rows_per_second", failing_onnx)
    res = batch_predict(opts(model=str(tiny_onnx), dataset=str(TWEETS), output=str(tmp_path / "a.parquet"), limit=40))
    assert res.backend == "torch" and "left out, failed on the warm-up: onnx/fp32" in res.choice["reason"]
    assert list(res.choice["rows_per_s"]) == ["torch/fp32"]


def test_reduced_precision_agreement_reads_the_task():
    """multi-label: the same label set over the threshold; regression: the same value to 1% (argmax of one
    column would always agree)."""
    from hubtune.predict.choose import agreement, logit_of

    ref = np.array([[2.0, -1.0], [0.1, 0.3]])
    assert agreement(np.array([[1.5, -2.0], [-0.1, 0.3]]), ref, "multi-label-classification") == 0.5
    assert agreement(np.array([[1.5, -2.0], [-0.1, 0.3]]), ref, "multi-label-classification", logit_of(0.4)) == 1.0
    assert agreement(np.array([[3.0], [10.0]]), np.array([[3.01], [12.0]]), "regression") == 0.5


def test_candidates_with_openvino_on_made_up_machines():
    """Issue 38: where OpenVINO is installed and the model has a graph, auto measures it beside torch and ONNX
    Runtime (bf16 where OpenVINO's CPU plugin has bf16 units); never on a CUDA machine; asked for, it is alone."""
    from hubtune.predict.choose import candidates

    o = opts(model="m", dataset="d", output="o.parquet")
    plain = dict(PLAIN_CPU, openvino=True)
    assert candidates(o, plain, True, False, True)[0] == [("torch", "fp32"), ("onnx", "fp32"), ("openvino", "fp32")]
    assert candidates(o, plain, True, False, False)[0] == [("torch", "fp32"), ("onnx", "fp32")]  # no graph for it
    pairs, why = candidates(o, dict(AMX_CPU, openvino=True, ov_bf16=True), False, False, True)
    assert pairs == [("torch", "bf16"), ("openvino", "bf16")] and "OpenVINO bf16" in why
    pairs, why = candidates(o, dict(PLAIN_CPU, openvino=True, ov_bf16=True), True, False, True)
    assert pairs == [("torch", "fp32"), ("onnx", "fp32"), ("openvino", "fp32"), ("openvino", "bf16")]
    gpu = dict(PLAIN_CPU, cuda=True, gpu="A100", gpu_bf16=True, openvino=True, ov_bf16=True)
    assert candidates(o, gpu, True, False, True)[0] == [("torch", "bf16")]
    ov = opts(model="m", dataset="d", output="o.parquet", backend="openvino")
    assert candidates(ov, plain, False, False, True)[0] == [("openvino", "fp32")]
    assert candidates(ov, dict(plain, ov_bf16=True), False, False, True)[0] == [("openvino", "bf16"), ("openvino", "fp32")]
    ov8 = opts(model="m", dataset="d", output="o.parquet", backend="openvino", dtype="int8")
    assert candidates(ov8, plain, False, False, True)[0] == [("openvino", "int8")]
    bf = opts(model="m", dataset="d", output="o.parquet", dtype="bf16")
    assert candidates(bf, dict(plain, ov_bf16=True), True, False, True)[0] == [("torch", "bf16"), ("openvino", "bf16")]
