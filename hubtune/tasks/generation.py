"""The generation tasks batch-predict runs: ``text-generation`` (a causal LM: gpt2, llama, qwen2, mistral, phi3,
gemma, ...; its object lives in :mod:`hubtune.tasks.language_models`, which also adapts it on texts) and
``text2text-generation`` (an encoder-decoder: t5, bart).

What differs between them, asked by :mod:`hubtune.predict.generate`: the transformers Auto class, the side a
batch of prompts is padded on (a decoder continues the prompt: left; an encoder reads it whole: right), how a
row's prompt becomes token ids (a prompt text as ``pipeline("text-generation")`` and ``model.generate`` users
tokenize it, with the tokenizer's special tokens: llama's BOS, t5's closing </s>; chat messages through the
tokenizer's chat template with the generation prompt, a final assistant message continued as the pipeline does), and where the new tokens start in what
``generate`` returns (after the prompt, or after the decoder's start token). A published SFT model's greedy text
(``greedy_generations``, what train-and-push verifies) and its card's usage are asked of the task too."""

from __future__ import annotations

from typing import Any

from hubtune.core.errors import ConfigError, RowError
from hubtune.tasks.base import Task

ROLES = ("system", "user", "assistant", "tool", "developer")


def _content(message: Any, where: str) -> dict[str, Any]:
    if not isinstance(message, dict):
        raise RowError(f"{where} is a {type(message).__name__}; expected a message {{role, content}}")
    role, content = message.get("role"), message.get("content")
    if role not in ROLES:
        raise RowError(f"{where} has role {role!r}; expected one of {', '.join(ROLES)}")
    if not isinstance(content, str):
        raise RowError(f"{where} has content of type {type(content).__name__}; expected a string")
    return {"role": role, "content": content}


def check_messages(value: Any) -> list[dict[str, Any]]:
    """A row's chat messages (a list of {role, content}), checked; a RowError says what is wrong with it."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if not isinstance(value, (list, tuple)) or not value:
        raise RowError(f"messages are a {type(value).__name__ if value is not None else 'missing value'}; expected "
                       "a non-empty list of {role, content}")
    return [_content(m, f"message {i}") for i, m in enumerate(value)]


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


class Generates:
    """What a generation task answers: ``generated_text`` per row, how it stopped, and its token counts."""

    generates = True
    encoder_decoder = False
    padding_side = "left"
    chat = True  # a chat-messages column may be rendered with the tokenizer's chat template

    def check_prompt_input(self, tokenizer: Any, messages: bool, system_prompt: str | None, model: str) -> None:
        """Refuse, before any row is read, a messages column (or a --system-prompt) for a model that has no chat
        template."""
        if (messages or system_prompt) and not (self.chat and has_chat_template(tokenizer)):
            what = "a chat-messages column" if messages else "--system-prompt"
            raise ConfigError(
                f"{what} needs a chat template, and model {model}'s tokenizer has none (no chat_template in "
                "tokenizer_config.json or chat_template.jinja); expected a chat model: pass a prompt column "
                "(--prompt-column) without --system-prompt, or a model with a chat template"
            )

    def prompt_ids(self, tokenizer: Any, prompt: Any, *, messages: bool, system_prompt: str | None) -> list[int]:
        """The token ids of one row's prompt (a RowError names what is wrong with the row)."""
        if messages or system_prompt:
            chat = check_messages(prompt) if messages else [{"role": "user", "content": _text(prompt)}]
            if system_prompt and chat[0]["role"] != "system":
                chat = [{"role": "system", "content": system_prompt}, *chat]
            cont = chat[-1]["role"] == "assistant"  # a final assistant message is continued (pipeline's prefill)
            rendered = tokenizer.apply_chat_template(chat, add_generation_prompt=not cont, continue_final_message=cont,
                                                     tokenize=False)
            return list(tokenizer(rendered, add_special_tokens=False)["input_ids"])
        return list(tokenizer(_text(prompt))["input_ids"])

    def new_tokens(self, sequence: Any, prompt_length: int) -> Any:
        """The generated part of one row of ``generate``'s output (prompt-padded to ``prompt_length``)."""
        return sequence[prompt_length:]

    def decode(self, tokenizer: Any, new_ids: list[int], prompt_ids: list[int] | None = None) -> str:
        """The generated text as the installed ``pipeline("text-generation", return_full_text=False)`` writes it
        (special tokens skipped): transformers 5 decodes the new tokens; transformers 4 (the Optimum lane) decodes
        prompt + new tokens and cuts the prompt's decoded length off (``prompt_ids`` given)."""
        from hubtune.core.compat import transformers_major

        if prompt_ids is None or self.encoder_decoder or transformers_major() >= 5:
            return tokenizer.decode(list(new_ids), skip_special_tokens=True)
        full = tokenizer.decode(list(prompt_ids) + list(new_ids), skip_special_tokens=True)
        return full[len(tokenizer.decode(list(prompt_ids), skip_special_tokens=True)):]


