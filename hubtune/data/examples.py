"""Labeled examples of a task that normalises its own data (:meth:`hubtune.tasks.base.Task.normalise`: multi-label,
regression, token classification, a registered one): the train and eval splits of a training config, and one
spec (a test split, a card's examples) normalised onto a model's label names.

Each returns :class:`hubtune.data.dataset.TrainEvalData` / ``LoadedData`` whose datasets hold the task's
normalised columns; the label names are in id order; the eval split is ``data.eval_dataset`` or carved from the
data (``data.validation_split``, not stratified). ``task`` is any object with ``normalise``, ``check_raw`` and
``has_labels`` (nothing here imports the tasks). Imports ``data.dataset``, ``errors``."""

from __future__ import annotations

from typing import Any, Callable, Sequence

from hubtune.core.errors import EmptyDatasetError
from hubtune.data.dataset import (LoadedData, TrainEvalData, check_texts, limit_rows, open_dataset, parse_spec,
                                  resolve_columns)


def check_rows(ds: Any, source: str) -> None:
    if len(ds) == 0:
        raise EmptyDatasetError(f"dataset {source} has no rows; expected at least one example (check the spec or --limit)")


def sequence_examples(ds: Any, dc: Any, source: str,
                      labels: Callable[[Sequence[Any], Any, str], tuple[str, Any, list[str]]]) -> LoadedData:
    """``text`` [``text_pair``] and the label column the task makes of the raw one (``labels(raw, feature,
    column)`` -> (its name, its values, the label names))."""
    check_rows(ds, source)
    cols = resolve_columns(ds.column_names, text_column=dc.text_column, text_pair_column=dc.text_pair_column,
                           label_column=dc.label_column)
    assert cols.label is not None
    check_texts(ds[cols.text], cols.text, source)
    keep = {cols.text: "text", **({cols.text_pair: "text_pair"} if cols.text_pair else {})}
    raw = ds[cols.label]
    out = ds.select_columns(list(keep)).rename_columns(keep)
    name, values, label_names = labels(raw, ds.features.get(cols.label), cols.label)
    out = out.add_column(name, values)
    return LoadedData(dataset=out, label_names=label_names, columns=cols, source=source)


def load_task_train_eval(dc: Any, task: Any) -> TrainEvalData:
    """Train and eval examples of ``task`` for a :class:`hubtune.core.config.DataConfig`."""
    ds = open_dataset(parse_spec(dc.dataset), encoding=dc.encoding, default_split="train")
    check_rows(ds, dc.dataset)
    task.check_raw(ds, dc, dc.dataset)  # before the shuffle: a bad value is named by its row in the file
    train = task.normalise(limit_rows(ds, dc.max_samples, dc.seed), dc, dc.dataset, None)
    names = train.label_names if task.has_labels else None
    if dc.eval_dataset:
        ev_raw = open_dataset(parse_spec(dc.eval_dataset), encoding=dc.encoding, default_split="validation")
        check_rows(ev_raw, dc.eval_dataset)
        ev = task.normalise(limit_rows(ev_raw, dc.eval_max_samples, dc.seed), dc, dc.eval_dataset, names)
        eval_source = dc.eval_dataset
    else:
        if len(train) < 4:
            raise EmptyDatasetError(
                f"dataset {dc.dataset} has {len(train)} rows, too few to carve a validation split; "
                "expected at least 4 rows or pass --eval-dataset"
            )
        parts = train.dataset.train_test_split(test_size=dc.validation_split, seed=dc.seed)
        ev_ds = parts["test"]
        if dc.eval_max_samples is not None and dc.eval_max_samples < len(ev_ds):
            ev_ds = ev_ds.select(range(dc.eval_max_samples))
        ev = LoadedData(ev_ds, train.label_names, train.columns, f"{dc.dataset} (validation_split={dc.validation_split})")
        train = LoadedData(parts["train"], train.label_names, train.columns, dc.dataset)
        eval_source = "validation_split"
    sizes = {"train": len(train), "eval": len(ev)}
    return TrainEvalData(train=train, eval=ev, label_names=train.label_names, eval_source=eval_source, sizes=sizes)


def load_task_labeled(spec: str, dc: Any, task: Any, label_names: list[str] | None, *,
                      max_samples: int | None = None, default_split: str = "test") -> LoadedData:
    """One spec (a test split, the card's examples) normalised for ``task`` onto the model's ``label_names``
    (ignored for a task without labels)."""
    ds = open_dataset(parse_spec(spec), encoding=dc.encoding, default_split=default_split)
    check_rows(ds, spec)
    ds = limit_rows(ds, max_samples, dc.seed) if max_samples is not None else ds
    return task.normalise(ds, dc, spec, label_names if task.has_labels else None)
