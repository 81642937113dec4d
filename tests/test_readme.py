"""The README's commands (issue 15): every `hubtune` line parses with the CLI; the consume step (`hub serve` and
its printed lines) and the offline `imdb:test` dataset work end to end in fresh processes."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from .conftest import REPO, run_cli

README = REPO / "README.md"
BIN = str(Path(sys.executable).parent)


def readme_hubtune_commands(text: str) -> list[str]:
    """Every `hubtune ...` command line of the README's bash code blocks (continuations joined, env prefix off)."""
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip().rstrip("&").strip()
            words = shlex.split(line) if line and not line.startswith("#") else []
            while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):
                words = words[1:]
            if words and words[0] == "hubtune":
                out.append(shlex.join(words))
    return out


def test_readme_lists_the_new_commands():
    cmds = readme_hubtune_commands(README.read_text())
    assert "hubtune hub serve --root .hubtune-hub --port 0" in cmds
    assert any(c.startswith("hubtune hub import ./imdb imdb --repo-type dataset --root") for c in cmds)
    assert any("--dataset imdb:test" in c and c.startswith("hubtune batch-predict") for c in cmds)
    text = README.read_text()
    for needle in ("--resume", "--overwrite", "--port 0", "5 Ray tests", '".[test,ray,genai,openvino]"'):
        assert needle in text, needle


@pytest.mark.parametrize("line", readme_hubtune_commands(README.read_text()))
def test_readme_command_parses_with_the_cli(line):
    """Every flag and argument the README shows exists (click parses the line without running it)."""
    import typer.main

    from hubtune.cli.main import app

    sub, rest = typer.main.get_command(app), shlex.split(line)[1:]
    while hasattr(sub, "get_command"):  # a group: descend to the sub-command
        name, rest = rest[0], rest[1:]
        sub = sub.get_command(sub.make_context(sub.name, [name]), name)
        assert sub is not None, f"no command {name!r} in {line!r}"
    sub.make_context(sub.name, rest)  # raises a usage error on an unknown flag or a missing argument


def test_the_parse_check_refuses_an_unknown_flag():
    with pytest.raises(Exception, match="no_such_flag|No such option"):
        test_readme_command_parses_with_the_cli("hubtune hub import DIR imdb --no-such-flag")
    with pytest.raises(Exception, match="repo_id|Missing argument|REPO_ID"):
        test_readme_command_parses_with_the_cli("hubtune hub import DIR")


def _tiny_classifier(out: Path, tokenizer_dir: str) -> Path:
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128, num_labels=2,
                     id2label={0: "neg", 1: "pos"}, label2id={"neg": 0, "pos": 1})
    BertForSequenceClassification(cfg).save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out


def _client_env(tmp_path: Path) -> dict[str, str]:
    """A fresh user's shell: no HF settings, an empty HF_HOME, the venv's python first on PATH."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HF_", "HUGGINGFACE", "TRANSFORMERS_", "HUBTUNE_"))}
    home = tmp_path / "client_home"
    home.mkdir(exist_ok=True)
    env.update({"HF_HOME": str(home), "PATH": BIN + os.pathsep + env.get("PATH", ""), "HF_HUB_DISABLE_TELEMETRY": "1"})
    return env


class Served:
    """``hubtune hub serve`` in a subprocess; ``lines`` holds what it printed up to 'Ctrl-C stops the server'."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "hubtune", "hub", "serve", *args], env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        done = threading.Event()

        def read() -> None:
            for line in self.proc.stdout:  # type: ignore[union-attr]
                self.lines.append(line.rstrip("\n"))
                if line.startswith("Ctrl-C"):
                    done.set()
            done.set()

        threading.Thread(target=read, daemon=True).start()
        assert done.wait(60), "hub serve printed nothing in 60 s"
        assert self.proc.poll() is None, "\n".join(self.lines)

    def shell_lines(self) -> list[str]:
        start = self.lines.index("in another shell:") + 1
        return self.lines[start:self.lines.index("Ctrl-C stops the server")]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(20)


