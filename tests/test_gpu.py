"""The CUDA path (gpu marker): skipped cleanly where no CUDA GPU is present. Run on a GPU machine with
``python -m pytest -m gpu`` (the onnxruntime-gpu wheel for the ORT CUDA provider tests)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from .conftest import TWEETS_TEST, TWEETS_TRAIN, run_cli

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("mode", ["full", "lora"])
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_training_steps_in_mixed_precision_change_weights(tiny_bert_dir, tmp_path, mode, precision):
    import torch
    from safetensors.torch import load_file

    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    out = tmp_path / "run"
    proc = run_cli("train", "--base-model", tiny_bert_dir, "--mode", mode, "--dataset", str(TWEETS_TRAIN),
                   "--eval-dataset", str(TWEETS_TEST), "--limit", "128", "--epochs", "1", "--set", f"precision={precision}",
                   "--set", "max_length=32", "-o", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "run_summary.json").read_text())
    assert precision in json.dumps(summary)
    weights = load_file(out / "model" / ("adapter_model.safetensors" if mode == "lora" else "model.safetensors"))
    assert all(torch.isfinite(t).all() for t in weights.values())


def test_batch_predict_cuda_half_precision_agrees_with_fp32(tmp_path):
    import torch

    from tests._tiny_runs import make_full_run, make_tiny_base

    run = make_full_run(tmp_path / "run", make_tiny_base(tmp_path / "base"))
    labels = {}
    for dtype in ["fp32", "fp16"] + (["bf16"] if torch.cuda.is_bf16_supported() else []):
        out = tmp_path / f"preds-{dtype}.parquet"
        proc = run_cli("batch-predict", "--model", str(run / "model"), "--dataset", str(TWEETS_TEST), "--output", str(out),
                       "--backend", "torch", "--device", "cuda", "--dtype", dtype, "--json")
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["device"].startswith("cuda")
        import pyarrow.parquet as pq

        labels[dtype] = pq.read_table(out).column("label").to_pylist()
    for dtype, got in labels.items():
        agree = np.mean([a == b for a, b in zip(labels["fp32"], got)])
        assert agree >= 0.995, f"{dtype}: {agree:.4f} label agreement with fp32"


def test_onnx_cuda_provider_matches_torch(tmp_path):
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu)")
    from tests._tiny_runs import make_full_run, make_tiny_base

    run = make_full_run(tmp_path / "run", make_tiny_base(tmp_path / "base"))
    assert run_cli("export", str(run), "--json").returncode == 0
    outs = {}
    for backend in ("torch", "onnx"):
        out = tmp_path / f"preds-{backend}.parquet"
        proc = run_cli("batch-predict", "--model", str(run / "model"), "--dataset", str(TWEETS_TEST), "--output", str(out),
                       "--backend", backend, "--device", "cuda", "--json")
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["device"].startswith("cuda")
        import pyarrow.parquet as pq

        outs[backend] = pq.read_table(out).column("label").to_pylist()
    assert outs["torch"] == outs["onnx"]


def test_env_reports_the_gpu():
    proc = run_cli("env", "--json")
    info = json.loads(proc.stdout)
    assert info["torch"]["cuda_available"] and info["torch"]["gpus"] and info["fast_path"]["device"] == "cuda"
