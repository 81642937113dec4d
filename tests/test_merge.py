"""hubtune merge: merged == adapter, gate failures leave nothing behind, CLI happy path and error."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tests._tiny_runs import REPO, TEST_CSV, make_lora_run, make_tiny_base, minilm_dir


def _cli(*args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "hubtune", *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def _tweets(n=64):
    import csv

    with open(REPO / TEST_CSV, encoding="utf-8") as fh:
        return [r["text"] for r in csv.DictReader(fh)][:n]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("merge")
    base = make_tiny_base(root / "base")
    run = make_lora_run(root / "run", base)
    return root, base, run


@pytest.fixture(scope="module")
def merged_cli(tiny):
    """The happy path through the real CLI: ``python -m hubtune merge RUN_DIR --json``."""
    _, _, run = tiny
    proc = _cli("merge", str(run), "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_cli_merge_writes_standalone_model_with_parity(tiny, merged_cli):
    _, _, run = tiny
    out = run / "merged"
    assert merged_cli["output_dir"] == str(out)
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    assert not (out / "adapter_config.json").exists()
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["id2label"] == {"0": "negative", "1": "neutral", "2": "positive"}
    p = merged_cli["parity"]
    assert p["passed"] and p["label_agreement"] == 1.0 and p["max_abs_diff"] <= 1e-4
    assert p["num_examples"] == 200 and p["texts_source"] == TEST_CSV  # the run's held-out set
    summary = json.loads((run / "run_summary.json").read_text())
    assert summary["merge"]["output"] == "merged"
    assert summary["merge"]["parity"]["max_abs_diff"] == p["max_abs_diff"]
    assert not [d for d in run.iterdir() if ".tmp-" in d.name]


def test_merged_logits_equal_adapter_logits_independently(tiny, merged_cli):
    """Re-check with plain transformers + peft, outside hubtune's gate."""
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    _, base, run = tiny
    tok = AutoTokenizer.from_pretrained(str(run / "model"))
    texts = _tweets()
    enc = tok(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
    import torch

    b = AutoModelForSequenceClassification.from_pretrained(str(base))
    adapter = PeftModel.from_pretrained(b, str(run / "model")).eval()
    merged = AutoModelForSequenceClassification.from_pretrained(str(run / "merged")).eval()
    plain = AutoModelForSequenceClassification.from_pretrained(str(base)).eval()
    with torch.no_grad():
        a, m, p0 = adapter(**enc).logits.numpy(), merged(**enc).logits.numpy(), plain(**enc).logits.numpy()
    assert np.abs(a - m).max() < 1e-4
    assert (a.argmax(-1) == m.argmax(-1)).all()
    assert np.abs(a - p0).max() > 1e-2  # the adapter (LoRA + trained head) really changes the outputs


def test_failed_gate_raises_and_leaves_no_output(tiny, monkeypatch, tmp_path):
    import torch

    from hubtune.publish import merge as merge_mod
    from hubtune.core.errors import MergeParityError

    _, _, run = tiny
    real = merge_mod._merge_model

    def broken(peft_model):
        model = real(peft_model)
        with torch.no_grad():
            model.classifier.weight.add_(0.05)
        return model

    monkeypatch.setattr(merge_mod, "_merge_model", broken)
    out = tmp_path / "never"
    with pytest.raises(MergeParityError) as err:
        merge_mod.merge(merge_mod.MergeOptions(source=str(run), output=str(out)))
    assert "max |logit diff|" in str(err.value) and "tolerance" in str(err.value)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no temp folder left either


def test_merge_rejects_existing_output_and_full_models(tiny, merged_cli, tmp_path):
    from hubtune.core.errors import ConfigError, OutputExistsError
    from hubtune.publish.merge import MergeOptions, merge

    root, base, run = tiny
    with pytest.raises(OutputExistsError):
        merge(MergeOptions(source=str(run)))
    with pytest.raises(ConfigError, match="adapter_config.json"):
        merge(MergeOptions(source=str(base), output=str(tmp_path / "x")))
    with pytest.raises(ConfigError):
        merge(MergeOptions(source=str(run), output=str(tmp_path / "y"), tolerance=-1))


def test_adapter_dir_with_builtin_texts(tiny, tmp_path):
    """A bare adapter folder (no run, no --eval-dataset) is checked on the built-in real texts."""
    from hubtune.publish.merge import MergeOptions, merge
    from hubtune.core.parity import REFERENCE_TEXTS

    _, _, run = tiny
    res = merge(MergeOptions(source=str(run / "model"), output=str(tmp_path / "m"), max_examples=8))
    # run/model sits in a run dir, so the run's data is used; a copy outside the run falls back to reference texts
    assert res.parity.texts_source == TEST_CSV
    import shutil

    shutil.copytree(run / "model", tmp_path / "lonely")
    res2 = merge(MergeOptions(source=str(tmp_path / "lonely"), output=str(tmp_path / "m2")))
    assert res2.parity.texts_source == "built-in reference texts"
    assert res2.parity.num_examples == len(REFERENCE_TEXTS) and res2.parity.passed
    assert res2.run_dir is None


def test_cli_error_is_one_line_with_exit_code(tiny):
    _, base, _ = tiny
    proc = _cli("merge", str(base))
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "--mode lora" in lines[0]
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_minilm_lora_merge_parity(tmp_path):
    import torch
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from tests._tiny_runs import LABELS, _write_run_files
    from hubtune.publish.merge import MergeOptions, merge

    mini = minilm_dir()
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(
        str(mini), num_labels=3, id2label=dict(enumerate(LABELS)), label2id={n: i for i, n in enumerate(LABELS)}
    )
    pm = get_peft_model(model, LoraConfig(task_type=TaskType.SEQ_CLS, r=8, lora_alpha=16, target_modules=["query", "value"]))
    with torch.no_grad():
        for name, p in pm.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    run = tmp_path / "run"
    pm.save_pretrained(run / "model")
    model.config.save_pretrained(run / "model")
    AutoTokenizer.from_pretrained(str(mini)).save_pretrained(run / "model")
    _write_run_files(run, base_model=str(mini), mode="lora")
    res = merge(MergeOptions(source=str(run)))
    assert res.parity.passed and res.parity.num_examples == 200
    assert res.parity.max_abs_diff < 1e-4 and res.parity.label_agreement == 1.0
    print(f"MiniLM merge parity: max diff {res.parity.max_abs_diff:.3g} on {res.parity.num_examples} tweets")
