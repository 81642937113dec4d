"""Pieces of the SFT recipe (:mod:`hubtune.train.sft`; not a recipe): which columns a dataset's examples are in
(prompt/completion, source/target, instruction/output, or chat messages), the train and held-out rows, loading
the causal or seq2seq model, the features (a causal LM's labels are -100 on the prompt, an EOS closes the
completion; a seq2seq model's labels are the target), and the held-out metrics: the loss on the completion
tokens, greedy generations and exact_match / ROUGE-L (``rouge-score``) against the references.

A prompt is tokenized as the task reads it everywhere (``Generates.prompt_ids``: what batch-predict and
``pipeline("text-generation")`` feed the model; chat messages through the chat template with the generation
prompt); the padding side and where the new tokens start are asked of
the task object (:class:`hubtune.tasks.generation.Generates`). Imports ``config``, ``data.dataset``, ``errors``, ``modeling``,
``security``, ``tasks.generation``; no train module.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from hubtune.core.config import DataConfig, TrainConfig
from hubtune.core.errors import ConfigError, DataError, ModelLoadError, RowError
from hubtune.core.modeling import check_tokenizer_fits, resolve_model_source
from hubtune.core.security import check_model_config
from hubtune.data.dataset import limit_rows, open_dataset, parse_spec
from hubtune.tasks.generation import check_messages, has_chat_template

PAIR_COLUMNS = (("prompt", "completion"), ("source", "target"), ("instruction", "output"))
MESSAGES_COLUMNS = ("messages",)
SET_PAIR = "--set data.prompt_column=NAME --set data.completion_column=NAME"


@dataclass(frozen=True)
class SftColumns:
    """Where a dataset's SFT examples are: a prompt and a completion column, or a chat-messages column."""

    prompt: str | None = None
    completion: str | None = None
    messages: str | None = None

    @property
    def format(self) -> str:
        return "messages" if self.messages else "prompt-completion"


def sft_columns(columns: list[str], dc: DataConfig, source: str, *, chat: bool, required: bool) -> SftColumns | None:
    """The SFT columns of a dataset with ``columns`` (the data config's keys, else detected); None when it has
    none and none are set (``required``: a ConfigError instead). ``chat``: chat messages are accepted."""
    named = {k: getattr(dc, f"{k}_column") for k in ("prompt", "completion", "messages")}
    if named["messages"] and (named["prompt"] or named["completion"]):
        raise ConfigError(
            f"data.messages_column {named['messages']!r} and data.prompt_column/completion_column "
            f"{named['prompt']!r}/{named['completion']!r} are both set; expected a messages column or a prompt and "
            "a completion column: drop one (--set data.messages_column=null)"
        )
    if bool(named["prompt"]) != bool(named["completion"]):
        raise ConfigError(
            f"data.prompt_column is {named['prompt']!r} and data.completion_column {named['completion']!r}; "
            f"expected both set (or neither, to detect them): {SET_PAIR}"
        )
    if any(named.values()) and dc.text_column:
        raise ConfigError(
            f"data.text_column {dc.text_column!r} (texts in blocks) and SFT columns "
            f"({', '.join(v for v in named.values() if v)}) are both set; expected one of them"
        )
    for key, col in named.items():
        if col and col not in columns:
            raise ConfigError(f"data.{key}_column {col!r} is not a column of {source} (found {', '.join(columns)}); "
                              f"expected one of those: --set data.{key}_column=NAME")
    if named["messages"] or named["prompt"]:
        found = SftColumns(named["prompt"], named["completion"], named["messages"])
    elif dc.text_column:
        found = None
    else:
        pair = next(((p, c) for p, c in PAIR_COLUMNS if p in columns and c in columns), None)
        msgs = next((m for m in MESSAGES_COLUMNS if m in columns), None)
        found = SftColumns(*pair) if pair else SftColumns(messages=msgs) if msgs else None
    if found is not None and found.messages and not chat:
        raise ConfigError(
            f"{source} has a chat-messages column {found.messages!r}, and this task reads a source and a target "
            f"text; expected source/target columns: {SET_PAIR}"
        )
    if found is None and required:
        wanted = ", ".join(f"{p}/{c}" for p, c in PAIR_COLUMNS) + (", messages" if chat else "")
        raise ConfigError(f"{source} has no SFT columns (found {', '.join(columns)}; expected {wanted}); "
                          f"name them: {SET_PAIR}")
    return found


