"""Issue 38: `hubtune export --openvino` writes openvino/ (OpenVINO's IR of the gated model.onnx, through the same
gate), batch-predict --backend openvino runs it, a failed gate writes nothing, train-and-push's card lists it."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from hubtune.core.errors import ExportParityError, MissingDependencyError, OutputExistsError
from tests.conftest import run_cli
from tests.test_predict import TWEETS, _save_tiny
from tests.test_tasks import multilabel_dir, ner_dir, regression_dir  # noqa: F401 - fixtures

pytest.importorskip("openvino")


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    """A tiny classifier exported with --openvino by the CLI in a fresh process."""
    model = _save_tiny(tmp_path_factory.mktemp("ov") / "model", seed=0)
    r = run_cli("export", str(model), "--openvino", "--bench-rows", "16", "--no-progress")
    assert r.returncode == 0, r.stderr[-2000:]
    row = next(line for line in r.stdout.splitlines() if line.startswith("openvino "))
    assert "openvino/openvino_model.xml" in row and "100.0%" in row  # the export table's row: file, MB, rows/s, agree
    return model


def test_export_writes_the_ir_and_batch_predict_runs_it(exported, tmp_path):
    from hubtune.predict import PredictOptions, batch_predict

    ov = exported / "openvino"
    beside = {p.name for p in (exported / "onnx").iterdir()  # config + the tokenizer's files (they vary by version)
              if ".onnx" not in p.name and p.name not in ("export_info.json", "ort_config.json")}
    assert {"config.json", "tokenizer_config.json"} <= beside
    assert {p.name for p in ov.iterdir()} == beside | {"export_info.json", "openvino_model.bin", "openvino_model.xml"}
    info = json.loads((ov / "export_info.json").read_text())
    onnx_info = json.loads((exported / "onnx" / "export_info.json").read_text())
    assert info["source_weights"] == onnx_info["source_weights"] and info["gate"]["passed"]
    assert info["gate"]["agreement"] == 1.0 and info["gate"]["max_abs_diff"] <= info["gate"]["allowed"]
    assert info["openvino"]
    assert not list(exported.glob(".*tmp-*"))  # no temporary folder left

    (exported / "onnx" / "model.onnx").unlink()  # the IR alone must serve --backend openvino, nothing exported
    a, b = tmp_path / "t.parquet", tmp_path / "v.parquet"
    batch_predict(PredictOptions(model=str(exported), dataset=str(TWEETS), output=str(a), limit=200, backend="torch",
                                 dtype="fp32", progress=False))
    res = batch_predict(PredictOptions(model=str(exported), dataset=str(TWEETS), output=str(b), limit=200,
                                       backend="openvino", dtype="fp32", progress=False))
    assert res.backend == "openvino" and not any("on the fly" in n for n in res.notices), res.notices
    assert not (exported / "onnx" / "model.onnx").exists()
    assert list(pd.read_parquet(a)["label"]) == list(pd.read_parquet(b)["label"])


def test_verification_compares_the_openvino_labels(exported, tmp_path):
    """train-and-push's verification: with openvino/ published, OpenVINO's labels are read beside ONNX Runtime's."""
    import shutil

    from hubtune.publish.export import ExportOptions, export
    from hubtune.publish.verify import task_predict

    folder = tmp_path / "m"
    shutil.copytree(exported, folder)
    if not (folder / "onnx" / "model.onnx").is_file():  # the test above removed it
        export(ExportOptions(source=str(folder), overwrite=True, measure_speed=False, record=False))
    texts = ["great service", "awful, never again", "it was fine I guess", "the staff were friendly"]
    got = task_predict(str(folder), "text-classification", texts, onnx_file="model.onnx")
    assert got["openvino"] == got["onnx"] == got["pytorch"]


def _tiny(tmp_path: Path) -> Path:
    return _save_tiny(tmp_path / "model", seed=0)


def test_a_failed_gate_writes_nothing(tmp_path, monkeypatch):
    import numpy as np

    from hubtune.core import ov_session
    from hubtune.publish.export import ExportOptions, export

    model = _tiny(tmp_path)
    before = sorted(p.name for p in model.iterdir())
    real_run = ov_session.OvSession.run
    monkeypatch.setattr(ov_session.OvSession, "run",
                        lambda self, outputs, feeds: [np.asarray(o) + 0.5 for o in real_run(self, outputs, feeds)])
    with pytest.raises(ExportParityError, match="OpenVINO's IR of model.onnx does not match PyTorch") as exc:
        export(ExportOptions(source=str(model), openvino=True, measure_speed=False))
    assert exc.value.exit_code == 13
    assert sorted(p.name for p in model.iterdir()) == before  # no onnx/, no openvino/, no temporary folder
    assert "model.safetensors" in before and not any(n.startswith((".", "onnx", "openvino")) for n in before)


