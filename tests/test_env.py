"""``hubtune env`` and ``hubtune --version``: what hubtune runs on, without importing torch for --version."""

from __future__ import annotations

import json

from .conftest import run_cli


def test_version_names_the_libraries():
    from hubtune.core.compat import versions

    proc = run_cli("--version")
    assert proc.returncode == 0
    for name, ver in versions().items():
        assert f"{name} {ver}" in proc.stdout


def test_env_json_describes_this_machine():
    import onnxruntime as ort
    import torch

    proc = run_cli("env", "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["torch"]["version"] == torch.__version__
    assert info["torch"]["cuda_available"] == torch.cuda.is_available()
    assert info["onnxruntime"]["providers"] == ort.get_available_providers()
    assert set(info["cpu"]["flags"]) >= {"amx_tile", "avx512_vnni"}
    fp = info["fast_path"]
    if torch.cuda.is_available():
        assert fp["device"] == "cuda"
    elif info["torch"]["cpu_amx"]:
        assert fp["dtype"] == "bf16"
    elif not info["cpu"]["flags"]["avx512_bf16"]:
        assert fp["dtype"] == "fp32" and fp["device"] == "cpu"
    else:  # native bf16 dot products: bf16 is a candidate only where a bf16 matmul measured fast
        assert fp["device"] == "cpu" and fp["dtype"] in ("fp32", "bf16 or fp32") and "bf16" in fp["reason"]
    text = run_cli("env")
    assert text.returncode == 0 and "fast path:" in text.stdout
