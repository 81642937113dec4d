"""What each task writes for a chunk of model outputs (one :class:`Head` per run, shared by both engines):

``text-classification``         ``label``, ``score`` (softmax; ``score_<label>`` with ``--all-scores``)
``multi-label-classification``  ``labels`` (a list of the labels whose sigmoid is over ``--threshold``) and every
                                ``score_<label>`` (sigmoid per label)
``regression``                  ``score``: the predicted value (no label)
``token-classification``        ``entities``: a list of {entity_group, score, word, start, end} per row, the
                                character offsets into the text, grouped as ``pipeline("token-classification",
                                aggregation_strategy="simple")`` groups them (its own code does the grouping)
``feature-extraction``          ``embedding``: the text's vector, a fixed-size list of float32 (the pooling and
                                normalisation of :mod:`hubtune.tasks.embeddings`, which the runner applies)

The scores are those ``pipeline()`` gives: ``function_to_apply="sigmoid"`` for multi-label, ``"none"`` for
regression.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hubtune.tasks.embeddings import EMBEDDING_COLUMN
from hubtune.core.errors import ConfigError
from hubtune.tasks.base import (FEATURE_EXTRACTION, MULTI_LABEL, REGRESSION, TEXT_CLASSIFICATION, TOKEN_CLASSIFICATION,
                           check_text_input)

PREDICT_TASKS = (TEXT_CLASSIFICATION, MULTI_LABEL, REGRESSION, TOKEN_CLASSIFICATION, FEATURE_EXTRACTION)
DEFAULT_THRESHOLD = 0.5
LIST_COLUMNS = {MULTI_LABEL: "labels", TOKEN_CLASSIFICATION: "entities", FEATURE_EXTRACTION: EMBEDDING_COLUMN}


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
    def scores_metrics(self) -> bool:
        """Whether the built-in metrics (classification_metrics of single labels) apply to this task."""
        return self.task == TEXT_CLASSIFICATION


def make_head(task: str, label_names: list[str], threshold: float | None, tokenizer: Any, text_column: str | None,
              max_length: int | None) -> Head:
    return Head(task, list(label_names), threshold if task == MULTI_LABEL else None, tokenizer, text_column, max_length)


def run_head(runner: Any, opts: Any, cols: Any, max_length: int | None) -> Head:
    """The head of a run (both engines): the runner's task, checked against the options (``opts``: the
    :class:`~hubtune.predict.options.PredictOptions`; ``cols``: the input's columns)."""
    task = getattr(runner, "task", TEXT_CLASSIFICATION)
    check_task_options(task, opts.long_text, cols.text_pair, opts.threshold)
    # an NLI checkpoint given single texts: what its files say (else its label names) decides, in hubtune.tasks.base
    found = getattr(runner, "checkpoint", None) or getattr(getattr(runner, "loaded", None), "checkpoint", None)
    check_text_input(task, cols.text_pair is not None, opts.model, found=found, label_names=runner.label_names)
    if str(opts.output).lower().endswith(".csv") and task in LIST_COLUMNS:
        raise ConfigError(
            f"--output {opts.output}: a {task} run writes {LIST_COLUMNS[task]!r}, a list per row, which CSV cannot "
            "hold; expected --output with .parquet (a typed list column) or .jsonl"
        )
    threshold = (DEFAULT_THRESHOLD if opts.threshold is None else float(opts.threshold)) if task == MULTI_LABEL else None
    head = make_head(task, runner.label_names, threshold, runner.tokenizer, cols.text, max_length)
    head.embedding_dim = getattr(runner, "embedding_dim", None)
    return head


def check_task_options(task: str, long_text: str, pair_column: str | None, threshold: float | None) -> None:
    """Refuse options the task cannot take (``--long-text chunk`` averages class probabilities: single-label
    only; token classification reads single texts; ``--threshold`` is for multi-label)."""
    if long_text == "chunk" and task != TEXT_CLASSIFICATION:
        raise ConfigError(
            f"--long-text chunk averages the class probabilities of a text's windows, and this model's task is {task}; "
            "expected a text-classification model: use --long-text truncate (the rows cut are counted)"
        )
    if pair_column and task in (TOKEN_CLASSIFICATION, FEATURE_EXTRACTION):
        what = "tags the tokens of one text" if task == TOKEN_CLASSIFICATION else "embeds one text"
        raise ConfigError(
            f"--text-pair-column {pair_column} with a {task} model, which {what}; expected single texts: drop "
            "--text-pair-column"
        )
    if threshold is not None and task != MULTI_LABEL:
        raise ConfigError(
            f"--threshold {threshold} is for multi-label-classification (the labels whose sigmoid is over it), and "
            f"this model's task is {task}: drop --threshold, or pass --task multi-label-classification"
        )
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"--threshold must be between 0 and 1 (a sigmoid score), found {threshold}")


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-logits.astype(np.float64)))).astype(np.float32)


