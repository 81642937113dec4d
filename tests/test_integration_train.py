"""MiniLM fine-tuned on a few hundred real tweets beats the majority-class rate; evaluate reproduces it."""

from __future__ import annotations

import json

import pytest

from .conftest import REPO, TWEETS_TEST, run_cli

pytestmark = pytest.mark.slow


def test_quickstart_lora_beats_majority_and_evaluate_reproduces(tmp_path):
    out = tmp_path / "qs"
    res = run_cli("train", "--config", str(REPO / "examples" / "quickstart.yaml"), "-o", str(out),
                  "--limit", "600", "--set", "data.eval_max_samples=300", "--no-progress", "--json",
                  env={"HF_HUB_OFFLINE": "1"})
    assert res.returncode == 0, res.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())["eval"]
    assert metrics["num_examples"] == 300
    assert metrics["accuracy"] > metrics["majority_rate"] + 0.10, metrics
    ev = run_cli("evaluate", "--model", str(out / "model"), "--dataset", str(TWEETS_TEST), "--limit", "300", "--json")
    assert ev.returncode == 0, ev.stderr[-2000:]
    got = json.loads(ev.stdout)["metrics"]
    for k in ("accuracy", "f1_macro", "f1_micro", "precision_macro", "recall_macro", "confusion_matrix", "per_class"):
        assert got[k] == metrics[k], k
