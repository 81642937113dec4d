"""Issue 35 item 5: a full disk (a real small tmpfs where one can be mounted) is one line naming the path, exit 42,
nothing half-written kept as output, and the same command (train: with --resume) succeeds once there is room.
Before: train left a checkpoint without weights that --resume then took (exit 70), merge and export exit 70."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ._bad_input import assert_refused, cli, fill, mount_tmpfs, succeeds
from .conftest import TWEETS_TEST


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    from ._tiny_runs import make_tiny_base

    return make_tiny_base(tmp_path_factory.mktemp("disk_full") / "base")


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, base) -> Path:
    from ._tiny_runs import make_lora_run

    return make_lora_run(tmp_path_factory.mktemp("disk_full_lora") / "run", base)


@pytest.mark.slow
def test_train_on_a_full_disk_then_resume(tmp_path, base):
    with mount_tmpfs(tmp_path / "fs", "64m") as fs:
        out = fs / "run"
        args = ["train", "--base-model", str(base), "--dataset", str(TWEETS_TEST), "--limit", "40", "-o", str(out),
                "--epochs", "2", "--batch-size", "8", "--max-length", "32", "--precision", "fp32", "--no-progress"]
        filler = fill(fs, 14 * 2**20)  # room for one checkpoint (weights + optimizer ~ 12 MB), not two
        res = cli(*args)
        assert res.returncode == 42, res.stderr[-2000:]
        line = res.stderr.strip().splitlines()[-1]
        assert line.startswith("error: no space left") and str(out / "checkpoints") in line and "--resume" in line
        done = [p.name for p in (out / "checkpoints").glob("checkpoint-*") if (p / "trainer_state.json").is_file()]
        assert done, "the first checkpoint should be complete"
        filler.unlink()
        succeeds([*args, "--resume"])
        assert json.loads((out / "run_summary.json").read_text())["resumed_from"] == done[0]


def test_merge_on_a_full_disk(tmp_path, lora_run):
    with mount_tmpfs(tmp_path / "fs", "2m") as fs:
        out = fs / "merged"
        args = ["merge", str(lora_run), "-o", str(out), "--eval-dataset", str(TWEETS_TEST), "--max-examples", "8",
                "--no-progress"]
        assert_refused(cli(*args), "no space left", str(out), "--output", code=42)
        assert sorted(p.name for p in fs.iterdir()) == [], "a half-written merge was left"
        with mount_tmpfs(tmp_path / "fs2", "64m") as roomy:
            succeeds(["merge", str(lora_run), "-o", str(roomy / "merged"), "--eval-dataset", str(TWEETS_TEST),
                      "--max-examples", "8"])


@pytest.mark.slow
def test_export_on_a_full_disk(tmp_path, base):
    with mount_tmpfs(tmp_path / "fs", "2m") as fs:
        out = fs / "onnx"
        args = ["export", str(base), "--output", str(out), "--eval-dataset", str(TWEETS_TEST), "--no-progress"]
        assert_refused(cli(*args), "no space left", code=42)
        assert not out.exists() or not any(out.rglob("*.onnx")), "a half-written graph was left"
