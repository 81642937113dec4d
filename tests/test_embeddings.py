"""Feature-extraction (issue 23): batch-predict writes sentence embeddings, pooled and normalised as the model's
sentence-transformers config says (else mean pooling), on torch and ONNX Runtime; sentence-transformers'
``SentenceTransformer(folder).encode`` is the anchor (cosine >= 0.9999 on real texts). ``hubtune export`` of an
embedding model writes a graph answering ``last_hidden_state``, its int8 variant gated by cosine and top-10
neighbour overlap."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import TWEETS_TEST, run_cli

N_ROWS = 24
MIN_COSINE = 0.9999


def texts(n: int = N_ROWS) -> list[str]:
    return list(pd.read_csv(TWEETS_TEST)["text"].iloc[:n])


def predict(model: str, tmp_path: Path, name: str = "e.parquet", **kw) -> pd.DataFrame:
    from hubtune.predict import PredictOptions, batch_predict

    kw.setdefault("limit", N_ROWS)
    kw.setdefault("backend", "torch")
    kw.setdefault("dtype", "fp32")
    out = tmp_path / name
    batch_predict(PredictOptions(model=model, dataset=str(TWEETS_TEST), output=str(out), progress=False,
                                 chunk_size=10, batch_size=4, **kw))
    return pd.read_parquet(out)


def vectors(df: pd.DataFrame) -> np.ndarray:
    return np.stack(df["embedding"].to_numpy()).astype(np.float64)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def st_encode(model_dir: str, rows: list[str], **kw) -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(model_dir), device="cpu").encode(rows, batch_size=32, **kw).astype(np.float64)


@pytest.fixture(scope="module")
def minilm_ref(minilm_dir) -> np.ndarray:
    return st_encode(minilm_dir, texts())


def with_pooling(src: str, dest: Path, mode: str) -> str:
    """A copy of ``src`` with a sentence-transformers modules.json naming ``mode`` pooling (no Normalize)."""
    shutil.copytree(src, dest)
    (dest / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]))
    (dest / "1_Pooling").mkdir()
    keys = {"cls": "pooling_mode_cls_token", "max": "pooling_mode_max_tokens", "mean": "pooling_mode_mean_tokens"}
    (dest / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": 32, **{k: m == mode for m, k in keys.items()}}))
    return str(dest)


# --------------------------------------------------------------------------------------------------
# batch-predict: the packaged MiniLM read as feature-extraction, equal to sentence-transformers' encode
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["torch", "onnx", "openvino"])
def test_minilm_embeddings_match_sentence_transformers(minilm_dir, minilm_ref, tmp_path, backend):
    import pyarrow.parquet as pq

    df = predict("packaged:minilm", tmp_path, backend=backend)  # no --task: the model's own task
    assert list(df.columns) == ["row_id", "embedding"]
    field = pq.read_schema(tmp_path / "e.parquet").field("embedding")
    assert str(field.type) == "fixed_size_list<element: float>[384]"
    got = vectors(df)
    assert got.shape == (N_ROWS, 384)
    assert cosines(got, minilm_ref).min() >= MIN_COSINE
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)  # the model's Normalize module
    meta = json.loads(Path(str(tmp_path / "e.parquet") + ".meta.json").read_text())
    assert meta["prediction"]["task"] == "feature-extraction"
    assert (meta["prediction"]["pooling"], meta["prediction"]["normalize"], meta["prediction"]["max_length"]) == (
        "mean", True, 256)  # sentence_bert_config.json's max_seq_length, as sentence-transformers truncates


def test_cli_packaged_minilm_without_task_writes_embeddings_and_no_normalize(minilm_ref, tmp_path):
    out = tmp_path / "e.jsonl"
    r = run_cli("batch-predict", "--model", "packaged:minilm", "--dataset", str(TWEETS_TEST), "--output", str(out),
                "--limit", str(N_ROWS), "--backend", "torch", "--dtype", "fp32", "--no-normalize")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    got = np.array([r["embedding"] for r in rows], dtype=np.float64)
    assert set(rows[0]) == {"row_id", "embedding"} and got.shape == (N_ROWS, 384)
    norms = np.linalg.norm(got, axis=1)
    assert norms.min() > 1.5  # MiniLM's mean-pooled vectors before Normalize are far from unit length
    assert cosines(got, minilm_ref).min() >= MIN_COSINE


def test_headless_bert_gets_mean_pooling_and_normalize_flag(tiny_bert_dir, tmp_path):
    ref = st_encode(tiny_bert_dir, texts())  # sentence-transformers' default for a bare encoder: mean pooling
    got = vectors(predict(tiny_bert_dir, tmp_path))
    assert got.shape == (N_ROWS, 32) and cosines(got, ref).min() >= MIN_COSINE
    np.testing.assert_allclose(got, ref, atol=1e-5)  # not normalised
    assert np.abs(np.linalg.norm(got, axis=1) - 1).max() > 0.1
    normed = vectors(predict(tiny_bert_dir, tmp_path, name="n.parquet", normalize=True))
    np.testing.assert_allclose(np.linalg.norm(normed, axis=1), 1.0, atol=1e-5)
    assert cosines(normed, ref).min() >= MIN_COSINE


@pytest.mark.parametrize("mode", ["cls", "max"])
def test_pooling_mode_from_modules_json(tiny_bert_dir, tmp_path, mode):
    model = with_pooling(tiny_bert_dir, tmp_path / f"st-{mode}", mode)
    ref = st_encode(model, texts())
    got = vectors(predict(model, tmp_path))
    np.testing.assert_allclose(got, ref, atol=1e-5)
    other = st_encode(with_pooling(tiny_bert_dir, tmp_path / "st-mean", "mean"), texts())
    assert np.abs(got - other).max() > 1e-3  # the mode changes the vectors


def test_embedding_options_refused(tiny_bert_dir, tmp_path):
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from hubtune.core.errors import ConfigError, ResumeMismatchError

    with pytest.raises(ConfigError, match="CSV cannot hold"):
        predict(tiny_bert_dir, tmp_path, name="e.csv")
    assert not (tmp_path / "e.csv.parts").exists()
    clf = tmp_path / "clf"
    BertForSequenceClassification(BertConfig.from_pretrained(tiny_bert_dir, num_labels=2)).save_pretrained(clf)
    AutoTokenizer.from_pretrained(tiny_bert_dir).save_pretrained(clf)
    with pytest.raises(ConfigError, match="--normalize.*feature-extraction"):
        predict(str(clf), tmp_path, normalize=True)
    predict(tiny_bert_dir, tmp_path, keep_parts=True)
    with pytest.raises(ResumeMismatchError, match="normalize"):
        predict(tiny_bert_dir, tmp_path, resume=True, normalize=True)


def test_int8_choice_is_gated_by_cosine():
    from hubtune.predict.choose import agreement

    rng = np.random.default_rng(0)
    ref = rng.normal(size=(50, 16))
    assert agreement(ref + 1e-4 * rng.normal(size=ref.shape), ref, "feature-extraction") == 1.0
    assert agreement(rng.normal(size=ref.shape), ref, "feature-extraction") == 0.0


# --------------------------------------------------------------------------------------------------
# export: last_hidden_state, the parity gate on embeddings, int8 gated by cosine and neighbours
# --------------------------------------------------------------------------------------------------
def test_embedding_gate_cosine_and_neighbours():
    from hubtune.publish.embed_export import embedding_gate

    rng = np.random.default_rng(1)
    ref = rng.normal(size=(40, 32))
    ok, agree, why = embedding_gate(ref, ref + 1e-3 * rng.normal(size=ref.shape), is_base=False, tolerance=1e-4)
    assert ok.passed and why is None and agree["neighbour_overlap"] > 0.9 and agree["neighbours"] == 10
    # the same vectors for other texts: every cosine is far off and the neighbours differ
    bad, agree, why = embedding_gate(ref, ref[::-1], is_base=False, tolerance=1e-4)
    assert not bad.passed and "mean cosine" in why and "neighbour overlap" in why
    base, _, why = embedding_gate(ref, ref + 1e-3, is_base=True, tolerance=1e-4)
    assert not base.passed and "max |embedding diff|" in why


def test_export_feature_extraction_writes_last_hidden_state_and_gates_int8(tiny_bert_dir, tmp_path):
    from hubtune.publish.export import ExportOptions, export
    from hubtune.core.onnx_tools import graph_signature, read_info

    model = tmp_path / "bert"
    shutil.copytree(tiny_bert_dir, model)
    res = export(ExportOptions(source=str(model), quantize="int8", bench_rows=16))
    assert res.task == "feature-extraction"
    sig = graph_signature(model / "onnx" / "model.onnx")
    assert [o["name"] for o in sig["outputs"]] == ["last_hidden_state"]
    assert sig["outputs"][0]["dims"] == ["batch_size", "sequence_length", 32]
    assert read_info(model / "onnx")["task"] == "feature-extraction"
    base = res.variants["onnx"]
    assert base.passed and base.parity.max_abs_diff <= 1e-4 and base.metrics["min_cosine"] >= MIN_COSINE
    q = res.variants.get("onnx-int8") or res.refused["onnx-int8"]
    assert {"mean_cosine", "neighbour_overlap"} <= set(q.metrics)
    # the exported graph serves batch-predict's onnx backend, equal to torch
    got = vectors(predict(str(model), tmp_path, backend="onnx"))
    ref = vectors(predict(str(model), tmp_path, name="t.parquet"))
    assert cosines(got, ref).min() >= MIN_COSINE
    # a gate no int8 graph passes: the variant is refused and removed, fp32 stays
    res2 = export(ExportOptions(source=str(model), quantize="int8", bench_rows=16, overwrite=True,
                                min_neighbour_overlap=1.01))
    assert "onnx-int8" in res2.refused and "neighbour overlap" in res2.refused["onnx-int8"].reason
    assert not (model / "onnx" / "model_quantized.onnx").exists() and (model / "onnx" / "model.onnx").exists()


def test_bf16_embeddings_run_under_autocast(minilm_ref, tmp_path):
    """--dtype bf16 of an embedding model keeps fp32 weights and runs its matmuls in bf16 (torch.autocast): the
    cosine with sentence-transformers' fp32 stays >= 0.9999 (bf16 weights give ~0.9999 only on average)."""
    from hubtune.predict.options import PredictOptions
    from hubtune.predict.runners import TorchRunner
    from hubtune.core.modeling import resolve_model_source

    import torch

    runner = TorchRunner(Path(resolve_model_source("packaged:minilm")),
                         PredictOptions(model="packaged:minilm", dataset="-", output="x.parquet", dtype="bf16"))
    assert runner.autocast is torch.bfloat16 and next(runner.loaded.model.parameters()).dtype == torch.float32
    got = vectors(predict("packaged:minilm", tmp_path, dtype="bf16"))
    assert cosines(got, minilm_ref).min() >= MIN_COSINE
