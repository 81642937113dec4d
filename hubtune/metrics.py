"""Classification metrics computed locally with scikit-learn (``evaluate.load`` needs the Hub).

One function serves ``train`` (per-epoch eval), ``evaluate`` and ``batch-predict``, so their numbers agree.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

SUMMARY_KEYS = ("accuracy", "f1_macro", "f1_micro", "precision_macro", "recall_macro", "roc_auc")


def softmax(logits: np.ndarray) -> np.ndarray:
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


def summary(metrics: dict[str, Any]) -> dict[str, float]:
    """The scalar metrics only (for tables, gates and model-index)."""
    return {k: metrics[k] for k in SUMMARY_KEYS if k in metrics}


def format_table(metrics: dict[str, Any]) -> str:
    """A plain-text report: scalar metrics, per-class table and confusion matrix."""
    lines = [f"{k:<16} {v:.4f}" for k, v in summary(metrics).items()]
    if metrics.get("metric_modules"):  # evaluate modules (--metric)
        from hubtune.metric_modules import flat

        lines += [f"{k:<16} {v:.4f}" for k, v in flat(metrics["metric_modules"]).items()]
    lines.append(f"{'examples':<16} {metrics.get('num_examples', 0)}")
    names = metrics.get("labels", [])
    if names:
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
