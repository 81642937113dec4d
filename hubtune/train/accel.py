"""Recipe ``engine: accelerate``: the classification train step as a plain Accelerate loop (no Trainer).

Same inputs (TrainConfig), same outputs (the run directory of :mod:`hubtune.core.layout`), so the later
steps do not know which engine trained. Launched with ``accelerate launch -m hubtune train ...`` (or
``torchrun -m hubtune train ...``) it trains data-parallel: ``Accelerator.prepare`` shards the batches
and wraps the model, ``gather_for_metrics`` collects the eval predictions of every process (dropping
the samples padded in to even out the last batch), and only the main process writes the run dir.

Per epoch: train, evaluate, keep the best weights by ``metric_for_best_model`` (as the Trainer's
``load_best_model_at_end``). ``--resume`` is a Trainer-engine feature.

Recipe module: both ends of the run (load and tokenize; save, evaluate, write the run files) come from
:mod:`hubtune.train.common`, as for the Trainer recipe; no other recipe is imported.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

from hubtune.core.config import TrainConfig
from hubtune.core.metrics import classification_metrics, softmax, summary
from hubtune.train.common import (
    TrainResult,
    announce_start,
    check_metric,
    finish_classifier,
    start_accelerator,
    prepare_classifier,
    prepare_output_dir,
    worker_result,
)


def train_accelerate(cfg: TrainConfig, *, overwrite: bool = False, resume: bool = False, progress: bool = True,
                     on_start: Callable[[dict[str, Any]], None] | None = None) -> TrainResult:
    import numpy as np
    import torch
    from torch.utils.data import DataLoader
    from transformers import DataCollatorWithPadding, get_scheduler

    t_start = time.perf_counter()
    layout, precision, accelerator = start_accelerator(cfg, overwrite=overwrite, resume=resume)
    check_metric(cfg.metric_for_best_model)

    # 1. validate everything before writing anything
    t0 = time.perf_counter()
    with accelerator.main_process_first():
        data, model, tokenizer, max_length, train_ds, eval_ds = prepare_classifier(cfg, progress)
    t_data = time.perf_counter() - t0
    prepare_output_dir(layout, accelerator, overwrite=overwrite, resume=False)

    # 2. train
    collator = DataCollatorWithPadding(tokenizer)
    g = torch.Generator().manual_seed(cfg.seed)
    train_dl = DataLoader(train_ds, batch_size=cfg.batch_size, shuffle=True, collate_fn=collator, generator=g,
                          num_workers=cfg.dataloader_num_workers)
    eval_dl = DataLoader(eval_ds, batch_size=cfg.eval_batch_size, collate_fn=collator)
    decay = [p for n, p in model.named_parameters() if p.requires_grad and not (n.endswith("bias") or "LayerNorm" in n or "norm" in n.lower())]
    no_decay = [p for n, p in model.named_parameters() if p.requires_grad and (n.endswith("bias") or "LayerNorm" in n or "norm" in n.lower())]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=cfg.learning_rate
    )
    model, optimizer, train_dl, eval_dl = accelerator.prepare(model, optimizer, train_dl, eval_dl)
    steps_per_epoch = math.ceil(len(train_dl) / cfg.gradient_accumulation_steps)
    if cfg.max_steps > 0:
        total_steps = cfg.max_steps
        epochs = math.ceil(cfg.max_steps / max(1, steps_per_epoch))
    else:
        epochs = math.ceil(cfg.num_epochs)
        total_steps = math.ceil(cfg.num_epochs * steps_per_epoch)
    # the prepared scheduler (AcceleratedScheduler, split_batches off) steps num_processes times per optimizer
    # step, as each process's batches count toward the global batch: the schedule is sized in those units, so the
    # lr at optimizer step k is the single-process schedule's over ``total_steps`` (sized from the sharded loader)
    n_proc = accelerator.num_processes
    scheduler = accelerator.prepare(
        get_scheduler("linear", optimizer, num_warmup_steps=math.ceil(cfg.warmup_ratio * total_steps) * n_proc,
                      num_training_steps=total_steps * n_proc)
    )

    announce_start(on_start, cfg, model, accelerator)
    label_names = data.label_names
    history: list[dict[str, Any]] = []
    best: tuple[float, dict[str, Any]] | None = None
    step, losses, seen, lrs = 0, [], 0, []
    t0 = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        for batch in train_dl:
            if step >= total_steps:
                break
            with accelerator.accumulate(model):
                out = model(**batch)
                accelerator.backward(out.loss)
                if accelerator.sync_gradients:
                    lrs.append(optimizer.param_groups[0]["lr"])  # the lr this optimizer step uses
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            if accelerator.sync_gradients:
                step += 1
            losses.append(float(out.loss.detach()))
            seen += int(batch["input_ids"].shape[0]) * accelerator.num_processes
        # evaluate on all processes, gather everything
        model.eval()
        all_logits, all_labels = [], []
        for batch in eval_dl:
            with torch.no_grad():
                logits = model(**batch).logits
            logits, labels = accelerator.gather_for_metrics((logits, batch["labels"]))
            all_logits.append(logits.float().cpu().numpy())
            all_labels.append(labels.cpu().numpy())
        probs = softmax(np.concatenate(all_logits))
        m = summary(classification_metrics(np.concatenate(all_labels), probs.argmax(-1), label_names, probs))
        history.append({"epoch": epoch + 1, "step": step, **{f"eval_{k}": v for k, v in m.items()}})
        score = m.get(cfg.metric_for_best_model, float("-inf"))
        if best is None or score > best[0]:
            state = accelerator.unwrap_model(model).state_dict()
            best = (score, {k: v.detach().cpu().clone() for k, v in state.items()})
        if step >= total_steps:
            break
    t_train = time.perf_counter() - t0
    accelerator.wait_for_everyone()
    losses_t = accelerator.gather(torch.tensor([sum(losses), len(losses)], dtype=torch.float64, device=accelerator.device))
    losses_t = losses_t.view(-1, 2).sum(0)
    train_metrics: dict[str, Any] = {
        "train_loss": float(losses_t[0] / max(1.0, float(losses_t[1]))),
        "train_runtime": round(t_train, 4),
        "train_samples_per_second": round(seen / t_train, 3) if t_train > 0 else None,
        "epoch": float(len(history)),
        "global_step": step,
        "best_checkpoint_metric": best[0] if best else None,
        "eval_history": history,
        "learning_rates": lrs,
        "engine": "accelerate",
        "num_processes": accelerator.num_processes,
    }
    if not accelerator.is_main_process:
        accelerator.wait_for_everyone()
        return worker_result(cfg, layout, data.sizes, label_names, t_start)
    final = accelerator.unwrap_model(model)
    if best is not None:
        final.load_state_dict(best[1])
    result = finish_classifier(
        cfg, layout, model=final, tokenizer=tokenizer, data=data, max_length=max_length, train_metrics=train_metrics,
        precision=precision, state=accelerator, timings={"data_seconds": t_data, "train_seconds": t_train},
        t_start=t_start, last_ckpt=None,
    )
    accelerator.wait_for_everyone()
    return result
