"""What each task writes for a chunk of model outputs (one :class:`Head` per run, shared by both engines):

``text-classification``         ``label``, ``score`` (softmax; ``score_<label>`` with ``--all-scores``)
``multi-label-classification``  ``labels`` (a list of the labels whose sigmoid is over ``--threshold``) and every
                                ``score_<label>`` (sigmoid per label)
``regression``                  ``score``: the predicted value (no label)
``token-classification``        ``entities``: a list of {entity_group, score, word, start, end} per row, the
                                character offsets into the text, grouped as ``pipeline("token-classification",
                                aggregation_strategy="simple")`` groups them (its own code does the grouping)
``feature-extraction``          ``embedding``: the text's vector, a fixed-size list of float32 (the pooling and
                                normalisation of :mod:`hubtune.tasks.feature_extraction`, which the runner applies)

The scores are those ``pipeline()`` gives: ``function_to_apply="sigmoid"`` for multi-label, ``"none"`` for
regression.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hubtune.core.errors import ConfigError
from hubtune.tasks.base import TEXT_CLASSIFICATION, check_text_input
from hubtune.tasks.registry import get_task, task_names


def predict_tasks() -> tuple[str, ...]:
    """The tasks batch-predict serves (``--task``), from the registry."""
    return task_names(predicts=True)


@dataclass
class Head:
    """The task of a run and what its columns need: label names, the multi-label threshold, and for token
    classification the tokenizer (offsets, words), the text column and the truncation length."""

    task: str = TEXT_CLASSIFICATION
    label_names: list[str] = field(default_factory=list)
    threshold: float | None = None
    tokenizer: Any = None
    text_column: str | None = None
    max_length: int | None = None
    embedding_dim: int | None = None  # feature-extraction: the vector's size (the column's type when a chunk is empty)
    _grouper: Any = None

    @property
    def spec(self) -> Any:
        """The task's object (:mod:`hubtune.tasks.registry`)."""
        return get_task(self.task)

    @property
    def scores_metrics(self) -> bool:
        """Whether the built-in metrics (classification_metrics of single labels) apply to this task."""
        return bool(self.spec.single_label)


def make_head(task: str, label_names: list[str], threshold: float | None, tokenizer: Any, text_column: str | None,
              max_length: int | None) -> Head:
    reads = get_task(task).threshold is not None
    return Head(task, list(label_names), threshold if reads else None, tokenizer, text_column, max_length)


def run_head(runner: Any, opts: Any, cols: Any, max_length: int | None) -> Head:
    """The head of a run (both engines): the runner's task, checked against the options (``opts``: the
    :class:`~hubtune.predict.options.PredictOptions`; ``cols``: the input's columns)."""
    task = getattr(runner, "task", TEXT_CLASSIFICATION)
    spec = get_task(task)
    check_task_options(task, opts.long_text, cols.text_pair, opts.threshold)
    # an NLI checkpoint given single texts: what its files say (else its label names) decides, in hubtune.tasks
    found = getattr(runner, "checkpoint", None) or getattr(getattr(runner, "loaded", None), "checkpoint", None)
    check_text_input(task, cols.text_pair is not None, opts.model, found=found, label_names=runner.label_names)
    if str(opts.output).lower().endswith(".csv") and spec.list_column:
        raise ConfigError(
            f"--output {opts.output}: a {task} run writes {spec.list_column!r}, a list per row, which CSV cannot "
            "hold; expected --output with .parquet (a typed list column) or .jsonl"
        )
    threshold = None
    if spec.threshold is not None:
        threshold = spec.threshold if opts.threshold is None else float(opts.threshold)
    head = make_head(task, runner.label_names, threshold, runner.tokenizer, cols.text, max_length)
    head.embedding_dim = getattr(runner, "embedding_dim", None)
    return head


def check_task_options(task: str, long_text: str, pair_column: str | None, threshold: float | None) -> None:
    """Refuse options the task cannot take (``--long-text chunk`` averages class probabilities: single-label
    only; token classification reads single texts; ``--threshold`` is for multi-label)."""
    get_task(task).check_predict_options(long_text, pair_column, threshold)


def task_columns(head: Head, logits: Any, texts: list[str]) -> dict[str, Any]:
    """The task's output columns (pyarrow arrays) for the valid rows of a chunk (not text-classification:
    :mod:`hubtune.predict.shards` writes that one as always)."""
    return head.spec.columns(head, logits, texts)


__all__ = ["Head", "make_head", "check_task_options", "task_columns", "predict_tasks"]
