"""A model folder of the tasks beside single-label classification (multi-label classification, regression, token
classification), loaded and run the way ``train`` (its reload check), ``card`` and ``train-and-push`` (its golden
examples) share: the folder (full model or LoRA adapter on its base) loaded into the task's transformers class,
its outputs on normalised data (:mod:`hubtune.tasks.taskdata`) and the task's metrics (:mod:`hubtune.core.metrics`).

How a checkpoint tells its task is the transformers way: ``problem_type`` multi_label_classification or
regression (``num_labels`` 1) in config.json, or a ``*ForTokenClassification`` architecture with B-/I- labels.
Imports ``compat``, ``errors``, ``metrics``, ``modeling``, ``security``, ``taskdata``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hubtune.core.compat import quiet_libraries
from hubtune.core.errors import ConfigError, ModelLoadError
from hubtune.core.metrics import multilabel_metrics, regression_metrics, sigmoid, token_metrics
from hubtune.core.modeling import (
    DEFAULT_MAX_LENGTH,
    check_tokenizer_fits,
    effective_max_length,
    ensure_pad_token,
    is_adapter_dir,
    model_load_error,
    pick_device,
    predict_logits,
    resolve_model_source,
)
from hubtune.core.security import check_model_config

PROBLEM_TYPES = {"multi-label-classification": "multi_label_classification", "regression": "regression"}


def auto_class(task: str) -> Any:
    """The transformers Auto class of ``task``'s head."""
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

    return AutoModelForTokenClassification if task == "token-classification" else AutoModelForSequenceClassification


def head_kwargs(task: str, label_names: list[str]) -> dict[str, Any]:
    """The config keywords that make a checkpoint tell ``task`` (problem_type, num_labels, id2label/label2id)."""
    if task == "regression":
        return {"num_labels": 1, "problem_type": "regression", "id2label": {0: "LABEL_0"}, "label2id": {"LABEL_0": 0}}
    out: dict[str, Any] = {"num_labels": len(label_names), "id2label": dict(enumerate(label_names)),
                           "label2id": {n: i for i, n in enumerate(label_names)}}
    if task in PROBLEM_TYPES:
        out["problem_type"] = PROBLEM_TYPES[task]
    return out


def head_task_of(source: str) -> str | None:
    """The task a local folder's config.json tells (multi-label-classification, regression, token-classification),
    None for anything else (a single-label classifier, a Hub id)."""
    import json

    from hubtune.tasks.base import MULTI_LABEL, REGRESSION, TOKEN_CLASSIFICATION, checkpoint_task

    folder = Path(resolve_model_source(source))
    try:
        cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    task = checkpoint_task(cfg, folder).task
    return task if task in (MULTI_LABEL, REGRESSION, TOKEN_CLASSIFICATION) else None


@dataclass
class TaskModel:
    model: Any
    tokenizer: Any
    label_names: list[str]
    max_length: int
    is_adapter: bool


def load_task_model(source: str, task: str, *, device: str | None = "cpu") -> TaskModel:
    """A saved folder of ``task`` (a full model, or a LoRA adapter beside its base's config), in eval mode."""
    from transformers import AutoConfig, AutoTokenizer

    quiet_libraries(progress=True)
    source = resolve_model_source(source)
    local = Path(source)
    adapter = local.is_dir() and is_adapter_dir(local)
    check_model_config(source)
    cls = auto_class(task)
    try:
        if adapter:
            from peft import PeftConfig, PeftModel

            base_ref = PeftConfig.from_pretrained(source).base_model_name_or_path
            check_model_config(base_ref)
            cfg = AutoConfig.from_pretrained(source)
            base = cls.from_pretrained(base_ref, config=cfg, use_safetensors=True)
            model = PeftModel.from_pretrained(base, source)
        else:
            model = cls.from_pretrained(source, use_safetensors=True)
            cfg = model.config
        tokenizer = AutoTokenizer.from_pretrained(source)
    except Exception as exc:  # noqa: BLE001 - transformers raises OSError/ValueError/HF errors
        raise model_load_error(source, exc) from exc
    check_tokenizer_fits(tokenizer, model, source)
    ensure_pad_token(tokenizer, model.config, source)
    model.to(pick_device(device)).eval()
    names = [cfg.id2label[i] for i in range(cfg.num_labels)] if task != "regression" else ["value"]
    return TaskModel(model, tokenizer, names, effective_max_length(tokenizer, cfg), adapter)


# --------------------------------------------------------------------------------------------------
# Token classification: tags aligned to the first sub-token of each word
# --------------------------------------------------------------------------------------------------
def check_fast(tokenizer: Any, source: str) -> None:
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError(
            f"the tokenizer of {source} is a slow (Python) tokenizer; token classification aligns tags to words "
            "through a fast tokenizer's word_ids(): expected a base model with a tokenizer.json (a fast tokenizer)"
        )


def align_tags(tokenizer: Any, batch: dict[str, list[Any]], max_length: int) -> Any:
    """Tokenize words (``batch["tokens"]``) and align ``batch["tags"]``: each word's tag on its first sub-token,
    -100 (ignored by the loss and the metrics) on the other sub-tokens and the special tokens."""
    enc = tokenizer(batch["tokens"], is_split_into_words=True, truncation=True, max_length=max_length)
    labels = []
    for i, tags in enumerate(batch["tags"]):
        prev, row = None, []
        for w in enc.word_ids(i):
            row.append(-100 if w is None or w == prev else int(tags[w]))
            prev = w
        labels.append(row)
    enc["labels"] = labels
    return enc


