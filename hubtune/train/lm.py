"""The language-model recipes of the train step, on the Trainer; they write the same run directory.

``task: fill-mask``
    Masked-LM domain adaptation: texts are tokenized, concatenated and cut into blocks of ``block_size``
    tokens; ``DataCollatorForLanguageModeling`` masks tokens (or ``DataCollatorForWholeWordMask`` whole
    words, ``whole_word_mask: true``) with ``mlm_probability``. The model is saved with
    ``AutoModelForMaskedLM``, so ``pipeline("fill-mask", model=RUN/model)`` works and the folder can seed a
    classifier run (``base_model: RUN/model``).
``task: text-generation``
    Causal-LM fine-tuning (GPT-2 family): the same block chunking (an EOS token after each text), labels
    are the inputs (``DataCollatorForLanguageModeling(mlm=False)``); saved with ``AutoModelForCausalLM``.
``task: generative-classification``
    Classification by generation with a causal LM: each example is ``text + EOS + label token`` and the
    loss falls on the label token only (every other label is -100). The prediction is the most likely
    of the label tokens after EOS; metrics come from :func:`hubtune.core.metrics.classification_metrics`.

Metrics (``metrics.json`` ``eval``): ``perplexity_before``, ``perplexity_after``, ``eval_loss`` (and
``eval_loss_before``) for the LM tasks, the classification metrics for generative classification.
Perplexity is ``exp(eval loss)`` on the eval blocks; for fill-mask the masks of the eval set are drawn
with the same seed before and after training so the two figures compare.

Recipe module: imports :mod:`hubtune.train.common` and the pieces module :mod:`hubtune.train.adapters`;
no other recipe.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from hubtune.core.compat import quiet_libraries
from hubtune.core.config import TrainConfig, dump_yaml
from hubtune.data.dataset import LoadedData, load_train_eval
from hubtune.core.errors import ConfigError
from hubtune.core.layout import RunLayout
from hubtune.core.metrics import classification_metrics, softmax, summary
from hubtune.core.modeling import public_model_ref, write_json
from hubtune.tasks.registry import get_task
from hubtune.train.adapters import apply_causal_lora
from hubtune.train.lmdata import (
    joined_texts,
    lm_blocks,
    load_lm,
    load_texts,
    mlm_collator,
    perplexity,
    wwm_in_lm_collator,
)
from hubtune.train.common import (
    TrainResult,
    announce_start,
    base_summary,
    check_output_dir,
    dist_state,
    precision_flags,
    prepare_output_dir,
    replace_model_dir,
    run_trainer,
    training_args,
    worker_result,
)

LABELS_FILE = "hubtune_labels.json"  # generative classification: label names and their token ids


# the data and model pieces live in hubtune.train.lmdata (shared with the Accelerate MLM recipe)
_joined = joined_texts
_wwm_in_lm_collator = wwm_in_lm_collator
_load = load_lm


def label_token_ids(tokenizer: Any, label_names: list[str], model: Any = None) -> list[int]:
    """One token per label: the first token of `` name`` when those differ across labels; otherwise the
    labels become new tokens ``<name>`` (added to the tokenizer, the model's embeddings resized)."""
    firsts = []
    for name in label_names:
        toks = tokenizer(" " + name, add_special_tokens=False)["input_ids"]
        if not toks:
            raise ConfigError(f"label {name!r} tokenizes to nothing; expected label names with text")
        firsts.append(toks[0])
    if len(set(firsts)) == len(firsts):
        return firsts
    new = [f"<{name}>" for name in label_names]
    if model is None:
        raise ConfigError(
            f"label names {label_names} share their first token; pass the model so label tokens can be added"
        )
    tokenizer.add_tokens(new)
    model.resize_token_embeddings(len(tokenizer))
    return tokenizer.convert_tokens_to_ids(new)


def gen_cls_features(data: LoadedData, tokenizer: Any, label_ids: list[int], max_length: int, what: str) -> Any:
    eos = tokenizer.eos_token_id

    def fn(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        enc = tokenizer(_joined(batch), add_special_tokens=False, truncation=True, max_length=max_length - 2)
        out: dict[str, list[Any]] = {"input_ids": [], "attention_mask": [], "labels": []}
        for ids, lab in zip(enc["input_ids"], batch["label"]):
            tok = label_ids[lab]
            out["input_ids"].append(ids + [eos, tok])
            out["attention_mask"].append([1] * (len(ids) + 2))
            out["labels"].append([-100] * (len(ids) + 1) + [tok])
        return out

    return data.dataset.map(fn, batched=True, remove_columns=data.dataset.column_names, desc=f"tokenize {what}")


# --------------------------------------------------------------------------------------------------
def train_lm(cfg: TrainConfig, *, overwrite: bool = False, resume: bool = False, progress: bool = True,
             on_start: Callable[[dict[str, Any]], None] | None = None) -> TrainResult:
    """Train ``cfg.task`` (fill-mask, text-generation or generative-classification); write the run dir."""
    import torch
    from transformers import (
        AutoModelForCausalLM,
        AutoModelForMaskedLM,
        DataCollatorForLanguageModeling,
        DataCollatorForSeq2Seq,
        Trainer,
        set_seed,
    )

    t_start = time.perf_counter()
    layout = RunLayout.of(cfg.output_dir)
    check_output_dir(layout.root, overwrite, resume)
    precision = precision_flags(cfg.precision)
    state = dist_state()
    quiet_libraries(progress)
    gen_cls = cfg.task == "generative-classification"
    if gen_cls and cfg.metric_for_best_model not in ("accuracy", "f1_macro", "f1_micro", "precision_macro", "recall_macro"):
        raise ConfigError(
            f"metric_for_best_model is {cfg.metric_for_best_model!r}; expected accuracy, f1_macro, f1_micro, "
            "precision_macro or recall_macro for generative-classification"
        )

    # 1. validate and load everything before writing anything
    t0 = time.perf_counter()
    label_names: list[str] = []
    label_ids: list[int] = []
    new_label_ids: list[int] = []
    with state.main_process_first():
        if gen_cls:
            cls_data = load_train_eval(cfg.data)
            label_names = cls_data.label_names
            model, tokenizer = _load(cfg, AutoModelForCausalLM)
            tokenizer.padding_side = "right"
            n_vocab = len(tokenizer)
            set_seed(cfg.seed)  # rows of label tokens added to the vocabulary start reproducibly
            label_ids = label_token_ids(tokenizer, label_names, model)
            new_label_ids = [t for t in label_ids if t >= n_vocab]
            max_length = min(cfg.max_length, getattr(model.config, "n_positions", None) or getattr(model.config, "max_position_embeddings", cfg.max_length))
            train_ds = gen_cls_features(cls_data.train, tokenizer, label_ids, max_length, "train")
            eval_ds = gen_cls_features(cls_data.eval, tokenizer, label_ids, max_length, "eval")
            sizes = dict(cls_data.sizes)
            eval_source = cls_data.eval_source
            collator: Any = DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100)
            if cfg.mode == "lora":  # the rows of added label tokens train beside LoRA (and are saved with it)
                model = apply_causal_lora(model, cfg, trainable_token_ids=new_label_ids)
        else:
            causal = not get_task(cfg.task).masked
            train_txt, eval_txt, eval_source = load_texts(cfg)
            model, tokenizer = _load(cfg, AutoModelForCausalLM if causal else AutoModelForMaskedLM)
            limit = getattr(model.config, "n_positions", None) or getattr(model.config, "max_position_embeddings", None)
            block = min(cfg.block_size, limit) if limit else cfg.block_size
            offsets = not causal and cfg.whole_word_mask and _wwm_in_lm_collator()
            if offsets and not tokenizer.is_fast:
                raise ConfigError(
                    f"whole_word_mask needs a fast tokenizer (word offsets) and {cfg.base_model} has a slow one; "
                    "set whole_word_mask: false"
                )
            train_ds = lm_blocks(train_txt, tokenizer, block, causal=causal, what="train", offsets=offsets)
            eval_ds = lm_blocks(eval_txt, tokenizer, block, causal=causal, what="eval", offsets=offsets)
            sizes = {"train": len(train_ds), "eval": len(eval_ds), "train_texts": len(train_txt), "eval_texts": len(eval_txt)}
            max_length = block
            if causal:
                collator = DataCollatorForLanguageModeling(tokenizer, mlm=False)
            else:
                collator = mlm_collator(tokenizer, cfg.mlm_probability, cfg.whole_word_mask)
    t_data = time.perf_counter() - t0

    # 2. train (the TrainingArguments, checked, before the run directory is touched)
    full_metrics: dict[str, Any] = {}
    if gen_cls:
        cand = torch.tensor(label_ids)
        tok_to_class = {t: i for i, t in enumerate(label_ids)}

        def preprocess_logits(logits: Any, labels: Any) -> Any:
            logits = logits[0] if isinstance(logits, tuple) else logits
            pos = (labels != -100).int().argmax(-1)  # the label token; its logits sit one step before
            rows = torch.arange(logits.shape[0], device=logits.device)
            return logits[rows, (pos - 1).clamp(min=0)][:, cand.to(logits.device)]

        def compute_metrics(pred: Any) -> dict[str, float]:
            scores = pred.predictions[0] if isinstance(pred.predictions, tuple) else pred.predictions
            labels = pred.label_ids
            y_true = [tok_to_class[int(row[row != -100][0])] for row in labels]
            probs = softmax(scores)
            m = classification_metrics(y_true, probs.argmax(-1), label_names, probs)
            full_metrics.clear()
            full_metrics.update(m)
            return summary(m)

        extra = dict(metric_for_best_model=cfg.metric_for_best_model, greater_is_better=True)
        kwargs: dict[str, Any] = dict(compute_metrics=compute_metrics, preprocess_logits_for_metrics=preprocess_logits)
    else:
        extra = dict(metric_for_best_model="eval_loss", greater_is_better=False)
        kwargs = {}
    # the features are exactly what the collator takes (offset_mapping/special_tokens_mask included)
    args = training_args(
        cfg, layout, precision, progress, group_by_length=cfg.group_by_length and gen_cls,
        remove_unused_columns=False, **extra,
    )
    last_ckpt = prepare_output_dir(layout, state, overwrite=overwrite, resume=resume, cfg=cfg)
    trainer = Trainer(
        model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
        processing_class=tokenizer, data_collator=collator, **kwargs,
    )

    def seeded_eval() -> dict[str, float]:
        torch.manual_seed(cfg.seed)  # the same eval masks before and after (fill-mask)
        return trainer.evaluate()

    new_head = [] if gen_cls else list(getattr(model, "hubtune_new_head", []))
    warnings: list[str] = []
    if new_head:
        head_kind = get_task(cfg.task).head_kind
        warnings.append(
            f"{public_model_ref(cfg.base_model)} has no {head_kind} head (newly initialised: {', '.join(new_head[:4])}"
            f"{', ...' if len(new_head) > 4 else ''}): training starts from a random head, so a loss before training "
            f"would measure that head, not the base model; perplexity_before is not reported. Pass a base trained "
            f"for {cfg.task} (with its head) to --base-model to compare before and after"
        )
    announce_start(on_start, cfg, trainer.model, state, warnings)
    # "before" only where it measures the base model: not after a resume, not with a random head
    before = None if gen_cls or last_ckpt or new_head else seeded_eval()
    train_metrics, t_train = run_trainer(trainer, last_ckpt)
    t0 = time.perf_counter()
    after = seeded_eval()
    t_eval = time.perf_counter() - t0

    if not trainer.is_world_process_zero():
        state.wait_for_everyone()
        return worker_result(cfg, layout, sizes, label_names, t_start)

    if gen_cls:
        eval_metrics: dict[str, Any] = dict(full_metrics)
        eval_metrics["eval_loss"] = after["eval_loss"]
    else:
        eval_metrics = {
            "eval_loss": after["eval_loss"],
            "perplexity_after": perplexity(after["eval_loss"]),
            "num_blocks": len(eval_ds),
            "block_size": max_length,
        }
        if before is not None:
            eval_metrics["eval_loss_before"] = before["eval_loss"]
            eval_metrics["perplexity_before"] = perplexity(before["eval_loss"])

    # 3. save, write the run files
    final = trainer.model

    def save(staging: Path) -> None:
        final.save_pretrained(str(staging), safe_serialization=True)
        tokenizer.save_pretrained(str(staging))
        if gen_cls:
            write_json(staging / LABELS_FILE, {"label_names": label_names, "label_token_ids": label_ids,
                                               "format": "text + eos -> label token"})

    replace_model_dir(layout, save)
    write_json(layout.metrics, {"train": train_metrics, "eval": eval_metrics})
    layout.config.write_text(dump_yaml(cfg), encoding="utf-8")
    total = time.perf_counter() - t_start
    doc = base_summary(cfg, final, precision, state)
    scalars = {k: v for k, v in eval_metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    doc.update(
        {
            "eval_source": eval_source,
            "sizes": sizes,
            "max_length": max_length,
            "resumed_from": Path(last_ckpt).name if last_ckpt else None,
            "resumed_steps": train_metrics.get("train_loss_steps") if last_ckpt else None,
            "timings": {
                "data_seconds": round(t_data, 3), "train_seconds": round(t_train, 3),
                "eval_seconds": round(t_eval, 3), "total_seconds": round(total, 3),
                "train_samples_per_second": train_metrics.get("train_samples_per_second"),
            },
            "eval": summary(eval_metrics) if gen_cls else scalars,
        }
    )
    if gen_cls:
        doc.update({"label_names": label_names, "label2id": {n: i for i, n in enumerate(label_names)},
                    "eval_majority_rate": eval_metrics.get("majority_rate"),
                    "label_token_ids": label_ids,
                    # label tokens added to the vocabulary: their rows train (full: all weights; lora: peft's
                    # trainable token indices, saved with the adapter)
                    "trainable_label_tokens": new_label_ids})
    else:
        doc.update({"block_size": max_length, **get_task(cfg.task).summary_fields(cfg), "new_head_modules": new_head})
    doc["warnings"] = warnings
    write_json(layout.summary, doc)
    state.wait_for_everyone()
    return TrainResult(
        output_dir=layout.root, model_dir=layout.model_dir, mode=cfg.mode, label_names=label_names,
        eval_metrics=eval_metrics, train_metrics=train_metrics, sizes=sizes, seconds=round(total, 3),
        resumed_from=doc["resumed_from"],
        extra={"task": cfg.task, "engine": cfg.engine, "main_process": True, "warnings": warnings},
    )
