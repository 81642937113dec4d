"""Guards for advised-vulnerable transformers (CVE-2026-4372, CVE-2026-1839), offline: nothing fetched, nothing run."""

from __future__ import annotations

import json
import pickle
import random
import shutil

import numpy as np
import pytest
import torch

from hubtune.core import security
from hubtune.core.errors import UnsafeCheckpointError, UnsafeModelError

from .conftest import TWEETS_TEST, run_cli

VULNERABLE, PATCHED = "5.2.0", "5.3.0"
HUB_KERNEL = "kernels-community/flash-attn-evil"


def _crafted(src, dest, **fields):
    shutil.copytree(src, dest)
    cfg = json.loads((dest / "config.json").read_text())
    cfg.update(fields)
    (dest / "config.json").write_text(json.dumps(cfg))
    return dest


@pytest.fixture
def crafted_model(tmp_path):
    from tests._tiny_runs import make_tiny_base

    base = make_tiny_base(tmp_path / "base")
    return _crafted(base, tmp_path / "crafted", _attn_implementation_internal=HUB_KERNEL)


@pytest.fixture
def no_fetch_no_load(monkeypatch):
    """Fail the test if anything is downloaded or any model is instantiated."""
    import huggingface_hub
    import transformers

    def boom(*a, **k):
        raise AssertionError("nothing may be fetched or loaded for a refused config")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", boom)
    monkeypatch.setattr(transformers.AutoModelForSequenceClassification, "from_pretrained", boom)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", boom)


@pytest.mark.parametrize(
    "version,expected", [("4.55.4", False), ("4.56.0", True), ("4.57.6", True), ("5.2.9", True), ("5.3.0", False), ("5.23.0", False)]
)
def test_advisory_ranges(version, expected):
    assert security.affected(security.CONFIG_CODE_ADVISORY, version) is expected
    assert security.affected(security.RNG_STATE_ADVISORY, "5.0.0rc2") and not security.affected(security.RNG_STATE_ADVISORY, "5.0.0rc3")
    assert security.affected(security.RNG_STATE_ADVISORY, "4.57.6") and not security.affected(security.RNG_STATE_ADVISORY, "5.23.0")


def test_hub_code_fields_found_in_nested_configs():
    cfg = {"model_type": "x", "attn_implementation": "sdpa", "text_config": {"_attn_implementation_internal": HUB_KERNEL}}
    assert security.hub_code_fields(cfg) == [("text_config._attn_implementation_internal", HUB_KERNEL)]
    assert security.hub_code_fields({"_attn_implementation_internal": "eager", "attn_implementation": None}) == []


def test_crafted_config_is_refused_on_a_vulnerable_transformers(crafted_model, monkeypatch, no_fetch_no_load):
    from hubtune.tasks.loading import load_classifier

    monkeypatch.setattr(security, "transformers_version", lambda: VULNERABLE)
    with pytest.raises(UnsafeModelError) as err:
        load_classifier(str(crafted_model))
    msg = str(err.value)
    assert "_attn_implementation_internal" in msg and "CVE-2026-4372" in msg and "transformers>=5.3.0" in msg
    assert "\n" not in msg


def test_crafted_config_passes_the_guard_on_a_patched_transformers(crafted_model):
    security.check_model_config(str(crafted_model), version=PATCHED)  # the fixed loader ignores such a field


def test_plain_config_passes_on_a_vulnerable_transformers(tmp_path):
    from tests._tiny_runs import make_tiny_base

    base = make_tiny_base(tmp_path / "base")
    security.check_model_config(str(base), version=VULNERABLE)


def test_cli_refuses_crafted_base_model_with_one_line(crafted_model, tmp_path):
    """In a fresh process, on the transformers actually installed: refused where it is vulnerable (the Optimum lane)."""
    if not security.affected(security.CONFIG_CODE_ADVISORY):
        pytest.skip("the installed transformers is patched; the Optimum lane (transformers 4.57) runs this")
    proc = run_cli("evaluate", "--model", str(crafted_model), "--dataset", str(TWEETS_TEST), "--limit", "8")
    assert proc.returncode == UnsafeModelError.exit_code, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines == [lines[0]] and lines[0].startswith("error:") and "CVE-2026-4372" in lines[0]


# --- CVE-2026-1839: rng_state files must load with weights_only=True ---------------------------------
class _Payload:
    def __reduce__(self):
        import os

        return (os.system, (f"touch {_Payload.marker}",))


def test_trainer_rng_state_loads_safely(tmp_path):
    ckpt = tmp_path / "checkpoint-4"
    ckpt.mkdir()
    torch.save({"python": random.getstate(), "numpy": np.random.get_state(), "cpu": torch.random.get_rng_state()},
               ckpt / "rng_state.pth")
    security.check_checkpoint(ckpt)


def test_rng_state_with_code_is_refused_and_never_run(tmp_path):
    ckpt = tmp_path / "checkpoint-4"
    ckpt.mkdir()
    _Payload.marker = tmp_path / "pwned"
    with open(ckpt / "rng_state.pth", "wb") as fh:
        pickle.dump({"python": _Payload()}, fh)
    with pytest.raises(UnsafeCheckpointError) as err:
        security.check_checkpoint(ckpt)
    assert "weights_only=True" in str(err.value) and "--overwrite" in str(err.value)
    assert not _Payload.marker.exists()


def test_resume_from_a_crafted_checkpoint_is_refused_before_training(tiny_bert_dir, tmp_path):
    from hubtune.core.config import DataConfig, TrainConfig
    from hubtune.train import train

    out = tmp_path / "run"
    ckpt = out / "checkpoints" / "checkpoint-2"
    ckpt.mkdir(parents=True)
    _Payload.marker = tmp_path / "pwned"
    with open(ckpt / "rng_state.pth", "wb") as fh:
        pickle.dump({"python": _Payload()}, fh)
    cfg = TrainConfig(base_model=tiny_bert_dir, output_dir=str(out), mode="full",
                      data=DataConfig(dataset=str(TWEETS_TEST), max_samples=32, eval_max_samples=16), num_epochs=1)
    with pytest.raises(UnsafeCheckpointError):
        train(cfg, resume=True, progress=False)
    assert not _Payload.marker.exists()