def dataset_columns(spec: str, dc: DataConfig) -> list[str]:
    return list(open_dataset(parse_spec(spec), encoding=dc.encoding, default_split="train").column_names)


@dataclass
class SftData:
    train: Any  # datasets.Dataset with columns "prompt", "completion" (or "messages")
    eval: Any
    columns: SftColumns
    eval_source: str
    sizes: dict[str, int]


def _rows(ds: Any, cols: SftColumns, source: str) -> Any:
    """The example columns renamed ``prompt``/``completion`` or ``messages``; empty or missing values refused."""
    if len(ds) == 0:
        raise DataError(f"dataset {source} has no rows; expected at least one example")
    if cols.messages:
        out = ds.select_columns([cols.messages]).rename_columns({cols.messages: "messages"})
        for i, value in enumerate(out["messages"]):
            try:
                chat = check_messages(value)
            except RowError as exc:
                raise DataError(f"{source} row {i}: {exc}; expected chat messages ending with the assistant's") from None
            if chat[-1]["role"] != "assistant" or len(chat) < 2:
                raise DataError(f"{source} row {i}: the messages end with a {chat[-1]['role']} message; expected a "
                                "conversation whose last message is the assistant's answer (the completion)")
        return out
    assert cols.prompt and cols.completion
    out = ds.select_columns([cols.prompt, cols.completion]).rename_columns(
        {cols.prompt: "prompt", cols.completion: "completion"})
    for name, col in (("prompt", cols.prompt), ("completion", cols.completion)):
        bad = next((i for i, v in enumerate(out[name]) if not isinstance(v, str) or not v.strip()), None)
        if bad is not None:
            raise DataError(f"{source} row {bad}: column {col!r} is {out[name][bad]!r}; expected a non-empty text")
    return out


def load_sft(cfg: TrainConfig, cols: SftColumns) -> SftData:
    """Train and held-out rows: ``data.eval_dataset``, or a ``validation_split`` carved from the data."""
    dc = cfg.data
    ds = open_dataset(parse_spec(dc.dataset), encoding=dc.encoding, default_split="train")
    train = _rows(limit_rows(ds, dc.max_samples, dc.seed), cols, dc.dataset)
    if dc.eval_dataset:
        ev_raw = open_dataset(parse_spec(dc.eval_dataset), encoding=dc.encoding, default_split="validation")
        missing = [c for c in (cols.prompt, cols.completion, cols.messages) if c and c not in ev_raw.column_names]
        if missing:
            raise ConfigError(f"eval dataset {dc.eval_dataset} lacks column(s) {', '.join(missing)} (found "
                              f"{', '.join(ev_raw.column_names)}); expected the columns of {dc.dataset}")
        ev = _rows(limit_rows(ev_raw, dc.eval_max_samples, dc.seed), cols, dc.eval_dataset)
        eval_source = dc.eval_dataset
    else:
        if len(train) < 4:
            raise DataError(f"dataset {dc.dataset} has {len(train)} rows, too few to carve a validation split; "
                            "expected at least 4 rows or pass --eval-dataset")
        parts = train.train_test_split(test_size=dc.validation_split, seed=dc.seed)
        train, ev = parts["train"], parts["test"]
        if dc.eval_max_samples is not None and dc.eval_max_samples < len(ev):
            ev = ev.select(range(dc.eval_max_samples))
        eval_source = "validation_split"
    return SftData(train, ev, cols, eval_source, {"train": len(train), "eval": len(ev)})


