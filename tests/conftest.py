"""Shared fixtures. Tests never reach the network: HF_HUB_OFFLINE is set unless a test starts the local Hub."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

pytest_plugins = ["tests.hub_fixtures"]

REPO = Path(__file__).resolve().parents[1]
TWEETS_TRAIN = REPO / "data" / "tweets" / "train.csv"
TWEETS_TEST = REPO / "data" / "tweets" / "test.csv"


@pytest.fixture(autouse=True)
def _isolated_hf_home(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("hf_home")
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(home / "datasets"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    monkeypatch.delenv("HUBTUNE_DEBUG", raising=False)
    yield
    # One training per process is how hubtune runs; in-process tests train many times, so each starts with a
    # fresh accelerate state (a bf16 Trainer run would otherwise pin mixed precision for every later Accelerator).
    state = sys.modules.get("accelerate.state")
    if state is not None:
        state.AcceleratorState._reset_state(reset_partial_state=True)


@pytest.fixture(scope="session")
def minilm_dir() -> str:
    from hubtune.core.modeling import resolve_model_source

    return resolve_model_source("packaged:minilm")


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory, minilm_dir) -> str:
    """A tiny random BERT (2 layers, hidden 32) with the MiniLM tokenizer, saved as a base model."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("tiny_bert")
    tok = AutoTokenizer.from_pretrained(minilm_dir)
    cfg = BertConfig(
        vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=128,
    )
    BertModel(cfg).save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return str(out)


def run_cli(*args: str, env: dict | None = None, cwd: str | Path | None = None, timeout: int = 600):
    """Run ``python -m hubtune ARGS`` in a fresh process."""
    import subprocess

    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "hubtune", *args],
        capture_output=True, text=True, env=full_env, cwd=cwd or REPO, timeout=timeout,
    )


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` run only where CUDA is present; elsewhere they skip with the reason."""
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if not gpu_items:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (gpu marker); none is present on this machine")
    for item in gpu_items:
        item.add_marker(skip)