def _text(prompt: Any) -> str:
    if prompt is None or isinstance(prompt, float) and prompt != prompt:
        raise RowError("the prompt is missing")
    if not isinstance(prompt, str):
        raise RowError(f"the prompt is a {type(prompt).__name__}; expected a string")
    if not prompt.strip():
        raise RowError("the prompt is empty")
    return prompt


class Text2TextGeneration(Generates, Task):
    """An encoder-decoder (t5, bart) writing a target text from a source text."""

    name = "text2text-generation"
    description = "an encoder-decoder (t5, bart) writing a text from a source text"
    auto_class = "AutoModelForSeq2SeqLM"
    encoder_decoder = True
    padding_side = "right"
    chat = False
    has_labels = False
    reads_pairs = False
    argmax_labels = False
    agrees = "the same greedy text"
    optimum_task = "text2text-generation"
    pipeline_tag = "text2text-generation"
    card_name = "Text2Text Generation"
    head_kind = "seq2seq-LM"
    recipe = "sft"  # hubtune.train.sft: source -> target, full or LoRA
    train_modes = ("full", "lora")
    summary_keys = ("eval_loss", "perplexity", "exact_match", "rouge_l")

    def new_tokens(self, sequence: Any, prompt_length: int) -> Any:
        """Everything after the decoder's start token."""
        return sequence[1:]

    def greedy_generations(self, model_ref: str, prompts: list[Any], revision: str | None,
                           max_new_tokens: int) -> list[str]:
        """An SFT model's greedy text for each source (transformers 5 has no text2text pipeline):
        ``AutoModelForSeq2SeqLM.generate`` one source at a time, the new tokens decoded without special tokens."""
        import torch
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        tok = AutoTokenizer.from_pretrained(model_ref, revision=revision)
        model = AutoModelForSeq2SeqLM.from_pretrained(model_ref, revision=revision, use_safetensors=True).eval()
        out = []
        with torch.no_grad():
            for p in prompts:
                enc = tok(_text(p), return_tensors="pt")
                seq = model.generate(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                                     max_new_tokens=max_new_tokens, do_sample=False, num_beams=1)[0]
                out.append(self.decode(tok, self.new_tokens(seq, 0).tolist()))
        return out

    def generation_usage(self, repo_id: str, prompt: Any, max_new_tokens: int) -> str:
        """The card's usage snippet of an SFT model (Python)."""
        return ("from transformers import AutoModelForSeq2SeqLM, AutoTokenizer\n\n"
                f'tokenizer = AutoTokenizer.from_pretrained("{repo_id}")\n'
                f'model = AutoModelForSeq2SeqLM.from_pretrained("{repo_id}")\n'
                f"inputs = tokenizer({prompt!r}, return_tensors=\"pt\")\n"
                f"ids = model.generate(**inputs, max_new_tokens={max_new_tokens}, do_sample=False)\n"
                "print(tokenizer.decode(ids[0], skip_special_tokens=True))")
