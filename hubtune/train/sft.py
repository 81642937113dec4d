"""The SFT recipe (supervised fine-tuning) on the Trainer; it writes the same run directory as every recipe.

``task: text-generation`` on a dataset with prompt/completion (or source/target, instruction/output) columns or
a chat-messages column (the tokenizer's chat template renders the conversation; a tokenizer without one is
refused): a causal LM learns the completion, whose tokens alone carry the loss (the prompt's are -100), with an
EOS after it. A plain-text dataset keeps the block recipe (:mod:`hubtune.train.lm`).
``task: text2text-generation``: an encoder-decoder (t5, bart) learns the target from the source.
Full or ``mode: lora`` (peft; the adapter is what ``model/`` holds).

Metrics (``metrics.json`` ``eval``), measured on the files in ``model/`` reloaded into a fresh model (a LoRA
adapter on its base): ``eval_loss`` (mean per completion token), ``perplexity`` (its exp), ``exact_match`` and
``rouge_l`` of greedy generations (``max_new_tokens``) against the references; ``eval_loss_before`` /
``perplexity_before`` of the base model beside them.

Recipe module: imports :mod:`hubtune.train.common` and the pieces :mod:`hubtune.train.adapters` and
:mod:`hubtune.train.sftdata`; no other recipe.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

from hubtune.core.compat import quiet_libraries
from hubtune.core.config import TrainConfig, dump_yaml
from hubtune.core.errors import ConfigError
from hubtune.core.layout import RunLayout
from hubtune.core.modeling import write_json
from hubtune.tasks.registry import get_task
from hubtune.train.adapters import apply_causal_lora, apply_seq2seq_lora
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
from hubtune.train.sftdata import (
    SftColumns,
    causal_features,
    check_chat,
    completion_loss,
    dataset_columns,
    generate,
    load_sft,
    load_sft_model,
    perplexity,
    prompt_of,
    reference_of,
    seq2seq_features,
    sft_columns,
    text_metrics,
)

SAMPLES = 5  # held-out generations kept in metrics.json beside the metrics


def sft_columns_of(cfg: TrainConfig) -> SftColumns | None:
    """The SFT columns a run of ``cfg`` trains on (None: a plain-text run of the block recipe). A generating task
    whose recipe is ``sft`` must have them; a causal LM has them when the keys are set or the dataset has them."""
    task = get_task(cfg.task)
    if not task.generates:
        return None
    sft_only = task.recipe == "sft"
    dc = cfg.data
    named = dc.prompt_column or dc.completion_column or dc.messages_column
    if not (sft_only or named) and dc.text_column:
        found = None
    else:
        found = sft_columns(dataset_columns(dc.dataset, dc), dc, dc.dataset, chat=task.chat, required=sft_only)
    if found is None and cfg.mode != "full":
        raise ConfigError(
            f"task {task.name} with mode {cfg.mode} on plain texts ({dc.dataset}: no prompt/completion or messages "
            "columns): adaptation on texts in blocks trains the full model; expected --mode full, or SFT columns "
            "(--set data.prompt_column=NAME --set data.completion_column=NAME)"
        )
    return found


def _reload(cfg: TrainConfig, task: Any, layout: RunLayout, device: Any) -> tuple[Any, Any]:
    """The files in ``model/`` in a fresh model: the full model, or the LoRA adapter on its base."""
    from transformers import AutoTokenizer

    if cfg.mode == "lora":
        from peft import PeftModel

        base, _ = load_sft_model(cfg, task)
        model = PeftModel.from_pretrained(base, str(layout.model_dir))
    else:
        model, _ = load_sft_model(cfg, task, str(layout.model_dir))
    tokenizer = AutoTokenizer.from_pretrained(str(layout.model_dir))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.to(device).eval(), tokenizer


def train_sft(cfg: TrainConfig, cols: SftColumns | None = None, *, overwrite: bool = False, resume: bool = False,
              progress: bool = True, on_start: Callable[[dict[str, Any]], None] | None = None) -> TrainResult:
    """Fine-tune ``cfg.base_model`` on prompt -> completion examples; write the run directory."""
    from transformers import DataCollatorForSeq2Seq, Trainer, set_seed

    t_start = time.perf_counter()
    task = get_task(cfg.task)
    layout = RunLayout.of(cfg.output_dir)
    check_output_dir(layout.root, overwrite, resume)
    precision = precision_flags(cfg.precision)
    state = dist_state()
    quiet_libraries(progress)
    seq2seq = task.encoder_decoder

    # 1. validate and load everything before writing anything
    t0 = time.perf_counter()
    with state.main_process_first():
        cols = cols or sft_columns_of(cfg)
        if cols is None:
            raise ConfigError(f"{cfg.data.dataset} has no SFT columns; expected prompt/completion or messages columns "
                              "(--set data.prompt_column=NAME --set data.completion_column=NAME)")
        data = load_sft(cfg, cols)
        set_seed(cfg.seed)
        model, tokenizer = load_sft_model(cfg, task)
        check_chat(tokenizer, cols, cfg.base_model)
        tokenizer.padding_side = "right"
        limit = getattr(model.config, "n_positions", None) or getattr(model.config, "max_position_embeddings", None)
        max_length = min(cfg.max_length, limit) if limit and limit > 0 else cfg.max_length
        if seq2seq:
            train_ds = seq2seq_features(data.train, tokenizer, max_length, "train")
            eval_ds = seq2seq_features(data.eval, tokenizer, max_length, "eval")
        else:
            train_ds = causal_features(data.train, tokenizer, task, max_length, "train")
            eval_ds = causal_features(data.eval, tokenizer, task, max_length, "eval")
        if cfg.mode == "lora":
            model = apply_seq2seq_lora(model, cfg) if seq2seq else apply_causal_lora(model, cfg)
        collator = DataCollatorForSeq2Seq(tokenizer, model=model if seq2seq else None, label_pad_token_id=-100)
    t_data = time.perf_counter() - t0

    # 2. train (the TrainingArguments, checked, before the run directory is touched)
    args = training_args(cfg, layout, precision, progress, metric_for_best_model="eval_loss", greater_is_better=False,
                         remove_unused_columns=False)
    last_ckpt = prepare_output_dir(layout, state, overwrite=overwrite, resume=resume, cfg=cfg)
    trainer = Trainer(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                      processing_class=tokenizer, data_collator=collator)
    announce_start(on_start, cfg, trainer.model, state)
    loss_of = lambda m: completion_loss(m, eval_ds, collator, cfg.eval_batch_size, shifted=not seq2seq)  # noqa: E731
    before = None if last_ckpt else loss_of(trainer.model)
    train_metrics, t_train = run_trainer(trainer, last_ckpt)

    if not trainer.is_world_process_zero():
        state.wait_for_everyone()
        return worker_result(cfg, layout, data.sizes, [], t_start)

    # 3. save; the metrics come from the saved files, reloaded
    final = trainer.model

    def save(staging: Path) -> None:
        final.save_pretrained(str(staging), safe_serialization=True)
        tokenizer.save_pretrained(str(staging))

    replace_model_dir(layout, save)
    t0 = time.perf_counter()
    reloaded, rtok = _reload(cfg, task, layout, next(final.parameters()).device)
    rows = list(data.eval)
    messages = cols.messages is not None
    preds = generate(reloaded, rtok, task, [prompt_of(r) for r in rows], messages=messages,
                     max_new_tokens=cfg.max_new_tokens, batch_size=cfg.eval_batch_size, limit=limit)
    refs = [reference_of(r) for r in rows]
    rtok.padding_side = "right"
    rcollator = DataCollatorForSeq2Seq(rtok, model=reloaded if seq2seq else None, label_pad_token_id=-100)
    loss = completion_loss(reloaded, eval_ds, rcollator, cfg.eval_batch_size, shifted=not seq2seq)
    eval_metrics: dict[str, Any] = {"eval_loss": loss, "perplexity": perplexity(loss), **text_metrics(preds, refs)}
    if before is not None:
        eval_metrics.update({"eval_loss_before": before, "perplexity_before": perplexity(before)})
    eval_metrics.update({"num_examples": len(rows), "max_new_tokens": cfg.max_new_tokens, "source": "reloaded",
                         "samples": [{"prompt": json.dumps(prompt_of(r)) if messages else prompt_of(r),
                                      "reference": ref, "generated": p}
                                     for r, ref, p in list(zip(rows, refs, preds))[:SAMPLES]]})
    del reloaded
    t_eval = time.perf_counter() - t0

    write_json(layout.metrics, {"train": train_metrics, "eval": eval_metrics})
    layout.config.write_text(dump_yaml(cfg), encoding="utf-8")
    total = time.perf_counter() - t_start
    doc = base_summary(cfg, final, precision, state)
    doc.update(
        {
            "eval_source": data.eval_source,
            "sizes": data.sizes,
            "max_length": max_length,
            "resumed_from": Path(last_ckpt).name if last_ckpt else None,
            "resumed_steps": train_metrics.get("train_loss_steps") if last_ckpt else None,
            "timings": {
                "data_seconds": round(t_data, 3), "train_seconds": round(t_train, 3),
                "eval_seconds": round(t_eval, 3), "total_seconds": round(total, 3),
                "train_samples_per_second": train_metrics.get("train_samples_per_second"),
            },
            "eval": {k: v for k, v in eval_metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)},
            "sft": {"format": "seq2seq" if seq2seq else cols.format, "prompt_column": cols.prompt,
                    "completion_column": cols.completion, "messages_column": cols.messages,
                    "max_new_tokens": cfg.max_new_tokens},
            "warnings": [],
        }
    )
    write_json(layout.summary, doc)
    state.wait_for_everyone()
    return TrainResult(
        output_dir=layout.root, model_dir=layout.model_dir, mode=cfg.mode, label_names=[],
        eval_metrics=eval_metrics, train_metrics=train_metrics, sizes=data.sizes, seconds=round(total, 3),
        resumed_from=doc["resumed_from"],
        extra={"task": cfg.task, "engine": cfg.engine, "main_process": True, "warnings": [], "sft": doc["sft"]},
    )