def test_missing_openvino_fails_before_any_work(tmp_path, monkeypatch):
    from hubtune.core import ov_session
    from hubtune.publish.export import ExportOptions, export

    def gone():
        raise MissingDependencyError("no openvino here")

    model = _tiny(tmp_path)
    monkeypatch.setattr(ov_session, "openvino_module", gone)
    with pytest.raises(MissingDependencyError, match="--openvino needs OpenVINO") as exc:
        export(ExportOptions(source=str(model), openvino=True))
    assert exc.value.exit_code == MissingDependencyError.exit_code
    assert not (model / "onnx").exists() and not (model / "openvino").exists()


def test_an_existing_openvino_folder_needs_overwrite(tmp_path):
    from hubtune.publish.export import ExportOptions, export

    model = _tiny(tmp_path)
    (model / "openvino").mkdir()
    with pytest.raises(OutputExistsError, match="--overwrite"):
        export(ExportOptions(source=str(model), openvino=True))
    assert not (model / "onnx").exists()


def test_train_and_push_config_and_card_list_the_openvino_variant(tmp_path):
    """export.openvino reaches the export; the card of the published folder lists the IR with its figures and usage."""
    from hubtune.core.config import ExportSettings
    from hubtune.core.errors import ConfigError
    from hubtune.pipeline import resolve_pipeline_config
    from hubtune.publish.card import CardOptions, card
    from hubtune.publish.export import ExportOptions, export
    from tests._tiny_runs import make_full_run, make_tiny_base

    cfg = resolve_pipeline_config(None, {"base_model": "b", "data.dataset": "d.csv", "export.openvino": True})
    assert cfg.export.openvino is True
    with pytest.raises(ConfigError, match="export.onnx"):
        ExportSettings(onnx=False, openvino=True).validate()

    run = make_full_run(tmp_path / "run", make_tiny_base(tmp_path / "base"))
    res = export(ExportOptions(source=str(run), openvino=True, bench_rows=16))
    summary = json.loads((run / "run_summary.json").read_text())
    assert res.variants["openvino"].file == "openvino/openvino_model.xml"
    assert summary["variants"]["openvino"]["throughput"]["rows_per_s"] > 0
    out = card(CardOptions(run_dir=str(run), repo_id="acme/tiny", bench_rows=16))
    text = Path(out.path).read_text()
    assert "OpenVINO IR (fp32)" in out.variants and "openvino" in out.metadata["tags"]
    assert "| OpenVINO IR (fp32) | `openvino/openvino_model.xml` |" in text
    assert 'OVModelForSequenceClassification.from_pretrained("acme/tiny", subfolder="openvino")' in text
    assert "--backend openvino" in text


@pytest.mark.parametrize("which", ["multilabel_dir", "regression_dir", "ner_dir"])
def test_the_ir_of_a_task_model_passes_the_task_gate(which, request, tmp_path):
    """Multi-label, regression, token classification: the IR is gated by what the task answers, like the ONNX."""
    from hubtune.publish.export import ExportOptions, export

    res = export(ExportOptions(source=request.getfixturevalue(which), output=str(tmp_path / "onnx"), openvino=True,
                               measure_speed=False))
    ov = res.variants["openvino"]
    assert ov.passed and ov.parity.label_agreement == 1.0 and ov.file == "openvino/openvino_model.xml"
    assert (tmp_path / "openvino" / "openvino_model.bin").is_file()


@pytest.mark.slow
def test_packaged_minilm_embeddings_through_the_ir(tmp_path):
    """An embedding model: the IR passes the embeddings' fp32 gate (max |diff|, every cosine >= 0.9999)."""
    r = run_cli("export", "packaged:minilm", "--output", str(tmp_path / "onnx"), "--openvino", "--bench-rows", "16",
                "--json", "--no-progress")
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout)
    ov = res["variants"]["openvino"]
    assert ov["file"] == "openvino/openvino_model.xml" and ov["parity"]["passed"]
    info = json.loads((tmp_path / "openvino" / "export_info.json").read_text())
    assert info["gate"]["passed"] and info["source_weights"]


@pytest.mark.slow
def test_train_and_push_publishes_and_verifies_the_ir(local_hub, tiny_bert_dir, tmp_path):
    """export.openvino: the published repo carries openvino/, and the fresh-process verification compared
    OpenVINO's labels with the local folder's."""
    from hubtune.core.config import ExportSettings
    from hubtune.pipeline import PipelineOptions, run_pipeline
    from tests.test_pipeline import _cfg

    cfg = _cfg(tiny_bert_dir, tmp_path / "run", "org/ov", mode="full")
    cfg.export = ExportSettings(onnx=True, openvino=True)
    res = run_pipeline(PipelineOptions(config=cfg, progress=False))
    checked = res.verification["checked"]
    assert res.verified and checked["openvino"]["agree"] == checked["openvino"]["total"] > 0, checked
    files = set(local_hub.api().list_repo_files("org/ov"))
    assert {"openvino/openvino_model.xml", "openvino/openvino_model.bin", "openvino/export_info.json"} <= files
    assert "OVModelForSequenceClassification" in (tmp_path / "run" / "model" / "README.md").read_text()
