"""Issue 35, items 4 and 5: a kill at every phase of batch-predict and merge-predictions (the removal of the parts
included), and a full disk, leave a state from which ``--resume`` (or the same merge) finishes with exactly the
rows of an uninterrupted run - or says the output is complete.

The in-process tests stop a run at a phase through the ``kill_point`` hook and freeze the output folder exactly
as it is at that moment (no cleanup of the failing run has happened yet: what a SIGKILL leaves), then resume from
that copy. The ``slow`` ones SIGKILL a real ``python -m hubtune batch-predict`` at the phase.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from hubtune.predict import shards as shards_mod

from ._bad_input import assert_refused, cli, mount_tmpfs
from .test_predict import ROOT, TWEETS, _save_tiny

N_ROWS = 50
ARGS = ["--backend", "torch", "--dtype", "fp32", "--chunk-size", "10", "--no-progress", "--keep-columns", "text"]


class Killed(BaseException):
    """Stands for the SIGKILL at a kill point (raised after the folder was frozen)."""


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny classifier, a 50-row csv, the uninterrupted result and the two parts of a 2-shard run of it."""
    from hubtune.predict import PredictOptions, batch_predict

    root = tmp_path_factory.mktemp("killpoints")
    model = _save_tiny(root / "tiny", seed=0)
    data = root / "data.csv"
    pd.read_csv(TWEETS).iloc[:N_ROWS].to_csv(data, index=False)
    ref = root / "ref" / "p.parquet"
    parts = root / "parts"

    def run(output, **kw):
        batch_predict(PredictOptions(model=str(model), dataset=str(data), output=str(output), backend="torch",
                                     dtype="fp32", chunk_size=10, keep_columns=["text"], progress=False, **kw))

    run(ref)
    for i in range(2):
        run(parts / f"p{i}.parquet", num_shards=2, shard_index=i)
    return {"model": model, "data": data, "ref": pd.read_parquet(ref), "parts": parts}


def _bp(world, out, *more):
    return ["batch-predict", "-m", str(world["model"]), "-d", str(world["data"]), "-o", str(out), *ARGS, *more]


def _stop_at(monkeypatch, phase: str, folder: Path, frozen: Path, nth: int = 1) -> None:
    """At the ``nth`` time ``phase`` is reached, copy ``folder`` to ``frozen`` and raise Killed."""
    seen = {"n": 0}

    def fake_sigkill(at: str) -> None:
        seen["n"] += 1
        if seen["n"] == nth:
            shutil.copytree(folder, frozen, symlinks=True)
            raise Killed(at)

    monkeypatch.setenv(shards_mod.KILL_ENV, phase)
    monkeypatch.setattr(shards_mod, "sigkill", fake_sigkill)


def _thaw(frozen: Path, folder: Path) -> None:
    shutil.rmtree(folder)
    shutil.copytree(frozen, folder, symlinks=True)


def _assert_exact(world, out: Path) -> None:
    """OUTPUT holds exactly the uninterrupted run's rows (none lost or twice), and nothing is left beside it."""
    df = pd.read_parquet(out)
    assert list(df["row_id"]) == list(range(N_ROWS))
    pd.testing.assert_frame_equal(df, world["ref"])
    left = sorted(p.name for p in out.parent.iterdir())
    assert left == sorted(["p.parquet", "p.parquet.meta.json", "p.parquet.metrics.json"]), left


PHASES = [("shard-written", 2), ("shard-recorded", 2), ("assembling", 1), ("output-tmp", 1),
          ("output-renamed", 1), ("meta-written", 1), ("parts-removing", 1)]


def test_every_phase_is_named():
    assert sorted(p for p, _ in PHASES) == sorted(shards_mod.KILL_PHASES)


@pytest.mark.parametrize("phase,nth", PHASES, ids=[p for p, _ in PHASES])
def test_batch_predict_resumes_after_a_kill_at(world, tmp_path, monkeypatch, phase, nth):
    out_dir, frozen = tmp_path / "out", tmp_path / "frozen"
    out_dir.mkdir()
    out = out_dir / "p.parquet"
    with monkeypatch.context() as m:
        _stop_at(m, phase, out_dir, frozen, nth)
        with pytest.raises(Killed):
            cli(*_bp(world, out))
    _thaw(frozen, out_dir)
    res = cli(*_bp(world, out, "--resume"))
    if phase == "parts-removing":  # the output was complete before its parts went
        assert_refused(res, "already complete", code=4)
    else:
        assert res.returncode == 0, res.stderr
    _assert_exact(world, out)


def test_parts_half_removed_by_an_older_run_says_complete(world, tmp_path):
    """Item 4 as reported: the parts folder partly deleted under a complete manifest (a kill inside rmtree) made
    every --resume exit 70 (FileNotFoundError on a shard)."""
    out = tmp_path / "p.parquet"
    assert cli(*_bp(world, out, "--keep-parts")).returncode == 0
    parts = tmp_path / "p.parquet.parts"
    for f in sorted(parts.glob("shard-*.parquet"))[:3]:
        f.unlink()
    assert_refused(cli(*_bp(world, out, "--resume")), "already complete", "--overwrite", code=4)
    assert not parts.exists()
    _assert_exact(world, out)
    assert cli(*_bp(world, out, "--overwrite")).returncode == 0
    _assert_exact(world, out)


