"""Issue 35, the bad-input battery: train, evaluate, card and merge given bad data, bad options, bad configs and bad
outputs. Each case: refused with its exit code (never 0 or 70), one stderr line, no traceback, nothing written or
deleted in the watched folders, and the same command succeeds once the input is fixed."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Callable

import pytest

from ._bad_input import refused_cleanly, succeeds
from .conftest import TWEETS_TEST

ROWS = [r for r in csv.DictReader(TWEETS_TEST.open(encoding="utf-8"))][:40]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    from ._tiny_runs import make_tiny_base

    return make_tiny_base(tmp_path_factory.mktemp("bad_train") / "base")


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, base) -> Path:
    from ._tiny_runs import make_full_run

    return make_full_run(tmp_path_factory.mktemp("bad_card") / "run", base)


# --- the data a user brings: (file name, how to write it bad, what the line names, exit code) ------------------
def _text(path: Path, text: str, encoding: str = "utf-8") -> None:
    path.write_bytes(text.encode(encoding))


def _rows(path: Path, change: Callable[[int, dict], dict | None]) -> None:
    out = [r for i, row in enumerate(ROWS) if (r := change(i, dict(row))) is not None]
    if path.suffix == ".csv":
        with path.open("w", encoding="utf-8", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=sorted({k for r in out for k in r}))
            w.writeheader()
            w.writerows(out)
    else:
        write_jsonl(path, out)


def _unterminated(path: Path) -> None:
    _rows(path, lambda i, r: r)
    with path.open("a", encoding="utf-8") as fh:
        fh.write('{"text": "cut short\n')


def _array_line(path: Path) -> None:
    _rows(path, lambda i, r: r)
    with path.open("a", encoding="utf-8") as fh:
        fh.write('["not", "an", "object"]\n')


def _latin1(path: Path) -> None:
    _text(path, "text,label\n" + "".join(f"{r['text']} caf\u00e9,{r['label']}\n" for r in ROWS).replace('"', ""), "latin-1")


def _corrupt_parquet(path: Path) -> None:
    import pandas as pd

    pd.DataFrame(ROWS).to_parquet(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


DATA_CASES = {
    "missing-file": ("data.jsonl", None, ["data.jsonl"], 3),
    "empty-file": ("data.jsonl", lambda p: _text(p, ""), ["no rows"], 3),
    "blank-lines-only": ("data.jsonl", lambda p: _text(p, "\n  \n\n"), ["no rows"], 3),
    "header-only-csv": ("data.csv", lambda p: _text(p, "text,label\n"), ["no rows"], 3),
    "unterminated-jsonl-line": ("data.jsonl", _unterminated, ["line 41", "not valid JSON"], 3),
    "array-jsonl-line": ("data.jsonl", _array_line, ["line 41", "JSON list"], 3),
    "non-utf8-csv": ("data.csv", _latin1, ["--encoding"], 3),
    "empty-text-row": ("data.jsonl", lambda p: _rows(p, lambda i, r: {**r, "text": "" if i == 3 else r["text"]}),
                       ["row(s) 4", "--text-column"], 3),
    "null-text-row": ("data.jsonl", lambda p: _rows(p, lambda i, r: {**r, "text": None if i == 6 else r["text"]}),
                      ["row(s) 7"], 3),
    "missing-label-row": ("data.jsonl", lambda p: _rows(p, lambda i, r: {**r, "label": None if i == 2 else r["label"]}),
                          ["row(s) 3", "--label-column"], 3),
    "no-text-column": ("data.jsonl", lambda p: _rows(p, lambda i, r: {"words": r["text"], "label": r["label"]}),
                       ["--text-column"], 3),
    "no-label-column": ("data.jsonl", lambda p: _rows(p, lambda i, r: {"text": r["text"]}), ["--label-column"], 3),
    "corrupt-parquet": ("data.parquet", _corrupt_parquet, ["data.parquet", "parquet"], 3),
    "directory-without-data": ("data", lambda p: p.mkdir(), ["data"], 3),
}


def _good_data(path: Path) -> None:
    if path.is_dir():
        path.rmdir()
        path = path / "train.jsonl"
        path.parent.mkdir()
    if path.suffix == ".parquet":
        import pandas as pd

        pd.DataFrame(ROWS).to_parquet(path)
    else:
        _rows(path, lambda i, r: r)


def _bad_data(tmp_path: Path, case: str) -> Path:
    name, make, _, _ = DATA_CASES[case]
    path = tmp_path / "in" / name
    path.parent.mkdir(exist_ok=True)
    if make is not None:
        make(path)
    return path


def _train_args(base: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--base-model", str(base), "--dataset", str(data), "-o", str(out), "--set", "max_steps=1",
            "--batch-size", "8", "--max-length", "32", "--precision", "fp32", "--no-progress", *extra]


@pytest.mark.parametrize("case", sorted(DATA_CASES))
def test_train_refuses_bad_data(tmp_path, base, case):
    data, out = _bad_data(tmp_path, case), tmp_path / "run"
    _, _, needles, code = DATA_CASES[case]
    refused_cleanly(_train_args(base, data, out), [out, tmp_path / "in"], *needles, code=code)
    _good_data(data)
    succeeds(_train_args(base, data, out))
    assert (out / "model" / "config.json").is_file()


@pytest.mark.parametrize("case", sorted(DATA_CASES))
def test_evaluate_refuses_bad_data(tmp_path, base, case):
    data = _bad_data(tmp_path, case)
    _, _, needles, code = DATA_CASES[case]
    refused_cleanly(["evaluate", "--model", str(base), "--dataset", str(data)], [tmp_path], *needles, code=code)
    _good_data(data)
    res = succeeds(["evaluate", "--model", str(base), "--dataset", str(data), "--json"])
    assert "accuracy" in json.loads(res.stdout)["metrics"]


# --- options, configs and outputs of train ------------------------------------------------------------------------
def _yaml(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


TRAIN_OPTION_CASES = {
    # case: (extra args, the fixed args, needles, exit code)
    "set-unknown-key": (["--set", "learning_rat=1e-4"], ["--set", "learning_rate=1e-4"], ["learning_rat"], 2),
    "set-no-equals": (["--set", "learning_rate"], ["--set", "learning_rate=1e-4"], ["KEY=VALUE"], 15),
    "mode-unknown": (["--mode", "lorax"], ["--mode", "lora"], ["lorax"], 2),
    "task-unknown": (["--task", "feature-extraction"], ["--task", "text-classification"], ["feature-extraction"], 2),
    "precision-fp16-without-gpu": (["--precision", "fp16"], ["--precision", "fp32"], ["fp16", "GPU"], 2),
    "batch-size-zero": (["--batch-size", "0"], ["--batch-size", "8"], ["batch_size"], None),
    "limit-zero": (["--limit", "0"], ["--limit", "30"], ["0"], None),
    "label-column-missing": (["--label-column", "sentiment"], ["--label-column", "label"], ["sentiment"], 3),
    "text-column-missing": (["--text-column", "body"], ["--text-column", "text"], ["body"], 3),
    "one-class-after-limit": (["--set", "data.max_samples=1"], ["--limit", "30"], ["at least 2"], 3),
    "eval-dataset-missing": (["--eval-dataset", "nowhere.jsonl"], [], ["nowhere.jsonl"], 3),
    "trainer-unknown-field": (["--set", "trainer.warmup_stepz=3"], ["--set", "trainer.warmup_steps=0"], ["warmup_stepz"], 2),
}


@pytest.mark.parametrize("case", sorted(TRAIN_OPTION_CASES))
def test_train_refuses_bad_options(tmp_path, base, case):
    data = write_jsonl(tmp_path / "train.jsonl", ROWS)
    bad, fixed, needles, code = TRAIN_OPTION_CASES[case]
    out = tmp_path / "run"
    line = refused_cleanly(_train_args(base, data, out, *bad), [out, tmp_path], *needles, code=code)
    assert "internal error" not in line
    succeeds(_train_args(base, data, out, *fixed))


CONFIG_CASES = {
    "unknown-top-key": ("learning_rat: 0.001\n", ["learning_rat"]),
    "unknown-section-key": ("lora:\n  rank: 4\n", ["rank"]),
    "not-a-mapping": ("- a\n- b\n", ["mapping"]),
    "yaml-syntax": ("data: [unclosed\n", ["not valid YAML"]),
    "wrong-type": ("num_epochs: three\n", ["num_epochs"]),
}


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
def test_train_refuses_bad_config_file(tmp_path, base, case):
    data = write_jsonl(tmp_path / "train.jsonl", ROWS)
    text, needles = CONFIG_CASES[case]
    cfg = _yaml(tmp_path / "train.yaml", text)
    out = tmp_path / "run"
    refused_cleanly(_train_args(base, data, out, "--config", str(cfg)), [out, tmp_path], *needles, code=2)
    _yaml(cfg, "num_epochs: 1\n")
    succeeds(_train_args(base, data, out, "--config", str(cfg)))


def test_train_config_file_missing(tmp_path, base):
    data = write_jsonl(tmp_path / "train.jsonl", ROWS)
    out = tmp_path / "run"
    refused_cleanly(_train_args(base, data, out, "--config", str(tmp_path / "nope.yaml")), [out], "nope.yaml", code=2)


def test_train_keeps_a_good_run_it_is_refused_to_replace(tmp_path, base):
    data, out = write_jsonl(tmp_path / "train.jsonl", ROWS), tmp_path / "run"
    succeeds(_train_args(base, data, out))
    refused_cleanly(_train_args(base, data, out), [out], "not empty", "--overwrite", code=4)
    # with --overwrite but bad data: the good run stays as it was
    bad = _bad_data(tmp_path, "empty-text-row")
    refused_cleanly(_train_args(base, bad, out, "--overwrite"), [out], "row(s) 4", code=3)
    succeeds(_train_args(base, data, out, "--overwrite"))


def test_train_output_is_a_file(tmp_path, base):
    data, out = write_jsonl(tmp_path / "train.jsonl", ROWS), tmp_path / "run"
    out.write_text("mine", encoding="utf-8")
    refused_cleanly(_train_args(base, data, out), [out], "is a file", "--output-dir", code=4)


@pytest.mark.parametrize("changed,needle", [(["--task", "fill-mask"], "task"), (["--lr", "1e-3"], "learning_rate"),
                                            (["--mode", "lora"], "mode"), (["--max-length", "64"], "max_length")])
def test_train_resume_refuses_other_settings(tmp_path, base, changed, needle):
    """A --resume that would train something else than the run it continues (was: the other task trained on the
    checkpoint, then exit 6 on the optimizer state; a changed learning rate went through silently)."""
    data, out = write_jsonl(tmp_path / "train.jsonl", ROWS), tmp_path / "run"
    succeeds(_train_args(base, data, out))
    refused_cleanly(_train_args(base, data, out, "--resume", *changed), [out], "--resume", needle,
                    "--overwrite", code=2)
    succeeds(_train_args(base, data, out, "--resume"))


def test_train_resume_skips_a_half_written_checkpoint(tmp_path, base):
    """A checkpoint cut short (no trainer_state.json: a full disk, a kill while saving) is not resumed from (was:
    exit 70, FileNotFoundError on trainer_state.json); the last complete one is, and the half one is redone."""
    data, out = write_jsonl(tmp_path / "train.jsonl", ROWS), tmp_path / "run"
    two_epochs = ("--set", "max_steps=-1", "--epochs", "2", "--limit", "20")
    succeeds(_train_args(base, data, out, *two_epochs))
    ckpts = sorted((out / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    assert len(ckpts) == 2, ckpts
    first, half = ckpts
    (half / "trainer_state.json").unlink()
    (half / "model.safetensors").unlink()
    succeeds(_train_args(base, data, out, *two_epochs, "--resume"))
    assert json.loads((out / "run_summary.json").read_text())["resumed_from"] == first.name
    assert (half / "trainer_state.json").is_file()


# --- card ------------------------------------------------------------------------------------------------------
TEMPLATE_CASES = {
    "jinja-syntax": ("# {{ model_name }\n", ["does not parse as Jinja", "line 1", "--template"], 27),
    "unclosed-block": ("{% if model_name %}\n# x\n", ["does not parse as Jinja", "--template"], 27),
    "not-utf8": (b"# caf\xe9 {{ model_name }}\n", ["not UTF-8", "--template"], 27),
    "missing": (None, ["does not exist", "--template"], 2),
}


@pytest.mark.parametrize("case", sorted(TEMPLATE_CASES))
def test_card_refuses_a_bad_template_before_evaluating(tmp_path, full_run, case):
    text, needles, code = TEMPLATE_CASES[case]
    tpl, out = tmp_path / "card.md", tmp_path / "README.md"
    if text is not None:
        tpl.write_bytes(text if isinstance(text, bytes) else text.encode())
    line = refused_cleanly(["card", str(full_run), "--template", str(tpl), "--output", str(out)], [out, full_run],
                           *needles, code=code)
    assert str(tpl) in line
    tpl.write_text("# {{ model_name }}\n{{ model_description }}\n", encoding="utf-8")
    succeeds(["card", str(full_run), "--template", str(tpl), "--output", str(out)])
    assert out.is_file()


def test_card_template_failing_to_render_is_one_line(tmp_path, full_run):
    tpl, out = tmp_path / "card.md", tmp_path / "README.md"
    tpl.write_text("# {{ nothing.at_all() }}\n", encoding="utf-8")
    refused_cleanly(["card", str(full_run), "--template", str(tpl), "--output", str(out), "--no-progress"],
                    [out, full_run / "model"], "failed to render", "UndefinedError", code=27)
    # (run_summary.json may keep the throughput measured for these weights: a cache, not the card)


@pytest.mark.parametrize("broken", ["run_summary.json", "config.yaml"])
def test_card_run_file_broken(tmp_path, full_run, broken):
    run = tmp_path / "run"
    shutil.copytree(full_run, run)
    good = (run / broken).read_bytes()
    (run / broken).write_text("{bad: [" if broken.endswith("yaml") else "{bad", encoding="utf-8")
    refused_cleanly(["card", str(run), "--output", str(tmp_path / "README.md")], [tmp_path], broken)
    (run / broken).write_bytes(good)
    succeeds(["card", str(run), "--output", str(tmp_path / "README.md")])


def test_card_of_a_model_folder_is_not_a_run(tmp_path, base):
    refused_cleanly(["card", str(base), "--output", str(tmp_path / "README.md")], [tmp_path, base], "not a run directory")


# --- merge -----------------------------------------------------------------------------------------------------
def test_merge_of_a_full_run_is_refused(tmp_path, full_run):
    out = tmp_path / "merged"
    refused_cleanly(["merge", str(full_run), "--output", str(out)], [out, full_run], "LoRA")


def test_merge_of_a_missing_run(tmp_path):
    refused_cleanly(["merge", str(tmp_path / "nope")], [tmp_path], "nope")


@pytest.mark.parametrize("command", [pytest.param("train", marks=pytest.mark.slow),
                                     pytest.param("evaluate", marks=pytest.mark.slow), "batch-predict"])
def test_unreadable_data_is_one_line_in_a_fresh_process(tmp_path, base, command):
    """datasets logged its own error line before hubtune's (two lines on stderr): in a fresh process, where the
    library's log handlers write to the real stderr, only hubtune's line remains."""
    from .conftest import run_cli

    data = _bad_data(tmp_path, "corrupt-parquet")
    out = tmp_path / "out"
    args = {"train": _train_args(base, data, out),
            "evaluate": ["evaluate", "--model", str(base), "--dataset", str(data)],
            "batch-predict": ["batch-predict", "--model", str(base), "--dataset", str(data), "-o", str(out / "p.parquet")]}
    refused_cleanly(args[command], [out, tmp_path / "in"], "corrupt", "parquet", code=3, run=run_cli,
                    env={"HF_HUB_OFFLINE": "1", "CI": "true"})


def test_batch_predict_resume_with_another_task_names_the_task(tmp_path, base):
    """Resuming an interrupted text-classification run with --task feature-extraction was refused for its
    label_names; the line names the task and --task."""
    import os
    import subprocess
    import sys

    from hubtune.predict.shards import KILL_ENV

    data, out = write_jsonl(tmp_path / "in.jsonl", ROWS), tmp_path / "p.parquet"
    args = ["batch-predict", "--model", str(base), "--dataset", str(data), "-o", str(out), "--chunk-size", "8",
            "--backend", "torch", "--dtype", "fp32"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", CI="true", **{KILL_ENV: "shard-recorded"})
    killed = subprocess.run([sys.executable, "-m", "hubtune", *args], env=env, capture_output=True, timeout=300)
    assert killed.returncode == -9, killed.stderr[-2000:]
    parts = tmp_path / "p.parquet.parts"
    refused_cleanly([*args, "--resume", "--task", "feature-extraction"], [parts], "task was 'text-classification'",
                    "--task", code=31)
    succeeds([*args, "--resume", "--task", "text-classification"])