# --------------------------------------------------------------------------------------------------
# The model and the features
# --------------------------------------------------------------------------------------------------
def load_sft_model(cfg: TrainConfig, task: Any, source: str | None = None) -> tuple[Any, Any]:
    """The base model (or ``source``: a saved model folder) in the task's Auto class, and its tokenizer; a causal LM pads with EOS, a seq2seq model
    needs a pad token and a decoder start token."""
    import transformers

    auto = getattr(transformers, task.auto_class)
    path = source or resolve_model_source(cfg.base_model)
    revision = None if source else cfg.revision  # a folder this run saved has no revisions
    check_model_config(path, revision=revision)
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(path, revision=revision,
                                                               trust_remote_code=cfg.trust_remote_code)
        model = auto.from_pretrained(path, revision=revision, trust_remote_code=cfg.trust_remote_code,
                                     use_safetensors=True)
    except Exception as exc:  # noqa: BLE001
        raise ModelLoadError(
            f"could not load base model {cfg.base_model!r} as {auto.__name__} ({type(exc).__name__}: "
            f"{' '.join(str(exc).split())[:300]}); pass a {task.name} model (Hub id or directory with safetensors "
            "weights) to --base-model"
        ) from exc
    check_tokenizer_fits(tokenizer, model, cfg.base_model, "--base-model")
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ModelLoadError(f"tokenizer of {cfg.base_model} has no pad or eos token; expected one")
        tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id
    if task.encoder_decoder and model.config.decoder_start_token_id is None:
        raise ModelLoadError(f"{cfg.base_model} has no decoder_start_token_id in its config; expected a seq2seq "
                             "model (t5, bart) that names the token its decoder starts from")
    if not task.encoder_decoder and tokenizer.eos_token_id is None:
        raise ModelLoadError(f"tokenizer of {cfg.base_model} has no eos token; expected a causal-LM tokenizer with "
                             "one (it closes each completion)")
    return model, tokenizer


def check_chat(tokenizer: Any, cols: SftColumns, model: str) -> None:
    if cols.messages and not has_chat_template(tokenizer):
        raise ConfigError(
            f"the chat-messages column {cols.messages!r} needs a chat template, and {model}'s tokenizer has none "
            f"(no chat_template); expected a chat model, or prompt/completion columns: {SET_PAIR}"
        )


def prompt_of(row: dict[str, Any]) -> Any:
    """What the task's ``prompt_ids`` reads: the prompt text, or every message before the assistant's answer."""
    return check_messages(row["messages"])[:-1] if "messages" in row else row["prompt"]


def reference_of(row: dict[str, Any]) -> str:
    return check_messages(row["messages"])[-1]["content"] if "messages" in row else row["completion"]


def prompt_ids(tokenizer: Any, task: Any, prompt: Any, *, messages: bool) -> list[int]:
    """A prompt's token ids as the task reads it everywhere (``tasks.generation``: what batch-predict and
    ``pipeline("text-generation")`` feed the model): chat messages rendered by the chat template with the
    generation prompt, or the prompt text / seq2seq source with the tokenizer's special tokens (llama's BOS)."""
    return task.prompt_ids(tokenizer, prompt, messages=messages, system_prompt=None)


def _chat_completion(tokenizer: Any, chat: list[dict[str, Any]]) -> str:
    """The text the chat template renders after the generation prompt for the assistant's answer (its closing
    tokens included), else the answer itself."""
    prompt = tokenizer.apply_chat_template(chat[:-1], add_generation_prompt=True, tokenize=False)
    full = tokenizer.apply_chat_template(chat, tokenize=False)
    return full[len(prompt):] if full.startswith(prompt) and len(full) > len(prompt) else chat[-1]["content"]


