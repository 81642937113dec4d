"""Masked-LM domain adaptation (task: fill-mask): blocks, masking, perplexity, fill-mask pipeline, seeding a classifier."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from hubtune.core.config import DataConfig, TrainConfig
from hubtune.train import train

from .conftest import TWEETS_TEST, TWEETS_TRAIN


@pytest.fixture(scope="module")
def tiny_mlm_dir(tmp_path_factory, tiny_bert_dir):
    """The tiny random BERT saved *with* its masked-LM head (BertForMaskedLM), so "before" measures this model."""
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("tiny_mlm")
    BertForMaskedLM(BertConfig.from_pretrained(tiny_bert_dir)).save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_bert_dir).save_pretrained(out)
    return str(out)


def _cfg(base, out, **kw):
    return TrainConfig(
        base_model=base, output_dir=str(out), task="fill-mask",
        data=DataConfig(dataset=str(TWEETS_TRAIN), eval_dataset=str(TWEETS_TEST), max_samples=96, eval_max_samples=24),
        num_epochs=1, batch_size=16, block_size=32, learning_rate=3e-3, logging_steps=1000, **kw,
    )


def test_fill_mask_adaptation_lowers_perplexity_and_seeds_a_classifier(tiny_mlm_dir, tmp_path):
    from transformers import pipeline

    res = train(_cfg(tiny_mlm_dir, tmp_path / "mlm"), progress=False)
    metrics = json.loads((res.output_dir / "metrics.json").read_text())["eval"]
    assert {"perplexity_before", "perplexity_after", "eval_loss"} <= set(metrics)
    assert not res.extra.get("warnings") and json.loads((res.output_dir / "run_summary.json").read_text())["new_head_modules"] == []
    assert metrics["perplexity_after"] < 0.9 * metrics["perplexity_before"], metrics
    assert metrics["block_size"] == 32 and metrics["num_blocks"] == res.sizes["eval"]
    cfg_json = json.loads((res.model_dir / "config.json").read_text())
    assert cfg_json["architectures"] == ["BertForMaskedLM"]
    summary = json.loads((res.output_dir / "run_summary.json").read_text())
    assert summary["task"] == "fill-mask" and summary["sizes"]["train_texts"] == 96
    assert (res.output_dir / "config.yaml").is_file()

    fill = pipeline("fill-mask", model=str(res.model_dir), device="cpu")
    out = fill("what a [MASK] day")
    assert len(out) == 5 and all("[MASK]" not in o["sequence"] for o in out)

    # the adapted encoder seeds a classifier run
    clf = TrainConfig(
        base_model=str(res.model_dir), output_dir=str(tmp_path / "clf"),
        data=DataConfig(dataset=str(TWEETS_TRAIN), eval_dataset=str(TWEETS_TEST), max_samples=16, eval_max_samples=8),
        num_epochs=1, batch_size=16, max_length=32, learning_rate=1e-20, logging_steps=1000,
    )
    clf_res = train(clf, progress=False)
    adapted = load_file(res.model_dir / "model.safetensors")
    seeded = load_file(clf_res.model_dir / "model.safetensors")
    enc = [k for k in adapted if k.startswith("bert.encoder.")]
    assert enc and all(torch.allclose(adapted[k], seeded[k], atol=1e-6) for k in enc)


def test_whole_word_masking_masks_every_piece_of_a_word(tiny_bert_dir, tiny_mlm_dir, tmp_path):
    from transformers import AutoTokenizer

    from hubtune.train.lm import mlm_collator

    tok = AutoTokenizer.from_pretrained(tiny_bert_dir)
    enc = tok(["unbelievably tokenization works wonderfully"] * 16, return_special_tokens_mask=True, return_offsets_mapping=True)
    words = [i for i in enc.word_ids(0)]
    torch.manual_seed(0)
    batch = mlm_collator(tok, 0.3, True)([{k: enc[k][i] for k in enc} for i in range(16)])
    masked = batch["labels"] != -100
    assert masked.any()
    for row in masked:
        for w in {words[i] for i in range(len(words)) if row[i]}:
            pieces = [i for i, x in enumerate(words) if x == w]
            assert all(row[i] for i in pieces), "a word is masked whole or not at all"

    res = train(_cfg(tiny_mlm_dir, tmp_path / "wwm", whole_word_mask=True, mlm_probability=0.2), progress=False)
    summary = json.loads((res.output_dir / "run_summary.json").read_text())
    assert summary["whole_word_mask"] is True and summary["mlm_probability"] == pytest.approx(0.2)
    assert res.eval_metrics["perplexity_after"] < res.eval_metrics["perplexity_before"]


def test_fill_mask_on_a_base_without_an_mlm_head_says_so(tiny_bert_dir, tmp_path):
    """Issue 16.3: a base saved without its masked-LM head (a BertModel, like the packaged MiniLM) trains a freshly
    initialised head: the run says so (result, summary, CLI) and reports no "before" perplexity, which would
    measure that random head (67,000 on MiniLM), not the base model."""
    from typer.testing import CliRunner

    from hubtune.cli.main import app

    res = train(_cfg(tiny_bert_dir, tmp_path / "nohead"), progress=False)
    metrics = json.loads((res.output_dir / "metrics.json").read_text())["eval"]
    assert "perplexity_after" in metrics and "perplexity_before" not in metrics and "eval_loss_before" not in metrics
    summary = json.loads((res.output_dir / "run_summary.json").read_text())
    assert summary["new_head_modules"] and all(m.startswith("cls.") for m in summary["new_head_modules"])
    assert "perplexity_before" not in summary["eval"]
    (warning,) = res.extra["warnings"]
    assert "no masked-LM head" in warning and "perplexity_before" in warning
    assert summary["warnings"] == [warning]

    out = CliRunner().invoke(app, [
        "train", "--task", "fill-mask", "--base-model", tiny_bert_dir, "--dataset", str(TWEETS_TRAIN),
        "--eval-dataset", str(TWEETS_TEST), "--limit", "48", "--set", "data.eval_max_samples=16", "--epochs", "1",
        "--block-size", "32", "--no-progress", "-o", str(tmp_path / "cli"),
    ])
    assert out.exit_code == 0, out.output
    assert "warning: " in out.output and "no masked-LM head" in out.output
    assert "perplexity " in out.output and " -> " not in out.output.split("perplexity ")[-1]

