"""Publishing language models: train-and-push for fill-mask and text-generation against the local Hub, with a card
carrying perplexity before and after, ONNX export with its logit-parity gate, and pipeline() verification of the
pushed revision in a fresh process."""

from __future__ import annotations

import json

import pytest
import yaml

from hubtune.core.compat import optimum_exporter_available

from .conftest import TWEETS_TEST, TWEETS_TRAIN, run_cli
from .test_recipes_causal import tiny_gpt2_dir  # noqa: F401 - the fixture
from .test_recipes_mlm_accel import tiny_mlm_dir  # noqa: F401 - the fixture


def _config(path, base, out, repo_id, task, engine):
    cfg = {
        "base_model": base, "output_dir": str(out), "task": task, "engine": engine,
        "data": {"dataset": str(TWEETS_TRAIN), "eval_dataset": str(TWEETS_TEST), "max_samples": 96, "eval_max_samples": 24},
        "num_epochs": 1, "batch_size": 16, "block_size": 32, "learning_rate": 3e-3, "logging_steps": 1000,
        "publish": {"repo_id": repo_id, "tag": "v1"}, "export": {"onnx": True, "tolerance": 1e-3},
        "gates": {"golden_examples": 6},
    }
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def _card_meta(text):
    return yaml.safe_load(text.split("---")[1])


@pytest.mark.slow
@pytest.mark.parametrize(("task", "engine"), [("fill-mask", "accelerate"), ("text-generation", "trainer")])
def test_train_and_push_publishes_a_verified_language_model(local_hub, tiny_mlm_dir, tiny_gpt2_dir, tmp_path, task,  # noqa: F811
                                                             engine):
    """Through the CLI against the local Hub (fill-mask trained on the Accelerate loop, text-generation on the Trainer)."""
    base = tiny_mlm_dir if task == "fill-mask" else tiny_gpt2_dir
    config = _config(tmp_path / "lm.yaml", base, tmp_path / "run", f"org/{task}", task, engine)
    res = run_cli("train-and-push", "--config", str(config), "--no-progress", "--json", env=local_hub.env)
    assert res.returncode == 0, res.stderr
    result = json.loads(res.stdout)
    assert result["verified"] and result["tag"] == "v1", result["steps"]
    checked = result["verification"]["checked"]
    assert set(checked) == {"pytorch", "onnx"} and all(c["agree"] == c["total"] > 0 for c in checked.values())
    api = local_hub.api()
    files = set(api.list_repo_files(f"org/{task}", revision="v1"))
    assert {"model.safetensors", "config.json", "README.md", "onnx/model.onnx", "onnx/export_info.json"} <= files
    ev = json.loads((tmp_path / "run" / "metrics.json").read_text())["eval"]
    card = (tmp_path / "run" / "model" / "README.md").read_text()
    meta = _card_meta(card)
    assert meta["pipeline_tag"] == task
    ppl = meta["model-index"][0]["results"][0]["metrics"][0]
    assert ppl["type"] == "perplexity" and ppl["value"] == pytest.approx(ev["perplexity_after"])
    assert f"{ev['perplexity_before']:.2f}" in card and f"{ev['perplexity_after']:.2f}" in card
    assert f'pipeline("{task}"' in card and str(tmp_path) not in card
    parity = json.loads((tmp_path / "run" / "run_summary.json").read_text())["variants"]["onnx"]["parity"]
    assert parity["passed"] and parity["top1_agreement"] == 1.0 and parity["max_abs_diff"] <= 1e-3


def test_language_model_gates_that_apply_to_classifiers_are_refused(tmp_path):
    res = run_cli("train-and-push", "--base-model", "m", "--dataset", str(TWEETS_TRAIN), "--repo-id", "org/x",
                  "-o", str(tmp_path / "run"), "--set", "task=fill-mask", "--min-metric", "accuracy=0.5", "--no-progress")
    assert res.returncode == 2 and "apply to classifiers" in res.stderr, res.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(not optimum_exporter_available(), reason="the Optimum lane's exporter; torch.onnx's is covered by "
                    "the slow train-and-push tests above")
@pytest.mark.parametrize("task", ["fill-mask", "text-generation"])
def test_lm_export_uses_optimum_where_installed_and_gates_on_logit_parity(tiny_mlm_dir, tiny_gpt2_dir, tmp_path, task,  # noqa: F811
                                                                         monkeypatch):
    """A run directory around an untrained base: export with the exporter this lane has, then the parity gate."""
    import shutil

    from hubtune.core.errors import ExportParityError
    from hubtune.publish.lm_publish import lm_export

    run = tmp_path / "run"
    shutil.copytree(tiny_mlm_dir if task == "fill-mask" else tiny_gpt2_dir, run / "model")
    (run / "config.yaml").write_text(yaml.safe_dump({"task": task, "data": {"dataset": str(TWEETS_TRAIN),
                                                     "eval_dataset": str(TWEETS_TEST)}}), encoding="utf-8")
    (run / "run_summary.json").write_text("{}", encoding="utf-8")
    res = lm_export(run, tolerance=1e-3)
    assert "optimum-onnx" in res.exporter and "main_export" in res.exporter
    assert res.parity["passed"] and res.parity["top1_agreement"] == 1.0 and res.parity["probes"] > 0
    info = json.loads((run / "model" / "onnx" / "export_info.json").read_text())
    assert info["task"] == task and info["source_weights"]

    import hubtune.publish.lm_publish as lmp

    real = lmp.compare_logits
    monkeypatch.setattr(lmp, "compare_logits", lambda a, b, **kw: real(a, b + 1.0, **kw))  # a graph that drifts
    with pytest.raises(ExportParityError, match="disagrees with PyTorch.*nothing was pushed"):
        lm_export(run, tolerance=1e-3)


def test_card_command_writes_the_language_model_card(tiny_mlm_dir, tmp_path):  # noqa: F811
    import shutil

    from typer.testing import CliRunner

    from hubtune.cli.main import app

    run = tmp_path / "run"
    shutil.copytree(tiny_mlm_dir, run / "model")
    (run / "config.yaml").write_text(yaml.safe_dump({"task": "fill-mask", "base_model": tiny_mlm_dir, "data": {
        "dataset": str(TWEETS_TRAIN), "eval_dataset": str(TWEETS_TEST)}}), encoding="utf-8")
    (run / "metrics.json").write_text(json.dumps({"eval": {"perplexity_before": 812.5, "perplexity_after": 301.25,
                                                            "eval_loss_before": 6.7, "eval_loss": 5.71}}))
    (run / "run_summary.json").write_text(json.dumps({"sizes": {"train": 40, "eval": 8}, "block_size": 32,
                                                      "mlm_probability": 0.15, "engine": "accelerate"}))
    res = CliRunner().invoke(app, ["card", str(run), "--repo-id", "org/mlm", "--base-model-id", "org/tiny"])
    assert res.exit_code == 0, res.output
    text = (run / "model" / "README.md").read_text()
    meta = _card_meta(text)
    assert meta["pipeline_tag"] == "fill-mask" and meta["base_model"] == "org/tiny"
    assert meta["model-index"][0]["results"][0]["metrics"][0] == {"type": "perplexity", "value": 301.25, "name": "Perplexity"}
    assert "| base model, before training | 812.50 |" in text and "| this model, after training | 301.25 |" in text
    assert 'pipeline("fill-mask", model="org/mlm")' in text and str(tmp_path) not in text