def causal_features(ds: Any, tokenizer: Any, task: Any, max_length: int, what: str) -> Any:
    """input_ids = prompt + completion + EOS; labels -100 on the prompt. Too long: the prompt loses its start,
    the completion keeps at most ``max_length - 1`` tokens."""
    eos = tokenizer.eos_token_id
    messages = "messages" in ds.column_names

    def fn(row: dict[str, Any]) -> dict[str, Any]:
        p = prompt_ids(tokenizer, task, prompt_of(row), messages=messages)
        text = _chat_completion(tokenizer, check_messages(row["messages"])) if messages else row["completion"]
        c = list(tokenizer(text, add_special_tokens=False)["input_ids"])
        if not c or c[-1] != eos:
            c.append(eos)
        c = c[: max_length - 1]
        p = p[-(max_length - len(c)):]
        return {"input_ids": p + c, "attention_mask": [1] * (len(p) + len(c)), "labels": [-100] * len(p) + c}

    return ds.map(fn, remove_columns=ds.column_names, desc=f"tokenize {what}")


def seq2seq_features(ds: Any, tokenizer: Any, max_length: int, what: str) -> Any:
    """input_ids = the source (with the tokenizer's special tokens); labels = the target's ids."""

    def fn(batch: dict[str, list[Any]]) -> dict[str, Any]:
        enc = tokenizer(batch["prompt"], truncation=True, max_length=max_length)
        labels = tokenizer(text_target=batch["completion"], truncation=True, max_length=max_length)["input_ids"]
        # what an encoder-decoder's forward takes (a BERT vocabulary's token_type_ids left out)
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "labels": labels}

    return ds.map(fn, batched=True, remove_columns=ds.column_names, desc=f"tokenize {what}")


# --------------------------------------------------------------------------------------------------
# Held-out metrics
# --------------------------------------------------------------------------------------------------
def completion_loss(model: Any, features: Any, collator: Any, batch_size: int, *, shifted: bool) -> float:
    """The mean loss per completion (label) token over ``features`` (``shifted``: a causal LM, whose first label
    predicts nothing)."""
    import torch

    device = next(model.parameters()).device
    total, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for start in range(0, len(features), batch_size):
            rows = [features[i] for i in range(start, min(start + batch_size, len(features)))]
            batch = {k: v.to(device) for k, v in collator(rows).items()}
            labels = batch["labels"][:, 1:] if shifted else batch["labels"]
            n = int((labels != -100).sum())
            if n:
                total += float(model(**batch).loss) * n
                count += n
    return total / count if count else float("nan")


def generate(model: Any, tokenizer: Any, task: Any, prompts: list[Any], *, messages: bool, max_new_tokens: int,
             batch_size: int, limit: int | None) -> list[str]:
    """Greedy generations for ``prompts``: batches padded on the task's side (left for a causal LM), only the
    new tokens decoded with special tokens skipped."""
    import torch

    device = next(model.parameters()).device
    tokenizer.padding_side = task.padding_side
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    ids = [prompt_ids(tokenizer, task, p, messages=messages) for p in prompts]
    if limit and task.encoder_decoder:  # the source's start is read
        ids = [x[:limit] for x in ids]
    elif limit and limit > max_new_tokens:  # the prompt and the new tokens fit the positions: the prompt's end
        ids = [x[-(limit - max_new_tokens):] for x in ids]
    out: list[str] = []
    model.eval()
    with torch.no_grad():
        for start in range(0, len(ids), batch_size):
            enc = tokenizer.pad({"input_ids": ids[start:start + batch_size]}, return_tensors="pt")
            enc = {k: v.to(device) for k, v in enc.items()}
            seqs = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                                  pad_token_id=pad)
            width = enc["input_ids"].shape[1]
            out += [task.decode(tokenizer, task.new_tokens(s, width).tolist()) for s in seqs]
    return out


def text_metrics(predictions: list[str], references: list[str]) -> dict[str, float]:
    """exact_match (whitespace-stripped equality) and ROUGE-L F1 (``rouge-score``), means over the rows."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"])
    n = max(len(references), 1)
    em = sum(p.strip() == r.strip() for p, r in zip(predictions, references)) / n
    rl = sum(scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(predictions, references)) / n
    return {"exact_match": float(em), "rouge_l": float(rl)}


def perplexity(loss: float) -> float:
    return math.exp(min(float(loss), 700.0)) if loss == loss else float("nan")
