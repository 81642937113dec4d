"""The evaluate step: metrics of a model (directory, LoRA adapter or Hub id) on a labeled dataset."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from hubtune.core.config import DataConfig
from hubtune.core.errors import LabelError, OptionRangeError
from hubtune.tasks.loading import load_classifier
from hubtune.tasks.base import check_text_input
from hubtune.tasks.registry import get_task


@dataclass
class EvalOptions:
    model: str
    dataset: str
    text_column: str | None = None
    text_pair_column: str | None = None
    label_column: str | None = None
    limit: int | None = None
    batch_size: int = 64
    device: str | None = "cpu"
    revision: str | None = None
    trust_remote_code: bool = False
    encoding: str = "utf-8"
    seed: int = 42
    metrics: list[str] = field(default_factory=list)  # evaluate modules (--metric), beside the built-in metrics


@dataclass
class EvalReport:
    model: str
    dataset: str
    metrics: dict[str, Any]
    num_examples: int
    seconds: float
    label_names: list[str] = field(default_factory=list)


def check_options(opts: EvalOptions) -> None:
    """Refuse option values out of range before anything loads."""
    if opts.batch_size < 1:
        raise OptionRangeError(f"--batch-size must be at least 1, got {opts.batch_size}; e.g. --batch-size 64")
    if opts.limit is not None and opts.limit < 1:
        raise OptionRangeError(f"--limit must be at least 1, got {opts.limit}; leave it out to evaluate every row")


def evaluate(opts: EvalOptions) -> EvalReport:
    check_options(opts)
    t0 = time.perf_counter()
    if opts.metrics:  # loaded first: a bad --metric fails before the model and data are read
        from hubtune.core.metric_modules import load_metric_modules

        load_metric_modules(opts.metrics)
    # one path for every task: the checkpoint's task (its head checked) reads the data and measures the model
    loaded = load_classifier(
        opts.model, revision=opts.revision, trust_remote_code=opts.trust_remote_code, device=opts.device
    )
    spec = get_task(loaded.task)
    names = loaded.label_names if spec.has_labels else spec.label_names(loaded.model.config)
    if spec.has_labels and not names:
        raise LabelError(
            f"model {opts.model!r} has no id2label in its config; expected a classifier saved with label names"
        )
    dc = DataConfig(dataset=opts.dataset, text_column=opts.text_column, text_pair_column=opts.text_pair_column,
                    label_column=opts.label_column, encoding=opts.encoding, seed=opts.seed)
    data = spec.load_labeled(opts.dataset, dc, names, max_samples=opts.limit)
    # an NLI checkpoint given single texts would score every row much the same
    check_text_input(loaded.task, "text_pair" in data.dataset.column_names, opts.model, found=loaded.checkpoint)
    metrics = spec.evaluate(loaded, data, batch_size=opts.batch_size, metric_modules=opts.metrics)
    return EvalReport(
        model=opts.model,
        dataset=opts.dataset,
        metrics=metrics,
        num_examples=len(data),
        seconds=round(time.perf_counter() - t0, 3),
        label_names=names,
    )
