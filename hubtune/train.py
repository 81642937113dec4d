"""The train step: fine-tune a sequence classifier (full or LoRA) with the Trainer.

Writes the run directory described in :mod:`hubtune.layout`. All input is validated (data loaded,
model and tokenizer loaded) before anything is written, so bad input leaves no partial output.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hubtune import __version__
from hubtune.config import TrainConfig, dump_yaml
from hubtune.data import TrainEvalData, load_train_eval
from hubtune.errors import ConfigError, ModelLoadError, OutputExistsError, TrainingError
from hubtune.layout import RunLayout
from hubtune.metrics import classification_metrics, softmax, summary
from hubtune.modeling import (
    DEFAULT_MAX_LENGTH,
    LoadedModel,
    evaluate_loaded,
    label_names_from_config,
    resolve_model_source,
    write_json,
)


@dataclass
class TrainResult:
    output_dir: Path
    model_dir: Path
    mode: str
    label_names: list[str]
    eval_metrics: dict[str, Any]
    train_metrics: dict[str, Any]
    sizes: dict[str, int]
    seconds: float
    resumed_from: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------
def _check_output_dir(path: Path, overwrite: bool, resume: bool) -> None:
    if path.exists() and not path.is_dir():
        raise OutputExistsError(f"output path {path} is a file; expected a directory (pick another --output-dir)")
    if path.is_dir() and any(path.iterdir()) and not (overwrite or resume):
        raise OutputExistsError(
            f"output directory {path} is not empty; expected a new or empty directory "
            "(pass --overwrite to replace it or --resume to continue its last checkpoint)"
        )


def _precision_flags(precision: str) -> dict[str, bool]:
    import torch

    cuda = torch.cuda.is_available()
    if precision == "auto":
        if not cuda:
            return {}
        return {"bf16": True} if torch.cuda.is_bf16_supported() else {"fp16": True}
    if precision in ("fp16", "bf16") and not cuda:
        raise ConfigError(f"precision {precision} needs a CUDA GPU and none is available; use --precision fp32 or auto")
    return {precision: True} if precision in ("fp16", "bf16") else {}


def _head_modules(model: Any) -> list[str]:
    names = [n for n in ("classifier", "score", "classification_head", "pre_classifier") if hasattr(model, n)]
    if not names:
        raise TrainingError(
            f"no classification head found on {type(model).__name__} (looked for classifier/score); "
            "expected an AutoModelForSequenceClassification architecture"
        )
    return names


def _apply_lora(model: Any, cfg: TrainConfig) -> Any:
    from peft import LoraConfig, TaskType, get_peft_model

    targets = cfg.lora.target_modules or None  # None: peft's per-architecture default mapping
    lcfg = LoraConfig(
        task_type=TaskType.SEQ_CLS,
        r=cfg.lora.r,
        lora_alpha=cfg.lora.alpha,
        lora_dropout=cfg.lora.dropout,
        bias=cfg.lora.bias,
        target_modules=targets,
        modules_to_save=_head_modules(model),
    )
    try:
        return get_peft_model(model, lcfg)
    except ValueError as exc:
        raise ConfigError(
            f"LoRA could not be applied to {cfg.base_model} ({' '.join(str(exc).split())[:200]}); "
            "set lora.target_modules to the model's attention projection names (e.g. query,value)"
        ) from exc


def _load_base(cfg: TrainConfig, label_names: list[str]) -> tuple[Any, Any]:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    source = resolve_model_source(cfg.base_model)
    id2label = dict(enumerate(label_names))
    label2id = {n: i for i, n in enumerate(label_names)}
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            source, revision=cfg.revision, trust_remote_code=cfg.trust_remote_code
        )
        model = AutoModelForSequenceClassification.from_pretrained(
            source,
            revision=cfg.revision,
            num_labels=len(label_names),
            id2label=id2label,
            label2id=label2id,
            ignore_mismatched_sizes=True,
            trust_remote_code=cfg.trust_remote_code,
            use_safetensors=True,
        )
    except Exception as exc:  # noqa: BLE001
        text = " ".join(str(exc).split())[:300]
        raise ModelLoadError(
            f"could not load base model {cfg.base_model!r} ({type(exc).__name__}: {text}); "
            "pass a Hub id or a local model directory with safetensors weights to --base-model"
        ) from exc
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ModelLoadError(f"tokenizer of {cfg.base_model} has no pad or eos token; expected a pad token")
        tokenizer.pad_token = tokenizer.eos_token
        model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def _tokenize(data: TrainEvalData, tokenizer: Any, max_length: int) -> tuple[Any, Any]:
    def fn(batch: dict[str, list[Any]]) -> Any:
        pair = batch.get("text_pair")
        return tokenizer(batch["text"], pair, truncation=True, max_length=max_length)

    cols = [c for c in data.train.dataset.column_names if c != "label"]
    train_ds = data.train.dataset.map(fn, batched=True, remove_columns=cols, desc="tokenize train")
    eval_ds = data.eval.dataset.map(fn, batched=True, remove_columns=cols, desc="tokenize eval")
    return train_ds, eval_ds


def _git_sha() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"hubtune": __version__, "python": platform.python_version()}
    for pkg in ("torch", "transformers", "datasets", "peft", "accelerate", "huggingface_hub"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def _portable_base(base: str) -> str:
    """A base-model reference fit for published files: the Hub id, or the folder name of a local path."""
    return Path(base).name if os.path.isabs(base) or os.path.exists(base) else base


# --------------------------------------------------------------------------------------------------
def train(cfg: TrainConfig, *, overwrite: bool = False, resume: bool = False, progress: bool = True) -> TrainResult:
    """Fine-tune ``cfg.base_model`` on ``cfg.data`` and write the run directory ``cfg.output_dir``."""
    import torch
    import transformers
    from transformers import DataCollatorWithPadding, EarlyStoppingCallback, Trainer, TrainingArguments
    from transformers.trainer_utils import get_last_checkpoint

    t_start = time.perf_counter()
    layout = RunLayout.of(cfg.output_dir)
    _check_output_dir(layout.root, overwrite, resume)
    precision = _precision_flags(cfg.precision)
    transformers.logging.set_verbosity_error()
    if not progress:
        import datasets

        datasets.disable_progress_bars()

    # 1. validate everything before writing anything
    t0 = time.perf_counter()
    data = load_train_eval(cfg.data)
    model, tokenizer = _load_base(cfg, data.label_names)
    max_length = min(cfg.max_length, getattr(model.config, "max_position_embeddings", cfg.max_length) or cfg.max_length)
    train_ds, eval_ds = _tokenize(data, tokenizer, max_length)
    t_data = time.perf_counter() - t0
    if cfg.mode == "lora":
        model = _apply_lora(model, cfg)

    last_ckpt = None
    if resume and layout.checkpoints.is_dir():
        last_ckpt = get_last_checkpoint(str(layout.checkpoints))
    if overwrite and not resume and layout.root.exists():
        shutil.rmtree(layout.root)
    layout.root.mkdir(parents=True, exist_ok=True)

    # 2. train
    metric = cfg.metric_for_best_model
    label_names = data.label_names

    def compute_metrics(pred: Any) -> dict[str, float]:
        logits = pred.predictions[0] if isinstance(pred.predictions, tuple) else pred.predictions
        probs = softmax(logits)
        return summary(classification_metrics(pred.label_ids, probs.argmax(-1), label_names, probs))

    args = TrainingArguments(
        output_dir=str(layout.checkpoints),
        num_train_epochs=cfg.num_epochs,
        max_steps=cfg.max_steps,
        learning_rate=cfg.learning_rate,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.eval_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        weight_decay=cfg.weight_decay,
        warmup_ratio=cfg.warmup_ratio,
        group_by_length=cfg.group_by_length,
        eval_strategy="epoch",
        save_strategy="epoch",
        save_total_limit=2,
        load_best_model_at_end=True,
        metric_for_best_model=metric,
        greater_is_better=True,
        logging_steps=cfg.logging_steps,
        report_to=[r for r in cfg.report_to if r != "none"] or "none",
        seed=cfg.seed,
        data_seed=cfg.seed,
        disable_tqdm=not progress,
        dataloader_num_workers=cfg.dataloader_num_workers,
        save_safetensors=True,
        use_cpu=not torch.cuda.is_available(),
        **precision,
    )
    if metric not in ("accuracy", "f1_macro", "f1_micro", "precision_macro", "recall_macro", "roc_auc"):
        raise ConfigError(
            f"metric_for_best_model is {metric!r}; expected one of accuracy, f1_macro, f1_micro, "
            "precision_macro, recall_macro, roc_auc (binary only)"
        )
    callbacks = []
    if cfg.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=cfg.early_stopping_patience))
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=compute_metrics,
        callbacks=callbacks,
    )
    t0 = time.perf_counter()
    try:
        out = trainer.train(resume_from_checkpoint=last_ckpt)
    except KeyboardInterrupt:
        raise
    except (RuntimeError, ValueError) as exc:
        raise TrainingError(
            f"training failed ({type(exc).__name__}: {' '.join(str(exc).split())[:300]}); "
            "check batch_size/max_length for memory, or re-run with HUBTUNE_DEBUG=1"
        ) from exc
    t_train = time.perf_counter() - t0
    train_metrics = dict(out.metrics)
    train_metrics["global_step"] = out.global_step
    train_metrics["best_checkpoint_metric"] = trainer.state.best_metric

    # 3. save the model folder through a staging dir, then evaluate the saved files
    staging = layout.root / ".model.staging"
    if staging.exists():
        shutil.rmtree(staging)
    final = trainer.model
    final.save_pretrained(str(staging), safe_serialization=True)
    (staging / "README.md").unlink(missing_ok=True)  # peft's stub card names local paths; `hubtune card` writes ours
    tokenizer.model_max_length = max_length
    tokenizer.save_pretrained(str(staging))
    if cfg.mode == "lora":
        base_cfg = final.get_base_model().config
        base_cfg.save_pretrained(str(staging))  # label names beside the adapter
    if layout.model_dir.exists():
        shutil.rmtree(layout.model_dir)
    os.replace(staging, layout.model_dir)

    t0 = time.perf_counter()
    loaded = LoadedModel(
        model=final.eval(),
        tokenizer=tokenizer,
        label_names=label_names_from_config(
            final.get_base_model().config if cfg.mode == "lora" else final.config
        ),
        is_adapter=cfg.mode == "lora",
        base_model=cfg.base_model,
        source=str(layout.model_dir),
        max_length=min(max_length, DEFAULT_MAX_LENGTH),
    )
    eval_metrics = evaluate_loaded(loaded, data.eval, batch_size=64)
    t_eval = time.perf_counter() - t0

    write_json(layout.metrics, {"train": train_metrics, "eval": eval_metrics})
    layout.config.write_text(dump_yaml(cfg), encoding="utf-8")
    total = time.perf_counter() - t_start
    n_params = sum(p.numel() for p in final.parameters())
    n_trainable = sum(p.numel() for p in final.parameters() if p.requires_grad)
    summary_doc = {
        "hubtune_version": __version__,
        "versions": _versions(),
        "git_sha": _git_sha(),
        "mode": cfg.mode,
        "base_model": _portable_base(cfg.base_model),
        "dataset": cfg.data.dataset,
        "eval_dataset": cfg.data.eval_dataset,
        "eval_source": data.eval_source,
        "sizes": data.sizes,
        "label_names": data.label_names,
        "label2id": {n: i for i, n in enumerate(data.label_names)},
        "columns": {"text": data.train.columns.text, "text_pair": data.train.columns.text_pair, "label": data.train.columns.label},
        "max_length": max_length,
        "parameters": {"total": n_params, "trainable": n_trainable},
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "precision": next(iter(precision), "fp32"),
        "resumed_from": Path(last_ckpt).name if last_ckpt else None,
        "timings": {
            "data_seconds": round(t_data, 3),
            "train_seconds": round(t_train, 3),
            "eval_seconds": round(t_eval, 3),
            "total_seconds": round(total, 3),
            "train_samples_per_second": train_metrics.get("train_samples_per_second"),
        },
        "eval": summary(eval_metrics),
    }
    write_json(layout.summary, summary_doc)
    return TrainResult(
        output_dir=layout.root,
        model_dir=layout.model_dir,
        mode=cfg.mode,
        label_names=data.label_names,
        eval_metrics=eval_metrics,
        train_metrics=train_metrics,
        sizes=data.sizes,
        seconds=round(total, 3),
        resumed_from=summary_doc["resumed_from"],
    )
