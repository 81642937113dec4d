"""train-and-push end to end against the local Hub: gates stop before push, verify before tag, resume reuses."""

from __future__ import annotations

import json

import pytest

from hubtune.core.config import DataConfig, ExportSettings, GateSettings, LoraSettings, PipelineConfig, PublishSettings
from hubtune.core.errors import MetricGateError, VerificationError
from hubtune.pipeline import PipelineOptions, run_pipeline

from .conftest import REPO, TWEETS_TEST, TWEETS_TRAIN, run_cli


def _cfg(base, out, repo_id, *, mode="lora", onnx=True, min_metrics=None, tag="v1"):
    return PipelineConfig(
        base_model=base, output_dir=str(out), mode=mode,
        data=DataConfig(dataset=str(TWEETS_TRAIN), eval_dataset=str(TWEETS_TEST), max_samples=64, eval_max_samples=48),
        num_epochs=1, batch_size=16, max_length=32, learning_rate=1e-3, logging_steps=1000,
        lora=LoraSettings(r=4, alpha=8, dropout=0.0),
        publish=PublishSettings(repo_id=repo_id, tag=tag),
        export=ExportSettings(onnx=onnx),
        gates=GateSettings(min_metrics=min_metrics or {}, golden_examples=16),
    )


def _repo_exists(hub, repo_id):
    from huggingface_hub.utils import RepositoryNotFoundError

    try:
        hub.api().repo_info(repo_id)
        return True
    except RepositoryNotFoundError:
        return False


def test_metric_gate_stops_before_anything_is_pushed(local_hub, tiny_bert_dir, tmp_path):
    cfg = _cfg(tiny_bert_dir, tmp_path / "run", "org/gated", mode="full", onnx=False, min_metrics={"accuracy": 0.99})
    with pytest.raises(MetricGateError, match=r"accuracy 0\.\d+ < 0\.99.*nothing was pushed"):
        run_pipeline(PipelineOptions(config=cfg, progress=False))
    assert not _repo_exists(local_hub, "org/gated")


@pytest.mark.slow
def test_publish_verify_tag_then_resume_reuses_steps(local_hub, tiny_bert_dir, tmp_path):
    cfg = _cfg(tiny_bert_dir, tmp_path / "run", "org/tiny")
    res = run_pipeline(PipelineOptions(config=cfg, progress=False))
    assert res.verified and res.tag == "v1" and res.committed
    assert res.steps == {"train": "done", "merge": "done", "export": "done", "card": "done", "push": "staged",
                         "verify": "passed", "promote": "done", "tag": "done"}
    assert res.verification["checked"]["pytorch"]["agree"] == 16 and res.verification["checked"]["onnx"]["agree"] == 16
    refs = local_hub.api().list_repo_refs("org/tiny")
    assert [(t.name, t.target_commit) for t in refs.tags] == [("v1", res.commit)]
    files = set(local_hub.api().list_repo_files("org/tiny", revision="v1"))
    assert {"model.safetensors", "config.json", "README.md", "run_summary.json", "onnx/model.onnx"} <= files
    assert not any("adapter" in f for f in files), "the merged model is published, not the adapter"
    info = local_hub.api().model_info("org/tiny")
    assert info.private
    # re-run with --resume: nothing retrained, identical files -> no new commit
    again = run_pipeline(PipelineOptions(config=cfg, resume=True, progress=False))
    assert again.steps["train"] == "reused" and again.steps["merge"] == "reused" and again.steps["export"] == "reused"
    assert again.steps["push"] == "unchanged" and again.commit == res.commit


def _seed_release(hub, tmp_path, repo_id, tag="v1"):
    """An earlier release: a small folder on main, tagged; returns main's head."""
    from hubtune.publish.hub import PushOptions, push

    folder = tmp_path / "earlier"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "README.md").write_text("# earlier release\n")
    return push(PushOptions(folder, repo_id, tag=tag)).commit_oid


def _state(hub, repo_id):
    """(main's head, tags, pull-request refs) of a repo."""
    refs = hub.api().list_repo_refs(repo_id, include_pull_requests=True)
    main = {b.name: b.target_commit for b in refs.branches}["main"]
    return main, [(t.name, t.target_commit) for t in refs.tags], [(p.ref, p.target_commit) for p in refs.pull_requests]


