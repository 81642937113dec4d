"""PEFT methods beside LoRA (IA3, prefix tuning): train, save only the adapter, reload, predict."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

from hubtune.core.config import DataConfig, TrainConfig, from_dict
from hubtune.core.errors import ConfigError
from hubtune.train import train

from .conftest import TWEETS_TEST, TWEETS_TRAIN

ADAPTER_KEY = {"ia3": "ia3_l", "prefix": "prompt_embeddings"}


@pytest.mark.parametrize("mode", ["ia3", "prefix"])
def test_peft_method_trains_saves_reloads(mode, tiny_bert_dir, tmp_path):
    from hubtune.data.dataset import load_labeled
    from hubtune.core.modeling import evaluate_loaded, predict_logits
    from hubtune.tasks.loading import load_classifier

    cfg = TrainConfig(
        base_model=tiny_bert_dir, output_dir=str(tmp_path / mode), mode=mode,
        data=DataConfig(dataset=str(TWEETS_TRAIN), eval_dataset=str(TWEETS_TEST), max_samples=64, eval_max_samples=32),
        num_epochs=1, batch_size=16, max_length=32, learning_rate=1e-2, logging_steps=1000,
    )
    cfg.peft.num_virtual_tokens = 4
    res = train(cfg, progress=False)
    files = {p.name for p in res.model_dir.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "config.json"} <= files and "model.safetensors" not in files
    adapter_cfg = json.loads((res.model_dir / "adapter_config.json").read_text())
    assert adapter_cfg["peft_type"] == {"ia3": "IA3", "prefix": "PREFIX_TUNING"}[mode]
    saved = load_file(res.model_dir / "adapter_model.safetensors")
    assert any(ADAPTER_KEY[mode] in k for k in saved), sorted(saved)[:6]
    assert any("classifier" in k for k in saved), "the new head is saved with the adapter"
    summary = json.loads((res.output_dir / "run_summary.json").read_text())
    assert summary["mode"] == mode and summary["parameters"]["trainable"] < summary["parameters"]["total"] / 10

    loaded = load_classifier(str(res.model_dir))
    assert loaded.is_adapter and loaded.label_names == ["negative", "neutral", "positive"]
    assert type(loaded.model).__name__ == "PeftModelForSequenceClassification"
    data = load_labeled(str(TWEETS_TEST), label_names=loaded.label_names, max_samples=32, seed=42)
    metrics = json.loads((res.output_dir / "metrics.json").read_text())["eval"]
    assert evaluate_loaded(loaded, data)["accuracy"] == pytest.approx(metrics["accuracy"])
    assert predict_logits(loaded.model, loaded.tokenizer, ["good day", "bad day"]).shape == (2, 3)

    from hubtune.publish.merge import MergeOptions, merge

    if mode == "prefix":  # virtual tokens have no weights to fold in: refused, nothing written
        with pytest.raises(ConfigError, match="no weights to merge"):
            merge(MergeOptions(source=str(res.output_dir)))
        assert not (res.output_dir / "merged").exists()
    else:
        assert merge(MergeOptions(source=str(res.output_dir))).parity.passed


def test_adapter_mode_config_checks():
    base = {"base_model": "m", "data": {"dataset": "x.csv"}}
    assert from_dict(TrainConfig, {**base, "mode": "ia3", "peft": {"num_virtual_tokens": 4}}).mode == "ia3"
    with pytest.raises(ConfigError, match="num_virtual_tokens"):
        from_dict(TrainConfig, {**base, "mode": "prefix", "peft": {"num_virtual_tokens": 0}})
    with pytest.raises(ConfigError, match="--mode full"):
        from_dict(TrainConfig, {**base, "task": "fill-mask", "mode": "lora"})
    with pytest.raises(ConfigError, match="ulmfit"):
        from_dict(TrainConfig, {**base, "mode": "prefix", "ulmfit": {"slanted_triangular": True}})
