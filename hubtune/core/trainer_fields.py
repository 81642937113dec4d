"""The ``trainer:`` section of a train config: any field of the installed transformers' ``TrainingArguments``
beside the keys hubtune mirrors by hand (not a step).

Names are checked against that dataclass (an unknown one is an error naming the closest), values converted to
the field's type (an enum field's value checked against its choices); the hand-mirrored fields and those hubtune
sets itself are refused, naming what to use instead. transformers is imported only for a non-empty section.
Imports :mod:`hubtune.core.errors` only (:mod:`hubtune.core.config` hands in its value coercion).
"""

from __future__ import annotations

import difflib
import types
import typing
from dataclasses import fields
from typing import Any, Callable, Mapping

from hubtune.core.errors import ConfigError

Coerce = Callable[[Any, Any, str], Any]  # (value, type, where) -> value, or ConfigError


def _closest(key: str, valid: list[str]) -> str:
    match = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    return f"; did you mean '{match[0]}'?" if match else ""


# TrainingArguments fields that have a TrainConfig key of their own: ``trainer.X`` names that key instead
MIRRORED_TRAINING_ARGS = {
    "num_train_epochs": "num_epochs", "max_steps": "max_steps", "learning_rate": "learning_rate",
    "per_device_train_batch_size": "batch_size", "per_device_eval_batch_size": "eval_batch_size",
    "gradient_accumulation_steps": "gradient_accumulation_steps", "weight_decay": "weight_decay",
    "warmup_ratio": "warmup_ratio", "group_by_length": "group_by_length", "train_sampling_strategy": "group_by_length",
    "logging_steps": "logging_steps", "report_to": "report_to", "seed": "seed", "data_seed": "seed",
    "dataloader_num_workers": "dataloader_num_workers", "metric_for_best_model": "metric_for_best_model",
    "fp16": "precision", "bf16": "precision",
}
# TrainingArguments fields hubtune sets itself (the run directory, the checkpoint choice, publishing), and why
CONTROLLED_TRAINING_ARGS = {
    "output_dir": "checkpoints/ inside --output-dir", "overwrite_output_dir": "--overwrite",
    "resume_from_checkpoint": "--resume", "eval_strategy": "once per epoch, to choose the checkpoint",
    "evaluation_strategy": "once per epoch, to choose the checkpoint", "save_strategy": "once per epoch, beside the eval",
    "load_best_model_at_end": "the chosen checkpoint is the model", "greater_is_better": "from metric_for_best_model",
    "disable_tqdm": "--progress/--no-progress", "save_safetensors": "safetensors only", "use_cpu": "the device found",
    "no_cuda": "the device found", "remove_unused_columns": "the recipe's columns", "label_names": "the recipe's labels",
    "local_rank": "torchrun / accelerate launch", "prediction_loss_only": "the checkpoint choice needs the predictions",
    "batch_eval_metrics": "the checkpoint choice needs the predictions",
    "eval_do_concat_batches": "the checkpoint choice needs the predictions",
    "push_to_hub": "hubtune push / train-and-push publish after the gates",
}


def training_args_fields() -> dict[str, Any]:
    """The installed transformers' TrainingArguments fields (init ones) and their types (Any where unresolvable)."""
    from transformers import TrainingArguments

    names = [f.name for f in fields(TrainingArguments) if f.init]
    try:
        hints = typing.get_type_hints(TrainingArguments)
    except Exception:  # noqa: BLE001 - an annotation this Python cannot resolve: names only
        hints = {}
    return {n: hints.get(n, Any) for n in names}


def _coerce_field(value: Any, tp: Any, where: str, coerce: Coerce) -> Any:
    """``value`` as the TrainingArguments field type ``tp``: kept where it already is one of the union's plain types,
    an enum's value checked against its choices (the closest named), else coerced like the config's own keys."""
    import enum

    union = typing.get_origin(tp) in (typing.Union, types.UnionType)
    options = [a for a in typing.get_args(tp) if a is not type(None)] if union else [tp]
    if value is None or tp is Any:
        return value
    enums = [a for a in options if isinstance(a, type) and issubclass(a, enum.Enum)]
    if enums and isinstance(value, str):
        choices = [str(m.value) for e in enums for m in e]
        if value in choices:
            return value
        raise ConfigError(f"{where}: found {value!r}, expected one of {', '.join(choices)}{_closest(value, choices)}")
    plain = [a for a in options if a in (bool, int, float, str, dict, list)]
    if any(type(value) is a for a in plain):
        return value
    errors: list[ConfigError] = []
    for a in options:
        try:
            return coerce(value, a, where)
        except ConfigError as exc:
            errors.append(exc)
    if errors:
        raise errors[0]
    return value


def check_trainer_fields(settings: Mapping[str, Any], coerce: Coerce) -> dict[str, Any]:
    """The ``trainer:`` section: TrainingArguments fields of the installed transformers, values coerced to their
    types. Unknown names, hand-mirrored fields and the ones hubtune sets are ConfigErrors."""
    if not settings:
        return {}
    hints = training_args_fields()
    out: dict[str, Any] = {}
    for key, value in settings.items():
        key = str(key).replace("-", "_")
        where = f"trainer.{key}"
        if key in MIRRORED_TRAINING_ARGS:
            own = MIRRORED_TRAINING_ARGS[key]
            raise ConfigError(f"{where} is a hubtune key of its own: set '{own}' instead (YAML top level or --set {own}=...)")
        if key in CONTROLLED_TRAINING_ARGS or key.startswith("hub_"):
            why = CONTROLLED_TRAINING_ARGS.get(key, CONTROLLED_TRAINING_ARGS["push_to_hub"])
            raise ConfigError(f"{where}: hubtune sets {key} itself ({why}); expected another TrainingArguments field: drop it")
        if key not in hints:
            hint = _closest(key, list(hints)) or "; expected a field of the installed transformers' TrainingArguments"
            raise ConfigError(f"unknown TrainingArguments field '{where}'{hint} (fix the trainer: section or --set)")
        out[key] = _coerce_field(value, hints[key], where, coerce)
    return out
