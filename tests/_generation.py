"""Tiny random generative models of the common families (built from configs, no download) with the packaged MiniLM
tokenizer (a causal LM given a chat template), and the anchors batch generation is compared with: ``model.generate``
one row at a time (no padding) and ``pipeline("text-generation")``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests._families import FAMILIES
from tests._tiny_runs import minilm_dir

CAUSAL = ("gpt2", "llama", "qwen2", "mistral", "phi3", "gemma")
SEQ2SEQ = ("t5", "bart")
CHAT_TEMPLATE = ("{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }} {% endfor %}"
                 "{% if add_generation_prompt %}[assistant]{% endif %}")
PROMPTS = [
    "the service was great and the food",
    "terrible delay, two hours on the tarmac and",
    "ok",
    "I am not sure what to think about the new schedule, it changes every week and nobody tells us why",
    "flight was fine",
    "lost my bag again!!! third time this year",
]


def build_generator(family: str, out: Path, *, chat: bool = False, seed: int = 0) -> Path:
    """Save a tiny random ``family`` LM (causal, or encoder-decoder for t5/bart) and its tokenizer to ``out``; its
    weights are drawn wide (initializer_range 0.5) so no two next tokens tie within float noise."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    cls_name, kwargs, _ = FAMILIES[family]
    tok = AutoTokenizer.from_pretrained(minilm_dir(), model_input_names=["input_ids", "attention_mask"])
    if chat:
        tok.chat_template = CHAT_TEMPLATE
    extra: dict[str, Any] = {"eos_token_id": 102, "bos_token_id": 101, "pad_token_id": 0}
    if family in SEQ2SEQ:
        extra.update(decoder_start_token_id=101, init_std=0.5) if family == "bart" else \
            extra.update(decoder_start_token_id=0, initializer_factor=20.0)
    else:
        extra["initializer_range"] = 0.5
    cfg = getattr(transformers, cls_name)(vocab_size=tok.vocab_size, **{**kwargs, **extra})
    torch.manual_seed(seed)
    auto = AutoModelForSeq2SeqLM if family in SEQ2SEQ else AutoModelForCausalLM
    model = auto.from_config(cfg)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def reference_texts(model_dir: Path, prompts: list[str], new_tokens: int, *, seq2seq: bool) -> list[list[int]]:
    """The new token ids ``model.generate`` gives each prompt alone (greedy), tokenized as batch-predict does."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = (AutoModelForSeq2SeqLM if seq2seq else AutoModelForCausalLM).from_pretrained(model_dir).eval()
    out = []
    for p in prompts:
        ids = tok(p, return_tensors="pt")
        with torch.inference_mode():
            seq = model.generate(**ids, max_new_tokens=new_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
        out.append(seq[0, 1:].tolist() if seq2seq else seq[0, ids["input_ids"].shape[1]:].tolist())
    return out
