"""Training data for the tasks beside single-label classification: multi-label classification, regression and
token classification (``task: multi-label-classification | regression | token-classification``).

Each loader returns a :class:`hubtune.data.dataset.TrainEvalData` whose datasets hold normalised columns:

``multi-label-classification``  ``text`` [``text_pair``] ``labels`` (a multi-hot float vector, one slot per name)
                                read from a list column (``["sports", "politics"]``) or a delimited string
                                (``"sports,politics"``, ``data.label_delimiter``)
``regression``                  ``text`` [``text_pair``] ``label`` (a float)
``token-classification``        ``tokens`` (a list of words) ``tags`` (a list of tag ids, as conll2003 has:
                                strings such as ``B-PER``, or integers with the feature's names)

The label names (multi-label: the sorted union; token classification: the tag names) are in id order; the
eval split is ``data.eval_dataset`` or carved from the data (``data.validation_split``, not stratified).
Imports ``data``, ``errors``.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from hubtune.data.dataset import (
    ColumnMap,
    LoadedData,
    TrainEvalData,
    open_dataset,
    parse_spec,
    resolve_columns,
)
from hubtune.core.errors import ColumnNotFoundError, DataError, EmptyDatasetError, LabelError
from hubtune.data.labels import is_missing

TASK_TASKS = ("multi-label-classification", "regression", "token-classification")
TOKEN_CANDIDATES = ("tokens", "words", "token")
TAG_CANDIDATES = ("ner_tags", "tags", "labels", "label", "pos_tags", "chunk_tags")


def _names_of(feature: Any) -> list[str] | None:
    """The class names of a ClassLabel feature, or of the ClassLabel inside a list feature."""
    inner = getattr(feature, "feature", feature)
    names = getattr(inner, "names", None)
    return list(names) if names else None


def _check_rows(ds: Any, source: str) -> None:
    if len(ds) == 0:
        raise EmptyDatasetError(f"dataset {source} has no rows; expected at least one example (check the spec or --limit)")


def _limit(ds: Any, n: int | None, seed: int) -> Any:
    ds = ds.shuffle(seed=seed)
    return ds.select(range(n)) if n is not None and n < len(ds) else ds


# --------------------------------------------------------------------------------------------------
# Sequence tasks: multi-label and regression
# --------------------------------------------------------------------------------------------------
def split_labels(value: Any, delimiter: str) -> list[str]:
    """One row's labels: a list as is, a delimited string split (empty parts dropped), nothing for a missing one."""
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if not is_missing(v)]
    if is_missing(value):
        return []
    return [p.strip() for p in str(value).split(delimiter) if p.strip()]


def _multi_hot(raw: Sequence[Any], feature: Any, names: list[str] | None, delimiter: str, source: str,
               column: str) -> tuple[list[list[float]], list[str]]:
    own = _names_of(feature)
    rows = [[own[v] if own and isinstance(v, int) else v for v in split_labels(r, delimiter)] if isinstance(r, (list, tuple))
            else split_labels(r, delimiter) for r in raw]
    rows = [[str(v) for v in r] for r in rows]
    if names is None:
        names = own or sorted({v for r in rows for v in r})
    if len(names) < 2:
        raise LabelError(
            f"{source}: label column '{column}' holds {len(names)} distinct label(s) ({', '.join(names) or 'none'}); "
            "expected at least 2 labels for multi-label classification (a list per row, or labels joined by "
            f"{delimiter!r}: set --label-delimiter or --label-column)"
        )
    index = {n: i for i, n in enumerate(names)}
    unseen = sorted({v for r in rows for v in r if v not in index})
    if unseen:
        raise LabelError(
            f"{source} has labels the training data does not: {', '.join(map(repr, unseen[:5]))}; expected labels "
            f"among {', '.join(names)} (train on data that has them, or fix --label-column / --label-delimiter)"
        )
    hot = []
    for r in rows:
        vec = [0.0] * len(names)
        for v in r:
            vec[index[v]] = 1.0
        hot.append(vec)
    return hot, names


def _regression_values(raw: Sequence[Any], source: str, column: str) -> list[float]:
    out: list[float] = []
    bad: list[int] = []
    for i, v in enumerate(raw):
        try:
            if isinstance(v, bool) or isinstance(v, (list, tuple, dict)) or is_missing(v):
                raise ValueError
            f = float(v)
            if not math.isfinite(f):
                raise ValueError
            out.append(f)
        except (TypeError, ValueError):
            bad.append(i)
    if bad:
        raise LabelError(
            f"{source}: {len(bad)} row(s) of '{column}' are not finite numbers (first at row {bad[0] + 1}: "
            f"{raw[bad[0]]!r}); expected a number in every row for task regression: fix those rows or pick another "
            "--label-column"
        )
    return out


def _normalise_sequence(ds: Any, task: str, dc: Any, source: str, names: list[str] | None) -> LoadedData:
    _check_rows(ds, source)
    cols = resolve_columns(ds.column_names, text_column=dc.text_column, text_pair_column=dc.text_pair_column,
                           label_column=dc.label_column)
    assert cols.label is not None
    texts = ds[cols.text]
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str) or not t.strip()]
    if bad:
        raise DataError(
            f"{source}: {len(bad)} rows have an empty or non-string '{cols.text}' (first at row {bad[0]}); "
            "expected text in every row: clean the data or pick another --text-column"
        )
    keep = {cols.text: "text", **({cols.text_pair: "text_pair"} if cols.text_pair else {})}
    raw = ds[cols.label]
    out = ds.select_columns(list(keep)).rename_columns(keep)
    if task == "regression":
        values = _regression_values(raw, source, cols.label)
        out = out.add_column("label", values)
        label_names = ["value"]
    else:
        hot, label_names = _multi_hot(raw, ds.features.get(cols.label), names, dc.label_delimiter, source, cols.label)
        out = out.add_column("labels", hot)
    return LoadedData(dataset=out, label_names=label_names, columns=cols, source=source)


