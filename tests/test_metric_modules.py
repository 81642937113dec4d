"""``--metric``: evaluate metric modules (local scripts, Hub Spaces through the local Hub) beside the built-in metrics,
on train, evaluate, batch-predict and the card's model-index."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from hubtune.core.errors import MetricModuleError
from hubtune.core.metric_modules import parse_metric_spec

from .conftest import TWEETS_TEST, TWEETS_TRAIN, run_cli

HITS = '''
import datasets
import evaluate


class Hits(evaluate.Metric):
    """Share of equal labels, times ``weight`` (a test module: its figure differs from accuracy when weight != 1)."""

    def _info(self):
        return evaluate.MetricInfo(
            description="hits", citation="", inputs_description="",
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
        )

    def _compute(self, predictions, references, weight=1.0):
        return {"hits": weight * sum(p == r for p, r in zip(predictions, references)) / len(references), "note": "n"}
'''


def write_metric(parent: Path, name: str = "hits") -> Path:
    folder = parent / name
    folder.mkdir(parents=True)
    (folder / f"{name}.py").write_text(HITS, encoding="utf-8")
    return folder


def test_metric_specs_parse_paths_hub_ids_and_arguments(tmp_path):
    local = write_metric(tmp_path)
    m = parse_metric_spec(f"{local}:weight=2,average=macro")
    assert (m.kind, m.path, m.name, m.compute_args) == ("local", str(local), "hits", {"weight": 2, "average": "macro"})
    hub = parse_metric_spec("org/hits")
    assert (hub.kind, hub.name, hub.compute_args) == ("hub", "org/hits", {})
    assert parse_metric_spec("f1:average=macro").compute_args == {"average": "macro"}
    with pytest.raises(MetricModuleError, match="no such file or folder"):
        parse_metric_spec(str(tmp_path / "missing"))
    with pytest.raises(MetricModuleError, match="neither an existing local path nor a Hub id"):
        parse_metric_spec("a/b/c")


def test_config_refuses_metrics_on_lm_tasks():
    from hubtune.core.config import TrainConfig, from_dict
    from hubtune.core.errors import ConfigError

    with pytest.raises(ConfigError, match="expected task text-classification, or drop --metric"):
        from_dict(TrainConfig, {"base_model": "m", "data": {"dataset": "d.csv"}, "task": "fill-mask", "metrics": ["org/x"]})


@pytest.mark.slow
def test_local_metric_module_through_train_evaluate_batch_predict_and_card(tiny_bert_dir, tmp_path):
    metric = write_metric(tmp_path / "metrics")
    run = tmp_path / "run"
    res = run_cli("train", "--base-model", tiny_bert_dir, "--dataset", str(TWEETS_TRAIN), "--eval-dataset", str(TWEETS_TEST),
                  "--limit", "48", "--set", "data.eval_max_samples=24", "--epochs", "1", "--batch-size", "16",
                  "--max-length", "32", "-o", str(run), "--metric", str(metric), "--metric", f"{metric}:weight=2",
                  "--no-progress")
    assert res.returncode == 0, res.stderr
    ev = json.loads((run / "metrics.json").read_text())["eval"]
    recs = ev["metric_modules"]
    assert [r["values"]["hits"] for r in recs] == pytest.approx([ev["accuracy"], 2 * ev["accuracy"]])
    assert recs[0]["metric"] == "hits" and recs[1]["args"] == {"weight": 2} and "note" not in recs[0]["values"]
    assert yaml.safe_load((run / "config.yaml").read_text())["metrics"] == [str(metric), f"{metric}:weight=2"]
    assert "evaluate modules: hits" in res.stdout

    res = run_cli("evaluate", "--model", str(run / "model"), "--dataset", str(TWEETS_TEST), "--limit", "24",
                  "--metric", f"{metric}:weight=3", "--json")
    assert res.returncode == 0, res.stderr
    m = json.loads(res.stdout)["metrics"]
    assert m["metric_modules"][0]["values"]["hits"] == pytest.approx(3 * m["accuracy"])

    out = tmp_path / "preds.jsonl"
    res = run_cli("batch-predict", "--model", str(run / "model"), "--dataset", str(TWEETS_TEST), "--limit", "24",
                  "--output", str(out), "--metric", str(metric), "--no-progress")
    assert res.returncode == 0, res.stderr
    pm = json.loads(Path(f"{out}.metrics.json").read_text())["metrics"]
    assert pm["metric_modules"][0]["values"]["hits"] == pytest.approx(pm["accuracy"])
    assert "evaluate modules: hits" in res.stdout

    res = run_cli("card", str(run), "--repo-id", "org/tiny")
    assert res.returncode == 0, res.stderr
    text = (run / "model" / "README.md").read_text()
    meta = yaml.safe_load(text.split("---")[1])
    results = meta["model-index"][0]["results"]
    types = [mm["type"] for r in results for mm in r["metrics"]]
    assert types.count("hits") == 2, types
    weighted = next(mm for r in results for mm in r["metrics"] if mm.get("args") == {"weight": 2})
    assert weighted["value"] == pytest.approx(2 * next(mm["value"] for r in results for mm in r["metrics"] if mm["type"] == "accuracy"))
    assert "| `hits` (weight=2) | a local script | hits |" in text
    assert str(tmp_path) not in text  # a local module is named by its folder, never by its path

    # a bad module fails first (exit 55) and writes nothing
    res = run_cli("train", "--base-model", tiny_bert_dir, "--dataset", str(TWEETS_TRAIN), "-o", str(tmp_path / "bad"),
                  "--metric", str(tmp_path / "nope"))
    assert res.returncode == 55 and "no such file or folder" in res.stderr and not (tmp_path / "bad").exists()


@pytest.mark.slow
def test_hub_metric_module_through_the_local_hub_reaches_the_published_model_index(local_hub, tiny_bert_dir, tmp_path):
    from hubtune.core.config import DataConfig, ExportSettings, GateSettings, PipelineConfig, PublishSettings
    from hubtune.hub_server.importer import import_into_store
    from hubtune.pipeline import PipelineOptions, run_pipeline

    import_into_store(local_hub.root, write_metric(tmp_path / "space"), "org/hits", repo_type="space")
    # evaluate through the CLI in a fresh process: the module comes from the local Hub's Space
    env = local_hub.client_env(token=True)
    res = run_cli("evaluate", "--model", tiny_bert_dir, "--dataset", str(TWEETS_TEST), "--limit", "8",
                  "--metric", "org/nope", env=env)
    assert res.returncode == 55 and "spaces/org/nope" in res.stderr, res.stderr
    model = tmp_path / "clf"
    from ._tiny_runs import make_full_run, make_tiny_base

    make_full_run(model, make_tiny_base(tmp_path / "base"))
    res = run_cli("evaluate", "--model", str(model / "model"), "--dataset", str(TWEETS_TEST), "--limit", "16",
                  "--metric", "org/hits:weight=2", "--json", env=env)
    assert res.returncode == 0, res.stderr
    m = json.loads(res.stdout)["metrics"]
    assert m["metric_modules"][0]["metric"] == "org/hits" and m["metric_modules"][0]["source"] == "hub"
    assert m["metric_modules"][0]["values"]["hits"] == pytest.approx(2 * m["accuracy"])

    cfg = PipelineConfig(
        base_model=tiny_bert_dir, output_dir=str(tmp_path / "run"), mode="full", metrics=["org/hits:weight=2"],
        data=DataConfig(dataset=str(TWEETS_TRAIN), eval_dataset=str(TWEETS_TEST), max_samples=48, eval_max_samples=24),
        num_epochs=1, batch_size=16, max_length=32, learning_rate=1e-3, logging_steps=1000,
        publish=PublishSettings(repo_id="org/with-metric", tag="v1"), export=ExportSettings(onnx=False),
        gates=GateSettings(golden_examples=8),
    )
    result = run_pipeline(PipelineOptions(config=cfg, progress=False))
    assert result.verified
    info = local_hub.api().model_info("org/with-metric")
    hits = [r for r in info.card_data.eval_results if r.metric_type == "org/hits"]
    acc = next(r for r in info.card_data.eval_results if r.metric_type == "accuracy")
    assert len(hits) == 1 and hits[0].metric_args == {"weight": 2}
    assert hits[0].metric_value == pytest.approx(2 * acc.metric_value)
