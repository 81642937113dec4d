import numpy as np
import pytest
from sklearn.metrics import f1_score, roc_auc_score

from hubtune.core.metrics import classification_metrics, format_table, summary


def test_binary_metrics_include_roc_auc_and_match_sklearn():
    y = np.array([0, 0, 1, 1, 1, 0])
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.45, 0.55], [0.8, 0.2], [0.2, 0.8]])
    pred = probs.argmax(-1)
    m = classification_metrics(y, pred, ["neg", "pos"], probs)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y, probs[:, 1]))
    assert m["f1_macro"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert m["confusion_matrix"] == [[2, 1], [1, 2]]
    assert m["per_class"]["pos"]["support"] == 3
    assert set(summary(m)) == {"accuracy", "f1_macro", "f1_micro", "precision_macro", "recall_macro", "roc_auc"}


def test_multiclass_has_no_roc_auc_and_counts_unpredicted_classes():
    m = classification_metrics([0, 1, 2, 2], [0, 0, 2, 2], ["a", "b", "c"])
    assert "roc_auc" not in m
    assert m["per_class"]["b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert m["majority_rate"] == 0.5
    assert "confusion matrix" in format_table(m)