@pytest.mark.parametrize("phase", shards_mod.MERGE_KILL_PHASES)
def test_merge_after_a_kill_at(world, tmp_path, monkeypatch, phase):
    out_dir, frozen = tmp_path / "out", tmp_path / "frozen"
    out_dir.mkdir()
    out = out_dir / "p.parquet"
    args = ["merge-predictions", str(world["parts"] / "p0.parquet"), str(world["parts"] / "p1.parquet"), "-o", str(out)]
    with monkeypatch.context() as m:
        _stop_at(m, phase, out_dir, frozen)
        with pytest.raises(Killed):
            cli(*args)
    _thaw(frozen, out_dir)
    res = cli(*args)
    if phase == "output-renamed":  # the last step: the merged output is complete
        assert_refused(res, "already exists", code=4)
    else:
        assert res.returncode == 0, res.stderr
    df = pd.read_parquet(out)
    pd.testing.assert_frame_equal(df, world["ref"])
    assert sorted(p.name for p in out_dir.iterdir()) == ["p.parquet", "p.parquet.meta.json"]


# --------------------------------------------------------------------------------------------------
# A full disk
# --------------------------------------------------------------------------------------------------
def _enospc(path) -> OSError:
    return OSError(errno.ENOSPC, "No space left on device", str(path))


def test_disk_full_while_writing_a_shard(world, tmp_path, monkeypatch):
    """Item 5: the 3rd shard's parquet half-written when the disk fills: one line (exit 42) naming the path, the
    half-written file gone, two shards recorded; after space is freed --resume completes with exact rows."""
    import pyarrow.parquet as pq

    real = pq.write_table
    calls = {"n": 0}

    def full_at_third(table, where, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            Path(where).write_bytes(b"PAR1 half")
            raise _enospc(where)
        return real(table, where, *a, **kw)

    out = tmp_path / "p.parquet"
    with monkeypatch.context() as m:
        m.setattr(pq, "write_table", full_at_third)
        line = assert_refused(cli(*_bp(world, out)), "shard-00002.parquet", "disk is full", "--resume", code=42)
    assert str(tmp_path) in line
    parts = tmp_path / "p.parquet.parts"
    assert sorted(p.name for p in parts.iterdir()) == [  # the 3rd chunk's other files are gone too
        "manifest.json", "shard-00000.eval.npz", "shard-00000.parquet", "shard-00001.eval.npz", "shard-00001.parquet"]
    assert not out.exists()
    assert cli(*_bp(world, out, "--resume")).returncode == 0
    _assert_exact(world, out)


def test_disk_full_while_assembling(world, tmp_path, monkeypatch):
    out = tmp_path / "p.parquet"

    def full(self, table):
        raise _enospc(self.tmp)

    with monkeypatch.context() as m:
        m.setattr(shards_mod.Writer, "_write", full)
        assert_refused(cli(*_bp(world, out)), "p.parquet", "disk is full", code=42)
    assert not out.exists() and not (tmp_path / ".p.parquet.tmp").exists()
    assert cli(*_bp(world, out, "--resume")).returncode == 0
    _assert_exact(world, out)


def test_disk_full_while_merging_keeps_the_old_output(world, tmp_path, monkeypatch):
    out = tmp_path / "m.parquet"
    out.write_text("OLD\n")
    args = ["merge-predictions", str(world["parts"] / "p0.parquet"), str(world["parts"] / "p1.parquet"), "-o",
            str(out), "--overwrite"]

    import hubtune.predict.merge as merge_mod

    def full(path, data, hint=None):
        raise shards_mod.disk_full_error(path, hint)

    with monkeypatch.context() as m:
        m.setattr(merge_mod, "write_json", full)
        assert_refused(cli(*args), "disk is full", "merge-predictions", code=42)
    assert out.read_text() == "OLD\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.parquet"]
    assert cli(*args).returncode == 0
    pd.testing.assert_frame_equal(pd.read_parquet(out), world["ref"])


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 2 MB tmpfs (root with mount rights only; skipped elsewhere)."""
    with mount_tmpfs(tmp_path / "tmpfs", "2m") as mnt:
        yield mnt


def test_real_full_disk_then_resume(world, small_tmpfs):
    filler = small_tmpfs / "filler"
    free = shutil.disk_usage(small_tmpfs).free
    filler.write_bytes(b"\0" * (free - 12 * 1024))
    out = small_tmpfs / "o" / "p.parquet"
    res = cli(*_bp(world, out))
    assert_refused(res, str(small_tmpfs), "disk is full", code=42)
    assert not out.exists()
    assert not [p for p in small_tmpfs.rglob(".*.tmp")], "a half-written file was left"
    filler.unlink()
    assert cli(*_bp(world, out, "--resume")).returncode == 0
    _assert_exact(world, out)


# --------------------------------------------------------------------------------------------------
# A real SIGKILL (a fresh process each)
# --------------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("phase", shards_mod.KILL_PHASES)
def test_sigkill_then_resume(world, tmp_path, phase):
    out = tmp_path / "p.parquet"
    env = dict(os.environ, HF_HUB_OFFLINE="1", **{shards_mod.KILL_ENV: phase})
    r = subprocess.run([sys.executable, "-m", "hubtune", *_bp(world, out)], capture_output=True, text=True, cwd=ROOT,
                       env=env, timeout=300)
    assert r.returncode == -9, r.stderr[-2000:]
    res = cli(*_bp(world, out, "--resume"))
    if phase == "parts-removing":
        assert_refused(res, "already complete", code=4)
    else:
        assert res.returncode == 0, res.stderr
    _assert_exact(world, out)
