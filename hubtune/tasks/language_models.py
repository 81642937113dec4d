"""The language-model tasks the recipes publish: ``fill-mask`` (a masked LM), ``text-generation`` (a causal LM),
both adapted on texts cut into blocks (perplexity before and after, the full model; text-generation also
learns completions of prompts or chat messages, full or LoRA: the SFT recipe), and
``generative-classification`` (a causal LM answering a label as text; full or LoRA).

What differs between them: the transformers Auto class, the token the tokenizer must have (mask / pad = eos),
the probe a published model is checked with (a masked middle word, or the first words as a prompt), where its
next-token answer is read, and its card's example (an SFT model: its greedy text through ``pipeline()`` and usage)."""

from __future__ import annotations

import re
from typing import Any

from hubtune.core.errors import ConfigError, ModelLoadError
from hubtune.tasks.base import Task, check_engine, check_trained
from hubtune.tasks.generation import Generates


def probe_words(text: str, most: int = 12) -> list[str]:
    """The first ``most`` words of a text a probe is made of; none when it has fewer than 3."""
    words = re.sub(r"\s+", " ", str(text)).strip().split(" ")[:most]
    return words if len(words) >= 3 else []


class LanguageModelTask(Task):
    recipe = "language-model"
    train_modes = ("full",)
    language_model = True
    masked = False
    head_kind = "causal-LM"  # the head a base checkpoint may lack (its rows newly initialised)
    auto_class = "AutoModelForCausalLM"
    summary_keys = ("perplexity_after",)
    agrees = "the same next token"

    def check_config(self, cfg: Any) -> None:
        if cfg.mode not in self.train_modes:
            raise ConfigError(
                f"task {self.name} with mode {cfg.mode}: language-model adaptation trains the full model; "
                "use --mode full (adapters apply to text-classification)"
            )
        check_trained(self)
        check_engine(self, cfg)

    def prepare_tokenizer(self, tokenizer: Any, model: Any, source: str) -> None:
        """A causal LM pads with its eos token; a tokenizer without one is refused."""
        if tokenizer.pad_token is None:
            if tokenizer.eos_token is None:
                raise ModelLoadError(f"tokenizer of {source} has no eos token; expected a causal-LM tokenizer with one")
            tokenizer.pad_token = tokenizer.eos_token
            model.config.pad_token_id = tokenizer.pad_token_id

    def probe(self, text: str, mask_token: str | None) -> str | None:
        """A deterministic probe of a text: its first words as a prompt (None: too short)."""
        words = probe_words(text)
        return " ".join(words[: max(2, len(words) // 2)]) if words else None

    def answer_position(self, ids: Any, tokenizer: Any) -> int:
        """Where the graph's logits answer the probe: the next token after the prompt."""
        return len(ids) - 1

    def pipeline_texts(self, pipe: Any, texts: list[str], new_tokens: int = 8) -> list[str]:
        pad = pipe.tokenizer.pad_token_id if pipe.tokenizer.pad_token_id is not None else pipe.tokenizer.eos_token_id
        return [r[0]["generated_text"] for r in (pipe(t, do_sample=False, max_new_tokens=new_tokens, pad_token_id=pad)
                                                   for t in texts)]

    def card_example(self, mask_token: str | None) -> str:
        return "The weather today is"

    def summary_fields(self, cfg: Any) -> dict[str, Any]:
        """The recipe settings its run summary records."""
        return {"mlm_probability": None, "whole_word_mask": None}


class FillMask(LanguageModelTask):
    name = "fill-mask"
    description = "a masked language model (adapted on texts)"
    auto_class = "AutoModelForMaskedLM"
    engines = ("trainer", "accelerate")
    masked = True
    head_kind = "masked-LM"
    optimum_task = "fill-mask"
    pipeline_tag = "fill-mask"
    card_name = "Fill Mask"

    def prepare_tokenizer(self, tokenizer: Any, model: Any, source: str) -> None:
        if tokenizer.mask_token is None:
            raise ModelLoadError(f"tokenizer of {source} has no mask token; expected a masked-LM (BERT-like) model")

    def probe(self, text: str, mask_token: str | None) -> str | None:
        words = probe_words(text)
        if not words:
            return None
        if not mask_token:
            raise ConfigError("the tokenizer has no mask token; expected a masked-LM tokenizer for fill-mask")
        words[len(words) // 2] = mask_token
        return " ".join(words)

    def answer_position(self, ids: Any, tokenizer: Any) -> int:
        import numpy as np

        return int(np.where(ids == tokenizer.mask_token_id)[0][0])

    def pipeline_texts(self, pipe: Any, texts: list[str], new_tokens: int = 8) -> list[str]:
        return [pipe(t, top_k=1)[0]["token_str"].strip() for t in texts]

    def card_example(self, mask_token: str | None) -> str:
        return "The weather today is [MASK].".replace("[MASK]", mask_token or "[MASK]")

    def summary_fields(self, cfg: Any) -> dict[str, Any]:
        return {"mlm_probability": cfg.mlm_probability, "whole_word_mask": cfg.whole_word_mask}


class TextGeneration(Generates, LanguageModelTask):
    """A causal LM: adapted on texts (perplexity), and run by batch-predict over prompts or chat messages."""

    name = "text-generation"
    description = "a causal language model (adapted on texts; generates over prompts or chat messages)"
    optimum_task = "text-generation"
    pipeline_tag = "text-generation"
    card_name = "Text Generation"
    train_modes = ("full", "lora")  # lora: SFT on prompt/completion or messages columns (hubtune.train.sft)

    def check_config(self, cfg: Any) -> None:
        if cfg.mode not in self.train_modes:
            raise ConfigError(f"task text-generation with mode {cfg.mode}; expected --mode full, or lora (SFT on "
                              "prompt/completion or messages columns)")
        check_trained(self)
        check_engine(self, cfg)

    def greedy_generations(self, model_ref: str, prompts: list[Any], revision: str | None,
                           max_new_tokens: int) -> list[str]:
        """An SFT model's greedy text for each prompt (a text, or chat messages the pipeline renders with the
        chat template): ``pipeline("text-generation", return_full_text=False)``, one prompt at a time."""
        from transformers import pipeline

        pipe = pipeline(self.name, model=model_ref, revision=revision, device=-1)
        tok = pipe.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        return [pipe(p, do_sample=False, num_beams=1, max_new_tokens=max_new_tokens, return_full_text=False,
                     pad_token_id=pad)[0]["generated_text"] for p in prompts]

    def generation_usage(self, repo_id: str, prompt: Any, max_new_tokens: int) -> str:
        """The card's usage snippet of an SFT model (Python)."""
        return (f'from transformers import pipeline\n\ngenerator = pipeline("{self.name}", model="{repo_id}")\n'
                f"out = generator({prompt!r}, max_new_tokens={max_new_tokens}, do_sample=False, "
                'return_full_text=False)\nprint(out[0]["generated_text"])')


class GenerativeClassification(LanguageModelTask):
    """A causal LM trained to answer a text's label as text (full or LoRA); published as a text-generation model."""

    name = "generative-classification"
    description = "a causal LM answering each text's label as text"
    recipe = "generative"
    train_modes = ("full", "lora")
    language_model = False
    summary_keys = ()

    def check_config(self, cfg: Any) -> None:
        if cfg.mode not in self.train_modes:
            raise ConfigError(f"task generative-classification with mode {cfg.mode}; expected --mode full or lora")
        check_trained(self)
        check_engine(self, cfg)
