"""Recipe ``task: fill-mask``, ``engine: accelerate``: masked-LM domain adaptation on a plain Accelerate loop, as
the Hugging Face course writes it (chapter 7, "Fine-tuning a masked language model", the Accelerate section).

The texts are cut into blocks of ``block_size`` tokens (:mod:`hubtune.train.lmdata`, as the Trainer recipe);
the eval blocks are masked **once**, with the seed (the course's ``insert_random_mask``), so every evaluation
scores the same masked tokens and the perplexities compare; training masks anew in each batch
(``DataCollatorForLanguageModeling``, or whole words with ``whole_word_mask``). The loop: AdamW, a linear
schedule sized from the prepared dataloader, ``accelerator.backward``; after each epoch the eval loss is gathered
across processes (``loss.repeat(batch)`` then cut to the eval size, as the course does) and
``perplexity = exp(mean loss)`` is recorded (``metrics.json`` ``train.eval_history``; ``hubtune train`` prints
each epoch's figure). ``perplexity_before`` is measured on the base model when it has its masked-LM head.

The model of the last epoch is saved (``model/``, ``AutoModelForMaskedLM``) and reloaded; ``perplexity_after`` is
the reloaded files' figure on the same masked eval blocks, and must equal the last epoch's. ``--resume`` is a
Trainer-engine feature.

Recipe module: imports :mod:`hubtune.train.common` and the pieces module :mod:`hubtune.train.lmdata`.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable

from hubtune.core.compat import quiet_libraries
from hubtune.core.config import TrainConfig, dump_yaml
from hubtune.core.errors import ConfigError, TrainingError
from hubtune.core.modeling import public_model_ref, write_json
from hubtune.train.common import (
    TrainResult,
    announce_start,
    base_summary,
    start_accelerator,
    prepare_output_dir,
    replace_model_dir,
    worker_result,
)
from hubtune.train.lmdata import lm_blocks, load_lm, load_texts, mlm_collator, perplexity, wwm_in_lm_collator

RELOAD_TOLERANCE = 1e-4  # |eval loss| of the reloaded files vs the trained model, on the same masked blocks


def masked_once(eval_ds: Any, collator: Any, seed: int) -> Any:
    """The eval blocks with their masks drawn once (the course's ``insert_random_mask``), seeded."""
    import torch

    torch.manual_seed(seed)
    keep = ("input_ids", "attention_mask", "token_type_ids", "labels")

    def insert_random_mask(batch: dict[str, list[Any]]) -> dict[str, Any]:
        features = [dict(zip(batch, values)) for values in zip(*batch.values())]
        masked = collator(features)
        return {k: v.numpy() for k, v in masked.items() if k in keep}

    return eval_ds.map(insert_random_mask, batched=True, remove_columns=eval_ds.column_names, desc="mask eval once")


def eval_loss(model: Any, eval_dl: Any, accelerator: Any, n_examples: int) -> float:
    """Mean loss over the eval set, gathered from every process (padding examples cut off)."""
    import torch

    model.eval()
    losses = []
    for batch in eval_dl:
        with torch.no_grad():
            loss = model(**batch).loss
        losses.append(accelerator.gather(loss.detach().float().repeat(batch["input_ids"].shape[0])))
    return float(torch.mean(torch.cat(losses)[:n_examples]))


def train_mlm_accelerate(cfg: TrainConfig, *, overwrite: bool = False, resume: bool = False, progress: bool = True,
                         on_start: Callable[[dict[str, Any]], None] | None = None) -> TrainResult:
    import torch
    from torch.utils.data import DataLoader
    from transformers import AutoModelForMaskedLM, default_data_collator, get_scheduler

    t_start = time.perf_counter()
    layout, precision, accelerator = start_accelerator(cfg, overwrite=overwrite, resume=resume)
    quiet_libraries(progress)

    # 1. validate and load everything before writing anything
    t0 = time.perf_counter()
    with accelerator.main_process_first():
        train_txt, eval_txt, eval_source = load_texts(cfg)
        model, tokenizer = load_lm(cfg, AutoModelForMaskedLM)
        limit = getattr(model.config, "max_position_embeddings", None)
        block = min(cfg.block_size, limit) if limit else cfg.block_size
        offsets = cfg.whole_word_mask and wwm_in_lm_collator()
        if offsets and not tokenizer.is_fast:
            raise ConfigError(f"whole_word_mask needs a fast tokenizer (word offsets) and {cfg.base_model} has a slow "
                              "one; set whole_word_mask: false")
        train_ds = lm_blocks(train_txt, tokenizer, block, causal=False, what="train", offsets=offsets)
        eval_blocks = lm_blocks(eval_txt, tokenizer, block, causal=False, what="eval", offsets=offsets)
        collator = mlm_collator(tokenizer, cfg.mlm_probability, cfg.whole_word_mask)
        eval_ds = masked_once(eval_blocks, collator, cfg.seed)
    sizes = {"train": len(train_ds), "eval": len(eval_ds), "train_texts": len(train_txt), "eval_texts": len(eval_txt)}
    t_data = time.perf_counter() - t0
    prepare_output_dir(layout, accelerator, overwrite=overwrite, resume=False)

    # 2. train: the course's loop
    g = torch.Generator().manual_seed(cfg.seed)
    train_dl = DataLoader(train_ds, shuffle=True, batch_size=cfg.batch_size, collate_fn=collator, generator=g,
                          num_workers=cfg.dataloader_num_workers)
    eval_dl = DataLoader(eval_ds, batch_size=cfg.eval_batch_size, collate_fn=default_data_collator)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.learning_rate,
                                  weight_decay=cfg.weight_decay)
    model, optimizer, train_dl, eval_dl = accelerator.prepare(model, optimizer, train_dl, eval_dl)
    # the prepared (sharded) dataloader's length is this process's steps; the scheduler is not prepared (it would
    # step once per process), so it steps once per optimizer step, as in the course
    steps_per_epoch = math.ceil(len(train_dl) / cfg.gradient_accumulation_steps)
    epochs = math.ceil(cfg.max_steps / max(1, steps_per_epoch)) if cfg.max_steps > 0 else math.ceil(cfg.num_epochs)
    total_steps = cfg.max_steps if cfg.max_steps > 0 else math.ceil(cfg.num_epochs * steps_per_epoch)
    scheduler = get_scheduler("linear", optimizer, num_warmup_steps=math.ceil(cfg.warmup_ratio * total_steps),
                              num_training_steps=total_steps)
    announce_start(on_start, cfg, accelerator.unwrap_model(model), accelerator)
    new_head = list(getattr(accelerator.unwrap_model(model), "hubtune_new_head", []))
    warnings: list[str] = []
    before = None
    if new_head:
        warnings.append(
            f"{public_model_ref(cfg.base_model)} has no masked-LM head (newly initialised: {', '.join(new_head[:4])}): "
            "training starts from a random head, so perplexity_before is not reported; pass a base trained for "
            "fill-mask (with its head) to --base-model to compare before and after"
        )
    else:
        before = eval_loss(model, eval_dl, accelerator, len(eval_ds))
    history: list[dict[str, Any]] = []
    step, losses, seen = 0, [], 0
    t0 = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        for batch in train_dl:
            if step >= total_steps:
                break
            with accelerator.accumulate(model):
                out = model(**batch)
                accelerator.backward(out.loss)
                optimizer.step()
                if accelerator.sync_gradients:
                    scheduler.step()
                optimizer.zero_grad()
            if accelerator.sync_gradients:
                step += 1
            losses.append(float(out.loss.detach()))
            seen += int(batch["input_ids"].shape[0]) * accelerator.num_processes
        loss = eval_loss(model, eval_dl, accelerator, len(eval_ds))
        history.append({"epoch": epoch + 1, "step": step, "eval_loss": loss, "perplexity": perplexity(loss)})
        if step >= total_steps:
            break
    t_train = time.perf_counter() - t0
    accelerator.wait_for_everyone()
    tot = accelerator.gather(torch.tensor([sum(losses), len(losses)], dtype=torch.float64, device=accelerator.device))
    tot = tot.view(-1, 2).sum(0)
    train_metrics: dict[str, Any] = {
        "train_loss": float(tot[0] / max(1.0, float(tot[1]))), "train_runtime": round(t_train, 4),
        "train_samples_per_second": round(seen / t_train, 3) if t_train > 0 else None, "epoch": float(len(history)),
        "global_step": step, "eval_history": history, "engine": "accelerate", "num_processes": accelerator.num_processes,
    }
    if not accelerator.is_main_process:
        accelerator.wait_for_everyone()
        return worker_result(cfg, layout, sizes, [], t_start)

    # 3. save, reload, measure the saved files on the same masked blocks; the mixed-precision autocast wrapper off,
    # so the trained weights answer in fp32, as the saved files will
    final = accelerator.unwrap_model(model, keep_fp32_wrapper=False)

    def save(staging: Path) -> None:
        final.save_pretrained(str(staging), safe_serialization=True)
        tokenizer.save_pretrained(str(staging))

    replace_model_dir(layout, save)
    reloaded = AutoModelForMaskedLM.from_pretrained(str(layout.model_dir), use_safetensors=True).to(accelerator.device)
    reload_dl = DataLoader(eval_ds, batch_size=cfg.eval_batch_size, collate_fn=default_data_collator)
    saved_loss = eval_loss(reloaded, reload_dl, accelerator, len(eval_ds))
    trained_loss = eval_loss(final, reload_dl, accelerator, len(eval_ds)) if precision else history[-1]["eval_loss"]
    if abs(saved_loss - trained_loss) > RELOAD_TOLERANCE:
        raise TrainingError(
            f"the model reloaded from {layout.model_dir.name}/ scores eval loss {saved_loss:.6f}, the trained one "
            f"{trained_loss:.6f}; expected equal: some trained weights were not saved (HUBTUNE_DEBUG=1)"
        )
    eval_metrics: dict[str, Any] = {"eval_loss": saved_loss, "perplexity_after": perplexity(saved_loss),
                                    "num_blocks": len(eval_ds), "block_size": block, "source": "reloaded",
                                    "eval_masks": "drawn once with the seed"}
    if before is not None:
        eval_metrics.update({"eval_loss_before": before, "perplexity_before": perplexity(before)})
    write_json(layout.metrics, {"train": train_metrics, "eval": eval_metrics})
    layout.config.write_text(dump_yaml(cfg), encoding="utf-8")
    total = time.perf_counter() - t_start
    doc = base_summary(cfg, final, precision, accelerator)
    doc.update({
        "eval_source": eval_source, "sizes": sizes, "max_length": block, "resumed_from": None,
        "timings": {"data_seconds": round(t_data, 3), "train_seconds": round(t_train, 3),
                    "total_seconds": round(total, 3), "train_samples_per_second": train_metrics["train_samples_per_second"]},
        "eval": {k: v for k, v in eval_metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)},
        "block_size": block, "mlm_probability": cfg.mlm_probability, "whole_word_mask": cfg.whole_word_mask,
        "new_head_modules": new_head, "perplexity_per_epoch": [h["perplexity"] for h in history], "warnings": warnings,
    })
    write_json(layout.summary, doc)
    accelerator.wait_for_everyone()
    return TrainResult(
        output_dir=layout.root, model_dir=layout.model_dir, mode=cfg.mode, label_names=[], eval_metrics=eval_metrics,
        train_metrics=train_metrics, sizes=sizes, seconds=round(total, 3), resumed_from=None,
        extra={"task": cfg.task, "engine": cfg.engine, "main_process": True, "warnings": warnings},
    )
