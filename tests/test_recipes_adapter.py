"""``--mode adapter``: bottleneck adapters (Houlsby / Pfeiffer) of the adapters library (AdapterHub).

adapters 1.3 pins transformers ~=4.57.6, so the recipe runs in the Optimum lane (``hubtune[adapters]``); the
current lane (transformers 5) refuses it naming the constraint. train-and-push refuses it (pipeline() cannot load
a bottleneck adapter from a repo alone); ``card`` + ``push`` publish it with a usage section that loads it.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys

import pytest

from .conftest import TWEETS_TEST, TWEETS_TRAIN, run_cli

HAS_ADAPTERS = importlib.util.find_spec("adapters") is not None


def _train_args(base, out, *extra):
    return ("train", "--base-model", base, "--dataset", str(TWEETS_TRAIN), "--eval-dataset", str(TWEETS_TEST),
            "--limit", "64", "--set", "data.eval_max_samples=24", "--epochs", "2", "--batch-size", "16",
            "--max-length", "32", "--lr", "5e-3", "-o", str(out), "--mode", "adapter", "--no-progress", *extra)


@pytest.mark.skipif(HAS_ADAPTERS, reason="the adapters library is installed here")
def test_adapter_mode_without_a_usable_adapters_library_is_refused_naming_the_constraint(tiny_bert_dir, tmp_path):
    res = run_cli(*_train_args(tiny_bert_dir, tmp_path / "run"))
    assert res.returncode == 57, res.stderr
    assert "transformers ~=4.57.6" in res.stderr and "--mode lora" in res.stderr
    assert not (tmp_path / "run").exists()


def test_train_and_push_refuses_a_bottleneck_adapter_saying_what_to_do(tmp_path):
    res = run_cli("train-and-push", "--base-model", "m", "--dataset", str(TWEETS_TRAIN), "--repo-id", "org/x",
                  "-o", str(tmp_path / "run"), "--set", "mode=adapter", "--no-progress")
    assert res.returncode == 58, res.stderr
    assert "does not merge into the weights" in res.stderr and "hubtune push RUN/model" in res.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(not HAS_ADAPTERS, reason="needs pip install 'hubtune[adapters]' (transformers ~=4.57.6 lane)")
def test_bottleneck_adapter_trains_reloads_and_publishes_a_card_that_loads_it(local_hub, tiny_bert_dir, tmp_path):
    from safetensors.torch import load_file

    run = tmp_path / "run"
    res = run_cli(*_train_args(tiny_bert_dir, run, "--adapter-config", "houlsby", "--reduction-factor", "4"))
    assert res.returncode == 0, res.stderr
    model = run / "model"
    assert not (model / "model.safetensors").exists(), "no weights pipeline() would load without the adapter"
    marker = json.loads((model / "hubtune_adapter.json").read_text())
    assert (marker["config"], marker["reduction_factor"], marker["library"]) == ("houlsby", 4, "adapters")
    assert str(tmp_path) not in (model / "hubtune_adapter.json").read_text()
    weights = load_file(model / "bottleneck" / "adapter.safetensors")
    # Houlsby: two adapters per layer (after attention and after the feed-forward block); 32 / 4 = 8 wide
    assert any(".attention.output.adapters." in k for k in weights) and any(".output.adapters." in k for k in weights)
    assert {tuple(v.shape) for k, v in weights.items() if k.endswith("adapter_down.0.weight")} == {(8, 32)}
    summary = json.loads((run / "run_summary.json").read_text())
    assert summary["mode"] == "adapter" and summary["parameters"]["trainable"] < 0.01 * summary["parameters"]["total"]
    ev = json.loads((run / "metrics.json").read_text())["eval"]

    # evaluate reloads the folder (base + adapter) and measures what train measured
    res = run_cli("evaluate", "--model", str(model), "--dataset", str(TWEETS_TEST), "--limit", "24", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["metrics"]["accuracy"] == pytest.approx(ev["accuracy"])

    # batch-predict reloads it too; its identity covers the adapter's weights (a resume refuses other weights)
    out = tmp_path / "preds.jsonl"
    res = run_cli("batch-predict", "--model", str(model), "--dataset", str(TWEETS_TEST), "--limit", "24", "--output",
                  str(out), "--backend", "torch", "--dtype", "fp32", "--no-progress")
    assert res.returncode == 0, res.stderr
    import csv

    from hubtune.core.modeling import predict_logits

    from hubtune.tasks.loading import load_classifier

    loaded = load_classifier(str(model))
    with open(TWEETS_TEST, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))[:24]  # batch-predict --limit: the first rows
    pred = predict_logits(loaded.model, loaded.tokenizer, [r["text"] for r in rows], max_length=32).argmax(-1)
    want = sum(loaded.label_names[int(p)] == r["label"] for p, r in zip(pred, rows)) / len(rows)
    assert json.loads(open(f"{out}.metrics.json").read())["metrics"]["accuracy"] == pytest.approx(want)
    from hubtune.predict.source import model_identity

    meta = json.loads(open(f"{out}.meta.json").read())
    digest = meta["model"]["weights_sha256"]
    assert model_identity(str(model), model, None)["weights_sha256"] == digest
    saved = (model / "bottleneck" / "adapter.safetensors").read_bytes()
    (model / "bottleneck" / "adapter.safetensors").write_bytes(saved + b" ")
    assert model_identity(str(model), model, None)["weights_sha256"] != digest, "the adapter's weights are identity"
    (model / "bottleneck" / "adapter.safetensors").write_bytes(saved)

    # card + push; the card's usage snippet loads the pushed adapter in a fresh process, predicting as locally
    res = run_cli("card", str(run), "--repo-id", "org/bottleneck", "--base-model-id", "org/tiny-base")
    assert res.returncode == 0, res.stderr
    card = (model / "README.md").read_text()
    assert "library_name: adapter-transformers" in card and "bottleneck adapter" in card
    local_hub.api().create_repo("org/tiny-base")
    local_hub.api().upload_folder(folder_path=tiny_bert_dir, repo_id="org/tiny-base")
    res = run_cli("push", str(model), "--repo-id", "org/bottleneck", env=local_hub.env)
    assert res.returncode == 0, res.stderr
    snippet = re.search(r"With the adapters library.*?```python\n(.*?)```", card, re.S).group(1)
    texts = ["what a lovely day", "this is awful", "the train is late again"]
    snippet += f"\nimport json\nprint('OUT=' + json.dumps([r['label'] for r in classifier({texts!r})]))\n"
    proc = subprocess.run([sys.executable, "-c", snippet], env=local_hub.client_env(token=True), capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    pushed = json.loads(proc.stdout.split("OUT=")[-1])
    from transformers import TextClassificationPipeline

    local = [r["label"] for r in TextClassificationPipeline(model=loaded.model, tokenizer=loaded.tokenizer)(texts)]
    assert pushed == local
