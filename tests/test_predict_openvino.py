"""Issue 38: batch-predict --backend openvino (the model's OpenVINO IR or ONNX graph compiled by OpenVINO for the
CPU: fp32, bf16 where the CPU has bf16 units, int8 weights by NNCF), its reduced precisions checked against fp32,
and --backend auto measuring it beside torch and ONNX Runtime."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pandas as pd
import pytest

from hubtune.core.errors import ConfigError, MissingDependencyError

from .test_predict import TWEETS, _save_tiny, cli, opts
from .test_predict_auto import PLAIN_CPU, hw

pytest.importorskip("openvino")
NNCF = importlib.util.find_spec("nncf") is not None


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory) -> Path:
    from hubtune.core.onnx_tools import export_onnx

    model = _save_tiny(tmp_path_factory.mktemp("tinyov") / "model", seed=0)
    export_onnx(model, model / "onnx")
    return model


def test_cli_openvino_labels_equal_torch_in_a_fresh_process(tiny_onnx, tmp_path):
    outs = {}
    for backend in ("torch", "openvino"):
        out = tmp_path / f"{backend}.parquet"
        r = cli("batch-predict", "--model", str(tiny_onnx), "--dataset", str(TWEETS), "--output", str(out),
                "--limit", "120", "--backend", backend, "--dtype", "fp32", "--no-progress")
        assert r.returncode == 0, r.stderr
        outs[backend] = pd.read_parquet(out)
    assert list(outs["openvino"]["label"]) == list(outs["torch"]["label"])
    assert (outs["openvino"]["score"] - outs["torch"]["score"]).abs().max() < 1e-4
    meta = json.loads((tmp_path / "openvino.parquet.meta.json").read_text())
    assert (meta["prediction"]["backend"], meta["prediction"]["dtype"]) == ("openvino", "fp32")
    assert "openvino fp32" in r.stderr and "exported one on the fly" not in r.stderr  # it ran the model's onnx/


@pytest.mark.skipif(not NNCF, reason="OpenVINO int8 needs the openvino extra (nncf)")
def test_openvino_int8_is_checked_against_fp32(tiny_onnx, tmp_path):
    from hubtune.predict import batch_predict

    res = batch_predict(opts(model=str(tiny_onnx), dataset=str(TWEETS), output=str(tmp_path / "p.parquet"),
                             limit=300, backend="openvino", dtype="int8"))
    agree = res.choice["agreement"]
    assert (res.backend, res.dtype) == ("openvino", "int8") and agree["against"] == "openvino/fp32"
    assert agree["rows"] == 256 and agree["value"] >= 0.9 and "asked for" in res.choice["reason"]


def test_openvino_bf16_refused_without_bf16_units_and_missing_openvino(tiny_onnx, tmp_path, monkeypatch):
    import hubtune.core.ov_session as ov_session
    from hubtune.predict import batch_predict

    base = dict(model=str(tiny_onnx), dataset=str(TWEETS), limit=20, backend="openvino")
    monkeypatch.setattr(ov_session, "cpu_bf16", lambda: False)
    with pytest.raises(ConfigError, match="needs a CPU with bf16 units"):
        batch_predict(opts(output=str(tmp_path / "a.parquet"), dtype="bf16", **base))
    assert not (tmp_path / "a.parquet.parts").exists() and not (tmp_path / "a.parquet").exists()

    def missing():
        raise MissingDependencyError("--backend openvino needs OpenVINO, which is not installed; pip install openvino")

    monkeypatch.setattr(ov_session, "openvino_module", missing)
    with pytest.raises(MissingDependencyError, match="pip install openvino"):
        batch_predict(opts(output=str(tmp_path / "b.parquet"), dtype="fp32", **base))
    with pytest.raises(ConfigError, match="fp16 on torch"):
        batch_predict(opts(output=str(tmp_path / "c.parquet"), dtype="fp16", **base))


def test_auto_measures_openvino_beside_torch_and_onnx(tiny_onnx, tmp_path, monkeypatch):
    from hubtune.predict import batch_predict

    hw(monkeypatch, dict(PLAIN_CPU, openvino=True, ov_bf16=False))
    res = batch_predict(opts(model=str(tiny_onnx), dataset=str(TWEETS), output=str(tmp_path / "a.parquet"),
                             limit=200, chunk_size=100))
    speeds = res.choice["rows_per_s"]
    assert set(speeds) == {"torch/fp32", "onnx/fp32", "openvino/fp32"} and all(v > 0 for v in speeds.values())
    assert res.backend == max(speeds, key=speeds.get).split("/")[0] and "OpenVINO" in res.choice["reason"]
    torch_labels = batch_predict(opts(model=str(tiny_onnx), dataset=str(TWEETS), output=str(tmp_path / "t.parquet"),
                                      limit=200, backend="torch", dtype="fp32"))
    assert torch_labels.rows == res.rows
    assert list(pd.read_parquet(tmp_path / "a.parquet")["label"]) == list(pd.read_parquet(tmp_path / "t.parquet")["label"])
