"""Issue 24: any architecture a user brings. Tiny random classifiers of 15 families (tests/_families.py): LoRA
finds their attention projections without lora.target_modules (the head trained and saved), and batch-predict
on ONNX Runtime (torch.onnx's export, made on the fly) answers what PyTorch answers."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tests._families import FAMILIES, TEXTS, build

# what peft had no default for (issue 24: "LoRA could not be applied ... set lora.target_modules")
FOUND_TARGETS = {"distilbert": ["q_lin", "v_lin"], "albert": ["query", "value"], "mpnet": ["q", "v"],
                 "modernbert": ["Wqkv"]}


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    path = tmp_path_factory.mktemp("rows") / "rows.csv"
    pd.DataFrame({"text": TEXTS * 2}).to_csv(path, index=False)
    return path


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_family_lora_export_and_batch_predict(family, rows, tmp_path):
    from transformers import AutoModelForSequenceClassification

    from hubtune.config import TrainConfig
    from hubtune.predict import batch_predict
    from hubtune.predict.options import PredictOptions
    from hubtune.train.adapters import adapter_targets, apply_adapter

    model_dir = build(family, tmp_path / "model")
    model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    peft_model = apply_adapter(model, TrainConfig(base_model=str(model_dir), mode="lora"))
    targets = adapter_targets(peft_model)
    assert targets and targets != ["all-linear"], targets
    if family in FOUND_TARGETS:
        assert targets == FOUND_TARGETS[family]
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert any("lora_" in n for n in trainable) and any("modules_to_save" in n for n in trainable), trainable
    assert all("lora_" in n or "modules_to_save" in n for n in trainable), trainable  # the base stays frozen

    out = {}
    for backend in ("torch", "onnx"):
        res = batch_predict(PredictOptions(model=str(model_dir), dataset=str(rows), output=str(tmp_path / f"{backend}.parquet"),
                                           backend=backend, dtype="fp32"))
        assert res.rows == len(TEXTS) * 2
        out[backend] = pd.read_parquet(tmp_path / f"{backend}.parquet")
    assert list(out["onnx"]["label"]) == list(out["torch"]["label"])
    assert (out["onnx"]["score"] - out["torch"]["score"]).abs().max() < 1e-4
    info = json.loads((model_dir / "onnx" / "export_info.json").read_text()) if (model_dir / "onnx").is_dir() else {}
    assert not info or info.get("exporter_name") in (None, "torch")


def test_an_untraceable_model_is_a_one_line_refusal_naming_the_family(tmp_path, monkeypatch):
    """Where torch.export cannot trace a family: ExportUnsupportedError (exit 19) naming it and --backend torch,
    never an internal error."""
    import torch

    from hubtune.errors import ExportUnsupportedError
    from hubtune.onnx_tools import export_onnx

    model_dir = build("llama", tmp_path / "model")

    def broken(*a, **k):
        raise torch._dynamo.exc.Unsupported("data-dependent control flow")  # what torch.export raises

    monkeypatch.setattr(torch.onnx, "export", broken)
    with pytest.raises(ExportUnsupportedError) as err:
        export_onnx(model_dir, tmp_path / "onnx", exporter="torch")
    assert err.value.exit_code == 19
    assert "llama" in str(err.value) and "--backend torch" in str(err.value) and "\n" not in str(err.value)


def test_a_family_optimum_lacks_is_a_one_line_refusal(tmp_path, monkeypatch):
    """The Optimum lane: Optimum's 'not supported' ValueError is ExportUnsupportedError naming --exporter torch."""
    from hubtune.compat import optimum_exporter_available
    from hubtune.errors import ExportUnsupportedError
    from hubtune.onnx_tools import export_onnx

    if not optimum_exporter_available():
        pytest.skip("optimum-onnx is not installed (the Optimum lane: pip install 'hubtune[optimum]')")
    import optimum.exporters.onnx as oe

    def lacking(*a, **k):
        raise ValueError("Trying to export a llama model, that is a custom or unsupported architecture")

    monkeypatch.setattr(oe, "main_export", lacking)
    with pytest.raises(ExportUnsupportedError) as err:
        export_onnx(build("llama", tmp_path / "model"), tmp_path / "onnx", exporter="optimum")
    assert "llama" in str(err.value) and "--exporter torch" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.slow
@pytest.mark.parametrize("family,mode", [("distilbert", "lora"), ("llama", "full")])
def test_family_train_and_push_is_verified(family, mode, local_hub, tmp_path):
    """The whole flow on a tiny model of a family that failed before: train -> merge -> ONNX + int8 -> card ->
    push to the local Hub -> pipeline() in a fresh process agrees with what was measured."""
    from hubtune.pipeline import PipelineOptions, run_pipeline

    from tests.test_pipeline import _cfg

    base = build(family, tmp_path / "base")
    cfg = _cfg(str(base), tmp_path / "run", f"org/{family}", mode=mode, onnx=True)
    cfg.export.quantize = "int8"
    res = run_pipeline(PipelineOptions(config=cfg, progress=False))
    assert res.verified and res.committed, res.message
    assert (res.steps.get("merge") == "done") == (mode == "lora"), res.steps  # a full model has nothing to merge
    assert "onnx" in res.variants, (res.variants, res.refused)
    files = {f for f in local_hub.api().list_repo_files(f"org/{family}")}
    assert {"config.json", "model.safetensors", "README.md"} <= files and any(f.endswith(".onnx") for f in files), files


def test_a_config_pad_other_than_the_tokenizers_trains_and_reloads_equal(tmp_path):
    """RoBERTa counts position ids from the config's pad id (1 here); the tokenizer pads with 0. The Trainer aligned
    the config with the tokenizer after the model was built, so the reloaded model predicted differently (max
    |logit diff| 2.33) and train refused it; now the model is built with the tokenizer's pad id."""
    import json

    from hubtune.config import DataConfig, TrainConfig
    from hubtune.train import train

    from tests.conftest import TWEETS_TEST, TWEETS_TRAIN

    base = build("roberta", tmp_path / "base")
    assert json.loads((base / "config.json").read_text())["pad_token_id"] == 1
    cfg = TrainConfig(base_model=str(base), output_dir=str(tmp_path / "run"), mode="full", num_epochs=1, batch_size=16,
                      max_length=32, learning_rate=1e-3, logging_steps=1000,
                      data=DataConfig(dataset=str(TWEETS_TRAIN), eval_dataset=str(TWEETS_TEST), max_samples=64,
                                      eval_max_samples=48))
    train(cfg, progress=False)  # its reload check: the saved files predict what the trained model did
    assert json.loads((tmp_path / "run" / "model" / "config.json").read_text())["pad_token_id"] == 0
