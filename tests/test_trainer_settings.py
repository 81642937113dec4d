"""Issue 26 (training side): Trainer settings under ``trainer:``, ``report_to`` integrations that are not installed,
list-valued labels, class weights, the majority-class rate beside accuracy, a padless decoder as a classifier."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from hubtune.core.config import DataConfig, TrainConfig, resolve
from hubtune.core.errors import ConfigError, LabelError, MissingDependencyError

from .conftest import TWEETS_TRAIN, run_cli


def _imbalanced_csv(path: Path, n_major: int = 30, n_minor: int = 6) -> str:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label"])
        for i in range(n_major):
            w.writerow([f"the weather today is fine number {i}", "common"])
        for i in range(n_minor):
            w.writerow([f"alarm fire smoke danger {i}", "rare"])
    return str(path)


def _cfg(base: str, dataset: str, out: Path, **kw) -> TrainConfig:
    data = kw.pop("data", {})
    return TrainConfig(base_model=base, output_dir=str(out), data=DataConfig(dataset=dataset, **data), num_epochs=1,
                       batch_size=8, max_length=32, precision="fp32", logging_steps=1, **kw)


# --- 1. report_to without the integration installed ----------------------------------------------------------------
def test_report_to_tensorboard_not_installed_is_a_missing_dependency_cli(tmp_path, tiny_bert_dir):
    pytest.importorskip("transformers.integrations")
    from transformers.integrations import is_tensorboard_available

    if is_tensorboard_available():
        pytest.skip("tensorboard is installed here; the refusal needs it absent")
    out = tmp_path / "run"
    res = run_cli("train", "--base-model", tiny_bert_dir, "--dataset", str(TWEETS_TRAIN), "--limit", "20",
                  "--epochs", "1", "--max-length", "16", "-o", str(out), "--no-progress", "--set", "report_to=tensorboard",
                  env={"HF_HUB_OFFLINE": "1"})
    assert res.returncode == MissingDependencyError.exit_code, res.stderr
    lines = [l for l in res.stderr.splitlines() if l.startswith(("error:", "internal error"))]
    assert len(lines) == 1 and "pip install tensorboard" in lines[0] and "report_to" in lines[0], res.stderr
    assert not out.exists()


@pytest.mark.parametrize("name,pip", [("wandb", "pip install wandb"), ("mlflow", "pip install mlflow")])
def test_report_to_missing_integrations_refused_before_anything_is_written(tmp_path, tiny_bert_dir, name, pip):
    from transformers import integrations

    if getattr(integrations, f"is_{name}_available")():
        pytest.skip(f"{name} is installed here")
    from hubtune.train import train

    cfg = _cfg(tiny_bert_dir, str(TWEETS_TRAIN), tmp_path / "run", report_to=[name], data={"max_samples": 20})
    with pytest.raises(MissingDependencyError, match=pip):
        train(cfg, progress=False)
    assert not (tmp_path / "run").exists()


def test_report_to_unknown_integration_names_the_closest():
    from hubtune.train import train

    cfg = TrainConfig(base_model="x", data=DataConfig(dataset="y"), report_to=["tensorbord"])
    with pytest.raises(ConfigError, match="did you mean 'tensorboard'"):
        train(cfg, progress=False)


# --- 2. list-valued labels -----------------------------------------------------------------------------------------
def test_list_labels_are_a_clear_error_cli(tmp_path, tiny_bert_dir):
    p = tmp_path / "multi.jsonl"
    p.write_text("".join(json.dumps({"text": f"text {i}", "labels": ["a", "b"] if i % 2 else ["a"]}) + "\n"
                         for i in range(12)), encoding="utf-8")
    out = tmp_path / "run"
    res = run_cli("train", "--base-model", tiny_bert_dir, "--dataset", str(p), "--label-column", "labels",
                  "--epochs", "1", "-o", str(out), "--no-progress", env={"HF_HUB_OFFLINE": "1"})
    assert res.returncode == LabelError.exit_code, res.stderr
    lines = [l for l in res.stderr.splitlines() if l.startswith(("error:", "internal error"))]
    assert len(lines) == 1 and "multi-label" in lines[0] and "'labels'" in lines[0], res.stderr
    assert not out.exists()


# --- 3. any TrainingArguments field under trainer: -----------------------------------------------------------------
def test_trainer_section_from_set_and_yaml_coerced_to_the_field_types(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("base_model: x\ndata: {dataset: y}\ntrainer:\n  lr_scheduler_type: cosine\n  warmup_steps: 10\n"
                 "  label_smoothing_factor: 0.1\n  optim: adamw_torch\n", encoding="utf-8")
    cfg = resolve(TrainConfig, y, {"trainer.max_grad_norm": "0.5", "trainer.torch_compile": "false"})
    assert cfg.trainer == {"lr_scheduler_type": "cosine", "warmup_steps": 10, "label_smoothing_factor": 0.1,
                           "optim": "adamw_torch", "max_grad_norm": 0.5, "torch_compile": False}
    assert isinstance(cfg.trainer["max_grad_norm"], float)


@pytest.mark.parametrize("key,value,expected", [
    ("max_grad_nrom", "1", "did you mean 'max_grad_norm'"),
    ("max_grad_norm", "abc", "expected a number"),
    ("learning_rate", "1e-3", "'learning_rate'"),           # hand-mirrored: use the top-level key
    ("per_device_train_batch_size", "4", "'batch_size'"),
    ("output_dir", "/tmp/x", "hubtune sets"),               # hubtune's own
    ("push_to_hub", "true", "hubtune sets"),
    ("prediction_loss_only", "true", "hubtune sets"),
    ("lr_scheduler_type", "cosin", "cosine"),               # a bad choice: names the closest valid one
])
def test_trainer_section_refusals(key, value, expected):
    with pytest.raises(ConfigError, match=expected):
        resolve(TrainConfig, None, {"base_model": "x", "data.dataset": "y", f"trainer.{key}": value})


def test_trainer_section_needs_the_trainer_engine():
    with pytest.raises(ConfigError, match="trainer settings.*--engine trainer"):
        resolve(TrainConfig, None, {"base_model": "x", "data.dataset": "y", "engine": "accelerate",
                                    "trainer.max_grad_norm": "0.5"})


def test_trainer_settings_reach_the_trainer(tmp_path, tiny_bert_dir):
    """A constant schedule keeps the learning rate flat over the steps (the default linear one decays it)."""
    from hubtune.train import train

    cfg = _cfg(tiny_bert_dir, str(TWEETS_TRAIN), tmp_path / "run", data={"max_samples": 40}, learning_rate=1e-3,
               trainer={"lr_scheduler_type": "constant", "max_grad_norm": 0.5})
    cfg.validate()
    train(cfg, progress=False)
    states = sorted((tmp_path / "run" / "checkpoints").glob("checkpoint-*/trainer_state.json"))
    lrs = [h["learning_rate"] for h in json.loads(states[-1].read_text())["log_history"] if "learning_rate" in h]
    assert len(lrs) >= 3 and len(set(lrs)) == 1 and lrs[0] == pytest.approx(1e-3)
    assert (tmp_path / "run" / "config.yaml").read_text().count("lr_scheduler_type: constant") == 1


def test_a_value_transformers_refuses_is_a_config_error_before_anything_is_written(tmp_path, tiny_bert_dir):
    from hubtune.train import train

    cfg = _cfg(tiny_bert_dir, str(TWEETS_TRAIN), tmp_path / "run", data={"max_samples": 20},
               trainer={"dataloader_prefetch_factor": 2})  # needs dataloader_num_workers > 0
    cfg.validate()
    with pytest.raises(ConfigError, match="trainer settings.*dataloader_prefetch_factor"):
        train(cfg, progress=False)
    assert not (tmp_path / "run").exists()


def test_trainer_settings_reach_the_language_model_trainer(tmp_path, tiny_gpt2_dir):
    from hubtune.train import train

    cfg = _cfg(tiny_gpt2_dir, str(TWEETS_TRAIN), tmp_path / "run", task="text-generation", block_size=16,
               data={"max_samples": 60}, learning_rate=1e-3, trainer={"lr_scheduler_type": "constant"})
    cfg.validate()
    train(cfg, progress=False)
    states = sorted((tmp_path / "run" / "checkpoints").glob("checkpoint-*/trainer_state.json"))
    lrs = [h["learning_rate"] for h in json.loads(states[-1].read_text())["log_history"] if "learning_rate" in h]
    assert len(lrs) >= 2 and all(lr == pytest.approx(1e-3) for lr in lrs)


# --- 4. class weights ----------------------------------------------------------------------------------------------
def test_balanced_weights_follow_sklearn():
    from hubtune.train.settings import class_weight_vector

    w = class_weight_vector("balanced", [0, 0, 0, 1], ["a", "b"])
    assert w == pytest.approx([4 / (2 * 3), 4 / (2 * 1)])
    assert class_weight_vector({"b": 3.0}, [0, 1], ["a", "b"]) == [1.0, 3.0]
    with pytest.raises(ConfigError, match="'c'.*expected one of a, b"):
        class_weight_vector({"c": 2.0}, [0, 1], ["a", "b"])


def test_weighted_loss_changes_the_loss_on_a_fixed_batch():
    import torch
    from types import SimpleNamespace

    from hubtune.train.settings import weighted_loss

    torch.manual_seed(0)
    logits = torch.randn(6, 2)
    labels = torch.tensor([0, 0, 0, 0, 1, 1])
    out = SimpleNamespace(logits=logits)
    plain = torch.nn.functional.cross_entropy(logits, labels)
    assert weighted_loss([1.0, 1.0])(out, labels).item() == pytest.approx(plain.item(), rel=1e-6)
    w = [0.75, 1.5]
    want = (torch.tensor(w)[labels] * torch.nn.functional.cross_entropy(logits, labels, reduction="none")).sum() / 6
    got = weighted_loss(w)(out, labels, num_items_in_batch=6)
    assert got.item() == pytest.approx(want.item(), rel=1e-6) and abs(got.item() - plain.item()) > 1e-3
    smoothed = torch.nn.functional.cross_entropy(logits, labels, label_smoothing=0.1)  # trainer.label_smoothing_factor
    assert weighted_loss([1.0, 1.0], 0.1)(out, labels).item() == pytest.approx(smoothed.item(), rel=1e-6)


def test_class_weights_change_training_and_unknown_labels_are_refused(tmp_path, tiny_bert_dir):
    from hubtune.train import train

    data = _imbalanced_csv(tmp_path / "imb.csv")
    runs = {}
    for name, weights in (("plain", None), ("balanced", "balanced")):
        cfg = _cfg(tiny_bert_dir, data, tmp_path / name, learning_rate=1e-3, class_weights=weights)
        cfg.validate()
        runs[name] = train(cfg, progress=False)
    assert runs["plain"].train_metrics["train_loss"] != pytest.approx(runs["balanced"].train_metrics["train_loss"])
    doc = json.loads((tmp_path / "balanced" / "run_summary.json").read_text())
    assert doc["class_weights"] == pytest.approx({"common": 36 / (2 * 27), "rare": 36 / (2 * 5)}, rel=0.25)
    bad = _cfg(tiny_bert_dir, data, tmp_path / "bad", class_weights={"rar": 2.0})
    with pytest.raises(ConfigError, match="'rar'"):
        train(bad, progress=False)
    assert not (tmp_path / "bad").exists()


def test_class_weights_config_checks():
    ok = resolve(TrainConfig, None, {"base_model": "x", "data.dataset": "y", "class_weights.rare": "3"})
    assert ok.class_weights == {"rare": 3.0}
    for bad in ({"class_weights": "balance"}, {"class_weights.rare": "-1"}):
        with pytest.raises(ConfigError, match="class_weights"):
            resolve(TrainConfig, None, {"base_model": "x", "data.dataset": "y", **bad})


# --- 5. the majority-class rate beside accuracy, and a padless decoder (GPT-2) as a classifier --------------------
def test_summary_names_the_majority_class_rate(tmp_path, tiny_bert_dir):
    data = _imbalanced_csv(tmp_path / "imb.csv")
    out = tmp_path / "run"
    res = run_cli("train", "--base-model", tiny_bert_dir, "--dataset", data, "--epochs", "1", "--max-length", "16",
                  "-o", str(out), "--no-progress", "--precision", "fp32", env={"HF_HUB_OFFLINE": "1"})
    assert res.returncode == 0, res.stderr
    rate = json.loads((out / "metrics.json").read_text())["eval"]["majority_rate"]
    assert rate >= 0.75 and f"(majority class {rate:.4f})" in res.stdout, res.stdout
    assert json.loads((out / "run_summary.json").read_text())["eval_majority_rate"] == rate


def test_gpt2_classifier_gets_its_pad_token_from_eos(tmp_path, tiny_gpt2_dir):
    from transformers import AutoConfig, AutoTokenizer

    from hubtune.train import train

    cfg = _cfg(tiny_gpt2_dir, str(TWEETS_TRAIN), tmp_path / "run", data={"max_samples": 24})
    cfg.validate()
    result = train(cfg, progress=False)  # batch_size 8: padding needs a pad token
    model_dir = tmp_path / "run" / "model"
    tok = AutoTokenizer.from_pretrained(model_dir)
    assert tok.pad_token == tok.eos_token and AutoConfig.from_pretrained(model_dir).pad_token_id == tok.eos_token_id
    assert result.eval_metrics["source"] == "reloaded"


@pytest.fixture(scope="module")
def tiny_gpt2_dir(tmp_path_factory):
    """A GPT-2 (2 layers, n_embd 32) on the MiniLM word pieces' vocabulary size, with a byte-level BPE without a pad."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast
    import torch

    with open(TWEETS_TRAIN, encoding="utf-8", newline="") as fh:
        texts = [r["text"] for r in csv.DictReader(fh)][:400]
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=400, min_frequency=2, special_tokens=["<|endoftext|>"],
                            show_progress=False)
    tok = GPT2TokenizerFast(tokenizer_object=bpe._tokenizer, eos_token="<|endoftext|>", bos_token="<|endoftext|>",
                            unk_token="<|endoftext|>", model_max_length=64)
    assert tok.pad_token is None
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("tiny_gpt2_cls")
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=32, n_layer=2, n_head=2,
                               bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id)).save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


def test_readme_trainer_settings_command_resolves():
    """The README's Trainer-settings line: its --set keys resolve on the quickstart YAML and reach cfg.trainer."""
    import shlex

    from hubtune.cli._common import parse_overrides

    from .conftest import REPO
    from .test_readme import readme_hubtune_commands

    line = next(c for c in readme_hubtune_commands((REPO / "README.md").read_text()) if "trainer.max_grad_norm" in c)
    words = shlex.split(line)
    sets = [words[i + 1] for i, w in enumerate(words) if w == "--set"]
    cfg = resolve(TrainConfig, REPO / words[words.index("--config") + 1], parse_overrides(sets))
    assert cfg.report_to == ["tensorboard"]
    assert cfg.trainer == {"max_grad_norm": 0.5, "lr_scheduler_type": "cosine", "warmup_steps": 10}