def task_columns(head: Head, logits: Any, texts: list[str]) -> dict[str, Any]:
    """The task's output columns (pyarrow arrays) for the valid rows of a chunk (not text-classification:
    :mod:`hubtune.predict.shards` writes that one as always)."""
    import pyarrow as pa

    names = head.label_names or [str(i) for i in range(logits.shape[-1] if len(logits) else 0)]
    if head.task == MULTI_LABEL:
        probs = sigmoid(np.asarray(logits)) if len(logits) else np.zeros((0, len(names)), np.float32)
        threshold = DEFAULT_THRESHOLD if head.threshold is None else head.threshold
        cols: dict[str, Any] = {
            "labels": pa.array([[names[j] for j in np.flatnonzero(row > threshold)] for row in probs],
                               type=pa.list_(pa.string()))
        }
        for j, name in enumerate(names):
            cols[f"score_{name}"] = pa.array(probs[:, j], type=pa.float32())
        return cols
    if head.task == REGRESSION:
        values = np.asarray(logits, dtype=np.float32)[:, 0] if len(logits) else np.zeros(0, np.float32)
        return {"score": pa.array(values, type=pa.float32())}
    if head.task == TOKEN_CLASSIFICATION:
        return {"entities": pa.array(token_entities(head, logits, texts), type=ENTITY_TYPE())}
    if head.task == FEATURE_EXTRACTION:
        vectors = np.asarray(logits, dtype=np.float32)
        if not len(vectors):
            vectors = np.zeros((0, head.embedding_dim or 0), np.float32)
        return {EMBEDDING_COLUMN: embedding_array(vectors)}
    raise ConfigError(f"task {head.task} has no output columns in batch-predict; expected one of {', '.join(PREDICT_TASKS)}")


def embedding_array(vectors: np.ndarray) -> Any:
    """[rows, dim] float32 as a pyarrow fixed-size list column (parquet and ``datasets`` read back a
    list<float32> of fixed length ``dim``)."""
    import pyarrow as pa

    dim = int(vectors.shape[1]) if vectors.ndim == 2 else 0
    flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1), type=pa.float32())
    return pa.FixedSizeListArray.from_arrays(flat, dim)


def ENTITY_TYPE() -> Any:  # noqa: N802 - a type, built when pyarrow is imported
    import pyarrow as pa

    return pa.list_(pa.struct([("entity_group", pa.string()), ("score", pa.float32()), ("word", pa.string()),
                               ("start", pa.int32()), ("end", pa.int32())]))


def grouper(head: Head) -> Any:
    """transformers' TokenClassificationPipeline, holding only what its grouping reads (the tokenizer and the
    model config's id2label): its ``gather_pre_entities`` and ``aggregate`` group the tokens, so the entities are
    the ones ``pipeline(aggregation_strategy="simple")`` answers."""
    if head._grouper is None:
        from types import SimpleNamespace

        from transformers import TokenClassificationPipeline

        pipe = TokenClassificationPipeline.__new__(TokenClassificationPipeline)
        pipe.tokenizer = head.tokenizer
        pipe.model = SimpleNamespace(config=SimpleNamespace(id2label=dict(enumerate(head.label_names))))
        head._grouper = pipe
    return head._grouper


def token_entities(head: Head, logits: np.ndarray, texts: list[str]) -> list[list[dict[str, Any]]]:
    """Entities per text from per-token logits ([rows, tokens, labels], padded): the texts are tokenized again
    with offsets (the same truncation as the model's input), the tokens scored by softmax and grouped by
    transformers' own pipeline code."""
    from transformers.pipelines.token_classification import AggregationStrategy

    if not texts:
        return []
    tok = head.tokenizer
    if not getattr(tok, "is_fast", False):
        raise ConfigError(
            f"token classification needs a fast (Rust) tokenizer for the character offsets of its entities, and this "
            f"model's is {type(tok).__name__}; expected a tokenizer.json beside the model: save the tokenizer with "
            "AutoTokenizer(..., use_fast=True)"
        )
    enc = tok(texts, truncation=True, max_length=head.max_length, return_special_tokens_mask=True,
              return_offsets_mapping=True, return_attention_mask=False)
    pipe = grouper(head)
    strategy = AggregationStrategy.SIMPLE
    out = []
    for i, text in enumerate(texts):
        ids = np.asarray(enc["input_ids"][i])
        row = np.asarray(logits[i][: len(ids)], dtype=np.float32)
        shifted = np.exp(row - row.max(axis=-1, keepdims=True))
        scores = shifted / shifted.sum(axis=-1, keepdims=True)
        pre = pipe.gather_pre_entities(text, ids, scores, enc["offset_mapping"][i],
                                       np.asarray(enc["special_tokens_mask"][i]), strategy)
        grouped = pipe.aggregate(pre, strategy)
        out.append([
            {"entity_group": str(e["entity_group"]), "score": float(e["score"]), "word": str(e["word"]),
             "start": int(e["start"]), "end": int(e["end"])}
            for e in grouped if e.get("entity_group") not in ("O",)
        ])
    return out


__all__ = ["Head", "make_head", "check_task_options", "task_columns", "PREDICT_TASKS", "FEATURE_EXTRACTION"]
