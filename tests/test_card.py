"""hubtune card: round-trips through huggingface_hub's parsers, LoRA and full runs, no paths or tokens."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from tests._tiny_runs import REPO, TEST_CSV, make_full_run, make_lora_run, make_tiny_base, minilm_dir

FAKE_TOKEN = "hf_" + "AbCdEfGhIjKlMnOpQrStUvWxYz0123"


def _cli(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "hubtune", *args], cwd=REPO, capture_output=True, text=True, timeout=300, env=env
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A LoRA run (merged + exported with int8) and a full run (no export)."""
    from hubtune.publish.export import ExportOptions, export
    from hubtune.publish.merge import MergeOptions, merge

    root = tmp_path_factory.mktemp("card")
    base = make_tiny_base(root / "base")
    lora = make_lora_run(root / "lora_run", base)
    merge(MergeOptions(source=str(lora)))
    export(ExportOptions(source=str(lora), quantize="int8", bench_rows=32, max_accuracy_drop_pt=100, min_variant_agreement=0))
    full = make_full_run(root / "full_run", base)
    return root, base, lora, full


@pytest.fixture(scope="module")
def lora_card(runs):
    """Happy path through the CLI, with a token in the environment that must not leak."""
    _, _, lora, _ = runs
    env = dict(os.environ, HF_TOKEN=FAKE_TOKEN)
    proc = _cli("card", str(lora), "--repo-id", "acme/tiny-tweets", "--dataset-id", "acme/tweets", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_template_copies_are_identical():
    assert (REPO / "model_cards" / "default.md").read_text() == (REPO / "hubtune" / "publish" / "templates" / "default.md").read_text()


def test_lora_card_round_trips_through_hub_parsers(runs, lora_card):
    from huggingface_hub import ModelCard, metadata_load
    from huggingface_hub.repocard_data import model_index_to_eval_results

    _, _, lora, _ = runs
    path = lora / "merged" / "README.md"  # the merged folder is what gets published
    assert lora_card["path"] == str(path)
    card = ModelCard.load(path)
    d = card.data
    assert d.license == "apache-2.0" and d.language == ["en"] and d.pipeline_tag == "text-classification"
    assert d.library_name == "transformers" and "lora" not in d.tags and "onnx" in d.tags  # merged: not an adapter (issue 13.7)
    assert d.datasets == ["acme/tweets"]
    meta = metadata_load(path)
    name, results = model_index_to_eval_results(meta["model-index"])
    assert name == "tiny-tweets"
    got = {(r.metric_type, (r.metric_args or {}).get("average")): r.metric_value for r in results}
    want = lora_card["metrics"]
    assert got[("accuracy", None)] == want["accuracy"]
    assert got[("f1", "macro")] == want["f1_macro"] and got[("f1", "micro")] == want["f1_micro"]
    assert got[("precision", "macro")] == want["precision_macro"] and got[("recall", "macro")] == want["recall_macro"]
    for r in results:
        assert r.task_type == "text-classification" and r.dataset_type == "acme/tweets" and r.dataset_split == "test"
    # the values are those of the published files, re-evaluated (not the training log's 0.123)
    from hubtune.data.dataset import load_labeled
    from hubtune.core.modeling import evaluate_loaded
    from hubtune.tasks.loading import load_classifier

    loaded = load_classifier(str(lora / "merged"))
    m = evaluate_loaded(loaded, load_labeled(str(REPO / TEST_CSV), label_names=loaded.label_names, max_samples=200, seed=42))
    assert m["accuracy"] == pytest.approx(want["accuracy"]) and want["accuracy"] != 0.123
    body = card.text
    assert "ONNX (fp32)" in body and "ONNX int8" in body and 'subfolder="onnx"' in body
    assert 'pipeline("text-classification", model="acme/tiny-tweets")' in body
    for label in ("negative", "neutral", "positive"):
        assert f"| {label} |" in body
    summary = json.loads((lora / "run_summary.json").read_text())
    assert summary["card"]["path"] == "merged/README.md"


def test_card_has_no_absolute_path_and_no_token(runs, lora_card, tmp_path):
    root, base, lora, _ = runs
    text = (lora / "merged" / "README.md").read_text()
    assert FAKE_TOKEN not in text and not re.search(r"hf_[A-Za-z0-9]{20,}", text)
    for p in (str(root), str(base), str(lora), str(REPO), str(minilm_dir()), os.path.expanduser("~") + "/"):
        assert p not in text
    assert not re.search(r"(?<![\w:/.])/(home|root|tmp|work|Users|usr)/", text)


def test_full_run_card_renders(runs):
    from huggingface_hub import ModelCard

    from hubtune.publish.card import CardOptions, card

    _, _, _, full = runs
    res = card(CardOptions(run_dir=str(full)))
    assert res.path == str(full / "model" / "README.md")
    mc = ModelCard.load(res.path)
    assert mc.data.library_name == "transformers" and "lora" not in mc.data.tags
    assert mc.data.base_model is None  # a local random base has no Hub id: nothing invented
    assert "| mode | full |" in mc.text and "ONNX" not in mc.text.split("## How to use")[0]
    assert len(mc.data.eval_results) == 5 and mc.data.eval_results[0].dataset_name == "tweets"
    assert mc.data.datasets is None  # a local CSV is not a Hub dataset


def test_base_model_rule(tmp_path):
    from hubtune.publish.card import hub_base_model

    assert hub_base_model("bert-base-uncased") == ("bert-base-uncased", "bert-base-uncased")
    assert hub_base_model("sentence-transformers/all-MiniLM-L6-v2")[0] == "sentence-transformers/all-MiniLM-L6-v2"
    assert hub_base_model(str(minilm_dir()))[0] == "nreimers/MiniLM-L6-H384-uncased"  # config _name_or_path
    snap = tmp_path / "hub" / "models--org--name" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    assert hub_base_model(str(snap))[0] == "org/name"
    local = tmp_path / "my_base"
    local.mkdir()
    assert hub_base_model(str(local)) == (None, "my_base")
    assert hub_base_model(str(local), override="org/real")[0] == "org/real"


def test_leaky_template_is_refused(runs, tmp_path):
    from hubtune.publish.card import CardOptions, card
    from hubtune.core.errors import VerificationError

    _, _, _, full = runs
    tpl = tmp_path / "leaky.md"
    tpl.write_text("---\n{{ card_data }}\n---\n\nweights at /home/alice/models/x\n", encoding="utf-8")
    with pytest.raises(VerificationError, match="absolute path"):
        card(CardOptions(run_dir=str(full), template=str(tpl), output=str(tmp_path / "README.md")))
    assert not (tmp_path / "README.md").exists()


def test_cli_card_error_is_one_line(tmp_path):
    proc = _cli("card", str(tmp_path / "missing_run"))
    assert proc.returncode == 5
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "run directory" in lines[0]


# --- issue 13.7: what the card calls its evaluation set, what it tags, which datasets it names -------------
def test_card_without_test_split_says_figures_come_from_model_selection(runs, lora_card):
    _, _, lora, _ = runs
    text = (lora / "merged" / "README.md").read_text()
    assert "held-out" not in text
    assert "validation examples that also chose the checkpoint" in text and "no separate test split" in text


def test_merged_model_is_not_tagged_as_an_adapter(runs, lora_card):
    from huggingface_hub import ModelCard

    _, _, lora, _ = runs
    data = ModelCard.load(lora / "merged" / "README.md").data
    assert "peft" not in data.tags and "lora" not in data.tags
    assert data.library_name == "transformers"


def test_adapter_card_is_tagged_peft(runs, tmp_path):
    from huggingface_hub import ModelCard

    _, base, _, _ = runs
    run = make_lora_run(tmp_path / "adapter_run", base)  # not merged: the adapter is what gets published
    proc = _cli("card", str(run), "--repo-id", "acme/tiny-adapter", "--json")
    assert proc.returncode == 0, proc.stderr
    data = ModelCard.load(run / "model" / "README.md").data
    assert {"peft", "lora"} <= set(data.tags) and data.library_name == "peft"


def test_card_reports_a_separate_test_split(runs, tmp_path):
    """data.test_dataset: the model-index reports the test split; the body says held-out test examples."""
    import shutil

    import yaml
    from huggingface_hub import ModelCard

    _, _, _, full = runs
    run = tmp_path / "with_test"
    shutil.copytree(full, run)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["data"]["test_dataset"] = TEST_CSV
    cfg["data"]["eval_dataset"] = "data/tweets/train.csv"
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    proc = _cli("card", str(run), "--repo-id", "acme/tiny-full", "--dataset-id", "acme/tweets", "--json")
    assert proc.returncode == 0, proc.stderr
    card = ModelCard.load(run / "model" / "README.md")
    splits = {r.dataset_split for r in card.data.eval_results}
    assert splits == {"test"}
    assert "held-out test examples" in card.text and "model selection" not in card.text
    assert json.loads(proc.stdout)["eval_source"] == TEST_CSV


def test_card_is_identical_when_nothing_changed(runs, tmp_path):
    """Without an export the card measures PyTorch throughput once per weights: a re-run writes the same card."""
    import shutil

    _, _, _, full = runs
    run = tmp_path / "again"
    shutil.copytree(full, run)
    texts = []
    for _ in range(2):
        proc = _cli("card", str(run), "--repo-id", "acme/tiny-full", "--json")
        assert proc.returncode == 0, proc.stderr
        texts.append((run / "model" / "README.md").read_text())
    assert texts[0] == texts[1]
