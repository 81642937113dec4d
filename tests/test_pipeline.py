"""train-and-push end to end against the local Hub: gates stop before push, verify before tag, resume reuses."""

from __future__ import annotations

import json

import pytest

from hubtune.config import DataConfig, ExportSettings, GateSettings, LoraSettings, PipelineConfig, PublishSettings
from hubtune.errors import MetricGateError, VerificationError
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
    assert res.steps == {"train": "done", "merge": "done", "export": "done", "card": "done", "push": "done",
                         "verify": "passed", "tag": "done"}
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


def test_failed_verification_is_not_tagged(local_hub, tiny_bert_dir, tmp_path, monkeypatch):
    import hubtune.verify as verify_mod

    real = verify_mod.predict_labels

    def wrong_locally(ref, texts, **kw):  # the local "golden" labels disagree with what the Hub serves
        out = real(ref, texts, **kw)
        out["pytorch"] = ["not-a-label"] * len(texts)
        return out

    monkeypatch.setattr(verify_mod, "predict_labels", wrong_locally)
    cfg = _cfg(tiny_bert_dir, tmp_path / "run", "org/unverified", mode="full", onnx=False)
    with pytest.raises(VerificationError, match=r"pytorch: 0/16 labels equal.*not tagged"):
        run_pipeline(PipelineOptions(config=cfg, progress=False))
    refs = local_hub.api().list_repo_refs("org/unverified")
    assert refs.tags == []
    summary = json.loads((tmp_path / "run" / "run_summary.json").read_text())
    assert summary["pipeline"]["verified"] is False


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
    assert "hf_local_" not in res.stdout + res.stderr + md, "the token must never be printed"
