"""Labels in a dataset (not a step, a part of :mod:`hubtune.data.dataset`): which values are missing, the label names a
column names or implies, and label values turned into the model's ids, with one-line refusals of what cannot be
mapped. Imports `errors`.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any, Sequence

from hubtune.core.errors import LabelError, LabelMismatchError

if TYPE_CHECKING:  # pragma: no cover
    import datasets


# the strings pandas reads as missing (read_csv's default na_values): a label written so is no class
NA_STRINGS = frozenset({
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>", "N/A", "NA",
    "NULL", "NaN", "None", "n/a", "nan", "null",
})


def is_missing(v: Any) -> bool:
    """No label: None, NaN, or a string pandas reads as missing (empty, "NaN", "NA", "null", ...)."""
    return v is None or (isinstance(v, float) and math.isnan(v)) or (isinstance(v, str) and v.strip() in NA_STRINGS)


def check_labels_present(ds: "datasets.Dataset", label_column: str | None, source: str) -> None:
    """Refuse rows without a label, naming them by their position in the data (1-based, header not counted)."""
    if label_column is None or label_column not in ds.column_names:
        return
    missing = [i for i, v in enumerate(ds[label_column]) if is_missing(v)]
    if missing:
        shown = ", ".join(str(i + 1) for i in missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        values = sorted({repr(v) for v in (ds[label_column][i] for i in missing[:100])})[:4]
        raise LabelError(
            f"{source}: {len(missing)} row(s) have no label in '{label_column}' (read as missing: "
            f"{', '.join(values)}) at data row(s) {shown} (counted from 1 after the header); expected a label in every "
            "row: fill or drop those rows, or pick another --label-column"
        )


def label_names_from_feature(feature: Any) -> list[str] | None:
    names = getattr(feature, "names", None)
    return list(names) if names else None


def infer_label_names(values: Sequence[Any], feature: Any) -> list[str]:
    names = label_names_from_feature(feature)
    if names:
        return names
    uniques = set(values)
    if all(isinstance(v, (int,)) and not isinstance(v, bool) for v in uniques):
        if min(uniques) < 0:
            raise LabelError(f"label ids must be >= 0, found {min(uniques)}; map labels to names or ids 0..K-1")
        return [str(i) for i in range(max(uniques) + 1)]
    return sorted(str(v) for v in uniques)


def check_ids_name_classes(values: Sequence[Any], feature: Any, label_names: list[str], source: str) -> None:
    """Bare integer labels (no names) against named classes mean the classes by position only when they are the
    ids 0..K-1 of all K classes; anything else (0/1 against negative/neutral/positive) would be scored as if
    it were, so it is refused. Generic names (LABEL_0, "0") are positional by definition."""
    if label_names_from_feature(feature) or all(re.fullmatch(r"(LABEL_)?\d+", n) for n in label_names):
        return
    ids = {int(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool) and float(v).is_integer()}
    if not ids or len(ids) < len(set(map(str, values))) or ids == set(range(len(label_names))):
        return
    shown = ", ".join(str(i) for i in sorted(ids)[:8])
    raise LabelMismatchError(
        f"{source} has label ids {shown} without names, and the model's labels are {', '.join(label_names)}: "
        "which id means which class cannot be told, so every score would be wrong; expected the model's label "
        f"names, or the ids 0..{len(label_names) - 1} of all {len(label_names)} classes in that order: rewrite "
        "the label column with the names, or pick another --label-column"
    )


def to_ids(values: Sequence[Any], feature: Any, label_names: list[str], source: str, flag_hint: str) -> list[int]:
    index = {n: i for i, n in enumerate(label_names)}
    own_names = label_names_from_feature(feature)
    ids: list[int] = []
    unseen: dict[str, int] = {}
    for v in values:
        if isinstance(v, bool):
            v = int(v)
        if own_names is not None and isinstance(v, int):
            key = own_names[v]
        elif isinstance(v, float) and v.is_integer():
            key = str(int(v))
        else:
            key = str(v)
        if key in index:
            ids.append(index[key])
        elif isinstance(v, int) and 0 <= v < len(label_names) and own_names is None and not any(
            n.isdigit() for n in label_names
        ):
            ids.append(v)
        else:
            unseen[key] = unseen.get(key, 0) + 1
    if unseen:
        shown = ", ".join(f"{k!r} ({n} rows)" for k, n in list(unseen.items())[:5])
        raise LabelError(
            f"{source} has labels the model was not trained on: {shown}; expected one of "
            f"{', '.join(label_names)} ({flag_hint})"
        )
    return ids
