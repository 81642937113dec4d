"""Issue 15, errors: bad input through the real CLI gives its own exit code, ONE error line on stderr, no
traceback and no partial output; with --json the error is also a JSON object on stdout."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from .conftest import TWEETS_TEST, TWEETS_TRAIN, run_cli

OFFLINE = {"HF_HUB_OFFLINE": "1"}


def cli(*args: str, env: dict | None = None) -> SimpleNamespace:
    """The CLI in this process (fast); ``run_cli`` is the same in a fresh process."""
    from typer.testing import CliRunner

    from hubtune.cli.main import app

    # what a command may set for itself (bars off, --token) is put back after it, as a process exit would
    restore = {k: os.environ.get(k) for k in ("HF_HUB_DISABLE_PROGRESS_BARS", "HF_DATASETS_DISABLE_PROGRESS_BARS",
                                              "HF_TOKEN")}
    res = CliRunner().invoke(app, list(args), env={**restore, **(OFFLINE if env is None else env)})
    return SimpleNamespace(returncode=res.exit_code, stdout=res.stdout, stderr=res.stderr)


def assert_one_error(res, code: int, *needles: str) -> str:
    """Exit ``code``, exactly one ``error:`` line on stderr holding every needle, no traceback."""
    assert res.returncode == code, f"exit {res.returncode}, expected {code}: {res.stderr[-2000:]}"
    lines = [l for l in res.stderr.splitlines() if l.startswith(("error:", "internal error"))]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr[-2000:]
    assert "Traceback" not in res.stderr and "internal error" not in res.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def tiny_classifier(tmp_path_factory) -> Path:
    from ._tiny_runs import make_tiny_base

    return make_tiny_base(tmp_path_factory.mktemp("tiny_cls") / "base")


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, tiny_classifier) -> Path:
    from ._tiny_runs import make_full_run

    return make_full_run(tmp_path_factory.mktemp("full_run") / "run", tiny_classifier)


def readonly_target(tmp_path: Path) -> Path:
    """A path that cannot be created: under a 0555 directory, or (as root, who writes anywhere) under /sys."""
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        return ro / "out"
    if not Path("/sys").is_dir():
        pytest.skip("root without /sys: no directory refuses writes")
    return Path("/sys") / f"hubtune-test-{os.getpid()}" / "out"


# --- 1. what used to be exit 70 -------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["train", "train-and-push"])
@pytest.mark.parametrize("value", ["foo", "=3"])
def test_set_without_key_value(tmp_path, command, value):
    run = run_cli if (command, value) == ("train", "foo") else cli
    out = tmp_path / "run"
    res = run(command, "--dataset", str(TWEETS_TRAIN), "-o", str(out), "--set", value, "--no-progress", env=OFFLINE)
    assert_one_error(res, 15, "--set", "KEY=VALUE", repr(value))
    assert not out.exists()


@pytest.mark.parametrize("value", ["accuracy=x", "accuracy", "=0.5", "accuracy=nan"])
def test_min_metric_not_a_number(tmp_path, value):
    out = tmp_path / "run"
    res = cli("train-and-push", "--dataset", str(TWEETS_TRAIN), "-o", str(out), "--min-metric", value,
              "--no-progress")
    assert_one_error(res, 16, "--min-metric", "NAME=NUMBER")
    assert not out.exists()


@pytest.mark.parametrize("flag,value", [("--batch-size", "0"), ("--batch-size", "-3"), ("--limit", "0")])
def test_evaluate_option_out_of_range(tiny_classifier, flag, value):
    res = cli("evaluate", "--model", str(tiny_classifier), "--dataset", str(TWEETS_TEST), flag, value)
    assert_one_error(res, 17, flag, "at least 1")
    assert res.stdout == ""


def test_train_into_readonly_directory(tmp_path, tiny_classifier):
    out = readonly_target(tmp_path)
    res = cli("train", "--base-model", str(tiny_classifier), "--dataset", str(TWEETS_TRAIN), "--limit", "20",
              "-o", str(out), "--no-progress")
    assert_one_error(res, 40, str(out), "--output-dir")
    assert not out.exists()


def test_card_into_readonly_directory(tmp_path, full_run):
    out = readonly_target(tmp_path) / "README.md"
    res = cli("card", str(full_run), "--output", str(out), "--json")
    assert_one_error(res, 40, str(out), "--output")
    assert not out.exists() and not (full_run / "model" / "README.md").exists()


def test_card_with_malformed_metrics(tmp_path, full_run):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(full_run, run)
    (run / "metrics.json").write_text("{bad", encoding="utf-8")
    res = cli("card", str(run), "--json")
    line = assert_one_error(res, 18, "metrics.json", "not valid JSON", "line 1")
    assert str(run) in line
    assert not (run / "model" / "README.md").exists()


# --- --json: the error is also a JSON object on stdout ---------------------------------------------------
def test_json_error_object_on_stdout(tmp_path, tiny_classifier):
    res = run_cli("train", "--base-model", str(tiny_classifier), "--dataset", str(tmp_path / "nope.csv"),
                  "-o", str(tmp_path / "run"), "--json", "--no-progress", env=OFFLINE)
    line = assert_one_error(res, 3, "does not exist")
    obj = json.loads(res.stdout)
    assert obj == {"error": line.removeprefix("error: "), "exit_code": 3, "type": "DatasetNotFoundError"}


def test_no_json_object_without_json(tmp_path, tiny_classifier):
    res = cli("train", "--base-model", str(tiny_classifier), "--dataset", str(tmp_path / "nope.csv"),
              "-o", str(tmp_path / "run"), "--no-progress")
    assert_one_error(res, 3)
    assert res.stdout == ""


# --- 2. labels read as missing, empty files, a missing model directory -------------------------------------
@pytest.mark.parametrize("missing", ["NaN", "NA", ""])
def test_label_read_as_missing_names_the_rows(tmp_path, tiny_classifier, missing):
    data = tmp_path / "d.csv"
    rows = ["a,x", f"b,{missing}", "c,y", "d,x", f"e,{missing}", "f,y"]
    data.write_text("text,label\n" + "\n".join(rows) + "\n", encoding="utf-8")
    out = tmp_path / "run"
    res = cli("train", "--base-model", str(tiny_classifier), "--dataset", str(data), "-o", str(out),
                  "--no-progress")
    assert_one_error(res, 3, "2 row(s) have no label", "data row(s) 2, 5", "'label'")
    assert not out.exists(), "no class named after a missing value is trained"


@pytest.mark.parametrize("name,content", [("e.jsonl", b""), ("e.csv", b"\n")])
def test_empty_dataset_says_no_rows(tmp_path, tiny_classifier, name, content):
    data = tmp_path / name
    data.write_bytes(content)
    out = tmp_path / "run"
    res = cli("train", "--base-model", str(tiny_classifier), "--dataset", str(data), "-o", str(out),
                  "--no-progress")
    line = assert_one_error(res, 3, "has no rows")
    assert "StopIteration" not in line and "DatasetGenerationError" not in line
    assert not out.exists()
    res = cli("evaluate", "--model", str(tiny_classifier), "--dataset", str(data))
    assert_one_error(res, 3, "has no rows")


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_missing_model_directory(tmp_path, command):
    missing = tmp_path / "no-such-model"
    flag = "--base-model" if command == "train" else "--model"
    extra = ["-o", str(tmp_path / "run"), "--no-progress"] if command == "train" else []
    run = run_cli if command == "train" else cli
    res = run(command, flag, str(missing), "--dataset", str(TWEETS_TRAIN), *extra, env=OFFLINE)
    line = assert_one_error(res, 5, f"model directory {missing} does not exist", flag)
    assert "Repo id" not in line and "HFValidationError" not in line
    assert not (tmp_path / "run").exists()


# --- 3. an unreachable endpoint fails at once ------------------------------------------------------------
def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("what", ["model", "base-model", "dataset"])
def test_unreachable_endpoint_fails_fast(tmp_path, tiny_classifier, what):
    """Was 60-95 s and 22 retry lines; now one connection attempt (a few seconds, mostly imports)."""
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    args = {
        "model": ["evaluate", "--model", "org/no-model", "--dataset", str(TWEETS_TEST)],
        "base-model": ["train", "--base-model", "org/no-model", "--dataset", str(TWEETS_TRAIN), "-o",
                       str(tmp_path / "run"), "--no-progress"],
        "dataset": ["evaluate", "--model", str(tiny_classifier), "--dataset", "org/no-data:test"],
    }[what]
    run = run_cli if what == "model" else cli
    started = time.monotonic()
    res = run(*args, env={"HF_ENDPOINT": endpoint, "HF_HUB_OFFLINE": "0"})
    seconds = time.monotonic() - started
    assert_one_error(res, 22, f"cannot reach the Hub at {endpoint}", "connection refused", "HF_HUB_OFFLINE=1")
    assert "Retry" not in res.stderr and "retry" not in res.stderr
    assert seconds < 45, f"{seconds:.1f}s: the clients' retries are back"
    assert not (tmp_path / "run").exists()


# --- 4. local-Hub errors name the endpoint, in whole sentences -------------------------------------------
@pytest.mark.parametrize("what", ["model", "base-model", "dataset"])
def test_local_hub_not_found_names_the_endpoint(local_hub, tmp_path, tiny_classifier, what):
    args, flag = {
        "model": (["evaluate", "--model", "org/no-model", "--dataset", str(TWEETS_TEST)], "--model"),
        "base-model": (["train", "--base-model", "org/no-model", "--dataset", str(TWEETS_TRAIN), "-o",
                        str(tmp_path / "run"), "--no-progress"], "--base-model"),
        "dataset": (["evaluate", "--model", str(tiny_classifier), "--dataset", "org/no-data:test"], "--dataset"),
    }[what]
    res = cli(*args, env={})
    code = 3 if what == "dataset" else 5
    line = assert_one_error(res, code, "not found", f"the Hub at {local_hub.url}", flag)
    assert "huggingface.co" not in line and "Hugging Face Hub" not in line
    assert not line.endswith(("...", ",")) and "If you are trying to acc" not in line
    assert not (tmp_path / "run").exists()


def test_evaluate_refuses_labels_that_are_not_the_models(tmp_path, tiny_classifier):
    data = tmp_path / "binary.csv"
    data.write_text("text,label\ngreat,1\nawful,0\nfine,1\n", encoding="utf-8")
    res = cli("evaluate", "--model", str(tiny_classifier), "--dataset", str(data), "--json")
    line = assert_one_error(res, 41, "label ids 0, 1", "negative, neutral, positive", "--label-column")
    assert json.loads(res.stdout)["error"] == line.removeprefix("error: "), "no metrics, only the error"


def test_every_exit_code_is_in_the_readme_table():
    """Each HubtuneError's exit code has a row in the README's exit-code table (a row may name a range: 10–14)."""
    import inspect
    import re

    import hubtune.core.errors as errors

    from .conftest import REPO

    text = (REPO / "README.md").read_text(encoding="utf-8")
    documented: set[int] = {0, 70}
    for first in re.findall(r"^\| ([0-9][0-9,– ]*) \|", text, flags=re.M):
        for part in first.split(","):
            lo, _, hi = part.strip().partition("–")
            documented |= set(range(int(lo), int(hi or lo) + 1))
    codes = {cls.exit_code: name for name, cls in inspect.getmembers(errors, inspect.isclass)
             if issubclass(cls, errors.HubtuneError)}
    assert not set(codes) - documented, {c: codes[c] for c in set(codes) - documented}
