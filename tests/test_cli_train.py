"""Bad input through the real CLI: one-line error, non-zero exit, no partial output directory."""

from __future__ import annotations

import json

import pytest

from .conftest import TWEETS_TEST, TWEETS_TRAIN, run_cli


def _train(tmp_path, base, *extra):
    out = tmp_path / "run"
    res = run_cli(
        "train", "--base-model", base, "--output-dir", str(out), "--epochs", "1", "--max-length", "32",
        "--batch-size", "16", "--no-progress", *extra, env={"HF_HUB_OFFLINE": "1"},
    )
    return res, out


def _bad_csv(tmp_path, name, content: bytes):
    p = tmp_path / name
    p.write_bytes(content)
    return str(p)


CASES = {
    "missing-column": (lambda t: ["--dataset", str(TWEETS_TRAIN), "--text-column", "txt"], "did you mean 'text'", 3),
    "empty": (lambda t: ["--dataset", _bad_csv(t, "e.csv", b"text,label\n")], "no rows", 3),
    "nan-labels": (lambda t: ["--dataset", _bad_csv(t, "n.csv", b"text,label\na,x\nb,\nc,y\nd,x\n")], "no label", 3),
    "unseen-eval-label": (
        lambda t: ["--dataset", str(TWEETS_TRAIN), "--limit", "50", "--eval-dataset", _bad_csv(t, "ev.csv", b"text,label\nhi,angry\n")],
        "'angry'",
        3,
    ),
    "not-utf8": (lambda t: ["--dataset", _bad_csv(t, "l.csv", "text,label\ncaf\xe9,a\nb,c\n".encode("latin-1"))], "--encoding", 3),
    "unknown-format": (lambda t: ["--dataset", _bad_csv(t, "x.xlsx", b"zz")], "unknown format", 3),
    "unreadable": (lambda t: ["--dataset", _bad_csv(t, "x.parquet", b"not parquet")], "could not read", 3),
    "missing-file": (lambda t: ["--dataset", str(t / "nope.csv")], "does not exist", 3),
    "unknown-hub-dataset": (lambda t: ["--dataset", "no-org/no-such-data:train"], "dataset", 3),
    "bad-config-key": (lambda t: ["--dataset", str(TWEETS_TRAIN), "--set", "lerning_rate=1"], "did you mean 'learning_rate'", 2),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_one_line_error_no_output(tmp_path, tiny_bert_dir, case):
    make_args, expected, code = CASES[case]
    res, out = _train(tmp_path, tiny_bert_dir, *make_args(tmp_path))
    assert res.returncode == code, res.stderr
    lines = [l for l in res.stderr.strip().splitlines() if l.startswith(("error:", "internal error"))]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert expected in lines[0]
    assert "Traceback" not in res.stderr
    assert not out.exists(), "bad input must leave no output directory"


def test_unknown_base_model(tmp_path):
    res, out = _train(tmp_path, str(tmp_path / "no-model"), "--dataset", str(TWEETS_TRAIN), "--limit", "20")
    assert res.returncode == 5 and "error: model directory" in res.stderr and "does not exist" in res.stderr
    assert not out.exists()


def test_debug_env_shows_traceback(tmp_path, tiny_bert_dir):
    res = run_cli("train", "--base-model", tiny_bert_dir, "--dataset", str(tmp_path / "x.csv"),
                  "-o", str(tmp_path / "o"), env={"HUBTUNE_DEBUG": "1"})
    assert res.returncode != 0 and "Traceback" in res.stderr


def test_train_then_evaluate_cli_agree(tmp_path, tiny_bert_dir):
    res, out = _train(tmp_path, tiny_bert_dir, "--dataset", str(TWEETS_TRAIN), "--eval-dataset", str(TWEETS_TEST),
                      "--limit", "48", "--set", "data.eval_max_samples=40", "--json")
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["sizes"] == {"train": 48, "eval": 40}
    # evaluate on the exact eval rows train used (same seed-shuffled subset of the test file)
    ev = run_cli("evaluate", "--model", str(out / "model"), "--dataset", str(TWEETS_TEST), "--limit", "40", "--json")
    assert ev.returncode == 0, ev.stderr
    got = json.loads(ev.stdout)["metrics"]
    want = json.loads((out / "metrics.json").read_text())["eval"]
    for k in ("accuracy", "f1_macro", "f1_micro", "precision_macro", "recall_macro", "confusion_matrix"):
        assert got[k] == want[k], k


def test_help_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys; from hubtune.cli.main import app; import hubtune.cli.main as m; " \
           "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, [k for k in sys.modules if k.startswith(('torch','transformers'))][:3]"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0
    res = run_cli("--help")
    assert res.returncode == 0 and "train" in res.stdout


def test_train_by_hub_ids_through_local_hub(local_hub, tiny_bert_dir, tmp_path):
    """`hubtune train --base-model org/x --dataset org/y:train` with HF_ENDPOINT on the local Hub."""
    import pandas as pd

    api = local_hub.api()
    api.create_repo("org/tiny-base")
    api.upload_folder(folder_path=tiny_bert_dir, repo_id="org/tiny-base")
    ds = tmp_path / "ds"
    (ds / "data").mkdir(parents=True)
    pd.read_csv(TWEETS_TRAIN).head(80).to_parquet(ds / "data" / "train-00000-of-00001.parquet")
    api.create_repo("org/tweets", repo_type="dataset")
    api.upload_folder(folder_path=str(ds), repo_id="org/tweets", repo_type="dataset")
    out = tmp_path / "run"
    res = run_cli("train", "--base-model", "org/tiny-base", "--dataset", "org/tweets:train", "-o", str(out),
                  "--epochs", "1", "--max-length", "32", "--no-progress", "--json", env=local_hub.env)
    assert res.returncode == 0, res.stderr[-2000:]
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["base_model"] == "org/tiny-base" and summary["sizes"] == {"train": 72, "eval": 8}
