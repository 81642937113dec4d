"""Recipe: the tasks beside single-label classification (``task: multi-label-classification | regression |
token-classification``, ``engine: trainer``), fine-tuned with the Trainer in full or with LoRA (the head kept
trainable and saved beside the adapter: peft's ``modules_to_save``).

- multi-label: ``problem_type: multi_label_classification`` (BCE with logits, a sigmoid per label);
- regression: ``num_labels: 1``, ``problem_type: regression`` (MSE);
- token classification: ``*ForTokenClassification`` with the tag names as id2label, tags aligned to each word's
  first sub-token (the rest -100) through the fast tokenizer's word_ids, ``DataCollatorForTokenClassification``.

The metrics (:mod:`hubtune.core.metrics`: scikit-learn, scipy, seqeval) choose the checkpoint and are measured again on
the saved files, reloaded (:mod:`hubtune.tasks.loading`), as the classifier recipe does. Imports :mod:`hubtune.train.common`
and :mod:`hubtune.train.adapters`; no other recipe.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from hubtune.core.compat import quiet_libraries
from hubtune.core.config import TrainConfig, dump_yaml
from hubtune.core.errors import ConfigError, ModelLoadError, TrainingError
from hubtune.core.layout import RunLayout
from hubtune.core.metrics import summary
from hubtune.core.modeling import DEFAULT_MAX_LENGTH, check_tokenizer_fits, model_load_error, resolve_model_source, tokenizer_pad_kwargs, write_json
from hubtune.core.security import check_model_config
from hubtune.data.examples import load_task_labeled, load_task_train_eval
from hubtune.tasks.loading import load_task_model
from hubtune.tasks.registry import get_task
from hubtune.train.adapters import apply_adapter, head_modules
from hubtune.train.common import (
    TrainResult,
    announce_start,
    base_summary,
    check_output_dir,
    dist_state,
    precision_flags,
    prepare_output_dir,
    run_trainer,
    save_classifier,
    training_args,
    worker_result,
)

RELOAD_TOLERANCE = 1e-4
LOWER_IS_BETTER = ("mse", "mae", "rmse")


def best_metric(cfg: TrainConfig) -> tuple[str, bool]:
    """The metric that chooses the checkpoint and whether larger is better: the config's when it names one of the
    task's metrics; the task's default (MSE, entity F1) when it is left at the classifier default f1_macro, which
    multi-label classification measures too."""
    spec = get_task(cfg.task)
    keys = spec.summary_keys
    if cfg.metric_for_best_model == "f1_macro" and "f1_macro" not in keys and spec.best_metric:
        return spec.best_metric
    if cfg.metric_for_best_model not in keys:
        raise ConfigError(f"metric_for_best_model is {cfg.metric_for_best_model!r}; task {cfg.task} measures "
                          f"{', '.join(keys)}: pick one of them (--set metric_for_best_model=...)")
    return cfg.metric_for_best_model, cfg.metric_for_best_model not in LOWER_IS_BETTER


def _load_base(cfg: TrainConfig, label_names: list[str]) -> tuple[Any, Any]:
    import transformers
    from transformers import AutoTokenizer, set_seed

    spec = get_task(cfg.task)
    set_seed(cfg.seed)  # the new head's initialisation is reproducible from the seed
    source = resolve_model_source(cfg.base_model)
    check_model_config(source, revision=cfg.revision)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, revision=cfg.revision, trust_remote_code=cfg.trust_remote_code)
        model, info = getattr(transformers, spec.auto_class).from_pretrained(
            source, revision=cfg.revision, ignore_mismatched_sizes=True, trust_remote_code=cfg.trust_remote_code,
            use_safetensors=True, output_loading_info=True, **spec.head_kwargs(label_names),
            **tokenizer_pad_kwargs(tokenizer),  # built with the tokenizer's pad id: trained == reloaded
        )
    except Exception as exc:  # noqa: BLE001
        raise model_load_error(cfg.base_model, exc, what="base model", flag="--base-model") from exc
    check_tokenizer_fits(tokenizer, model, cfg.base_model, "--base-model")
    spec.check_tokenizer(tokenizer, cfg.base_model)
    spec.configure(model.config)
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ModelLoadError(f"tokenizer of {cfg.base_model} has no pad or eos token; expected a pad token")
        tokenizer.pad_token = tokenizer.eos_token
        model.config.pad_token_id = tokenizer.pad_token_id
    heads = head_modules(model)
    model.hubtune_missing_modules = sorted({k.rsplit(".", 1)[0] for k in (info.get("missing_keys") or [])
                                            if not any(k == h or k.startswith(h + ".") for h in heads)})
    return model, tokenizer


def _compute_metrics(cfg: TrainConfig, label_names: list[str]) -> Callable[[Any], dict[str, float]]:
    spec = get_task(cfg.task)

    def fn(pred: Any) -> dict[str, float]:
        logits = pred.predictions[0] if isinstance(pred.predictions, tuple) else pred.predictions
        return summary(spec.eval_metrics(logits, pred.label_ids, label_names), spec)

    return fn


def train_task(cfg: TrainConfig, *, overwrite: bool = False, resume: bool = False, progress: bool = True,
               on_start: Callable[[dict[str, Any]], None] | None = None) -> TrainResult:
    """Fine-tune ``cfg.base_model`` for ``cfg.task`` with the Trainer; write the run directory."""
    from transformers import EarlyStoppingCallback, Trainer

    spec = get_task(cfg.task)
    t_start = time.perf_counter()
    layout = RunLayout.of(cfg.output_dir)
    check_output_dir(layout.root, overwrite, resume)
    precision = precision_flags(cfg.precision)
    metric, greater = best_metric(cfg)
    state = dist_state()

    # 1. validate everything before writing anything
    t0 = time.perf_counter()
    quiet_libraries(progress)
    with state.main_process_first():
        data = load_task_train_eval(cfg.data, spec)
        model, tokenizer = _load_base(cfg, data.label_names)
        max_length = min(cfg.max_length, max(getattr(model.config, "max_position_embeddings", 0) or 0, 0) or cfg.max_length)  # XLNet: -1, no limit
        train_ds = spec.tokenize(data.train.dataset, tokenizer, max_length)
        eval_ds = spec.tokenize(data.eval.dataset, tokenizer, max_length)
    missing = list(getattr(model, "hubtune_missing_modules", []))
    if cfg.mode == "lora":
        model = apply_adapter(model, cfg, extra_modules=missing)
    model.hubtune_missing_modules = missing
    t_data = time.perf_counter() - t0

    callbacks: list[Any] = []
    if cfg.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=cfg.early_stopping_patience))
    args = training_args(cfg, layout, precision, progress, metric_for_best_model=metric, greater_is_better=greater)
    last_ckpt = prepare_output_dir(layout, state, overwrite=overwrite, resume=resume, cfg=cfg)
    collator = spec.collator(tokenizer)
    trainer = Trainer(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds, processing_class=tokenizer,
                      data_collator=collator, compute_metrics=_compute_metrics(cfg, data.label_names),
                      callbacks=callbacks)
    announce_start(on_start, cfg, trainer.model, state, [])
    train_metrics, t_train = run_trainer(trainer, last_ckpt)
    if not trainer.is_world_process_zero():
        state.wait_for_everyone()
        return worker_result(cfg, layout, data.sizes, data.label_names, t_start)

    # 2. save the model folder through a staging dir, then measure the saved files, reloaded
    save_classifier(layout, trainer.model, tokenizer, cfg, max_length)
    t0 = time.perf_counter()
    eval_metrics, test_metrics = evaluate_saved_task(cfg, layout, trainer.model, data, max_length)
    t_eval = time.perf_counter() - t0
    write_json(layout.metrics, {"train": train_metrics, "eval": eval_metrics, **({"test": test_metrics} if test_metrics else {})})
    layout.config.write_text(dump_yaml(cfg), encoding="utf-8")
    total = time.perf_counter() - t_start
    doc = base_summary(cfg, trainer.model, precision, state)
    doc.update({
        "eval_source": data.eval_source, "sizes": data.sizes, "label_names": data.label_names,
        "label2id": {n: i for i, n in enumerate(data.label_names)},
        "columns": {"text": data.train.columns.text, "text_pair": data.train.columns.text_pair,
                    "label": data.train.columns.label},
        "max_length": max_length, "metric_for_best_model": metric,
        "resumed_from": Path(last_ckpt).name if last_ckpt else None,
        "timings": {"data_seconds": round(t_data, 3), "train_seconds": round(t_train, 3), "eval_seconds": round(t_eval, 3),
                    "total_seconds": round(total, 3), "train_samples_per_second": train_metrics.get("train_samples_per_second")},
        "eval": summary(eval_metrics, spec),
        **({"test": summary(test_metrics, spec), "test_source": cfg.data.test_dataset} if test_metrics else {}),
        "trained_missing_weights": missing, "warnings": [],
    })
    write_json(layout.summary, doc)
    state.wait_for_everyone()
    return TrainResult(output_dir=layout.root, model_dir=layout.model_dir, mode=cfg.mode, label_names=data.label_names,
                       eval_metrics=eval_metrics, train_metrics=train_metrics, sizes=data.sizes, seconds=round(total, 3),
                       resumed_from=doc["resumed_from"], test_metrics=test_metrics,
                       extra={"task": cfg.task, "engine": cfg.engine, "main_process": True, "warnings": []})


def evaluate_saved_task(cfg: TrainConfig, layout: RunLayout, model: Any, data: Any,
                        max_length: int) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The task's metrics of the files in ``model/``, reloaded into a fresh model object, on the eval split (and
    the test split when the config names one); fails when the reloaded model answers differently."""
    from accelerate.utils import extract_model_from_parallel

    from hubtune.core.parity import compare_logits

    spec = get_task(cfg.task)
    limit = min(max_length, DEFAULT_MAX_LENGTH)
    reloaded = load_task_model(str(layout.model_dir), cfg.task, device=str(next(model.parameters()).device))
    ds = data.eval.dataset
    saved = spec.outputs(reloaded.model, reloaded.tokenizer, ds, limit)
    trained_model = extract_model_from_parallel(model, keep_fp32_wrapper=False).eval()
    trained = spec.outputs(trained_model, reloaded.tokenizer, ds, limit)
    parity = compare_logits(spec.flat(trained), spec.flat(saved), tolerance=RELOAD_TOLERANCE,
                            min_label_agreement=1.0 if spec.has_labels else 0.0, texts_source="the eval split")
    if not parity.passed:
        raise TrainingError(
            f"the model reloaded from {layout.model_dir.name}/ disagrees with the trained one ({parity.describe()}); "
            "expected identical predictions: some trained weights were not saved (report it with HUBTUNE_DEBUG=1, "
            "or train with --mode full)"
        )

    def metrics_of(outputs: Any, d: Any) -> dict[str, Any]:
        out = spec.metrics(outputs, d, reloaded.label_names, tokenizer=reloaded.tokenizer, max_length=limit)
        out["source"] = "reloaded"
        return out

    eval_metrics = metrics_of(saved, ds)
    test_metrics = None
    if cfg.data.test_dataset:
        test = load_task_labeled(cfg.data.test_dataset, cfg.data, spec, reloaded.label_names,
                                 max_samples=cfg.data.test_max_samples)
        test_metrics = metrics_of(spec.outputs(reloaded.model, reloaded.tokenizer, test.dataset, limit),
                                  test.dataset)
    return eval_metrics, test_metrics
