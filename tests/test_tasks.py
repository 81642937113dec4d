"""The model's real task (issue 23, prediction side): read from the checkpoint, set with --task, a missing head
refused (exit 59) before any prediction; batch-predict of multi-label, regression and token classification on
torch and ONNX Runtime, compared with transformers' ``pipeline()`` on real texts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import TWEETS_TEST, run_cli

ML_LABELS = ["complaint", "delay", "praise", "question"]
NER_LABELS = ["O", "B-ORG", "I-ORG", "B-LOC", "I-LOC"]
N_ROWS = 24


def _tok(minilm_dir: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_dir)


def _cfg(tok, **kw):
    from transformers import BertConfig

    return BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=512, **kw)


def _save(model, tok, path: Path) -> str:
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def multilabel_dir(tmp_path_factory, minilm_dir) -> str:
    import torch
    from transformers import BertForSequenceClassification

    torch.manual_seed(3)
    tok = _tok(minilm_dir)
    cfg = _cfg(tok, num_labels=4, problem_type="multi_label_classification",
               id2label=dict(enumerate(ML_LABELS)), label2id={n: i for i, n in enumerate(ML_LABELS)})
    model = BertForSequenceClassification(cfg)
    with torch.no_grad():  # margins from the 0.5 threshold, so float noise cannot flip a label
        model.classifier.weight.mul_(40.0)
    return _save(model, tok, tmp_path_factory.mktemp("multilabel") / "model")


@pytest.fixture(scope="session")
def regression_dir(tmp_path_factory, minilm_dir) -> str:
    import torch
    from transformers import BertForSequenceClassification

    torch.manual_seed(4)
    tok = _tok(minilm_dir)
    model = BertForSequenceClassification(_cfg(tok, num_labels=1, problem_type="regression"))
    with torch.no_grad():
        model.classifier.weight.mul_(100.0)
    return _save(model, tok, tmp_path_factory.mktemp("regression") / "model")


@pytest.fixture(scope="session")
def ner_dir(tmp_path_factory, minilm_dir) -> str:
    import torch
    from transformers import BertForTokenClassification

    torch.manual_seed(5)
    tok = _tok(minilm_dir)
    cfg = _cfg(tok, num_labels=len(NER_LABELS), id2label=dict(enumerate(NER_LABELS)),
               label2id={n: i for i, n in enumerate(NER_LABELS)})
    model = BertForTokenClassification(cfg)
    with torch.no_grad():  # wide margins between tags; "O" less likely, so there are entities to group
        model.classifier.weight.mul_(60.0)
        model.classifier.bias[0] -= 2.0
    return _save(model, tok, tmp_path_factory.mktemp("ner") / "model")


@pytest.fixture(scope="session")
def masked_lm_dir(tmp_path_factory, minilm_dir) -> str:
    import torch
    from transformers import BertForMaskedLM

    torch.manual_seed(6)
    tok = _tok(minilm_dir)
    return _save(BertForMaskedLM(_cfg(tok)), tok, tmp_path_factory.mktemp("mlm") / "model")


@pytest.fixture(scope="session")
def gpt2_dir(tmp_path_factory, minilm_dir) -> str:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(7)
    tok = _tok(minilm_dir)
    cfg = GPT2Config(vocab_size=tok.vocab_size, n_embd=32, n_layer=2, n_head=2, n_positions=128)
    return _save(GPT2LMHeadModel(cfg), tok, tmp_path_factory.mktemp("gpt2") / "model")


def texts(n: int = N_ROWS) -> list[str]:
    return list(pd.read_csv(TWEETS_TEST)["text"].iloc[:n])


def predict(model: str, tmp_path: Path, name: str = "p.parquet", **kw) -> pd.DataFrame:
    from hubtune.predict import PredictOptions, batch_predict

    kw.setdefault("limit", N_ROWS)
    kw.setdefault("backend", "torch")
    kw.setdefault("dtype", "fp32")
    out = tmp_path / name
    batch_predict(PredictOptions(model=model, dataset=str(TWEETS_TEST), output=str(out), progress=False,
                                 chunk_size=10, batch_size=4, **kw))
    return pd.read_parquet(out)


def pipe(task: str, model_dir: str, **kw):
    from transformers import pipeline

    return pipeline(task, model=model_dir, device="cpu", **kw)


# --------------------------------------------------------------------------------------------------
# Reproduced failure 1: a checkpoint without the head is refused (exit 59), never predicted with
# --------------------------------------------------------------------------------------------------
def test_packaged_minilm_refused_by_batch_predict_cli(tmp_path):
    """An embedding model asked for labels (it has no classifier): refused. Without --task it is read as the
    feature-extraction model it is (tests/test_embeddings.py)."""
    out = tmp_path / "p.parquet"
    r = run_cli("batch-predict", "--model", "packaged:minilm", "--dataset", str(TWEETS_TEST), "--output", str(out),
                "--limit", "8", "--backend", "torch", "--task", "text-classification")
    assert r.returncode == 59, r.stderr
    lines = [x for x in r.stderr.strip().splitlines() if x.strip()]
    assert len(lines) == 1, r.stderr
    assert "classifier" in lines[0] and "hubtune train" in lines[0] and "--task" in lines[0]
    assert not out.exists() and not (tmp_path / "p.parquet.parts").exists()


# a causal LM asked for a classifier (without --task it generates text: tests/test_generate.py)
@pytest.mark.parametrize("which,task", [("masked_lm_dir", None), ("gpt2_dir", "text-classification"),
                                        ("minilm_dir", "text-classification")])
@pytest.mark.parametrize("backend", ["torch", "onnx", "openvino"])
def test_headless_checkpoints_refused(which, task, backend, request, tmp_path):
    from hubtune.core.errors import ModelTaskError

    model = request.getfixturevalue(which)
    with pytest.raises(ModelTaskError) as info:
        predict(model, tmp_path, backend=backend, task=task)
    assert info.value.exit_code == 59 and isinstance(info.value, ValueError)
    assert "\n" not in str(info.value) and "hubtune train" in str(info.value)


# --------------------------------------------------------------------------------------------------
# Reproduced failures 2-4: multi-label, regression, token classification answered as their task
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["torch", "onnx", "openvino"])
def test_multilabel_matches_pipeline(multilabel_dir, tmp_path, backend):
    df = predict(multilabel_dir, tmp_path, backend=backend)
    assert "labels" in df.columns and "label" not in df.columns
    ref = pipe("text-classification", multilabel_dir)(texts(), top_k=None, function_to_apply="sigmoid")
    for row, rr in zip(df.itertuples(index=False), ref):
        want = {d["label"]: d["score"] for d in rr}
        got = {n: getattr(row, f"score_{n}") for n in ML_LABELS}
        assert got == pytest.approx(want, abs=1e-4)
        assert sorted(row.labels) == sorted(n for n, s in want.items() if s > 0.5)
    assert sum(len(x) for x in df["labels"]) not in (0, N_ROWS)  # a set per row, not one argmax label


def test_multilabel_threshold(multilabel_dir, tmp_path):
    df = predict(multilabel_dir, tmp_path, threshold=0.9)
    scores = df[[f"score_{n}" for n in ML_LABELS]].to_numpy()
    assert [sorted(x) for x in df["labels"]] == [[n for n, s in zip(ML_LABELS, r) if s > 0.9] for r in scores]


@pytest.mark.parametrize("backend", ["torch", "onnx", "openvino"])
def test_regression_matches_pipeline(regression_dir, tmp_path, backend):
    df = predict(regression_dir, tmp_path, backend=backend)
    assert "label" not in df.columns and df["score"].dtype == np.float32
    ref = pipe("text-classification", regression_dir)(texts(), function_to_apply="none")
    np.testing.assert_allclose(df["score"], [r["score"] for r in ref], atol=1e-4)
    assert df["score"].std() > 1e-3 and not np.allclose(df["score"], 1.0)  # the value, not a constant 1.0


def _entities_ref(model_dir: str) -> list[list[dict]]:
    ref = pipe("token-classification", model_dir, aggregation_strategy="simple")(texts())
    return [[{k: (float(e[k]) if k == "score" else e[k]) for k in ("entity_group", "word", "start", "end", "score")}
             for e in row] for row in ref]


@pytest.mark.parametrize("backend", ["torch", "onnx", "openvino"])
def test_token_classification_matches_pipeline(ner_dir, tmp_path, backend):
    df = predict(ner_dir, tmp_path, backend=backend)
    assert "entities" in df.columns and "label" not in df.columns
    ref = _entities_ref(ner_dir)
    assert sum(len(r) for r in ref) > N_ROWS  # the model finds entities to compare
    for got, want in zip(df["entities"], ref):
        got = list(got)
        assert [(e["entity_group"], e["word"], e["start"], e["end"]) for e in got] == [
            (e["entity_group"], e["word"], e["start"], e["end"]) for e in want]
        np.testing.assert_allclose([e["score"] for e in got], [e["score"] for e in want], atol=1e-4)


def test_resume_refuses_changed_threshold_and_task(multilabel_dir, tmp_path):
    from hubtune.core.errors import ResumeMismatchError

    predict(multilabel_dir, tmp_path, keep_parts=True)
    with pytest.raises(ResumeMismatchError, match="threshold"):
        predict(multilabel_dir, tmp_path, resume=True, threshold=0.9)
    with pytest.raises(ResumeMismatchError, match="task"):
        predict(multilabel_dir, tmp_path, resume=True, task="text-classification")


def test_adapter_of_a_bare_encoder_is_read_as_its_peft_head():
    """A LoRA adapter saved with its base's config (architectures: BertModel) carries its head itself
    (peft task_type SEQ_CLS, modules_to_save): it is a sequence classifier, not a headless encoder."""
    from hubtune.core.errors import ModelTaskError
    from hubtune.tasks.base import TEXT_CLASSIFICATION, TOKEN_CLASSIFICATION
    from hubtune.tasks.loading import resolve_task

    cfg = {"architectures": ["BertModel"], "model_type": "bert", "num_labels": 3}
    assert resolve_task(cfg, None, source="x", peft_task_type="SEQ_CLS")[0] == TEXT_CLASSIFICATION
    assert resolve_task(cfg, None, source="x", peft_task_type="TOKEN_CLS",
                        served=(TOKEN_CLASSIFICATION,))[0] == TOKEN_CLASSIFICATION
    with pytest.raises(ModelTaskError):
        resolve_task(cfg, None, source="x", served=(TEXT_CLASSIFICATION,))