def test_failed_verification_leaves_main_and_tags_untouched(local_hub, tiny_bert_dir, tmp_path, monkeypatch):
    import hubtune.publish.verify as verify_mod

    real = verify_mod.predict_labels

    def wrong_locally(ref, texts, **kw):  # the local "golden" labels disagree with what the Hub serves
        out = real(ref, texts, **kw)
        out["pytorch"] = ["not-a-label"] * len(texts)
        return out

    before = _seed_release(local_hub, tmp_path, "org/unverified")
    monkeypatch.setattr(verify_mod, "predict_labels", wrong_locally)
    cfg = _cfg(tiny_bert_dir, tmp_path / "run", "org/unverified", mode="full", onnx=False, tag="v{n}")
    with pytest.raises(VerificationError, match=r"pytorch: 0/16 labels equal.*not tagged") as exc:
        run_pipeline(PipelineOptions(config=cfg, progress=False))
    main, tags, prs = _state(local_hub, "org/unverified")
    assert main == before and tags == [("v1", before)], "main and the tags are exactly as they were"
    (staged_ref, staged_sha), = prs
    assert staged_sha != before
    assert staged_ref in str(exc.value) and staged_sha in str(exc.value), "the error says where the commit is"
    assert "\n" not in str(exc.value)
    files = set(local_hub.api().list_repo_files("org/unverified", revision=staged_sha))
    assert "model.safetensors" in files
    summary = json.loads((tmp_path / "run" / "run_summary.json").read_text())
    assert summary["pipeline"]["verified"] is False and summary["pipeline"]["staging_ref"] == staged_ref


def _write_tweets(path, start, n):
    import pandas as pd

    pd.read_csv(TWEETS_TRAIN).iloc[start : start + n].to_csv(path, index=False)


def test_two_runs_with_new_data_give_two_verified_releases(local_hub, tiny_bert_dir, tmp_path):
    """Unattended re-runs (``--resume``, tag template): new data -> a new verified release; no change -> nothing."""
    data = tmp_path / "train.csv"
    _write_tweets(data, 0, 64)
    # with ONNX: the card's PyTorch throughput then comes from the (reused) export, so an unchanged re-run
    # writes the same README
    cfg = _cfg(tiny_bert_dir, tmp_path / "run", "org/releases", mode="full", onnx=True, tag="v{n}")
    cfg.data.dataset = str(data)
    first = run_pipeline(PipelineOptions(config=cfg, resume=True, progress=False))
    assert first.verified and first.tag == "v1" and first.committed
    _write_tweets(data, 64, 64)  # new data at the same path
    second = run_pipeline(PipelineOptions(config=cfg, resume=True, progress=False))
    assert second.steps["train"] == "done", "changed data is retrained, not reused"
    assert second.verified and second.tag == "v2" and second.committed and second.commit != first.commit
    main, tags, _ = _state(local_hub, "org/releases")
    assert main == second.commit and tags == [("v1", first.commit), ("v2", second.commit)]
    assert [c.commit_id for c in local_hub.api().list_repo_commits("org/releases")][:2] == [second.commit,
                                                                                             first.commit]
    third = run_pipeline(PipelineOptions(config=cfg, resume=True, progress=False))
    assert third.steps["push"] == "unchanged" and not third.committed and third.commit == second.commit
    assert third.tag == "v2" and third.verified and third.message.startswith("nothing changed")
    assert _state(local_hub, "org/releases")[:2] == (main, tags), "nothing changed: no commit, no new tag"


def test_fixed_tag_on_another_commit_is_refused_before_push(local_hub, tiny_bert_dir, tmp_path):
    from hubtune.core.errors import HubError

    before = _seed_release(local_hub, tmp_path, "org/fixed")
    cfg = _cfg(tiny_bert_dir, tmp_path / "run", "org/fixed", mode="full", onnx=False, tag="v1")
    with pytest.raises(HubError, match=r"tag 'v1' already exists.*publish\.tag") as exc:
        run_pipeline(PipelineOptions(config=cfg, progress=False))
    assert "nothing was pushed" in str(exc.value)
    assert _state(local_hub, "org/fixed") == (before, [("v1", before)], [])
    # main moved past v1: no run can release as v1 any more, refused before any work
    from hubtune.publish.hub import PushOptions, push

    (tmp_path / "earlier" / "config.json").write_text('{"changed": true}')
    moved = push(PushOptions(tmp_path / "earlier", "org/fixed")).commit_oid
    cfg.output_dir = str(tmp_path / "run2")
    with pytest.raises(HubError, match=r"tag 'v1' already exists"):
        run_pipeline(PipelineOptions(config=cfg, progress=False))
    assert not (tmp_path / "run2").exists(), "refused before any training"
    assert _state(local_hub, "org/fixed") == (moved, [("v1", before)], [])


