"""Classification metrics computed locally with scikit-learn (``evaluate.load`` needs the Hub).

One function serves ``train`` (per-epoch eval), ``evaluate`` and ``batch-predict``, so their numbers agree.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:  # numpy is imported where it runs: listing the tasks stays light
    import numpy as np


SUMMARY_KEYS = ("accuracy", "f1_macro", "f1_micro", "precision_macro", "recall_macro", "roc_auc")
# the scalar metrics of the tasks beside single-label classification (hubtune.train.taskrun)
MULTI_LABEL_KEYS = ("f1_micro", "f1_macro", "subset_accuracy", "precision_micro", "recall_micro")
REGRESSION_KEYS = ("mse", "mae", "rmse", "pearson", "spearman", "r2")
TOKEN_KEYS = ("precision", "recall", "f1", "accuracy")  # entity-level (seqeval), then token accuracy
TASK_SUMMARY_KEYS = {"multi-label-classification": MULTI_LABEL_KEYS, "regression": REGRESSION_KEYS,
                     "token-classification": TOKEN_KEYS}
ALL_SUMMARY_KEYS = tuple(dict.fromkeys(SUMMARY_KEYS + tuple(k for ks in TASK_SUMMARY_KEYS.values() for k in ks)))


def softmax(logits: np.ndarray) -> np.ndarray:
    import numpy as np

    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def classification_metrics(
    y_true: Sequence[int] | np.ndarray,
    y_pred: Sequence[int] | np.ndarray,
    label_names: Sequence[str],
    probs: np.ndarray | None = None,
) -> dict[str, Any]:
    """accuracy, macro/micro F1, macro precision/recall, per-class report, confusion matrix; ROC-AUC if binary."""
    import numpy as np

    from sklearn.metrics import (
        accuracy_score,
        confusion_matrix,
        precision_recall_fscore_support,
        roc_auc_score,
    )

    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    labels = list(range(len(label_names)))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    pm, rm, fm, _ = precision_recall_fscore_support(y_true, y_pred, labels=labels, average="macro", zero_division=0)
    _, _, fmi, _ = precision_recall_fscore_support(y_true, y_pred, labels=labels, average="micro", zero_division=0)
    out: dict[str, Any] = {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "f1_macro": float(fm),
        "f1_micro": float(fmi),
        "precision_macro": float(pm),
        "recall_macro": float(rm),
        "num_examples": int(len(y_true)),
    }
    if len(label_names) == 2 and probs is not None and len(set(y_true.tolist())) == 2:
        out["roc_auc"] = float(roc_auc_score(y_true, np.asarray(probs)[:, 1]))
    out["per_class"] = {
        name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
        for i, name in enumerate(label_names)
    }
    out["confusion_matrix"] = confusion_matrix(y_true, y_pred, labels=labels).tolist()
    out["labels"] = list(label_names)
    majority = int(np.bincount(y_true, minlength=len(labels)).max()) if len(y_true) else 0
    out["majority_rate"] = float(majority / len(y_true)) if len(y_true) else 0.0
    return out


def sigmoid(logits: np.ndarray) -> np.ndarray:
    import numpy as np

    return 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))


def multilabel_metrics(y_true: np.ndarray, probs: np.ndarray, label_names: Sequence[str],
                       threshold: float = 0.5) -> dict[str, Any]:
    """Multi-label classification (scikit-learn): micro/macro F1, micro precision/recall, subset accuracy (every label
    of a row right), per label; a label is predicted where its sigmoid probability is >= ``threshold``."""
    import numpy as np

    from sklearn.metrics import accuracy_score, precision_recall_fscore_support

    y_true = np.asarray(y_true).astype(np.int64)
    y_pred = (np.asarray(probs) >= threshold).astype(np.int64)
    pmi, rmi, fmi, _ = precision_recall_fscore_support(y_true, y_pred, average="micro", zero_division=0)
    _, _, fma, _ = precision_recall_fscore_support(y_true, y_pred, average="macro", zero_division=0)
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, average=None, zero_division=0)
    return {
        "f1_micro": float(fmi), "f1_macro": float(fma), "subset_accuracy": float(accuracy_score(y_true, y_pred)),
        "precision_micro": float(pmi), "recall_micro": float(rmi), "threshold": float(threshold),
        "num_examples": int(len(y_true)), "labels": list(label_names),
        "per_class": {n: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
                      for i, n in enumerate(label_names)},
    }


def regression_metrics(y_true: Sequence[float], y_pred: Sequence[float]) -> dict[str, Any]:
    """Regression: MSE, MAE, RMSE, R2 (scikit-learn), Pearson and Spearman correlation (scipy); a correlation
    of constant predictions is undefined and reported as 0.0."""
    import numpy as np

    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    t = np.asarray(y_true, dtype=np.float64).reshape(-1)
    p = np.asarray(y_pred, dtype=np.float64).reshape(-1)
    mse = float(mean_squared_error(t, p))

    def corr(fn: Any) -> float:
        if len(t) < 2 or np.ptp(t) == 0 or np.ptp(p) == 0:
            return 0.0
        return float(fn(t, p)[0])

    return {"mse": mse, "mae": float(mean_absolute_error(t, p)), "rmse": float(np.sqrt(mse)),
            "pearson": corr(pearsonr), "spearman": corr(spearmanr),
            "r2": float(r2_score(t, p)) if len(t) > 1 else 0.0, "num_examples": int(len(t))}


def token_metrics(true_tags: list[list[str]], pred_tags: list[list[str]]) -> dict[str, Any]:
    """Token classification, entity level as seqeval computes it (conlleval's rules, micro average over
    entities): precision, recall, F1, token accuracy, per entity type."""
    from seqeval.metrics import accuracy_score, classification_report, f1_score, precision_score, recall_score

    report = classification_report(true_tags, pred_tags, output_dict=True, zero_division=0)
    per_type = {k: {"precision": float(v["precision"]), "recall": float(v["recall"]), "f1": float(v["f1-score"]),
                    "support": int(v["support"])} for k, v in report.items() if not k.endswith(" avg")}
    return {
        "precision": float(precision_score(true_tags, pred_tags, zero_division=0)),
        "recall": float(recall_score(true_tags, pred_tags, zero_division=0)),
        "f1": float(f1_score(true_tags, pred_tags, zero_division=0)),
        "accuracy": float(accuracy_score(true_tags, pred_tags)),
        "num_examples": len(true_tags),
        "num_entities": int(sum(v["support"] for v in per_type.values())),
        "per_entity": per_type,
    }


def summary(metrics: dict[str, Any], task: Any = None) -> dict[str, float]:
    """The scalar metrics only (for tables, gates and model-index); ``task``: that task's (its object's
    ``summary_keys``, or its name), else a classifier's (or, for a metrics dict that names its task, that task's)."""
    task = task or metrics.get("task")
    keys = getattr(task, "summary_keys", None) or TASK_SUMMARY_KEYS.get(str(task or ""), SUMMARY_KEYS)
    return {k: metrics[k] for k in keys if k in metrics}


def format_table(metrics: dict[str, Any]) -> str:
    """A plain-text report: scalar metrics, per-class table and confusion matrix."""
    lines = [f"{k:<16} {v:.4f}" for k, v in summary(metrics).items()]
    if metrics.get("metric_modules"):  # evaluate modules (--metric)
        from hubtune.core.metric_modules import flat

        lines += [f"{k:<16} {v:.4f}" for k, v in flat(metrics["metric_modules"]).items()]
    lines.append(f"{'examples':<16} {metrics.get('num_examples', 0)}")
    names = metrics.get("labels", [])
    if names and "confusion_matrix" in metrics:
        w = max(10, *(len(n) for n in names)) + 1
        lines.append("")
        lines.append(f"{'label':<{w}} precision  recall     f1  support")
        for n in names:
            c = metrics["per_class"][n]
            lines.append(f"{n:<{w}} {c['precision']:9.4f} {c['recall']:7.4f} {c['f1']:6.4f} {c['support']:8d}")
        lines.append("")
        lines.append("confusion matrix (rows = true, columns = predicted)")
        lines.append(" " * w + " ".join(f"{n[:8]:>8}" for n in names))
        for n, row in zip(names, metrics["confusion_matrix"]):
            lines.append(f"{n:<{w}}" + " ".join(f"{v:8d}" for v in row))
    return "\n".join(lines)
