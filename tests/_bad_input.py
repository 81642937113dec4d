"""Issue 35: the bad-input battery's shared checks.

Each case runs a real command on bad input and asserts: an exit code other than 0 and 70 (the code the case
names, when it names one), exactly one line on stderr (``error: ...``), no traceback, nothing written or deleted
in the folders the case watches (no partial output, good output kept), and - where the case gives a fix - the
same command succeeds once the input is fixed.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Iterable

OFFLINE = {"HF_HUB_OFFLINE": "1"}


def cli(*args: str, env: dict | None = None) -> SimpleNamespace:
    """The CLI in this process (fast); ``tests.conftest.run_cli`` is the same in a fresh process."""
    from typer.testing import CliRunner

    from hubtune.cli.main import app

    restore = {k: os.environ.get(k) for k in ("HF_HUB_DISABLE_PROGRESS_BARS", "HF_DATASETS_DISABLE_PROGRESS_BARS",
                                              "HF_TOKEN")}
    res = CliRunner().invoke(app, [str(a) for a in args], env={**restore, **(OFFLINE if env is None else env)})
    return SimpleNamespace(returncode=res.exit_code, stdout=res.stdout, stderr=res.stderr)


def snapshot(*roots: str | os.PathLike[str]) -> dict[str, str]:
    """Every path under ``roots`` (the roots included) with a digest of its content: a file's sha256, 'dir', or
    where a symlink points. A root that does not exist is recorded as absent."""
    out: dict[str, str] = {}
    for root in roots:
        root = Path(root)
        if not root.exists() and not root.is_symlink():
            out[str(root)] = "absent"
            continue
        paths = [root] + (sorted(root.rglob("*")) if root.is_dir() and not root.is_symlink() else [])
        for p in paths:
            if p.is_symlink():
                out[str(p)] = "link:" + os.readlink(p)
            elif p.is_dir():
                out[str(p)] = "dir"
            else:
                try:
                    out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
                except OSError as exc:
                    out[str(p)] = f"unreadable:{exc.errno}"
    return out


def assert_refused(res, *needles: str, code: int | None = None) -> str:
    """Not 0, not 70 (``code`` if given), exactly one non-empty stderr line starting ``error: `` that holds every
    needle, no traceback. Returns that line."""
    assert res.returncode not in (0, 70), f"exit {res.returncode}: {res.stderr[-3000:]}"
    if code is not None:
        assert res.returncode == code, f"exit {res.returncode}, expected {code}: {res.stderr[-3000:]}"
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"{len(lines)} stderr lines, expected 1:\n{res.stderr[-3000:]}"
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in res.stderr
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


def assert_unchanged(before: dict[str, str], *roots: str | os.PathLike[str]) -> None:
    after = snapshot(*roots)
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])
    assert not (added or removed or changed), f"left behind: {added}; deleted: {removed}; changed: {changed}"


def refused_cleanly(args: Iterable[str], watch: Iterable[str | os.PathLike[str]], *needles: str,
                    code: int | None = None, env: dict | None = None, run=None) -> str:
    """Run ``args``; assert it is refused (see :func:`assert_refused`) and nothing under ``watch`` changed."""
    watch = list(watch)
    before = snapshot(*watch)
    res = (run or cli)(*args, env=env)
    line = assert_refused(res, *needles, code=code)
    assert_unchanged(before, *watch)
    return line


def succeeds(args: Iterable[str], env: dict | None = None, run=None) -> SimpleNamespace:
    res = (run or cli)(*args, env=env)
    assert res.returncode == 0, f"exit {res.returncode} after the fix: {res.stderr[-3000:]}"
    return res


def mount_tmpfs(path: Path, size: str = "2m"):
    """A small tmpfs mounted at ``path`` (a context manager yielding it); skips the test where mounting is not
    allowed (not root, no mount, a container without the right)."""
    import contextlib
    import shutil
    import subprocess

    import pytest

    @contextlib.contextmanager
    def mounted():
        path.mkdir(parents=True, exist_ok=True)
        if os.geteuid() != 0 or shutil.which("mount") is None:
            pytest.skip("mounting a tmpfs needs root")
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode(errors='replace').strip()}")
        try:
            yield path
        finally:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)

    return mounted()


def fill(mount: Path, leave: int) -> Path:
    """Fill the file system at ``mount`` up to ``leave`` free bytes; deleting the returned file frees it again."""
    import shutil

    filler = mount / ".filler"
    filler.write_bytes(b"\0" * max(0, shutil.disk_usage(mount).free - leave))
    return filler