def _refuse_variants(monkeypatch):
    """Every optional ONNX variant (int8, O2) fails its label-agreement gate."""
    import dataclasses

    import hubtune.publish.export as export_mod

    real = export_mod.compare_logits

    def refuse(reference, candidate, *, tolerance, **kw):
        rep = real(reference, candidate, tolerance=tolerance, **kw)
        return rep if tolerance is not None else dataclasses.replace(rep, label_agreement=0.5, passed=False)

    monkeypatch.setattr(export_mod, "compare_logits", refuse)


def test_refused_variant_is_shown_and_required_variant_fails_before_push(local_hub, tiny_bert_dir, tmp_path,
                                                                          monkeypatch):
    from typer.testing import CliRunner

    from hubtune.cli.main import app
    from hubtune.core.config import dump_yaml
    from hubtune.core.errors import ExportParityError

    _refuse_variants(monkeypatch)
    cfg = _cfg(tiny_bert_dir, tmp_path / "run", "org/variants", mode="full", tag="v{n}")
    cfg.export.quantize = "int8"
    config = tmp_path / "cfg.yaml"
    config.write_text(dump_yaml(cfg))
    step_summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step_summary))
    res = CliRunner().invoke(app, ["train-and-push", "--config", str(config), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "refused" in res.stdout and "onnx-int8" in res.stdout and "label agreement 50.00%" in res.stdout
    md = step_summary.read_text()
    assert "onnx-int8" in md and "refused" in md.lower()
    files = set(local_hub.api().list_repo_files("org/variants"))
    assert "onnx/model.onnx" in files and "onnx/model_quantized.onnx" not in files
    before = _state(local_hub, "org/variants")
    # asked for: a refusal is an error, before anything is pushed (train and export reused)
    res = CliRunner().invoke(app, ["train-and-push", "--config", str(config), "--no-progress", "--resume",
                                   "--require-variant", "int8"])
    assert res.exit_code == ExportParityError.exit_code == 13, res.output
    assert "onnx-int8" in res.output and "--require-variant" in res.output
    assert _state(local_hub, "org/variants") == before
    cfg.export.require_variants = ["int8"]
    with pytest.raises(ExportParityError, match="onnx-int8.*refused.*nothing was pushed"):
        run_pipeline(PipelineOptions(config=cfg, resume=True, progress=False))
    assert _state(local_hub, "org/variants") == before


@pytest.mark.slow
def test_readme_command_runs_offline_with_embedded_hub(tmp_path):
    """The README's main command: embedded local Hub seeded with the packaged model, verified pull at the end."""
    step_summary = tmp_path / "summary.md"
    res = run_cli(
        "train-and-push", "--config", str(REPO / "examples" / "train-and-push.yaml"),
        "--local-hub", str(tmp_path / "hub"), "-o", str(tmp_path / "run"),
        "--set", "data.max_samples=300", "--set", "data.eval_max_samples=100", "--set", "num_epochs=1",
        "--set", "export.quantize=null", "--min-metric", "accuracy=0.3", "--no-progress", "--json",
        env={"GITHUB_STEP_SUMMARY": str(step_summary), "HF_HUB_OFFLINE": "1"},
    )
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout)
    assert out["verified"] is True and out["tag"] == "v1"
    assert out["verification"]["checked"]["onnx"]["agree"] == out["verification"]["checked"]["onnx"]["total"] > 0
    md = step_summary.read_text()
    assert "hubtune-examples/minilm-tweets" in md and "| accuracy |" in md
    # the card names the data by its Hub id (issue 13.7), says which split it reports, and a merged model is no adapter
    from huggingface_hub import ModelCard

    card = ModelCard.load(tmp_path / "run" / "merged" / "README.md")
    assert card.data.datasets == ["hubtune-examples/tweets"]
    assert {r.dataset_type for r in card.data.eval_results} == {"hubtune-examples/tweets"}
    assert "peft" not in card.data.tags and "held-out" not in card.text
    assert "hf_local_" not in res.stdout + res.stderr + md, "the token must never be printed"
