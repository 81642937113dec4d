"""Causal LM recipes on a tiny GPT-2 with a BPE tokenizer trained here: text-generation and generative classification."""

from __future__ import annotations

import csv
import json

import pytest

from hubtune.core.config import DataConfig, TrainConfig
from hubtune.train import train

from .conftest import TWEETS_TEST, TWEETS_TRAIN


@pytest.fixture(scope="module")
def tiny_gpt2_dir(tmp_path_factory):
    """GPT-2 (n_layer 2, n_embd 32) + a byte-level BPE (vocab 600) trained on the tweets, saved as a base model."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    with open(TWEETS_TRAIN, encoding="utf-8", newline="") as fh:
        texts = [r["text"] for r in csv.DictReader(fh)]
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts + [" negative", " neutral", " positive"] * 50, vocab_size=600, min_frequency=2,
                            special_tokens=["<|endoftext|>"], show_progress=False)
    tok = GPT2TokenizerFast(tokenizer_object=bpe._tokenizer, eos_token="<|endoftext|>", bos_token="<|endoftext|>",
                            unk_token="<|endoftext|>", model_max_length=128)
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=len(tok), n_positions=128, n_embd=32, n_layer=2, n_head=2,
                     bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id)
    out = tmp_path_factory.mktemp("tiny_gpt2")
    GPT2LMHeadModel(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


def test_text_generation_lowers_perplexity_and_generates(tiny_gpt2_dir, tmp_path):
    from transformers import pipeline

    cfg = TrainConfig(
        base_model=tiny_gpt2_dir, output_dir=str(tmp_path / "gen"), task="text-generation",
        data=DataConfig(dataset=str(TWEETS_TRAIN), eval_dataset=str(TWEETS_TEST), max_samples=300, eval_max_samples=60),
        num_epochs=1, batch_size=8, block_size=64, learning_rate=3e-3, logging_steps=1000,
    )
    res = train(cfg, progress=False)
    m = json.loads((res.output_dir / "metrics.json").read_text())["eval"]
    assert m["perplexity_after"] < 0.8 * m["perplexity_before"], m
    assert json.loads((res.model_dir / "config.json").read_text())["architectures"] == ["GPT2LMHeadModel"]
    gen = pipeline("text-generation", model=str(res.model_dir), device="cpu")
    text = gen("I love", max_new_tokens=5, do_sample=False)[0]["generated_text"]
    assert text.startswith("I love") and len(text) > len("I love")
    _batch_generation_recipe(res.output_dir, gen, tmp_path)


def _batch_generation_recipe(run, gen, tmp_path):
    """docs/recipes.md §14's commands, run as written on the LM trained above (runs/sft -> its run directory, the
    first 40 rows): greedy answers equal pipeline("text-generation") on every row; sampling writes 2 texts a row."""
    import re
    import shlex
    import subprocess
    import sys

    import pyarrow.parquet as pq

    from .conftest import REPO

    section = (REPO / "docs" / "recipes.md").read_text(encoding="utf-8").split("## 14. Batch generation")[1]
    commands = re.search(r"```bash\n(.*?)```", section, re.S).group(1).strip().splitlines()
    assert len(commands) == 2
    for line in commands:
        argv = [str(run) if a == "runs/sft" else a for a in shlex.split(line)]
        argv = [str(tmp_path / a) if a.endswith((".parquet", ".jsonl")) and not a.startswith("examples/") else a
                for a in argv]
        done = subprocess.run([sys.executable, "-m", *argv, "--limit", "40", "--no-progress"], cwd=REPO,
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    answers = pq.read_table(tmp_path / "answers.parquet").to_pylist()
    prompts = [json.loads(line)["prompt"] for line in open(REPO / "examples/data/sft_sentiment.jsonl", encoding="utf-8")][:40]
    want = [r[0]["generated_text"] for r in gen(prompts, max_new_tokens=4, do_sample=False, return_full_text=False)]
    assert [a["generated_text"] for a in answers] == want
    assert all(a["completion"] is not None and a["prompt_tokens"] > 0 for a in answers)
    samples = [json.loads(line) for line in open(tmp_path / "samples.jsonl", encoding="utf-8")]
    assert len(samples) == 40 and all(len(s["generated_text"]) == 2 for s in samples)


def test_generative_classification_trains_on_the_label_token(tiny_gpt2_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hubtune.data.dataset import load_labeled
    from hubtune.train.lm import LABELS_FILE, gen_cls_features, label_token_ids

    tok = AutoTokenizer.from_pretrained(tiny_gpt2_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_gpt2_dir)
    names = ["negative", "neutral", "positive"]
    n_vocab = len(tok)
    ids = label_token_ids(tok, names, model)  # ' negative' and ' neutral' share 'Ġne': labels become new tokens
    assert len(set(ids)) == 3 and len(tok) == n_vocab + 3 and model.get_input_embeddings().num_embeddings == len(tok)
    assert label_token_ids(tok, ["pos", "neg"]) != []  # distinct first tokens need no new ones
    data = load_labeled(str(TWEETS_TEST), max_samples=4)
    feats = gen_cls_features(data, tok, ids, 64, "t")
    for row, lab in zip(feats, data.dataset["label"]):
        assert row["input_ids"][-2] == tok.eos_token_id and row["input_ids"][-1] == ids[lab]
        assert [x for x in row["labels"] if x != -100] == [ids[lab]] and row["labels"][-1] == ids[lab]

    cfg = TrainConfig(
        base_model=tiny_gpt2_dir, output_dir=str(tmp_path / "gencls"), task="generative-classification",
        data=DataConfig(dataset=str(TWEETS_TRAIN), eval_dataset=str(TWEETS_TEST), max_samples=256, eval_max_samples=64),
        num_epochs=2, batch_size=16, max_length=64, learning_rate=3e-3, logging_steps=1000,
        metric_for_best_model="accuracy",
    )
    res = train(cfg, progress=False)
    m = json.loads((res.output_dir / "metrics.json").read_text())["eval"]
    assert m["num_examples"] == 64 and m["labels"] == names and "confusion_matrix" in m
    assert sum(map(sum, m["confusion_matrix"])) == 64
    labels_doc = json.loads((res.model_dir / LABELS_FILE).read_text())
    assert labels_doc["label_names"] == names and labels_doc["label_token_ids"] == ids
    tok = AutoTokenizer.from_pretrained(res.model_dir)  # the saved tokenizer knows the label tokens
    assert tok.convert_tokens_to_ids([f"<{n}>" for n in names]) == ids

    # the reported accuracy is what the saved model predicts over the label tokens after EOS
    import torch

    model = AutoModelForCausalLM.from_pretrained(res.model_dir).eval()
    ev = load_labeled(str(TWEETS_TEST), label_names=names, max_samples=64, seed=42)
    correct = 0
    with torch.no_grad():
        for text, lab in zip(ev.dataset["text"], ev.dataset["label"]):
            x = tok(text, add_special_tokens=False, truncation=True, max_length=62)["input_ids"] + [tok.eos_token_id]
            scores = model(torch.tensor([x])).logits[0, -1, ids]
            correct += int(scores.argmax()) == lab
    assert correct / 64 == pytest.approx(m["accuracy"])
    # the model learnt at least the majority label: after training, nearly all its mass sits on the label tokens
    assert m["accuracy"] >= m["majority_rate"] - 0.05


def test_generative_classification_lora_trains_and_saves_the_label_token_rows(tiny_gpt2_dir, tmp_path):
    """Issue 16.2: with LoRA, the label tokens added to the vocabulary train (peft's trainable token indices: their
    embedding rows, tied to the output rows on GPT-2), are saved with the adapter and reload to the same predictions.
    Before, they kept their random, frozen rows and the eval loss stayed near ln(vocab)."""
    import math

    import torch
    from peft import AutoPeftModelForCausalLM
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed

    from hubtune.core.config import LoraSettings
    from hubtune.data.dataset import load_labeled
    from hubtune.train.lm import LABELS_FILE, label_token_ids

    names = ["negative", "neutral", "positive"]
    cfg = TrainConfig(
        base_model=tiny_gpt2_dir, output_dir=str(tmp_path / "gencls_lora"), task="generative-classification", mode="lora",
        data=DataConfig(dataset=str(TWEETS_TRAIN), eval_dataset=str(TWEETS_TEST), max_samples=192, eval_max_samples=48),
        num_epochs=2, batch_size=16, max_length=64, learning_rate=1e-2, logging_steps=1000,
        metric_for_best_model="accuracy", lora=LoraSettings(r=4, alpha=8, dropout=0.0, target_modules=["c_attn"]),
    )
    res = train(cfg, progress=False)
    ids = json.loads((res.model_dir / LABELS_FILE).read_text())["label_token_ids"]
    # the rows are saved with the adapter ...
    saved = load_file(res.model_dir / "adapter_model.safetensors")
    rows = [v for k, v in saved.items() if "trainable_tokens_delta" in k]  # wte's, and lm_head's tied to it
    assert rows and all(tuple(r.shape) == (3, 32) and torch.equal(r, rows[0]) for r in rows), sorted(saved)
    # ... and moved from where they started (the recipe seeds the resize, so the start is reproducible)
    set_seed(cfg.seed)
    start_model = AutoModelForCausalLM.from_pretrained(tiny_gpt2_dir)
    assert label_token_ids(AutoTokenizer.from_pretrained(tiny_gpt2_dir), names, start_model) == ids
    start = start_model.get_input_embeddings().weight[ids].detach()
    assert (rows[0] - start).abs().max() > 1e-2
    # the model learnt its labels: the loss on the label token is far below a uniform guess over the vocabulary
    m = res.eval_metrics
    tok = AutoTokenizer.from_pretrained(res.model_dir)
    assert m["eval_loss"] < 0.5 * math.log(len(tok)), m["eval_loss"]

    # the adapter folder reloads (base resized to the saved tokenizer) to the reported predictions
    model = AutoPeftModelForCausalLM.from_pretrained(str(res.model_dir)).eval()
    ev = load_labeled(str(TWEETS_TEST), label_names=names, max_samples=48, seed=42)
    correct = 0
    with torch.no_grad():
        for text, lab in zip(ev.dataset["text"], ev.dataset["label"]):
            x = tok(text, add_special_tokens=False, truncation=True, max_length=62)["input_ids"] + [tok.eos_token_id]
            correct += int(model(input_ids=torch.tensor([x])).logits[0, -1, ids].argmax()) == lab
    assert correct / 48 == pytest.approx(m["accuracy"])
    summary = json.loads((res.output_dir / "run_summary.json").read_text())
    assert summary["trainable_label_tokens"] == ids
