"""Training ``precision: auto``: bf16 where the hardware runs it fast (AMX CPU, AVX-512 BF16 measured fast,
CUDA >= 8.0), fp32 elsewhere; the choice reaches TrainingArguments and the run summary says what and why. Detection is monkeypatched."""

from __future__ import annotations

import json

import pytest
import torch

import hubtune.train.common as common
from hubtune.core import envinfo
from hubtune.core.config import DataConfig, TrainConfig
from hubtune.core.errors import ConfigError
from hubtune.train import train

from .conftest import TWEETS_TEST, TWEETS_TRAIN


def _cfg(base, out, **kw):
    return TrainConfig(
        base_model=base, output_dir=str(out), mode="full", max_steps=2, batch_size=8, max_length=32,
        data=DataConfig(dataset=str(TWEETS_TRAIN), eval_dataset=str(TWEETS_TEST), max_samples=32, eval_max_samples=16),
        logging_steps=1000, **kw,
    )


@pytest.fixture
def captured_args(monkeypatch):
    """Every TrainingArguments the recipes build, as built."""
    seen = []
    real = common.training_arguments

    def spy(**kw):
        args = real(**kw)
        seen.append(args)
        return args

    monkeypatch.setattr(common, "training_arguments", spy)
    return seen


def test_config_default_is_auto():
    assert TrainConfig(base_model="x", output_dir="y").precision == "auto"


@pytest.mark.parametrize("fast", [True, False])
def test_auto_precision_reaches_training_arguments_and_summary(tiny_bert_dir, tmp_path, monkeypatch, captured_args, fast):
    monkeypatch.setattr(envinfo, "fast_bf16", lambda: (fast, "probe says so (test)"))
    res = train(_cfg(tiny_bert_dir, tmp_path / "run"), progress=False)
    args = captured_args[-1]
    assert args.bf16 is fast and args.fp16 is False
    summary = json.loads((res.output_dir / "run_summary.json").read_text())
    assert summary["precision"] == ("bf16" if fast else "fp32")
    assert summary["precision_reason"] == "auto: probe says so (test)"


def test_explicit_precision_is_honoured_whatever_the_probe_says(tiny_bert_dir, tmp_path, monkeypatch, captured_args):
    monkeypatch.setattr(envinfo, "fast_bf16", lambda: (True, "fast"))
    res = train(_cfg(tiny_bert_dir, tmp_path / "run", precision="fp32"), progress=False)
    assert captured_args[-1].bf16 is False and captured_args[-1].fp16 is False
    summary = json.loads((res.output_dir / "run_summary.json").read_text())
    assert summary["precision"] == "fp32" and summary["precision_reason"] == "set in the config"
    monkeypatch.setattr(envinfo, "fast_bf16", lambda: (False, "slow"))
    assert common.resolve_precision("bf16").flags == {"bf16": True}


def test_probe_reads_amx_and_cuda_capability(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    fast, why = envinfo.fast_bf16()
    assert fast and "AMX" in why
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    no_bf16 = {"model": "Test CPU", "cores": 2, "flags": {f: False for f in envinfo.CPU_FLAGS}}
    monkeypatch.setattr(envinfo, "cpu_info", lambda: no_bf16)
    monkeypatch.setattr(envinfo, "cpu_bf16_matmul_ratio", lambda: pytest.fail("measured without native bf16"))
    fast, why = envinfo.fast_bf16()
    assert fast is False and "emulated" in why
    with_bf16 = {**no_bf16, "flags": {**no_bf16["flags"], "avx512_bf16": True}}
    monkeypatch.setattr(envinfo, "cpu_info", lambda: with_bf16)
    for ratio, want in ((4.1, True), (1.2, False)):
        monkeypatch.setattr(envinfo, "cpu_bf16_matmul_ratio", lambda r=ratio: r)
        fast, why = envinfo.fast_bf16()
        assert fast is want and f"{ratio:.1f}x fp32" in why and "AVX-512 BF16" in why
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda _i=0: "Test GPU")
    for cap, want in (((7, 5), False), ((8, 0), True), ((9, 0), True)):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda _i=0, cap=cap: cap)
        assert envinfo.fast_bf16()[0] is want, cap


def test_bf16_matmul_ratio_is_measured_once():
    envinfo.cpu_bf16_matmul_ratio.cache_clear()
    ratio = envinfo.cpu_bf16_matmul_ratio()
    assert ratio > 0 and envinfo.cpu_bf16_matmul_ratio() == ratio


def test_fp16_without_cuda_is_refused_with_the_fix(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="--precision"):
        common.resolve_precision("fp16")
