"""The recipe flags of `hubtune train` reach the config; LM results print perplexity."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

import hubtune.train
from hubtune.cli.main import app


def test_recipe_flags_reach_the_config(monkeypatch, tmp_path):
    seen = {}

    def fake_train(cfg, **kw):
        seen["cfg"] = cfg
        return hubtune.train.TrainResult(
            output_dir=Path(cfg.output_dir), model_dir=Path(cfg.output_dir) / "model", mode=cfg.mode, label_names=[],
            eval_metrics={"perplexity_before": 100.0, "perplexity_after": 50.0, "eval_loss": 3.9},
            train_metrics={}, sizes={"train": 10, "eval": 2}, seconds=1.0, extra={"task": cfg.task, "main_process": True},
        )

    monkeypatch.setattr(hubtune.train, "train", fake_train)
    res = CliRunner().invoke(app, [
        "train", "--base-model", "m", "--dataset", "d.csv", "-o", str(tmp_path / "r"), "--task", "fill-mask",
        "--block-size", "64", "--mlm-probability", "0.2", "--whole-word-mask", "--engine", "trainer",
        "--set", "ulmfit.cut_frac=0.2", "--set", "peft.num_virtual_tokens=7",
    ])
    assert res.exit_code == 0, res.output
    cfg = seen["cfg"]
    assert (cfg.task, cfg.block_size, cfg.mlm_probability, cfg.whole_word_mask) == ("fill-mask", 64, 0.2, True)
    assert cfg.ulmfit.cut_frac == 0.2 and cfg.peft.num_virtual_tokens == 7
    assert "perplexity 100.00 -> 50.00" in res.output

    res = CliRunner().invoke(app, ["train", "--base-model", "m", "--dataset", "d.csv", "--task", "text-generation", "--engine", "accelerate"])
    assert res.exit_code == 2 and "use --engine trainer" in res.output  # refused before training

    res = CliRunner().invoke(app, ["train", "--base-model", "m", "--dataset", "d.csv", "--task", "summarize"])
    assert res.exit_code == 2 and "expected one of" in res.output
