"""multi-label-classification: any number of labels per text, a sigmoid per label over ``--threshold``.

Training data: ``text`` [``text_pair``] and a label column holding a list per row (``["sports", "politics"]``)
or a delimited string (``"sports,politics"``, ``data.label_delimiter``) -> a multi-hot ``labels`` vector, one
slot per name (the sorted union). batch-predict writes ``labels`` (a list) and ``score_<label>`` per label."""

from __future__ import annotations

from typing import Any, Sequence


from hubtune.core.errors import ConfigError, LabelError
from hubtune.core.metrics import MULTI_LABEL_KEYS, multilabel_metrics, sigmoid
from hubtune.data.labels import is_missing
from hubtune.tasks.base import MULTI_LABEL, PROBLEM_TYPES
from hubtune.tasks.text_classification import SequenceTask, sequence_pipeline

DEFAULT_THRESHOLD = 0.5


def split_labels(value: Any, delimiter: str) -> list[str]:
    """One row's labels: a list as is, a delimited string split (empty parts dropped), nothing for a missing one."""
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if not is_missing(v)]
    if is_missing(value):
        return []
    return [p.strip() for p in str(value).split(delimiter) if p.strip()]


def names_of(feature: Any) -> list[str] | None:
    """The class names of a ClassLabel feature, or of the ClassLabel inside a list feature."""
    inner = getattr(feature, "feature", feature)
    names = getattr(inner, "names", None)
    return list(names) if names else None


def multi_hot(raw: Sequence[Any], feature: Any, names: list[str] | None, delimiter: str, source: str,
              column: str) -> tuple[list[list[float]], list[str]]:
    own = names_of(feature)
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


class MultiLabelClassification(SequenceTask):
    name = MULTI_LABEL
    description = "any number of labels per text (a sigmoid per label over --threshold)"
    problem_type = PROBLEM_TYPES[MULTI_LABEL]
    recipe = "head"
    summary_keys = MULTI_LABEL_KEYS
    best_metric = ("f1_micro", True)
    main_metric = "f1_micro"
    main_metric_name = "micro F1"
    gate_metrics = summary_keys
    list_column = "labels"
    agrees = "the same labels over 0.5"
    argmax_labels = False
    card_name = "Multi-label Text Classification"
    usage = ('pipe = pipeline("text-classification", model="{repo}")\n'
             'pipe("{example}", function_to_apply="sigmoid", top_k=None)  # a score per label; labels >= 0.5 apply')
    threshold = DEFAULT_THRESHOLD

    def normalise(self, ds: Any, dc: Any, source: str, names: list[str] | None) -> Any:
        from hubtune.data.examples import sequence_examples

        def labels(raw: Sequence[Any], feature: Any, column: str) -> tuple[str, Any, list[str]]:
            hot, label_names = multi_hot(raw, feature, names, dc.label_delimiter, source, column)
            return "labels", hot, label_names

        return sequence_examples(ds, dc, source, labels)

    def metrics(self, outputs: Any, ds: Any, label_names: list[str], *, tokenizer: Any = None,
                max_length: int = 512, threshold: float = DEFAULT_THRESHOLD) -> dict[str, Any]:
        import numpy as np

        out = multilabel_metrics(np.asarray(ds["labels"]), sigmoid(outputs), label_names, threshold)
        out["task"] = self.name
        return out

    def eval_metrics(self, logits: Any, labels: Any, label_names: list[str]) -> dict[str, Any]:
        import numpy as np

        return multilabel_metrics(np.asarray(labels), sigmoid(np.asarray(logits)), label_names)

    def agreement(self, candidate: Any, reference: Any, logit_threshold: float = 0.0) -> float:
        return float(((candidate > logit_threshold) == (reference > logit_threshold)).all(-1).mean())

    def check_predict_options(self, long_text: str, pair_column: str | None, threshold: float | None) -> None:
        super().check_predict_options(long_text, pair_column, None)
        if threshold is not None and not 0.0 <= threshold <= 1.0:
            raise ConfigError(f"--threshold must be between 0 and 1 (a sigmoid score), found {threshold}")

    def columns(self, head: Any, logits: Any, texts: list[str]) -> dict[str, Any]:
        import numpy as np

        import pyarrow as pa

        names = head.label_names or [str(i) for i in range(logits.shape[-1] if len(logits) else 0)]
        probs = sigmoid(np.asarray(logits)) if len(logits) else np.zeros((0, len(names)), np.float32)
        threshold = DEFAULT_THRESHOLD if head.threshold is None else head.threshold
        cols: dict[str, Any] = {
            "labels": pa.array([[names[j] for j in np.flatnonzero(row > threshold)] for row in probs],
                               type=pa.list_(pa.string()))
        }
        for j, name in enumerate(names):
            cols[f"score_{name}"] = pa.array(probs[:, j], type=pa.float32())
        return cols

    def pipeline_answers(self, model_ref: str, texts: list[str], revision: str | None, threshold: float) -> dict[str, Any]:
        pipe = sequence_pipeline(model_ref, revision)
        rows = pipe(texts, function_to_apply="sigmoid", top_k=None, batch_size=16)
        names = list(pipe.model.config.id2label.values())
        scores = [[float({r["label"]: r["score"] for r in row}[n]) for n in names] for row in rows]
        return {"pytorch": [",".join(n for n, p in zip(names, s) if p >= threshold) for s in scores],
                "pytorch_scores": scores}

    def logits_answer(self, logits: Any, mask: Any, names: list[str], threshold: float) -> tuple[list[str], list[Any]]:
        import numpy as np

        sig = 1.0 / (1.0 + np.exp(-logits))
        return ([",".join(n for n, p in zip(names, row) if p >= threshold) for row in sig],
                [[float(p) for p in row] for row in sig])
