"""SFT recipes (hubtune.train.sft): a tiny GPT-2 (byte-level BPE trained on the tweets) on prompt/completion and on
chat messages, a tiny T5 and BART (the packaged MiniLM tokenizer) on source/target; full and LoRA. The loss falls
on the completion tokens only; the held-out metrics come from the saved files reloaded."""

from __future__ import annotations

import csv
import json

import pytest
from typer.testing import CliRunner

from hubtune.core.config import DataConfig, TrainConfig
from hubtune.core.errors import ConfigError
from hubtune.train import train

from ._tiny_runs import minilm_dir
from .conftest import REPO, TWEETS_TEST, TWEETS_TRAIN

CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")
METRICS = ("eval_loss", "perplexity", "exact_match", "rouge_l")


def _tweets(path, n):
    with open(path, encoding="utf-8", newline="") as fh:
        return [(" ".join(r["text"].split())[:80], r["label"]) for r, _ in zip(csv.DictReader(fh), range(n))]


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def sft_data(tmp_path_factory):
    """prompt/completion, messages and source/target files (train, eval) built from the tweets."""
    d = tmp_path_factory.mktemp("sft_data")
    out = {}
    for split, src, n in (("train", TWEETS_TRAIN, 160), ("eval", TWEETS_TEST, 24)):
        rows = _tweets(src, n)
        out[f"pc_{split}"] = _write(d / f"pc_{split}.jsonl", [{"prompt": f"Sentiment of: {t}\n", "completion": f" {lab}"}
                                                              for t, lab in rows])
        out[f"chat_{split}"] = _write(d / f"chat_{split}.jsonl", [{"messages": [
            {"role": "user", "content": f"Sentiment of: {t}"}, {"role": "assistant", "content": lab}]} for t, lab in rows])
        out[f"s2s_{split}"] = _write(d / f"s2s_{split}.jsonl", [{"source": f"sentiment: {t}", "target": lab}
                                                                for t, lab in rows])
    return out


