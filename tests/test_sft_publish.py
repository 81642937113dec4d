"""train-and-push of SFT runs (hubtune.publish.sft_publish) against the local Hub: a full causal run (its base model
on the Hub), a LoRA causal run through examples/sft-push.yaml (merged behind its greedy-generation gate), a
corrupted merge refused (exit 12, nothing pushed), a seq2seq run verified through generate; the card's
pipeline_tag, widget and model-index; the verified pull of the staged revision in a fresh process."""

from __future__ import annotations

import json

import pytest
import yaml

from hubtune.core.config import DataConfig, ExportSettings, GateSettings, LoraSettings, PipelineConfig, PublishSettings
from hubtune.core.errors import MergeParityError
from hubtune.pipeline import PipelineOptions, run_pipeline

from .conftest import REPO, run_cli
from .test_recipes_sft import METRICS, _seq2seq_dir, sft_data, tiny_gpt2_dir  # noqa: F401 - the fixtures


def _cfg(base, out, data, repo_id, *, mode="full", task="text-generation", prefix="pc", **kw):
    lora = LoraSettings(r=8, alpha=16, dropout=0.0, target_modules=kw.pop("target_modules", ["c_attn", "c_proj", "c_fc"]))
    return PipelineConfig(
        base_model=base, output_dir=str(out), task=task, mode=mode,
        data=DataConfig(dataset=data[f"{prefix}_train"], eval_dataset=data[f"{prefix}_eval"]),
        num_epochs=2, batch_size=16, eval_batch_size=32, learning_rate=kw.pop("learning_rate", 3e-3),
        logging_steps=1000, max_length=64, max_new_tokens=4, lora=lora,
        publish=PublishSettings(repo_id=repo_id, tag="v1", dataset_id="org/tweets-sft"),
        export=ExportSettings(onnx=True),  # skipped for an SFT run, and said so
        gates=GateSettings(golden_examples=8), **kw,
    )


def _meta(card_text):
    return yaml.safe_load(card_text.split("---")[1])


def _index(meta):
    return {m["type"]: m["value"] for m in meta["model-index"][0]["results"][0]["metrics"]}


def _files(hub, repo_id, rev="v1"):
    return set(hub.api().list_repo_files(repo_id, revision=rev))


def test_full_causal_sft_run_is_published_and_verified(local_hub, tiny_gpt2_dir, sft_data, tmp_path):  # noqa: F811
    from hubtune.publish.hub import PushOptions, push

    push(PushOptions(folder=tiny_gpt2_dir["plain"], repo_id="org/tiny-gpt2"))  # the base model, a Hub id
    cfg = _cfg("org/tiny-gpt2", tmp_path / "run", sft_data, "org/sft-full")
    res = run_pipeline(PipelineOptions(config=cfg, progress=False))
    assert res.verified and res.tag == "v1", res.steps
    assert res.steps == {"train": "done", "export": "skipped (SFT: no ONNX)", "card": "done", "push": "staged",
                         "verify": "passed", "promote": "done", "tag": "done"}
    assert res.verification["checked"]["pytorch"] == {"total": 8, "agree": 8, "mismatches": []}
    files = _files(local_hub, "org/sft-full")
    assert {"model.safetensors", "config.json", "README.md", "run_summary.json"} <= files
    assert not any(f.startswith("onnx/") or "adapter" in f for f in files)
    ev = json.loads((tmp_path / "run" / "metrics.json").read_text())["eval"]
    card = (tmp_path / "run" / "model" / "README.md").read_text()
    meta = _meta(card)
    assert meta["pipeline_tag"] == "text-generation" and meta["base_model"] == "org/tiny-gpt2"
    assert meta["datasets"] == ["org/tweets-sft"]
    golden = json.loads((tmp_path / "run" / "golden.json").read_text())
    assert meta["widget"] == [{"text": golden["texts"][0]}] and golden["texts"][0].startswith("Sentiment of:")
    assert _index(meta) == {k: pytest.approx(ev[k]) for k in METRICS}  # the full run: measured on model/ reloaded
    assert 'pipeline("text-generation"' in card and "return_full_text=False" in card and "ONNX" in card
    assert str(tmp_path) not in card
    assert all(isinstance(t, str) for t in golden["expected"]["pytorch"]) and len(golden["expected"]["pytorch"]) == 8


