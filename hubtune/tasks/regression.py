"""regression: one value per text (or text pair) from a one-output sequence head (``problem_type`` regression,
``num_labels`` 1 as transformers reads it). Training data: ``text`` [``text_pair``] and a float ``label``;
batch-predict writes ``score`` (the value, no label); two runs agree on a row when their values are within 1%."""

from __future__ import annotations

import math
from typing import Any, Sequence


from hubtune.core.errors import LabelError
from hubtune.core.metrics import REGRESSION_KEYS, regression_metrics
from hubtune.data.labels import is_missing
from hubtune.tasks.base import PROBLEM_TYPES, REGRESSION
from hubtune.tasks.text_classification import SequenceTask, sequence_pipeline

ROW_TOLERANCE = 1e-2  # a row agrees when its value is within 1% (of max(1, |value|))


def regression_values(raw: Sequence[Any], source: str, column: str) -> list[float]:
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


class Regression(SequenceTask):
    name = REGRESSION
    description = "one value per text (a one-output head)"
    problem_type = PROBLEM_TYPES[REGRESSION]
    recipe = "head"
    has_labels = False
    summary_keys = REGRESSION_KEYS
    best_metric = ("mse", False)
    gate_metrics = ("pearson", "spearman", "r2")  # errors (mse, mae, rmse) are smaller-is-better: no --min-metric
    agrees = "the same value to 1%"
    argmax_labels = False
    card_name = "Text Regression"
    usage = ('pipe = pipeline("text-classification", model="{repo}")\n'
             'pipe("{example}", function_to_apply="none")[0]["score"]  # the predicted value')

    def head_kwargs(self, label_names: list[str]) -> dict[str, Any]:
        return {"num_labels": 1, "problem_type": "regression", "id2label": {0: "LABEL_0"}, "label2id": {"LABEL_0": 0}}

    def label_names(self, config: Any) -> list[str]:
        return ["value"]


    def check_raw(self, ds: Any, dc: Any, source: str) -> None:
        from hubtune.data.dataset import resolve_columns

        cols = resolve_columns(ds.column_names, text_column=dc.text_column, text_pair_column=dc.text_pair_column,
                               label_column=dc.label_column)
        regression_values(ds[cols.label], source, str(cols.label))

    def normalise(self, ds: Any, dc: Any, source: str, names: list[str] | None) -> Any:
        from hubtune.data.examples import sequence_examples

        def labels(raw: Sequence[Any], feature: Any, column: str) -> tuple[str, Any, list[str]]:
            return "label", regression_values(raw, source, column), ["value"]

        return sequence_examples(ds, dc, source, labels)

    def metrics(self, outputs: Any, ds: Any, label_names: list[str], *, tokenizer: Any = None,
                max_length: int = 512, threshold: float = 0.5) -> dict[str, Any]:
        import numpy as np

        out = regression_metrics(ds["label"], np.asarray(outputs)[:, 0])
        out["task"] = self.name
        return out

    def eval_metrics(self, logits: Any, labels: Any, label_names: list[str]) -> dict[str, Any]:
        import numpy as np

        return regression_metrics(labels, np.asarray(logits).reshape(-1))

    def agreement(self, candidate: Any, reference: Any, logit_threshold: float = 0.0) -> float:
        import numpy as np

        r, f = candidate.reshape(len(candidate), -1)[:, 0], reference.reshape(len(reference), -1)[:, 0]
        return float((np.abs(r - f) <= ROW_TOLERANCE * np.maximum(1.0, np.abs(f))).mean())

    def columns(self, head: Any, logits: Any, texts: list[str]) -> dict[str, Any]:
        import numpy as np

        import pyarrow as pa

        values = np.asarray(logits, dtype=np.float32)[:, 0] if len(logits) else np.zeros(0, np.float32)
        return {"score": pa.array(values, type=pa.float32())}

    def pipeline_answers(self, model_ref: str, texts: list[str], revision: str | None, threshold: float) -> dict[str, Any]:
        rows = sequence_pipeline(model_ref, revision)(texts, function_to_apply="none", batch_size=16)
        return {"pytorch": ["" for _ in rows], "pytorch_scores": [[float(r["score"])] for r in rows]}

    def logits_answer(self, logits: Any, mask: Any, names: list[str], threshold: float) -> tuple[list[str], list[Any]]:
        return ["" for _ in logits], [[float(r[0])] for r in logits]
