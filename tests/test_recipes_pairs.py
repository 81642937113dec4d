"""Sentence-pair classification (MRPC style): pair columns are found, encoded as pairs, and reloaded."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from hubtune.core.config import DataConfig, TrainConfig
from hubtune.train import train

from .conftest import REPO


def _build_pairs_module():
    spec = importlib.util.spec_from_file_location("build_pairs", REPO / "data" / "build_pairs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def pair_files(tmp_path_factory):
    out = tmp_path_factory.mktemp("pairs")
    return _build_pairs_module().build(out, n_train=96, n_test=48, seed=7)


def test_build_pairs_is_deterministic_and_balanced(tmp_path):
    mod = _build_pairs_module()
    rows = mod.read_rows(REPO / "data" / "tweets" / "train.csv")
    a, b = mod.build_pairs(rows, 200, seed=3), mod.build_pairs(rows, 200, seed=3)
    assert a == b and a != mod.build_pairs(rows, 200, seed=4)
    assert sum(r["label"] == "same" for r in a) == 100
    sentiment = dict(rows)
    assert all((sentiment[r["sentence1"]] == sentiment[r["sentence2"]]) == (r["label"] == "same") for r in a)


def test_pair_classifier_trains_reloads_and_predicts_pairs(tiny_bert_dir, pair_files, tmp_path):
    from hubtune.data.dataset import load_labeled
    from hubtune.core.modeling import evaluate_loaded, predict_logits
    from hubtune.tasks.loading import load_classifier

    train_csv, test_csv = pair_files
    cfg = TrainConfig(
        base_model=tiny_bert_dir, output_dir=str(tmp_path / "run"),
        data=DataConfig(dataset=str(train_csv), eval_dataset=str(test_csv)),
        num_epochs=1, batch_size=16, max_length=64, learning_rate=1e-3, logging_steps=1000,
    )
    res = train(cfg, progress=False)
    summary = json.loads((res.output_dir / "run_summary.json").read_text())
    assert summary["columns"] == {"text": "sentence1", "text_pair": "sentence2", "label": "label"}
    assert summary["label_names"] == ["different", "same"] and summary["sizes"] == {"train": 96, "eval": 48}
    metrics = json.loads((res.output_dir / "metrics.json").read_text())["eval"]
    assert metrics["num_examples"] == 48 and "f1_macro" in metrics and "roc_auc" in metrics

    loaded = load_classifier(str(res.model_dir))
    assert loaded.label_names == ["different", "same"]
    data = load_labeled(str(test_csv), label_names=loaded.label_names)
    assert data.has_pair
    again = evaluate_loaded(loaded, data)  # the evaluate step on the saved model agrees with train's figures
    assert again["accuracy"] == pytest.approx(metrics["accuracy"]) and again["f1_macro"] == pytest.approx(metrics["f1_macro"])
    s1, s2 = data.dataset["text"][:8], data.dataset["text_pair"][:8]
    with_pairs = predict_logits(loaded.model, loaded.tokenizer, s1, s2)
    assert with_pairs.shape == (8, 2)
    # the second sentence is really encoded: dropping or swapping it changes the logits
    assert not np.allclose(with_pairs, predict_logits(loaded.model, loaded.tokenizer, s1))
    enc = loaded.tokenizer(s1[0], s2[0])
    assert 1 in enc["token_type_ids"] and enc["input_ids"].count(loaded.tokenizer.sep_token_id) == 2
