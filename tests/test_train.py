"""Training behaviour on a tiny random BERT: weights change; LoRA keeps the base intact."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from hubtune.config import DataConfig, LoraSettings, TrainConfig
from hubtune.errors import OutputExistsError
from hubtune.train import train

from .conftest import TWEETS_TEST, TWEETS_TRAIN


def _cfg(base, out, mode="full", **kw):
    return TrainConfig(
        base_model=base,
        output_dir=str(out),
        mode=mode,
        data=DataConfig(dataset=str(TWEETS_TRAIN), eval_dataset=str(TWEETS_TEST), max_samples=64, eval_max_samples=32),
        num_epochs=1,
        batch_size=16,
        max_length=32,
        learning_rate=1e-3,
        lora=LoraSettings(r=4, alpha=8, dropout=0.0),
        logging_steps=1000,
        **kw,
    )


def test_full_training_changes_weights_and_writes_run_dir(tiny_bert_dir, tmp_path):
    before = load_file(f"{tiny_bert_dir}/model.safetensors")
    res = train(_cfg(tiny_bert_dir, tmp_path / "run"), progress=False)
    after = load_file(res.model_dir / "model.safetensors")
    changed = [k for k in before if f"bert.{k}" in after and not torch.equal(before[k], after[f"bert.{k}"])]
    assert len(changed) > len(before) // 2, "most encoder tensors should move after training"
    cfg = json.loads((res.model_dir / "config.json").read_text())
    assert cfg["id2label"] == {"0": "negative", "1": "neutral", "2": "positive"}
    for f in ("metrics.json", "config.yaml", "run_summary.json"):
        assert (res.output_dir / f).is_file()
    metrics = json.loads((res.output_dir / "metrics.json").read_text())
    assert metrics["eval"]["num_examples"] == 32 and "confusion_matrix" in metrics["eval"]
    summary = json.loads((res.output_dir / "run_summary.json").read_text())
    assert summary["sizes"] == {"train": 64, "eval": 32}
    assert summary["label_names"] == ["negative", "neutral", "positive"]
    assert not (res.model_dir / "pytorch_model.bin").exists()


def test_lora_keeps_base_identical_and_saves_only_adapter_and_head(tiny_bert_dir, tmp_path):
    from transformers import AutoModelForSequenceClassification

    res = train(_cfg(tiny_bert_dir, tmp_path / "lora", mode="lora"), progress=False)
    files = sorted(p.name for p in res.model_dir.iterdir())
    assert "adapter_model.safetensors" in files and "model.safetensors" not in files
    saved = load_file(res.model_dir / "adapter_model.safetensors")
    assert saved and all(("lora_" in k) or ("classifier" in k) for k in saved), sorted(saved)[:5]
    assert any("classifier" in k for k in saved) and any("lora_B" in k for k in saved)
    assert any(v.abs().sum() > 0 for k, v in saved.items() if "lora_B" in k), "lora_B starts at zero; training must move it"
    # base weights on disk unchanged and the base files untouched
    base = load_file(f"{tiny_bert_dir}/model.safetensors")
    fresh = AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir, num_labels=3).state_dict()
    for k, v in base.items():
        assert torch.equal(v, fresh[f"bert.{k}"])
    # the adapter reloads directly, with label names
    from hubtune.modeling import load_classifier

    loaded = load_classifier(str(res.model_dir))
    assert loaded.is_adapter and loaded.label_names == ["negative", "neutral", "positive"]
    peft_base = loaded.model.get_base_model()
    for k, v in base.items():
        if "encoder.layer.0.attention.self.query.weight" in k:
            name = "bert." + k.replace(".weight", ".base_layer.weight")
            assert torch.equal(peft_base.state_dict()[name], v)


def test_non_empty_output_refused_without_flags(tiny_bert_dir, tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        train(_cfg(tiny_bert_dir, out), progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


def test_resume_continues_from_checkpoint(tiny_bert_dir, tmp_path):
    out = tmp_path / "res"
    train(_cfg(tiny_bert_dir, out), progress=False)
    cfg = _cfg(tiny_bert_dir, out)
    cfg.num_epochs = 2
    res = train(cfg, resume=True, progress=False)
    assert res.resumed_from and res.resumed_from.startswith("checkpoint-")
    assert res.train_metrics["global_step"] == 8
