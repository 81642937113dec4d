"""Issue 13.4: metrics come from the saved files, and weights the base lacks are trained and saved.

A fill-mask checkpoint has no pooler; a LoRA/IA3/prefix classifier on it used to get a random, frozen,
unsaved pooler, so every reload predicted differently while metrics.json (from the in-memory model) looked fine.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from hubtune.core.config import DataConfig, LoraSettings, TrainConfig
from hubtune.train import train

from .conftest import TWEETS_TEST, TWEETS_TRAIN, run_cli


@pytest.fixture(scope="module")
def mlm_base(tmp_path_factory, minilm_dir):
    """A tiny random BertForMaskedLM checkpoint: no pooler weights, like a fill-mask run's output."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("mlm_base")
    tok = AutoTokenizer.from_pretrained(minilm_dir)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)
    BertForMaskedLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


def _cfg(base, out, mode, test=False):
    return TrainConfig(
        base_model=base, output_dir=str(out), mode=mode,
        data=DataConfig(dataset=str(TWEETS_TRAIN), eval_dataset=str(TWEETS_TEST), max_samples=96, eval_max_samples=48,
                        test_dataset=str(TWEETS_TEST) if test else None, test_max_samples=40),
        num_epochs=1, batch_size=16, max_length=32, learning_rate=1e-3, lora=LoraSettings(r=4, alpha=8, dropout=0.0),
        logging_steps=1000,
    )


def _reload_logits(model_dir, seed):
    import torch

    from hubtune.data.dataset import load_labeled
    from hubtune.core.modeling import predict_logits
    from hubtune.tasks.loading import load_classifier

    torch.manual_seed(seed)  # a random, unsaved weight would come out different under another seed
    loaded = load_classifier(str(model_dir))
    ds = load_labeled(str(TWEETS_TEST), label_names=loaded.label_names, max_samples=48, seed=42).dataset
    return predict_logits(loaded.model, loaded.tokenizer, ds["text"], batch_size=16, max_length=32)


@pytest.mark.parametrize("mode", ["lora", "ia3", "prefix"])
def test_adapter_on_base_without_pooler_reloads_identically(mlm_base, tmp_path, mode):
    res = train(_cfg(mlm_base, tmp_path / mode, mode), progress=False)
    a, b = _reload_logits(res.model_dir, 1), _reload_logits(res.model_dir, 2)
    assert np.abs(a - b).max() < 1e-5, "two reloads of the saved files must predict the same"
    summary = json.loads((res.output_dir / "run_summary.json").read_text())
    assert any("pooler" in m for m in summary["trained_missing_weights"])


def test_metrics_come_from_the_reloaded_files(mlm_base, tmp_path):
    res = train(_cfg(mlm_base, tmp_path / "lora", "lora", test=True), progress=False)
    metrics = json.loads((res.output_dir / "metrics.json").read_text())
    assert metrics["eval"]["source"] == "reloaded"
    assert metrics["test"]["num_examples"] == 40
    proc = run_cli("evaluate", "--model", str(res.model_dir), "--dataset", str(TWEETS_TEST), "--limit", "48", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["metrics"]["accuracy"] == pytest.approx(metrics["eval"]["accuracy"])


def test_reload_disagreement_fails_the_run(mlm_base, tmp_path, monkeypatch):
    from hubtune.core.errors import TrainingError
    from hubtune.train import common

    real = common.save_classifier

    def lossy_save(layout, model, *a, **k):  # a save that drops the trained head: the reload cannot match
        real(layout, model, *a, **k)
        import torch
        from safetensors.torch import load_file, save_file

        f = layout.model_dir / "adapter_model.safetensors"
        state = {k2: (torch.zeros_like(v) if "classifier" in k2 else v) for k2, v in load_file(f).items()}
        save_file(state, f)

    monkeypatch.setattr(common, "save_classifier", lossy_save)
    with pytest.raises(TrainingError, match="reloaded"):
        train(_cfg(mlm_base, tmp_path / "bad", "lora"), progress=False)


def test_cli_test_dataset_flag(tiny_bert_dir, tmp_path):
    out = tmp_path / "run"
    proc = run_cli("train", "--base-model", tiny_bert_dir, "--mode", "full", "--dataset", str(TWEETS_TRAIN),
                   "--eval-dataset", str(TWEETS_TEST), "--test-dataset", str(TWEETS_TEST), "--limit", "64",
                   "--set", "data.eval_max_samples=32", "--set", "data.test_max_samples=24", "--epochs", "1",
                   "--max-length", "32", "-o", str(out), "--json", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)
    assert res["test"]["num_examples"] == 24
    assert json.loads((out / "metrics.json").read_text())["test"]["num_examples"] == 24
    assert json.loads((out / "run_summary.json").read_text())["test_source"] == str(TWEETS_TEST)
