"""Training behaviour on a tiny random BERT: weights change; LoRA keeps the base intact."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from hubtune.core.config import DataConfig, LoraSettings, TrainConfig
from hubtune.core.errors import OutputExistsError
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
    from hubtune.tasks.loading import load_classifier

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


def test_resumed_train_loss_counts_the_resumed_steps_only(tiny_bert_dir, tmp_path):
    """Issue 16.10: after --resume, train_loss is the mean over the steps this call trained (transformers < 5.19
    divided their loss sum by every step since the start: 0.28 after a resume against 0.60 uninterrupted)."""
    import shutil

    def two_epochs(out):
        cfg = _cfg(tiny_bert_dir, out)
        cfg.num_epochs, cfg.logging_steps = 2, 1
        return cfg

    run = tmp_path / "run"
    full = train(two_epochs(run), progress=False)  # 8 steps, uninterrupted
    assert full.train_metrics["global_step"] == 8 and full.train_metrics["train_loss_steps"] == 8
    state = json.loads((run / "checkpoints" / "checkpoint-8" / "trainer_state.json").read_text())
    per_step = {e["step"]: e["loss"] for e in state["log_history"] if "loss" in e}
    assert sorted(per_step) == list(range(1, 9))
    shutil.rmtree(run / "checkpoints" / "checkpoint-8")  # as if killed after epoch 1: checkpoint-4 survives
    resumed = train(two_epochs(run), resume=True, progress=False)
    assert resumed.resumed_from == "checkpoint-4" and resumed.train_metrics["global_step"] == 8
    assert resumed.train_metrics["train_loss_steps"] == 4
    # the mean over steps 5-8 of the uninterrupted run (the resumed run replays them) ...
    assert resumed.train_metrics["train_loss"] == pytest.approx(sum(per_step[s] for s in range(5, 9)) / 4, rel=0.02)
    # ... which is close to the uninterrupted run's, not half of it
    assert resumed.train_metrics["train_loss"] == pytest.approx(full.train_metrics["train_loss"], rel=0.15)
    summary = json.loads((run / "run_summary.json").read_text())
    assert summary["resumed_from"] == "checkpoint-4" and summary["resumed_steps"] == 4


def test_every_run_announces_its_trainable_parameters(tiny_bert_dir, tmp_path):
    """Issue 16.10: the library hands the trainable count and share to an ``on_start`` hook before training
    (it prints nothing); the CLI prints it first."""
    from typer.testing import CliRunner

    from hubtune.cli.main import app

    seen = []
    res = train(_cfg(tiny_bert_dir, tmp_path / "lora", mode="lora"), progress=False, on_start=seen.append)
    assert len(seen) == 1
    info = seen[0]
    params = json.loads((res.output_dir / "run_summary.json").read_text())["parameters"]
    assert info["trainable"] == params["trainable"] and info["total"] == params["total"]
    assert 0 < info["trainable"] < info["total"] and info["share"] == pytest.approx(info["trainable"] / info["total"])
    assert params["trainable_share"] == pytest.approx(info["share"])

    out = CliRunner().invoke(app, [
        "train", "--base-model", tiny_bert_dir, "--dataset", str(TWEETS_TRAIN), "--eval-dataset", str(TWEETS_TEST),
        "--limit", "32", "--set", "data.eval_max_samples=16", "--epochs", "1", "--batch-size", "16",
        "--max-length", "32", "--no-progress", "-o", str(tmp_path / "cli"),
    ])
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("trainable parameters:"))
    assert first < next(i for i, line in enumerate(lines) if line.startswith("trained "))
    total = json.loads((tmp_path / "cli" / "run_summary.json").read_text())["parameters"]["total"]
    assert f"of {total:,} (100.00%)" in lines[first]
