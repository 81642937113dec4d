"""Issue 13.5 and 13.1: a resume refuses anything that would change a prediction, naming the field and both
values; local files are fingerprinted over every byte; an onnx/ exported from other weights is refused."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from hubtune.core.errors import ResumeMismatchError

from .test_predict import TWEETS, _save_tiny, cli, opts


@pytest.fixture(scope="module")
def tiny_exported(tmp_path_factory):
    """A tiny classifier with onnx/model.onnx and onnx/model_quantized.onnx beside its weights."""
    from hubtune.core.onnx_tools import FP32_FILE, QUANTIZED_FILE, export_onnx, quantize_int8

    model = _save_tiny(tmp_path_factory.mktemp("tinyx") / "model", seed=0)
    export_onnx(model, model / "onnx")
    quantize_int8(model / "onnx" / FP32_FILE, model / "onnx" / QUANTIZED_FILE)
    return model


def _first_run(model, out, **kw):
    from hubtune.predict import batch_predict

    base = dict(model=str(model), dataset=str(TWEETS), output=str(out), limit=120, chunk_size=60, keep_parts=True)
    base.update(kw)
    batch_predict(opts(**base))
    return base


@pytest.mark.parametrize(
    "first,second,field",
    [
        ({"backend": "onnx"}, {"backend": "onnx", "onnx_file": "model_quantized.onnx"}, "onnx_file"),
        ({"max_length": 64}, {"max_length": 32}, "max_length"),
        ({"backend": "torch"}, {"backend": "onnx"}, "backend"),
        ({"dtype": "fp32"}, {"dtype": "bf16"}, "dtype"),
        ({"text_column": "text"}, {"text_column": "label"}, "text_column"),
    ],
)
def test_resume_refuses_a_changed_prediction_setting(tiny_exported, tmp_path, first, second, field):
    from hubtune.predict import batch_predict

    out = tmp_path / "p.parquet"
    base = _first_run(tiny_exported, out, **first)
    with pytest.raises(ResumeMismatchError) as err:
        batch_predict(opts(**{**base, **second, "resume": True}))
    msg = str(err.value)
    assert field in msg and "--overwrite" in msg
    assert str(list(second.values())[-1]) in msg  # the new value is named (and the old one beside it)


def test_resume_refuses_a_file_edited_in_the_middle(tiny_exported, tmp_path):
    """A file over 2 MiB with one row changed in the middle (same size): the fingerprint covers every byte."""
    from hubtune.predict import batch_predict

    df = pd.read_csv(TWEETS)
    big = pd.concat([df] * 30, ignore_index=True)  # ~ 1,000 x 30 rows, ~3.4 MB
    path = tmp_path / "big.csv"
    big.to_csv(path, index=False)
    assert path.stat().st_size > 2 * 1024 * 1024
    out = tmp_path / "p.parquet"
    base = dict(model=str(tiny_exported), dataset=str(path), output=str(out), limit=60, chunk_size=60, keep_parts=True)
    batch_predict(opts(**base))
    raw = bytearray(path.read_bytes())
    mid = len(raw) // 2
    i = raw.index(b"e", mid)
    raw[i : i + 1] = b"E"  # one character, same size, far from both ends
    path.write_bytes(bytes(raw))
    with pytest.raises(ResumeMismatchError, match="dataset"):
        batch_predict(opts(**base, resume=True))


def test_cli_resume_mismatch_names_field_and_both_values(tiny_exported, tmp_path):
    out = tmp_path / "p.parquet"
    _first_run(tiny_exported, out, max_length=64)
    r = cli("batch-predict", "--model", str(tiny_exported), "--dataset", str(TWEETS), "--output", str(out),
            "--limit", "120", "--max-length", "32", "--resume")
    assert r.returncode == ResumeMismatchError.exit_code, r.stderr
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and "max_length" in lines[0] and "64" in lines[0] and "32" in lines[0]


def test_onnx_from_other_weights_is_refused(tiny_exported, tmp_path):
    """onnx/ records the sha256 of the weights it came from; new weights beside an old onnx/ are refused."""
    model = tmp_path / "model"
    shutil.copytree(tiny_exported, model)
    retrained = _save_tiny(tmp_path / "retrained", seed=7)
    shutil.copy(retrained / "model.safetensors", model / "model.safetensors")
    r = cli("batch-predict", "--model", str(model), "--dataset", str(TWEETS), "--output", str(tmp_path / "p.parquet"),
            "--limit", "20", "--backend", "onnx")
    assert r.returncode != 0
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and "hubtune export" in lines[0] and "sha256" in lines[0]
    assert not (tmp_path / "p.parquet").exists()


def test_meta_records_everything_that_changes_a_prediction(tiny_exported, tmp_path):
    out = tmp_path / "p.parquet"
    _first_run(tiny_exported, out, backend="onnx", onnx_file="model_quantized.onnx", max_length=48)
    meta = json.loads((tmp_path / "p.parquet.meta.json").read_text())
    flat = json.dumps(meta)
    for key in ("onnx_file", "onnx_sha256", "backend", "dtype", "max_length", "text_column", "label_names"):
        assert key in flat, key


def test_verification_refuses_onnx_from_other_weights(tiny_exported, tmp_path):
    from hubtune.core.errors import StaleOnnxError
    from hubtune.publish.verify import predict_labels

    model = tmp_path / "model"
    shutil.copytree(tiny_exported, model)
    assert predict_labels(str(model), ["good", "bad"], onnx_file="model.onnx")["onnx"]  # matching: runs
    shutil.copy(_save_tiny(tmp_path / "retrained", seed=7) / "model.safetensors", model / "model.safetensors")
    with pytest.raises(StaleOnnxError, match="hubtune export"):
        predict_labels(str(model), ["good", "bad"], onnx_file="model.onnx")
