"""Adding a task is adding one module (issue 36): a toy task defined here, registered, runs through
``hubtune train`` -> ``hubtune evaluate`` -> ``hubtune batch-predict`` on torch and on ONNX with no change to any
step's code; and the registry is what the steps and the CLI ask."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from .conftest import REPO

DATA = REPO / "data" / "tasks" / "regression.csv"  # 48 product reviews with a 1-5 score (the regression example)


def _toy_class():
    from hubtune.tasks.regression import Regression

    class ToyPolarity(Regression):
        """A value in (-1, 1) per text: tanh of a one-output head, written as ``polarity``; its checkpoints say
        so in config.json (``hubtune_task``)."""

        name = "toy-polarity"
        description = "tanh of a one-output head"
        card_name = "Toy Polarity"

        def configure(self, config: Any) -> None:
            config.hubtune_task = self.name

        def declares(self, config: dict[str, Any]) -> bool:
            return config.get("hubtune_task") == self.name

        def metrics(self, outputs: Any, ds: Any, label_names: list[str], **kw: Any) -> dict[str, Any]:
            out = super().metrics(outputs, ds, label_names, **kw)
            out["mean_polarity"] = float(np.tanh(np.asarray(outputs)[:, 0]).mean())
            return out

        def columns(self, head: Any, logits: Any, texts: list[str]) -> dict[str, Any]:
            import pyarrow as pa

            values = np.tanh(np.asarray(logits, dtype=np.float32)[:, 0]) if len(logits) else np.zeros(0, np.float32)
            return {"polarity": pa.array(values, type=pa.float32())}

    return ToyPolarity


@pytest.fixture
def toy_task():
    from hubtune.tasks.registry import register, unregister

    task = register(_toy_class()())
    yield task
    unregister(task.name)


def _cli(*args: str) -> tuple[int, str]:
    """The hubtune CLI in this process (the toy task is registered here only)."""
    from typer.testing import CliRunner

    from hubtune.cli.main import app

    res = CliRunner().invoke(app, list(args), catch_exceptions=False)
    return res.exit_code, res.output


def test_a_registered_toy_task_runs_train_evaluate_and_batch_predict(toy_task, tiny_bert_dir, tmp_path, monkeypatch):
    import pyarrow.parquet as pq
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    monkeypatch.setenv("CI", "true")
    run = tmp_path / "run"
    code, out = _cli("train", "--base-model", tiny_bert_dir, "--dataset", str(DATA), "--task", "toy-polarity",
                     "--output-dir", str(run), "--epochs", "1", "--set", "batch_size=8", "--set", "precision=fp32",
                     "--json")
    assert code == 0, out
    config = json.loads((run / "model" / "config.json").read_text())
    assert config["hubtune_task"] == "toy-polarity" and config["problem_type"] == "regression"
    assert json.loads((run / "run_summary.json").read_text())["eval"].keys() >= {"mse", "pearson"}

    code, out = _cli("evaluate", "--model", str(run / "model"), "--dataset", str(DATA), "--json")
    assert code == 0, out
    metrics = json.loads(out)["metrics"]
    assert metrics["task"] == "toy-polarity" and -1.0 < metrics["mean_polarity"] < 1.0

    # the reference: the saved folder's one output through transformers, squashed as the toy task says
    tok = AutoTokenizer.from_pretrained(run / "model")
    model = AutoModelForSequenceClassification.from_pretrained(run / "model").eval()
    texts = [line.rsplit(",", 1)[0].strip('"') for line in DATA.read_text().splitlines()[1:]]
    with torch.inference_mode():
        ref = np.tanh(model(**tok(texts, padding=True, truncation=True, return_tensors="pt")).logits[:, 0].numpy())

    for backend in ("torch", "onnx"):
        pred = tmp_path / f"{backend}.parquet"
        code, out = _cli("batch-predict", "--model", str(run), "--dataset", str(DATA), "--output", str(pred),
                         "--backend", backend, "--task", "toy-polarity", "--json")
        assert code == 0, (backend, out)
        table = pq.read_table(pred)
        assert "polarity" in table.column_names and "label" not in table.column_names, table.column_names
        got = np.asarray(table.column("polarity").to_pylist(), dtype=np.float32)
        assert len(got) == len(texts)
        np.testing.assert_allclose(got, ref, atol=1e-4)


def test_the_registry_is_what_the_cli_lists_and_an_unknown_task_names_it(toy_task, tmp_path):
    from hubtune.tasks.registry import get_task, task_names

    assert "toy-polarity" in task_names(trained=True) and "toy-polarity" in task_names(predicts=True)
    assert get_task("toy-polarity") is toy_task
    code, out = _cli("train", "--base-model", "b", "--dataset", str(DATA), "--task", "no-such-task",
                     "--output-dir", str(tmp_path / "r"))
    assert code not in (0, 70) and "no-such-task" in out and "toy-polarity" in out, out
    assert not (tmp_path / "r").exists()


def test_every_builtin_task_is_one_module_with_the_interface():
    from hubtune.tasks.base import Task
    from hubtune.tasks.registry import REGISTRY

    assert {"text-classification", "multi-label-classification", "regression", "token-classification",
            "feature-extraction", "fill-mask", "text-generation"} <= set(REGISTRY)
    for name, task in REGISTRY.items():
        assert isinstance(task, Task) and task.name == name
        assert Path(type(task).__module__.replace(".", "/") + ".py").parts[:2] == ("hubtune", "tasks")
        if task.predicts:  # batch-predict writes its columns and compares two runs of it
            assert task.one_sequence or task.list_column, name
