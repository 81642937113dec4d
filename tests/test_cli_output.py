"""Issue 15, output: one progress switch on every long-running command, whole help texts, quiet libraries,
outputs that follow the umask, and the `hf` CLI's option names (--repo-type, --token never printed)."""

from __future__ import annotations

import re
import stat

import pytest
import typer

from .conftest import TWEETS_TEST, run_cli

# commands that can take long (model loads, downloads, training): each has --progress/--no-progress
QUICK = {"env", "hub serve", "hub import", "hub gc"}  # env is instant; the hub group is another part of the issue
NOISE = (
    "newly initialized", "You should probably TRAIN this model", "FutureWarning", "TracerWarning",
    "`torch_dtype` is deprecated", "null_placement", "is_gradient_checkpointing", "warnings.warn(",
)


def _commands() -> dict:
    from hubtune.cli.main import app

    root = typer.main.get_command(app)
    out: dict = {}
    for name, cmd in root.commands.items():  # type: ignore[attr-defined]
        if hasattr(cmd, "commands"):  # a group: its sub-commands
            out.update({f"{name} {sub}": c for sub, c in cmd.commands.items()})
        else:
            out[name] = cmd
    return out


def test_every_long_running_command_has_one_progress_switch():
    commands = _commands()
    assert {"train", "train-and-push", "evaluate", "batch-predict", "push", "export"} <= set(commands)
    missing = []
    for name, cmd in sorted(commands.items()):
        if name in QUICK:
            continue
        switches = [p for p in cmd.params if "--progress" in p.opts or "--no-progress" in p.opts + p.secondary_opts]
        ok = len(switches) == 1 and switches[0].opts == ["--progress"] and switches[0].secondary_opts == ["--no-progress"]
        if not ok or switches[0].default is not None:  # None: decided by CI / HF_HUB_DISABLE_PROGRESS_BARS
            missing.append(name)
    assert not missing, f"without one --progress/--no-progress switch: {missing}"


@pytest.mark.parametrize(
    "flag, env, json_out, expected",
    [
        (None, {}, False, True),
        (None, {"CI": "true"}, False, False),
        (None, {"HF_HUB_DISABLE_PROGRESS_BARS": "1"}, False, False),
        (True, {"CI": "true"}, False, True),  # asked for explicitly
        (True, {}, True, False),  # --json never draws bars
        (False, {}, False, False),
    ],
)
def test_progress_resolution(monkeypatch, flag, env, json_out, expected):
    from hubtune.cli._common import resolve_progress

    for key in ("CI", "HF_HUB_DISABLE_PROGRESS_BARS", "HF_DATASETS_DISABLE_PROGRESS_BARS"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert resolve_progress(flag, json_out) is expected
    if not expected:
        import os

        assert os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1", "the libraries' bars are off too"


def _help(*names: str) -> str:
    from typer.testing import CliRunner

    from hubtune.cli.main import app

    res = CliRunner().invoke(app, [*names, "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    return res.output


def test_help_texts_are_whole():
    bad = {}
    for name in ["", *_commands()]:
        text = _help(*name.split())
        # a markup tag that swallowed text leaves "word ." behind (was: "Jinja template .")
        found = re.findall(r"\S+ \.(?=\s|$)", text)
        if found:
            bad[name or "hubtune"] = found
    assert not bad, bad
    assert "pip install 'hubtune[ray]'" in _help("batch-predict")
    assert "Jinja template [default: the packaged" in _help("card")


def test_hf_cli_names_on_push(local_hub, tmp_path):
    """--repo-type as `hf upload`, and a --token that is used and never printed."""
    from typer.testing import CliRunner

    from hubtune.cli.main import app

    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "train.csv").write_text("text,label\na,x\n")
    secret = local_hub.token
    env = {"HF_TOKEN": "", "HF_HUB_DISABLE_PROGRESS_BARS": ""}  # the token comes from --token only
    res = CliRunner().invoke(app, ["push", str(folder), "--repo-id", "org/ds", "--repo-type", "dataset",
                                   "--token", secret, "--no-progress", "--json"], env=env)
    assert res.exit_code == 0, res.output
    assert secret not in res.stdout and secret not in res.stderr
    assert "train.csv" in local_hub.api().list_repo_files("org/ds", repo_type="dataset")
    wrong = CliRunner().invoke(app, ["push", str(folder), "--repo-id", "org/ds2", "--repo-type", "dataset",
                                     "--token", "hf_wrong_token_123", "--json"], env=env)
    assert wrong.exit_code == 21 and "hf_wrong_token_123" not in wrong.output


def test_token_option_wherever_the_hub_is_used():
    commands = _commands()
    for name in ("train", "train-and-push", "evaluate", "batch-predict", "push", "card", "merge", "export"):
        assert any("--token" in p.opts for p in commands[name].params), name


# --- library noise on tiny runs ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_lora_run(tmp_path_factory):
    from ._tiny_runs import make_lora_run, make_tiny_base

    root = tmp_path_factory.mktemp("noise")
    return make_lora_run(root / "run", make_tiny_base(root / "base"))


@pytest.mark.slow
def test_evaluate_and_merge_of_trained_models_are_quiet(tiny_lora_run, tmp_path):
    ev = run_cli("evaluate", "--model", str(tiny_lora_run / "model"), "--dataset", str(TWEETS_TEST), "--limit", "20",
                 env={"HF_HUB_OFFLINE": "1"})
    assert ev.returncode == 0, ev.stderr[-2000:]
    assert [n for n in NOISE if n in ev.stderr] == [], ev.stderr
    out = tmp_path / "merged"
    mg = run_cli("merge", str(tiny_lora_run), "-o", str(out), "--max-examples", "16", env={"HF_HUB_OFFLINE": "1"})
    assert mg.returncode == 0, mg.stderr[-2000:]
    assert [n for n in NOISE if n in mg.stderr] == [], mg.stderr
    assert all(line.startswith("[merge] ") for line in mg.stderr.splitlines()), mg.stderr
    # the staged output follows the umask (mkdtemp's 0700 before)
    import os

    mask = os.umask(0o022)
    os.umask(mask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~mask