def token_logits(model: Any, tokenizer: Any, encoded: Any, batch_size: int = 32, device: str | None = None) -> list[np.ndarray]:
    """Per example, the logits at its labelled positions (each word's first sub-token), in input order
    (``device``: where the inputs go, default the model's; "cpu" for an ONNX graph)."""
    import torch
    from transformers import DataCollatorForTokenClassification

    collator = DataCollatorForTokenClassification(tokenizer)
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids", "labels") if k in encoded.column_names]
    dev = device or next(model.parameters()).device
    out: list[np.ndarray] = []
    with torch.inference_mode():
        for start in range(0, len(encoded), batch_size):
            rows = encoded.select(range(start, min(start + batch_size, len(encoded))))
            batch = collator([{k: r[k] for k in keys} for r in rows])
            labels = batch.pop("labels")
            logits = model(**{k: v.to(dev) for k, v in batch.items()}).logits.float().cpu()
            out += [lg[lab != -100].numpy() for lg, lab in zip(logits, labels)]
    return out


def encode_tokens(tokenizer: Any, ds: Any, max_length: int) -> Any:
    return ds.map(lambda b: align_tags(tokenizer, b, max_length), batched=True, remove_columns=ds.column_names,
                  desc="tokenize")


# --------------------------------------------------------------------------------------------------
# Outputs and metrics
# --------------------------------------------------------------------------------------------------
def task_outputs(task: str, model: Any, tokenizer: Any, ds: Any, max_length: int, *, batch_size: int = 64,
                 device: str | None = None) -> Any:
    """What the model answers on normalised data: sequence tasks, the (n, num_labels) logits; token
    classification, one (words, num_labels) logit array per example. ``model``: a transformers model, or an
    ONNX graph behind its call shape (``device="cpu"``)."""
    if task == "token-classification":
        return token_logits(model, tokenizer, encode_tokens(tokenizer, ds, max_length), batch_size, device=device)
    pairs = ds["text_pair"] if "text_pair" in ds.column_names else None
    return predict_logits(model, tokenizer, ds["text"], pairs, batch_size=batch_size, max_length=max_length, device=device)


def flat_outputs(task: str, outputs: Any) -> np.ndarray:
    """The outputs as one 2-D array (token classification: the words of every example stacked)."""
    if task == "token-classification":
        return np.concatenate(outputs) if outputs else np.zeros((0, 1), dtype=np.float32)
    return np.asarray(outputs)


def true_word_tags(tokenizer: Any, ds: Any, max_length: int, label_names: list[str]) -> list[list[str]]:
    """The gold tags of the words that fit in ``max_length`` tokens (those the model labels)."""
    enc = encode_tokens(tokenizer, ds, max_length)
    return [[label_names[t] for t in row if t != -100] for row in enc["labels"]]


def task_metrics(task: str, outputs: Any, ds: Any, label_names: list[str], *, tokenizer: Any = None,
                 max_length: int = DEFAULT_MAX_LENGTH, threshold: float = 0.5) -> dict[str, Any]:
    """The task's metrics of ``outputs`` (from :func:`task_outputs`) against the labels of ``ds``."""
    if task == "multi-label-classification":
        out = multilabel_metrics(np.asarray(ds["labels"]), sigmoid(outputs), label_names, threshold)
    elif task == "regression":
        out = regression_metrics(ds["label"], np.asarray(outputs)[:, 0])
    elif task == "token-classification":
        if tokenizer is None:
            raise ModelLoadError("token metrics need the tokenizer that aligned the tags; expected tokenizer=")
        true = true_word_tags(tokenizer, ds, max_length, label_names)
        pred = [[label_names[int(j)] for j in lg.argmax(-1)] for lg in outputs]
        out = token_metrics(true, pred)
    else:
        raise ConfigError(f"task {task!r} has no metrics here; expected one of multi-label-classification, "
                          "regression, token-classification")
    out["task"] = task
    return out


def evaluate_task_folder(source: str, task: str, ds: Any, *, max_length: int | None = None) -> dict[str, Any]:
    """Load a saved folder of ``task`` and measure it on normalised data ``ds`` (the card's figures)."""
    tm = load_task_model(source, task)
    limit = min(max_length or tm.max_length, tm.max_length, DEFAULT_MAX_LENGTH)
    outputs = task_outputs(task, tm.model, tm.tokenizer, ds, limit)
    out = task_metrics(task, outputs, ds, tm.label_names, tokenizer=tm.tokenizer, max_length=limit)
    out["source"] = "reloaded"
    return out


def merge_task_adapter(source: str, out_dir: str, task: str, ds: Any, *, tolerance: float = 1e-4) -> Path:
    """Merge a LoRA folder of ``task`` into its base (peft's merge_and_unload) and save it to ``out_dir`` with the
    tokenizer; the merged model must answer as the adapter does on ``ds`` (max |logit diff| <= ``tolerance``)."""
    import shutil

    from hubtune.core.errors import TrainingError
    from hubtune.core.parity import compare_logits

    tm = load_task_model(source, task)
    limit = min(tm.max_length, DEFAULT_MAX_LENGTH)
    before = flat_outputs(task, task_outputs(task, tm.model, tm.tokenizer, ds, limit))
    merged = tm.model.merge_and_unload()
    after = flat_outputs(task, task_outputs(task, merged.eval(), tm.tokenizer, ds, limit))
    report = compare_logits(before, after, tolerance=tolerance, min_label_agreement=1.0, texts_source="the eval split")
    if not report.passed:
        raise TrainingError(f"the merged {task} model disagrees with its LoRA adapter ({report.describe()}); expected "
                            "equal outputs: publish the adapter with `hubtune push RUN/model`, or raise gates.merge_tolerance")
    out = Path(out_dir)
    if out.exists():
        shutil.rmtree(out)
    merged.config.architectures = [type(merged).__name__]
    merged.save_pretrained(str(out), safe_serialization=True)
    tm.tokenizer.save_pretrained(str(out))
    return out