def test_lora_sft_example_merges_and_verifies(tiny_gpt2_dir, tmp_path):  # noqa: F811
    """examples/sft-push.yaml through the CLI on the embedded local Hub (the tiny GPT-2 as its base)."""
    run = tmp_path / "run"
    res = run_cli("train-and-push", "--config", "examples/sft-push.yaml", "--local-hub", str(tmp_path / "hub"),
                  "--base-model", tiny_gpt2_dir["plain"], "-o", str(run), "--set", "num_epochs=1",
                  "--set", "learning_rate=0.02", "--set", "data.max_samples=96", "--set", "lora.target_modules=c_attn",
                  "--no-progress", "--json", cwd=REPO)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout)
    assert out["verified"] and out["tag"] == "v1" and out["steps"]["merge"] == "done", out["steps"]
    assert out["steps"]["export"] == "skipped (SFT: no ONNX)"
    checked = out["verification"]["checked"]["pytorch"]
    assert checked["agree"] == checked["total"] == 10  # 10% of 96 rows held out
    summary = json.loads((run / "run_summary.json").read_text())
    assert summary["merge"]["identical"] == summary["merge"]["prompts"] == 10
    assert (run / "merged" / "model.safetensors").is_file() and not (run / "merged" / "adapter_config.json").exists()
    card = (run / "merged" / "README.md").read_text()
    meta = _meta(card)
    assert meta["pipeline_tag"] == "text-generation" and meta["widget"][0]["text"].startswith("Sentiment of:")
    index = _index(meta)
    assert index == {k: pytest.approx(summary["card"]["metrics"][k]) for k in METRICS}  # measured on merged/
    ev = json.loads((run / "metrics.json").read_text())["eval"]  # ... and equal to the adapter's, up to float noise
    assert index["eval_loss"] == pytest.approx(ev["eval_loss"], abs=1e-3)
    assert index["exact_match"] == pytest.approx(ev["exact_match"]) and "merged LoRA adapter" in card


def test_a_corrupted_merge_is_refused_before_the_push(local_hub, tiny_gpt2_dir, sft_data, tmp_path, monkeypatch):  # noqa: F811
    import torch

    from hubtune.publish import sft_publish

    real = sft_publish.merge_adapter

    def corrupted(peft_model):
        merged = real(peft_model)
        torch.manual_seed(0)
        with torch.no_grad():
            for p in merged.parameters():
                p.add_(torch.randn_like(p))
        return merged

    monkeypatch.setattr(sft_publish, "merge_adapter", corrupted)
    cfg = _cfg(tiny_gpt2_dir["plain"], tmp_path / "run", sft_data, "org/sft-bad", mode="lora", learning_rate=2e-2)
    with pytest.raises(MergeParityError, match="greedy generations differ.*nothing was written or pushed") as err:
        run_pipeline(PipelineOptions(config=cfg, progress=False))
    assert err.value.exit_code == 12
    assert not (tmp_path / "run" / "merged").exists()
    assert [p.name for p in (tmp_path / "run").iterdir() if p.name.startswith(".merged")] == []
    assert "org/sft-bad" not in {m.id for m in local_hub.api().list_models()}


def test_seq2seq_lora_sft_run_is_verified_through_generate(local_hub, sft_data, tmp_path, tmp_path_factory):  # noqa: F811
    base = _seq2seq_dir(tmp_path_factory, "bart")
    cfg = _cfg(base, tmp_path / "run", sft_data, "org/sft-bart", mode="lora", task="text2text-generation", prefix="s2s",
               learning_rate=3e-2, target_modules=["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"])
    res = run_pipeline(PipelineOptions(config=cfg, progress=False))
    assert res.verified and res.steps["merge"] == "done", res.steps
    assert res.verification["checked"]["pytorch"]["agree"] == 8
    card = (tmp_path / "run" / "merged" / "README.md").read_text()
    meta = _meta(card)
    assert meta["pipeline_tag"] == "text2text-generation" and meta["widget"][0]["text"].startswith("sentiment:")
    assert set(_index(meta)) == set(METRICS) and "AutoModelForSeq2SeqLM" in card


def test_chat_prompts_generate_through_the_chat_template(tiny_gpt2_dir):  # noqa: F811
    """A chat run's golden prompts are messages: pipeline() renders them with the chat template, as the recipe does."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hubtune.publish.verify import sft_predict
    from hubtune.tasks.registry import get_task
    from hubtune.train.sftdata import generate

    chats = [[{"role": "user", "content": "Sentiment of: I love it"}], [{"role": "user", "content": "hello there"}]]
    got = sft_predict(tiny_gpt2_dir["chat"], "text-generation", chats, max_new_tokens=4)["pytorch"]
    model = AutoModelForCausalLM.from_pretrained(tiny_gpt2_dir["chat"])
    tok = AutoTokenizer.from_pretrained(tiny_gpt2_dir["chat"])
    tok.pad_token = tok.eos_token
    want = generate(model, tok, get_task("text-generation"), chats, messages=True, max_new_tokens=4, batch_size=1,
                    limit=None)
    assert got == want and all(isinstance(t, str) for t in got)