# --------------------------------------------------------------------------------------------------
# Token classification
# --------------------------------------------------------------------------------------------------
def token_columns(available: Sequence[str], dc: Any) -> ColumnMap:
    """The words column (``tokens``; ``--text-column``) and the tags column (``ner_tags``; ``--label-column``)."""
    cols = list(available)
    lower = {c.lower(): c for c in cols}

    def pick(override: str | None, candidates: Sequence[str], kind: str, flag: str) -> str:
        if override:
            if override not in cols:
                raise ColumnNotFoundError(f"{kind} column '{override}' not found; the dataset has columns: "
                                          f"{', '.join(cols)} (set it with {flag})")
            return override
        found = next((lower[c] for c in candidates if c in lower), None)
        if found is None:
            raise ColumnNotFoundError(
                f"no {kind} column found among: {', '.join(cols) or '(none)'}; expected one of {', '.join(candidates)} "
                f"(a list per row, as conll2003 has; set it with {flag})"
            )
        return found

    words = pick(dc.text_column, TOKEN_CANDIDATES, "words (tokens)", "--text-column")
    tags = pick(dc.label_column, TAG_CANDIDATES, "tags", "--label-column")
    return ColumnMap(text=words, label=tags)


def _normalise_tokens(ds: Any, dc: Any, source: str, names: list[str] | None) -> LoadedData:
    _check_rows(ds, source)
    cols = token_columns(ds.column_names, dc)
    assert cols.label is not None
    words, tags = ds[cols.text], ds[cols.label]
    for i, (w, t) in enumerate(zip(words, tags)):
        if not isinstance(w, (list, tuple)) or not isinstance(t, (list, tuple)):
            raise DataError(
                f"{source}: row {i + 1} of '{cols.text}'/'{cols.label}' is not a list of words and a list of tags "
                f"(found {type(w).__name__}/{type(t).__name__}); expected a list per row for task token-classification "
                "(JSONL or a Hub dataset such as conll2003; --text-column / --label-column)"
            )
        if len(w) != len(t) or not w:
            raise DataError(
                f"{source}: row {i + 1} has {len(w)} words and {len(t)} tags; expected one tag per word (and at least "
                "one word) in every row: fix that row"
            )
    own = _names_of(ds.features.get(cols.label))
    as_str = [[own[v] if own and isinstance(v, int) else str(v) for v in t] for t in tags]
    if names is None:
        names = own or _tag_order({v for t in as_str for v in t})
    index = {n: i for i, n in enumerate(names)}
    unseen = sorted({v for t in as_str for v in t if v not in index})
    if unseen:
        raise LabelError(
            f"{source} has tags the training data does not: {', '.join(map(repr, unseen[:5]))}; expected tags among "
            f"{', '.join(names)} (train on data that has them, or fix --label-column)"
        )
    from datasets import Dataset

    out = Dataset.from_dict({"tokens": [[str(x) for x in w] for w in words],
                             "tags": [[index[v] for v in t] for t in as_str]})
    return LoadedData(dataset=out, label_names=list(names), columns=cols, source=source)


def _tag_order(tags: set[str]) -> list[str]:
    """``O`` first, then each entity type's ``B-`` then ``I-`` tag, types in name order (conll2003's style)."""
    def key(t: str) -> tuple[int, str, str]:
        if t == "O":
            return (0, "", "")
        prefix, _, kind = t.partition("-")
        return (1, kind or prefix, prefix if kind else "")
    return sorted(tags, key=key)


# --------------------------------------------------------------------------------------------------
# The loader
# --------------------------------------------------------------------------------------------------
def load_task_train_eval(dc: Any, task: str) -> TrainEvalData:
    """Train and eval examples of ``task`` for a :class:`hubtune.core.config.DataConfig` (see the module docstring)."""
    def norm(ds: Any, source: str, names: list[str] | None) -> LoadedData:
        if task == "token-classification":
            return _normalise_tokens(ds, dc, source, names)
        return _normalise_sequence(ds, task, dc, source, names)

    ds = open_dataset(parse_spec(dc.dataset), encoding=dc.encoding, default_split="train")
    _check_rows(ds, dc.dataset)
    if task == "regression":  # before the shuffle: a bad value is named by its row in the file
        cols = resolve_columns(ds.column_names, text_column=dc.text_column, text_pair_column=dc.text_pair_column,
                               label_column=dc.label_column)
        _regression_values(ds[cols.label], dc.dataset, str(cols.label))
    train = norm(_limit(ds, dc.max_samples, dc.seed), dc.dataset, None)
    names = None if task == "regression" else train.label_names
    if dc.eval_dataset:
        ev_raw = open_dataset(parse_spec(dc.eval_dataset), encoding=dc.encoding, default_split="validation")
        _check_rows(ev_raw, dc.eval_dataset)
        ev = norm(_limit(ev_raw, dc.eval_max_samples, dc.seed), dc.eval_dataset, names)
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


def load_task_labeled(spec: str, dc: Any, task: str, label_names: list[str] | None, *,
                      max_samples: int | None = None, default_split: str = "test") -> LoadedData:
    """One spec (a test split, the card's examples) normalised for ``task`` onto the model's ``label_names``."""
    ds = open_dataset(parse_spec(spec), encoding=dc.encoding, default_split=default_split)
    _check_rows(ds, spec)
    ds = _limit(ds, max_samples, dc.seed) if max_samples is not None else ds
    if task == "token-classification":
        return _normalise_tokens(ds, dc, spec, label_names)
    return _normalise_sequence(ds, task, dc, spec, None if task == "regression" else label_names)