@pytest.mark.slow
def test_hub_serve_prints_the_lines_that_pull_the_published_model(tmp_path, minilm_dir):
    """The README's consume step: serve the folder train-and-push published into, paste the printed lines into a
    fresh shell, and pipeline() pulls the (private) model from the Hub."""
    from hubtune.hub_server.importer import import_into_store

    root = tmp_path / "hub"
    import_into_store(root, minilm_dir, "sentence-transformers/all-MiniLM-L6-v2")
    import_into_store(root, _tiny_classifier(tmp_path / "clf", minilm_dir), "me/tiny-clf", private=True)
    env = _client_env(tmp_path)
    served = Served(["--root", str(root), "--port", "0"], env)
    try:
        lines = served.shell_lines()
        assert re.fullmatch(r"export HF_ENDPOINT=http://127\.0\.0\.1:(\d+)", lines[0]), lines
        assert int(lines[0].rsplit(":", 1)[1]) != 8765  # --port 0 picked a free port
        assert lines[1].startswith("unset HF_TOKEN"), lines
        assert "model='me/tiny-clf'" in lines[-1], "the last changed model repo is the one shown"
        script = "\n".join(lines)
        res = subprocess.run(["bash", "-ec", script], env={**env, "HF_TOKEN": "hf_stale_user_token"},
                             capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert res.returncode == 0, res.stdout + res.stderr[-3000:]
        assert re.search(r"'label': '(neg|pos)'", res.stdout), res.stdout
    finally:
        served.stop()


def test_hub_serve_names_the_token_variable_never_the_token(tmp_path):
    root = tmp_path / "hub"
    env = {**_client_env(tmp_path), "HUBTUNE_HUB_TOKEN": "hf_local_secret_value"}
    served = Served(["--root", str(root), "--port", "0", "--repo-id", "me/x"], env)
    try:
        lines = served.shell_lines()
        assert 'export HF_TOKEN="$HUBTUNE_HUB_TOKEN"' in lines
        assert "model='me/x'" in lines[-1]
        assert "hf_local_secret_value" not in "\n".join(served.lines)
    finally:
        served.stop()
    served = Served(["--root", str(root), "--port", "0", "--token", "hf_cli_secret"], _client_env(tmp_path))
    try:
        assert "hf_cli_secret" not in "\n".join(served.lines)
        assert any(ln.startswith("export HF_TOKEN=") for ln in served.shell_lines())
    finally:
        served.stop()


def _imdb_folder(tmp_path: Path, n: int = 12) -> Path:
    import pandas as pd

    folder = tmp_path / "imdb"
    (folder / "data").mkdir(parents=True)
    texts = [f"review {i}: {'a great film' if i % 2 else 'a dull film'}" for i in range(n)]
    pd.DataFrame({"text": texts}).to_parquet(folder / "data" / "test-00000-of-00001.parquet", index=False)
    pd.DataFrame({"text": texts[:4]}).to_parquet(folder / "data" / "train-00000-of-00001.parquet", index=False)
    return folder


@pytest.mark.slow
def test_hub_import_canonical_id_then_batch_predict_imdb_test(tmp_path, minilm_dir):
    """`hub import DIR imdb --repo-type dataset --root ROOT`, then `batch-predict --dataset imdb:test` in a fresh
    process against the local Hub serving ROOT."""
    import pandas as pd

    from hubtune.hub_server import start_server

    root = tmp_path / "hub"
    res = run_cli("hub", "import", str(_imdb_folder(tmp_path)), "imdb", "--repo-type", "dataset", "--root", str(root))
    assert res.returncode == 0, res.stderr
    assert "canonical/imdb" in res.stdout and "served as imdb" in res.stdout
    model = _tiny_classifier(tmp_path / "clf", minilm_dir)
    with start_server(root) as server:
        env = {**_client_env(tmp_path), "HF_ENDPOINT": server.url, "HF_HUB_DISABLE_XET": "1"}
        out = tmp_path / "preds.parquet"
        res = subprocess.run([sys.executable, "-m", "hubtune", "batch-predict", "--model", str(model), "--dataset",
                              "imdb:test", "--output", str(out)], env=env, capture_output=True,
                             text=True, timeout=600, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    preds = pd.read_parquet(out)
    assert len(preds) == 12 and set(preds["label"]) <= {"neg", "pos"}


def test_canonical_dataset_id_is_resolved_by_the_hub(local_hub, tmp_path):
    from hubtune.data.dataset import canonical_dataset_id
    from hubtune.hub_server.importer import import_into_store

    import_into_store(local_hub.root, _imdb_folder(tmp_path), "imdb", repo_type="dataset")
    assert canonical_dataset_id("imdb") == "canonical/imdb"
    assert local_hub.api().dataset_info("imdb").id == "canonical/imdb"
    assert canonical_dataset_id("no-such-dataset") == "no-such-dataset"  # the load then reports it


@pytest.mark.parametrize("repo_id", ["a/b/c", "../x", "bad name"])
def test_hub_import_bad_repo_id_names_the_argument(tmp_path, repo_id):
    res = run_cli("hub", "import", str(_imdb_folder(tmp_path)), repo_id, "--repo-type", "dataset",
                  "--root", str(tmp_path / "hub"))
    assert res.returncode == 24, res.stderr
    err = res.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "REPO_ID argument" in err and "--repo-id" not in err
    assert not (tmp_path / "hub" / "repos").exists(), "nothing half-written"


def test_hub_import_over_http_takes_a_canonical_id_and_the_repo_type_flag(local_hub, tmp_path):
    res = run_cli("hub", "import", str(_imdb_folder(tmp_path)), "imdb", "--repo-type", "dataset", "--json",
                  env=local_hub.env)
    assert res.returncode == 0, res.stderr
    from hubtune.data.dataset import canonical_dataset_id

    assert canonical_dataset_id("imdb") == "canonical/imdb"
    files = local_hub.api().list_repo_files("canonical/imdb", repo_type="dataset")
    assert "data/test-00000-of-00001.parquet" in files


def test_readme_shows_what_hub_serve_prints():
    """The sample output in the README is what `hub serve` prints (same lines for the same URL and repo)."""
    from hubtune.cli.hub import consume_lines

    text = README.read_text()
    block = re.search(r"hubtune hub serve --root \.hubtune-hub --port 0\n```\n\n```text\n(.*?)```", text, re.S).group(1)
    lines = block.splitlines()
    url = re.search(r"at (http://\S+) ", lines[0]).group(1)
    shown = lines[lines.index("in another shell:") + 1:lines.index("Ctrl-C stops the server")]
    assert shown == consume_lines(url, None, "hubtune-examples/minilm-tweets", "text-classification")
