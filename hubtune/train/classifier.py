"""Recipe: a text classifier (``task: text-classification``, ``engine: trainer``) fine-tuned with the Trainer,
in full or with an adapter (``mode: full | lora | ia3 | prefix``), optionally with the ULMFiT techniques
(``ulmfit: {...}``: discriminative learning rates, slanted triangular schedule, gradual unfreezing), with class
weights (``class_weights``: weighted cross-entropy, :mod:`hubtune.train.settings`).

Imports :mod:`hubtune.train.common` (both ends of the run) and the pieces modules
:mod:`hubtune.train.settings`, :mod:`hubtune.train.ulmfit`; no other recipe.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from hubtune.core.config import TrainConfig
from hubtune.core.layout import RunLayout
from hubtune.core.metrics import classification_metrics, softmax, summary
from hubtune.train import ulmfit
from hubtune.train.settings import class_weight_vector, weighted_loss
from hubtune.train.common import (
    TrainResult,
    announce_start,
    check_metric,
    check_output_dir,
    dist_state,
    finish_classifier,
    precision_flags,
    prepare_classifier,
    prepare_output_dir,
    run_trainer,
    training_args,
    worker_result,
)


def train_classifier(cfg: TrainConfig, *, overwrite: bool = False, resume: bool = False, progress: bool = True,
                     on_start: Callable[[dict[str, Any]], None] | None = None) -> TrainResult:
    """Fine-tune the text classifier of ``cfg`` with the Trainer; write the run directory."""
    from transformers import DataCollatorWithPadding, EarlyStoppingCallback, Trainer

    t_start = time.perf_counter()
    layout = RunLayout.of(cfg.output_dir)
    check_output_dir(layout.root, overwrite, resume)
    precision = precision_flags(cfg.precision)
    check_metric(cfg.metric_for_best_model)
    state = dist_state()

    # 1. validate everything before writing anything
    t0 = time.perf_counter()
    with state.main_process_first():
        data, model, tokenizer, max_length, train_ds, eval_ds = prepare_classifier(cfg, progress)
    t_data = time.perf_counter() - t0
    label_names = data.label_names

    def compute_metrics(pred: Any) -> dict[str, float]:
        logits = pred.predictions[0] if isinstance(pred.predictions, tuple) else pred.predictions
        probs = softmax(logits)
        return summary(classification_metrics(pred.label_ids, probs.argmax(-1), label_names, probs))

    extra_args: dict[str, Any] = {"metric_for_best_model": cfg.metric_for_best_model}
    callbacks: list[Any] = []
    if cfg.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=cfg.early_stopping_patience))
    trainer_cls: type = Trainer
    unfreeze = None
    if cfg.ulmfit.enabled:
        trainer_cls = ulmfit.trainer_class(cfg)
        if cfg.ulmfit.gradual_unfreezing:
            groups = ulmfit.layer_groups(model)
            unfreeze = ulmfit.make_callback(groups)
            callbacks.append(unfreeze)
            extra_args["ddp_find_unused_parameters"] = True
    loss_kwargs: dict[str, Any] = {}
    weights = None
    if cfg.class_weights is not None:  # weighted cross-entropy (label smoothing, if set, inside it)
        weights = class_weight_vector(cfg.class_weights, data.train.dataset["label"], label_names)
        loss_kwargs["compute_loss_func"] = weighted_loss(weights, cfg.trainer.get("label_smoothing_factor", 0.0))
    args = training_args(cfg, layout, precision, progress, **extra_args)
    last_ckpt = prepare_output_dir(layout, state, overwrite=overwrite, resume=resume, cfg=cfg)

    # 2. train
    trainer = trainer_cls(
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=compute_metrics,
        callbacks=callbacks,
        **loss_kwargs,
    )
    warnings: list[str] = []
    if unfreeze is not None:
        steps_per_epoch = len(trainer.get_train_dataloader()) // max(1, cfg.gradient_accumulation_steps)
        epochs = ulmfit.planned_epochs(cfg.num_epochs, cfg.max_steps, steps_per_epoch)
        warnings += [w for w in [ulmfit.unfreezing_warning(groups, epochs)] if w]
    announce_start(on_start, cfg, trainer.model, state, warnings)
    train_metrics, t_train = run_trainer(trainer, last_ckpt)

    if not trainer.is_world_process_zero():
        state.wait_for_everyone()
        return worker_result(cfg, layout, data.sizes, label_names, t_start)
    extra_summary: dict[str, Any] = {"warnings": warnings}
    if weights is not None:
        extra_summary["class_weights"] = dict(zip(label_names, weights))
    if cfg.ulmfit.enabled:
        extra_summary["ulmfit"] = {
            "layer_group_lrs": getattr(trainer, "layer_group_lrs", {}),
            "unfrozen_per_epoch": unfreeze.history if unfreeze is not None else None,
        }
    # 3. save the model folder through a staging dir, then evaluate the saved files
    result = finish_classifier(
        cfg,
        layout,
        model=trainer.model,
        tokenizer=tokenizer,
        data=data,
        max_length=max_length,
        train_metrics=train_metrics,
        precision=precision,
        state=state,
        timings={"data_seconds": t_data, "train_seconds": t_train},
        t_start=t_start,
        last_ckpt=last_ckpt,
        extra_summary=extra_summary,
    )
    state.wait_for_everyone()
    return result