@pytest.fixture(scope="module")
def tiny_gpt2_dir(tmp_path_factory):
    """GPT-2 (n_layer 2, n_embd 32) + a byte-level BPE (vocab 600) trained on the tweets; a copy with a chat template."""
    import shutil

    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    texts = [t for t, _ in _tweets(TWEETS_TRAIN, 2000)]
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts + [" negative", " neutral", " positive", "negative", "neutral", "positive"] * 50,
                            vocab_size=600, min_frequency=2, special_tokens=["<|endoftext|>"], show_progress=False)
    tok = GPT2TokenizerFast(tokenizer_object=bpe._tokenizer, eos_token="<|endoftext|>", bos_token="<|endoftext|>",
                            unk_token="<|endoftext|>", model_max_length=128)
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=len(tok), n_positions=128, n_embd=32, n_layer=2, n_head=2,
                     bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id)
    out = tmp_path_factory.mktemp("tiny_gpt2")
    GPT2LMHeadModel(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    chat = tmp_path_factory.mktemp("tiny_gpt2_chat")
    shutil.copytree(out, chat, dirs_exist_ok=True)
    tok.chat_template = CHAT_TEMPLATE
    tok.save_pretrained(chat)
    return {"plain": str(out), "chat": str(chat)}


def _seq2seq_dir(tmp_path_factory, family):
    import torch
    import transformers
    from transformers import AutoTokenizer

    from ._families import FAMILIES

    tok = AutoTokenizer.from_pretrained(str(minilm_dir()))
    cls_name, kw, _ = FAMILIES[family]
    cfg = getattr(transformers, cls_name)(vocab_size=tok.vocab_size, **{**kw, "decoder_start_token_id": 101})
    torch.manual_seed(0)
    model = transformers.AutoModelForSeq2SeqLM.from_config(cfg)
    out = tmp_path_factory.mktemp(f"tiny_{family}")
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


def _cfg(base, out, train_spec, eval_spec, **kw):
    data = kw.pop("data", {})
    defaults = dict(num_epochs=3, batch_size=16, eval_batch_size=32, learning_rate=3e-3, logging_steps=1000,
                    max_length=64, max_new_tokens=4, task="text-generation")
    return TrainConfig(base_model=base, output_dir=str(out), data=DataConfig(dataset=train_spec, eval_dataset=eval_spec,
                                                                              **data), **{**defaults, **kw})


def _check_metrics(res, *, reload_loss=None, min_drop=1.0):
    doc = json.loads((res.output_dir / "metrics.json").read_text())["eval"]
    assert all(isinstance(doc[k], float) for k in METRICS), doc
    assert doc["source"] == "reloaded" and doc["num_examples"] == 24
    assert doc["eval_loss"] < doc["eval_loss_before"] - min_drop, doc  # it learned the completions
    assert abs(doc["perplexity"] - __import__("math").exp(doc["eval_loss"])) < 1e-6 * doc["perplexity"]
    summary = json.loads((res.output_dir / "run_summary.json").read_text())
    assert all(summary["eval"][k] == doc[k] for k in METRICS)
    assert (res.output_dir / "config.yaml").is_file()
    if reload_loss is not None:  # measured again here on the saved files: the same figure
        assert abs(reload_loss(res) - doc["eval_loss"]) < 1e-4, doc
    return doc


def test_causal_features_label_the_completion_only(tiny_gpt2_dir, sft_data):
    from datasets import Dataset
    from transformers import AutoTokenizer

    from hubtune.tasks.registry import get_task
    from hubtune.train.sftdata import causal_features

    tok = AutoTokenizer.from_pretrained(tiny_gpt2_dir["chat"])
    task = get_task("text-generation")
    ds = Dataset.from_list([{"prompt": "Sentiment of: I love it\n", "completion": " positive"}])
    row = causal_features(ds, tok, task, 64, "t")[0]
    p = tok("Sentiment of: I love it\n", add_special_tokens=False)["input_ids"]
    c = tok(" positive", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert row["input_ids"] == p + c and row["labels"] == [-100] * len(p) + c
    chat = Dataset.from_list([{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}]}])
    row = causal_features(chat, tok, task, 64, "t")[0]
    prompt = tok("<|user|>hi\n<|assistant|>", add_special_tokens=False)["input_ids"]
    done = tok("ok\n", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert row["input_ids"] == prompt + done and row["labels"] == [-100] * len(prompt) + done
    row = causal_features(ds, tok, task, 4, "t")[0]  # too long: the prompt's start goes, the completion stays
    assert len(row["input_ids"]) == 4 and row["labels"][-len(c):] == c


def test_sft_causal_full_learns_the_completions(tiny_gpt2_dir, sft_data, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq

    from hubtune.tasks.registry import get_task
    from hubtune.train.sftdata import causal_features, completion_loss, load_sft, SftColumns

    cfg = _cfg(tiny_gpt2_dir["plain"], tmp_path / "full", sft_data["pc_train"], sft_data["pc_eval"])

    def reload_loss(res):
        model = AutoModelForCausalLM.from_pretrained(res.model_dir)
        tok = AutoTokenizer.from_pretrained(res.model_dir)
        ev = causal_features(load_sft(cfg, SftColumns("prompt", "completion")).eval, tok, get_task(cfg.task), 64, "e")
        return completion_loss(model, ev, DataCollatorForSeq2Seq(tok, label_pad_token_id=-100), 32, shifted=True)

    res = train(cfg, progress=False)
    doc = _check_metrics(res, reload_loss=reload_loss)
    assert doc["samples"] and all(s["prompt"].startswith("Sentiment of:") for s in doc["samples"])
    assert json.loads((res.output_dir / "run_summary.json").read_text())["sft"]["format"] == "prompt-completion"


def test_sft_causal_lora_saves_the_adapter(tiny_gpt2_dir, sft_data, tmp_path):
    cfg = _cfg(tiny_gpt2_dir["plain"], tmp_path / "lora", sft_data["pc_train"], sft_data["pc_eval"], mode="lora",
               learning_rate=2e-2)
    cfg.lora.dropout, cfg.lora.target_modules = 0.0, ["c_attn", "c_proj", "c_fc"]
    res = train(cfg, progress=False)
    assert (res.model_dir / "adapter_config.json").is_file() and not (res.model_dir / "model.safetensors").exists()
    _check_metrics(res, min_drop=0.3)  # LoRA on a random 2-layer base moves its loss less than full training


def test_sft_chat_messages_use_the_chat_template(tiny_gpt2_dir, sft_data, tmp_path):
    cfg = _cfg(tiny_gpt2_dir["chat"], tmp_path / "chat", sft_data["chat_train"], sft_data["chat_eval"])
    res = train(cfg, progress=False)
    doc = _check_metrics(res)
    assert json.loads((res.output_dir / "run_summary.json").read_text())["sft"]["messages_column"] == "messages"
    assert all(s["generated"] for s in doc["samples"]), doc  # text generated after the template's prompt


def test_messages_without_a_chat_template_are_refused(tiny_gpt2_dir, sft_data, tmp_path):
    cfg = _cfg(tiny_gpt2_dir["plain"], tmp_path / "nochat", sft_data["chat_train"], sft_data["chat_eval"])
    with pytest.raises(ConfigError) as err:
        train(cfg, progress=False)
    assert "needs a chat template" in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "nochat").exists()


def test_sft_settings_that_contradict_are_refused(sft_data, tmp_path):
    base = str(tmp_path / "no-model")  # refused before any model is read
    bad = [
        ({"messages_column": "messages", "prompt_column": "prompt"}, sft_data["pc_train"], "both set"),
        ({"prompt_column": "prompt"}, sft_data["pc_train"], "expected both set"),
        ({"prompt_column": "question", "completion_column": "completion"}, sft_data["pc_train"], "not a column"),
    ]
    for data, spec, words in bad:
        with pytest.raises(ConfigError, match=words):
            train(_cfg(base, tmp_path / "x", spec, None, data=data), progress=False)
    with pytest.raises(ConfigError, match="no SFT columns.*--set data.prompt_column"):  # seq2seq needs its columns
        train(_cfg(base, tmp_path / "x", str(TWEETS_TRAIN), None, task="text2text-generation"), progress=False)
    with pytest.raises(ConfigError, match="chat-messages column"):
        train(_cfg(base, tmp_path / "x", sft_data["chat_train"], None, task="text2text-generation"), progress=False)
    with pytest.raises(ConfigError, match="mode lora on plain texts"):  # the block recipe trains the full model
        train(_cfg(base, tmp_path / "x", str(TWEETS_TRAIN), None, mode="lora"), progress=False)
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("family,mode", [("t5", "full"), ("bart", "lora")])
def test_sft_seq2seq(family, mode, sft_data, tmp_path, tmp_path_factory):
    base = _seq2seq_dir(tmp_path_factory, family)
    cfg = _cfg(base, tmp_path / family, sft_data["s2s_train"], sft_data["s2s_eval"], task="text2text-generation",
               mode=mode, learning_rate=3e-3 if mode == "full" else 3e-2)
    if mode == "lora":
        cfg.lora.dropout, cfg.lora.target_modules = 0.0, ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]
    res = train(cfg, progress=False)
    if mode == "lora":
        assert (res.model_dir / "adapter_config.json").is_file()
    doc = _check_metrics(res, min_drop=1.0 if mode == "full" else 0.3)
    assert json.loads((res.output_dir / "run_summary.json").read_text())["sft"]["format"] == "seq2seq"
    assert doc["samples"][0]["prompt"].startswith("sentiment:")


def test_cli_trains_the_sft_example(tiny_gpt2_dir, tmp_path, monkeypatch):
    from hubtune.cli.main import app

    monkeypatch.chdir(REPO)
    res = CliRunner().invoke(app, [
        "train", "--config", "examples/sft.yaml", "--base-model", tiny_gpt2_dir["plain"], "-o", str(tmp_path / "run"),
        "--set", "num_epochs=1", "--set", "data.max_samples=64", "--set", "lora.target_modules=c_attn",
    ])
    assert res.exit_code == 0, res.output
    assert "(SFT)" in res.output and "rouge_l" in res.output
    doc = json.loads((tmp_path / "run" / "metrics.json").read_text())["eval"]
    assert all(k in doc for k in METRICS) and doc["num_examples"] == 7  # 10% of the 64 rows kept
