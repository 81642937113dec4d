"""fill-mask on a plain Accelerate loop (``--task fill-mask --engine accelerate``), as the HF course writes it:
perplexity after each epoch on eval blocks masked once, the saved files reloaded for the final figure."""

from __future__ import annotations

import json

import pytest

from .conftest import TWEETS_TEST, TWEETS_TRAIN, run_cli


@pytest.fixture(scope="module")
def tiny_mlm_dir(tmp_path_factory, minilm_dir) -> str:
    """A tiny random BertForMaskedLM (with its masked-LM head) and the MiniLM tokenizer."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("tiny_mlm")
    tok = AutoTokenizer.from_pretrained(minilm_dir)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)
    BertForMaskedLM(cfg).save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return str(out)


@pytest.mark.slow
def test_mlm_on_accelerate_reports_perplexity_each_epoch_and_saves_a_fill_mask_model(tiny_mlm_dir, tmp_path):
    from transformers import pipeline

    run = tmp_path / "run"
    res = run_cli("train", "--base-model", tiny_mlm_dir, "--task", "fill-mask", "--engine", "accelerate",
                  "--dataset", str(TWEETS_TRAIN), "--eval-dataset", str(TWEETS_TEST), "--limit", "96",
                  "--set", "data.eval_max_samples=24", "--block-size", "32", "--epochs", "2", "--batch-size", "16",
                  "--lr", "3e-3", "-o", str(run), "--no-progress")
    assert res.returncode == 0, res.stderr
    metrics = json.loads((run / "metrics.json").read_text())
    hist, ev = metrics["train"]["eval_history"], metrics["eval"]
    assert [h["epoch"] for h in hist] == [1, 2] and metrics["train"]["engine"] == "accelerate"
    assert "epoch 1: perplexity" in res.stdout and "epoch 2: perplexity" in res.stdout
    # perplexity falls from the base model's, epoch after epoch (the same masked eval blocks every time)
    assert ev["perplexity_before"] > hist[0]["perplexity"] > hist[1]["perplexity"]
    # the final figure comes from the saved files, reloaded, and equals the last epoch's
    assert ev["source"] == "reloaded" and ev["perplexity_after"] == pytest.approx(hist[1]["perplexity"], rel=1e-3)
    summary = json.loads((run / "run_summary.json").read_text())
    assert summary["engine"] == "accelerate" and summary["task"] == "fill-mask" and summary["new_head_modules"] == []
    assert json.loads((run / "model" / "config.json").read_text())["architectures"] == ["BertForMaskedLM"]
    fill = pipeline("fill-mask", model=str(run / "model"), device="cpu")
    assert len(fill("what a [MASK] day")) == 5
