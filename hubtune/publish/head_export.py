"""The export gates of the tasks beside single-label classification, beside the classifiers' in
:mod:`hubtune.publish.export`: multi-label classification and regression (the sequence classifier's ``logits``) and token
classification (``logits`` per token), each graph in Optimum's layout and judged by what the task answers, on
real examples: the run's held-out split (or ``--eval-dataset``, normalised as ``train`` reads that task's data),
else hubtune's reference texts (token classification: their words).

* fp32 ``model.onnx``: max |logit diff| <= ``tolerance`` and 100% agreement: the same labels over the 0.5
  threshold (multi-label), the same value to 1% (regression), the same tag on every word of the example (token
  classification: the same entities);
* optimized / int8 variants: that agreement >= ``min_variant_agreement``, and on labeled examples a drop of the
  task's main metric (multi-label micro F1, entity F1) of at most ``max_accuracy_drop_pt`` points.

Imports `config`, `errors`, `metrics`, `parity`, `rundir`, `taskdata`, `taskeval`, `tasks`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from hubtune.core.errors import EmptyDatasetError
from hubtune.core.metrics import summary
from hubtune.core.parity import REFERENCE_TEXTS
from hubtune.tasks.registry import get_task
CALIBRATION_ROWS = 256


@dataclass
class TaskExamples:
    """The examples a task's graph is judged on: ``ds`` normalised for the task (``text`` [``text_pair``]
    [``labels`` / ``label``], or ``tokens`` + ``tags``), whether it carries real labels, and real texts to
    calibrate int8 on (the run's training texts where there are)."""

    ds: Any
    labeled: bool
    source: str
    texts: list[str]
    calibration: list[str]
    calibration_source: str


def _texts_of(ds: Any) -> list[str]:
    if "tokens" in ds.column_names:
        return [" ".join(t) for t in ds["tokens"]]
    return list(ds["text"])


def _unlabeled(task: str, texts: list[str], source: str) -> TaskExamples:
    ds = get_task(task).unlabeled(texts)
    k = min(CALIBRATION_ROWS, len(texts))
    return TaskExamples(ds, False, source, _texts_of(ds), _texts_of(ds)[:k], f"{k} texts of {source}")


def task_examples(task: str, run: Any, label_names: list[str], *, override: str | None = None,
                  max_examples: int | None = None) -> TaskExamples:
    """The examples to judge ``task``'s graph on (see the module docstring)."""
    from hubtune.core.config import DataConfig, from_dict
    from hubtune.core.rundir import resolve_local_spec, task_eval_examples
    from hubtune.data.examples import load_task_labeled, load_task_train_eval

    spec = get_task(task)
    names = label_names if spec.has_labels else None
    if run is None or not run.data_config.get("dataset"):
        if not override:
            return _unlabeled(task, list(REFERENCE_TEXTS), "built-in reference texts")
        data = load_task_labeled(override, DataConfig(dataset=override), spec, names, max_samples=max_examples)
        return _labeled(data.dataset, override)
    data, role, spec = task_eval_examples(run, task, names, override)
    ds = data.dataset
    if max_examples is not None and len(ds) > max_examples:
        ds = ds.select(range(max_examples))
    ex = _labeled(ds, f"{spec or run.data_config['dataset']} ({role})")
    try:  # int8 calibration on training texts, never the gate's
        dc = dict(run.data_config)
        for key in ("dataset", "eval_dataset"):
            if dc.get(key):
                dc[key] = resolve_local_spec(str(dc[key]), run.root)
        train = load_task_train_eval(from_dict(DataConfig, dc), spec).train.dataset
        train = train.select(range(min(CALIBRATION_ROWS, len(train))))
        ex.calibration = _texts_of(train)
        ex.calibration_source = f"{len(train)} training texts of {run.data_config['dataset']}"
    except Exception:  # noqa: BLE001 - training data gone or moved: calibrate on the gate's texts (said so)
        pass
    return ex


def _labeled(ds: Any, source: str) -> TaskExamples:
    if not len(ds):
        raise EmptyDatasetError(f"{source} has no examples to check the ONNX graph on; expected at least one row "
                                "(pass another --eval-dataset)")
    texts = _texts_of(ds)
    k = min(CALIBRATION_ROWS, len(texts))
    return TaskExamples(ds, True, source, texts, texts[:k], f"{k} texts of {source} (no training data found)")


def task_outputs_of(task: str, model: Any, tokenizer: Any, ex: TaskExamples, max_length: int, batch_size: int,
                    device: str | None = None) -> Any:
    """What ``model`` (PyTorch, or an ONNX graph with ``device="cpu"``) answers on the examples."""
    return get_task(task).outputs(model, tokenizer, ex.ds, max_length, batch_size=batch_size, device=device)


def flat(task: str, outputs: Any) -> np.ndarray:
    """The outputs as one array, a row per example: [examples, labels]; token classification [examples, words,
    labels], zeros after each example's words, so an example agrees when every word's tag does (its entities)."""
    return get_task(task).padded(outputs)


def task_gate_metrics(task: str, outputs: Any, ex: TaskExamples, label_names: list[str], tokenizer: Any,
                      max_length: int) -> dict[str, Any] | None:
    """The task's scalar metrics on labeled examples (None on unlabeled ones)."""
    if not ex.labeled:
        return None
    spec = get_task(task)
    m = spec.metrics(outputs, ex.ds, label_names, tokenizer=tokenizer, max_length=max_length)
    out: dict[str, Any] = dict(summary(m, spec))
    out["num_examples"] = m.get("num_examples", len(ex.ds))
    return out


def metric_drop(task: str, reference: dict[str, Any] | None, candidate: dict[str, Any] | None) -> float | None:
    """Points of the task's main metric lost by a variant (None where it has none: regression, unlabeled)."""
    key = get_task(task).main_metric
    if key is None or not reference or not candidate or key not in reference or key not in candidate:
        return None
    return round(100.0 * (reference[key] - candidate[key]), 3)
