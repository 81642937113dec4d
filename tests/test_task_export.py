"""ONNX export of the tasks beside single-label classification (issue 23): multi-label, regression and token
classification graphs in Optimum's layout, gated by what the task answers (labels over the threshold, values,
tags per word), and train-and-push publishing and verifying them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import REPO, run_cli
from tests.test_tasks import multilabel_dir, ner_dir, regression_dir, texts  # noqa: F401 - fixtures

DATA = {"multi-label-classification": REPO / "data" / "tasks" / "multilabel.csv",
        "regression": REPO / "data" / "tasks" / "regression.csv",
        "token-classification": REPO / "data" / "tasks" / "ner.jsonl"}
EXAMPLES = {"multi-label-classification": REPO / "examples" / "multilabel.yaml",
            "regression": REPO / "examples" / "regression.yaml", "token-classification": REPO / "examples" / "ner.yaml"}


def _ort_logits(onnx_dir, batch):
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    names = {i.name for i in sess.get_inputs()}
    return sess.run(["logits"], {k: v for k, v in batch.items() if k in names})[0]


def test_export_of_a_token_classifier_is_its_tags_per_token(ner_dir, tmp_path):  # noqa: F811
    """Reproduced: `hubtune export` of a BertForTokenClassification was exit 70 (a shape error in the gate)."""
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    out = tmp_path / "onnx"
    res = run_cli("export", ner_dir, "--output", str(out), "--quantize", "int8", "--json")
    assert res.returncode == 0, res.stderr[-2000:]
    doc = json.loads(res.stdout)
    assert doc["task"] == "token-classification" and doc["variants"]["onnx"]["parity"]["label_agreement"] == 1.0
    assert json.loads((out / "export_info.json").read_text())["task"] == "token-classification"
    tok = AutoTokenizer.from_pretrained(out)
    batch = tok(texts(8), padding=True, return_tensors="np")
    got = _ort_logits(out, dict(batch))
    model = AutoModelForTokenClassification.from_pretrained(ner_dir).eval()
    with torch.no_grad():
        want = model(**{k: torch.from_numpy(v) for k, v in batch.items()}).logits.numpy()
    assert got.shape == want.shape and got.ndim == 3  # logits per token, Optimum's token-classification layout
    mask = batch["attention_mask"].astype(bool)
    assert (got.argmax(-1)[mask] == want.argmax(-1)[mask]).all()
    np.testing.assert_allclose(got[mask], want[mask], atol=1e-4)


@pytest.mark.parametrize("which,task", [("multilabel_dir", "multi-label-classification"), ("regression_dir", "regression")])
def test_export_gates_a_sequence_task_by_its_answers(which, task, request, tmp_path):
    from hubtune.publish.export import ExportOptions, export

    model_dir = request.getfixturevalue(which)
    res = export(ExportOptions(source=model_dir, output=str(tmp_path / "onnx")))
    assert res.task == task and res.variants["onnx"].parity.label_agreement == 1.0
    info = json.loads((tmp_path / "onnx" / "export_info.json").read_text())
    assert info["task"] == task


def test_agreement_reads_the_task():
    """The same argmax is not the same answer: a multi-label row agrees when its label set does, a regression row
    when its value is within 1%."""
    from hubtune.core.parity import compare_logits
    from hubtune.tasks.registry import get_task

    ref = np.array([[2.0, 1.0, -3.0], [0.5, -1.0, -2.0]])
    cand = np.array([[2.0, -1.0, -3.0], [0.5, -1.0, -2.0]])  # row 0 loses label 1; argmax unchanged
    assert compare_logits(ref, cand, tolerance=None).label_agreement == 1.0
    rep = compare_logits(ref, cand, tolerance=None, min_label_agreement=1.0, task=get_task("multi-label-classification"))
    assert rep.label_agreement == 0.5 and not rep.passed
    tags = np.zeros((2, 10, 3))
    tags[:, :, 1] = 1.0  # every token tagged 1
    flipped = tags.copy()
    flipped[0, 4, 2] = 2.0  # one token of row 0 re-tagged: 95% of the tokens agree, half the rows' entities do
    assert compare_logits(tags, flipped, tolerance=None, task=get_task("token-classification")).label_agreement == 0.5
    values = np.array([[10.0], [3.0]])
    rep = compare_logits(values, values * np.array([[1.005], [1.2]]), tolerance=None, min_label_agreement=0.5, task=get_task("regression"))
    assert rep.label_agreement == 0.5 and rep.passed


@pytest.mark.slow
@pytest.mark.parametrize("task,mode", [("multi-label-classification", "lora"), ("regression", "full")])
def test_train_and_push_of_a_task_publishes_a_verified_onnx(task, mode, tiny_bert_dir, local_hub, tmp_path):
    """train -> merge -> ONNX + int8 (the task's gates) -> card -> push -> a fresh process answers the same with
    pipeline() and with ONNX Runtime over the pushed onnx/."""
    from hubtune.core.config import PipelineConfig, resolve
    from hubtune.pipeline import PipelineOptions, run_pipeline

    cfg = resolve(PipelineConfig, EXAMPLES[task], {
        "base_model": tiny_bert_dir, "mode": mode, "data.dataset": str(DATA[task]), "output_dir": str(tmp_path / "run"),
        "num_epochs": 1, "batch_size": 16, "learning_rate": 1e-3, "precision": "fp32", "publish.repo_id": "org/t",
        "export.quantize": "int8", "gates.golden_examples": 16,
    })
    res = run_pipeline(PipelineOptions(config=cfg, progress=False))
    assert res.verified and res.committed and res.steps["export"] == "done", res.message
    checked = res.verification["checked"]
    assert checked["onnx"]["total"] >= 8 and checked["onnx"]["agree"] == checked["onnx"]["total"], checked
    assert checked["onnx_scores"]["agree"] == checked["onnx_scores"]["total"], checked  # sigmoid scores / values
    files = set(local_hub.api().list_repo_files("org/t"))
    assert {"onnx/model.onnx", "onnx/export_info.json", "model.safetensors"} <= files, files
