"""The Accelerate engine, and both engines data-parallel on CPU (2 processes, gloo): one process writes the run dir.

The two launcher tests take about 6 s each on an idle 2-core machine (process start + tiny model).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from hubtune.core.config import DataConfig, TrainConfig
from hubtune.train import train

from .conftest import REPO, TWEETS_TEST, TWEETS_TRAIN


def test_accelerate_engine_writes_the_same_run_dir(tiny_bert_dir, tmp_path):
    from hubtune.tasks.loading import load_classifier

    cfg = TrainConfig(
        base_model=tiny_bert_dir, output_dir=str(tmp_path / "acc"), engine="accelerate",
        data=DataConfig(dataset=str(TWEETS_TRAIN), eval_dataset=str(TWEETS_TEST), max_samples=64, eval_max_samples=32),
        num_epochs=2, batch_size=16, max_length=32, learning_rate=1e-3,
    )
    res = train(cfg, progress=False)
    assert {"model", "metrics.json", "config.yaml", "run_summary.json"} <= {p.name for p in res.output_dir.iterdir()}
    m = json.loads((res.output_dir / "metrics.json").read_text())
    assert m["train"]["engine"] == "accelerate" and m["train"]["global_step"] == 8
    assert [h["epoch"] for h in m["train"]["eval_history"]] == [1, 2]
    assert m["eval"]["num_examples"] == 32 and "confusion_matrix" in m["eval"]
    summary = json.loads((res.output_dir / "run_summary.json").read_text())
    assert summary["engine"] == "accelerate" and summary["num_processes"] == 1
    loaded = load_classifier(str(res.model_dir))
    assert loaded.label_names == ["negative", "neutral", "positive"]


def _launch(launcher: list[str], base: str, out, *extra: str):
    args = [
        "-m", "hubtune", "train", "--base-model", base, "--dataset", str(TWEETS_TRAIN), "--eval-dataset", str(TWEETS_TEST),
        "--limit", "64", "--set", "data.eval_max_samples=32", "--epochs", "1", "--batch-size", "8", "--max-length", "32",
        "--lr", "1e-3", "--no-progress", "--json", "-o", str(out), *extra,
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run([sys.executable, "-m", *launcher, *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=600)


def _check_two_process_run(proc, out):
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count('"output_dir"') == 1, "only the main process reports"
    summary = json.loads((out / "run_summary.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    assert summary["num_processes"] == 2
    assert metrics["train"]["global_step"] == 4, "64 rows / (8 per process x 2 processes) = 4 steps"
    assert metrics["eval"]["num_examples"] == 32
    assert not list(out.glob(".*staging*")) and not list(out.glob(".*.tmp"))


def test_torchrun_two_processes_accelerate_engine(tiny_bert_dir, tmp_path):
    out = tmp_path / "torchrun"
    proc = _launch(["torch.distributed.run", "--nproc_per_node", "2"], tiny_bert_dir, out, "--engine", "accelerate")
    _check_two_process_run(proc, out)
    assert json.loads((out / "run_summary.json").read_text())["engine"] == "accelerate"

    # issue 16.1: the learning rate at every optimizer step equals the single-process schedule's (one process,
    # the same global batch of 16, so the same 4 steps); the prepared scheduler steps once per process, so a
    # schedule sized from the sharded dataloader alone reached 0 halfway (1e-3, 5e-4, 0, 0)
    two = json.loads((out / "metrics.json").read_text())["train"]["learning_rates"]
    cfg = TrainConfig(
        base_model=tiny_bert_dir, output_dir=str(tmp_path / "one"), engine="accelerate",
        data=DataConfig(dataset=str(TWEETS_TRAIN), eval_dataset=str(TWEETS_TEST), max_samples=64, eval_max_samples=32),
        num_epochs=1, batch_size=16, max_length=32, learning_rate=1e-3,
    )
    one = train(cfg, progress=False).train_metrics["learning_rates"]
    assert one == pytest.approx([1e-3, 7.5e-4, 5e-4, 2.5e-4])
    assert two == pytest.approx(one, rel=1e-6)


def test_accelerate_launch_two_processes_trainer_engine(tiny_bert_dir, tmp_path):
    # on CPU, `accelerate launch --cpu` starts one process (multi-CPU needs mpirun); --multi_gpu uses torchrun,
    # and with no GPU each process runs on the CPU with the gloo backend
    out = tmp_path / "accelerate"
    launcher = ["accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                "--mixed_precision", "no", "--dynamo_backend", "no"]
    proc = _launch(launcher, tiny_bert_dir, out)
    _check_two_process_run(proc, out)
    assert json.loads((out / "run_summary.json").read_text())["engine"] == "trainer"
