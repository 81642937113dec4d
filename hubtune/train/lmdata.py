"""Pieces of the language-model recipes (not a recipe): texts, blocks, the MLM collator, loading a masked or causal
LM (recording a head the checkpoint lacks) and perplexity. Used by :mod:`hubtune.train.lm` (on the Trainer) and
:mod:`hubtune.train.mlm_accel` (fill-mask on a plain Accelerate loop); imports no train module.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

from hubtune.core.config import TrainConfig
from hubtune.data.dataset import LoadedData, load_labeled
from hubtune.core.errors import DataError, ModelLoadError
from hubtune.core.modeling import check_tokenizer_fits, resolve_model_source
from hubtune.core.security import check_model_config
from hubtune.tasks.registry import get_task


def perplexity(loss: float) -> float:
    return math.exp(min(float(loss), 700.0))


def load_texts(cfg: TrainConfig) -> tuple[LoadedData, LoadedData, str]:
    """Train and eval texts (labels not needed): ``data.eval_dataset`` or a ``validation_split`` carve-out."""
    d = cfg.data
    common = dict(text_column=d.text_column, text_pair_column=d.text_pair_column, encoding=d.encoding,
                  default_split="train", require_label=False, seed=d.seed)
    train = load_labeled(d.dataset, label_column=d.label_column, max_samples=d.max_samples, **common)  # type: ignore[arg-type]
    if d.eval_dataset:
        ev = load_labeled(d.eval_dataset, label_column=d.label_column, max_samples=d.eval_max_samples, **common)  # type: ignore[arg-type]
        return train, ev, d.eval_dataset
    if len(train) < 4:
        raise DataError(f"dataset {d.dataset} has {len(train)} rows, too few to carve a validation split; pass --eval-dataset")
    parts = train.dataset.train_test_split(test_size=d.validation_split, seed=d.seed)
    ev_ds = parts["test"]
    if d.eval_max_samples is not None and d.eval_max_samples < len(ev_ds):
        ev_ds = ev_ds.select(range(d.eval_max_samples))
    train = LoadedData(parts["train"], train.label_names, train.columns, d.dataset)
    return train, LoadedData(ev_ds, train.label_names, train.columns, d.dataset), "validation_split"


def joined_texts(batch: dict[str, list[Any]]) -> list[str]:
    pairs = batch.get("text_pair")
    return [f"{t} {p}" if p else t for t, p in zip(batch["text"], pairs)] if pairs else list(batch["text"])


def wwm_in_lm_collator() -> bool:
    """transformers >= 4.56 masks whole words in DataCollatorForLanguageModeling (from offsets)."""
    import dataclasses

    from transformers import DataCollatorForLanguageModeling

    return any(f.name == "whole_word_mask" for f in dataclasses.fields(DataCollatorForLanguageModeling))


def mlm_collator(tokenizer: Any, mlm_probability: float, whole_word_mask: bool) -> Any:
    from transformers import DataCollatorForLanguageModeling

    if not whole_word_mask:
        return DataCollatorForLanguageModeling(tokenizer, mlm_probability=mlm_probability)
    if wwm_in_lm_collator():
        # whole-word masking always replaces with [MASK]; passing that explicitly also avoids a transformers
        # 4.57 bug (its warning for mask_replace_prob < 1 raises TypeError)
        return DataCollatorForLanguageModeling(
            tokenizer, mlm_probability=mlm_probability, whole_word_mask=True, mask_replace_prob=1.0, random_replace_prob=0.0
        )
    from transformers import (
        DataCollatorForWholeWordMask,  # older transformers: BERT '##' word pieces
    )

    return DataCollatorForWholeWordMask(tokenizer, mlm_probability=mlm_probability)


def lm_blocks(
    data: LoadedData, tokenizer: Any, block_size: int, *, causal: bool, what: str, offsets: bool = False
) -> Any:
    """Tokenize, concatenate and cut into ``block_size`` blocks (the remainder is dropped), with datasets' map."""
    eos = tokenizer.eos_token_id

    def tok(batch: dict[str, list[Any]]) -> Any:
        if causal:
            enc = tokenizer(joined_texts(batch), add_special_tokens=False)
            if eos is not None:
                enc["input_ids"] = [ids + [eos] for ids in enc["input_ids"]]
                enc["attention_mask"] = [m + [1] for m in enc["attention_mask"]]
            return enc
        return tokenizer(joined_texts(batch), return_special_tokens_mask=True, return_offsets_mapping=offsets)

    def group(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        cat = {k: list(itertools.chain.from_iterable(batch[k])) for k in batch}
        total = (len(cat["input_ids"]) // block_size) * block_size
        return {k: [v[i : i + block_size] for i in range(0, total, block_size)] for k, v in cat.items()}

    cols = data.dataset.column_names
    ds = data.dataset.map(tok, batched=True, remove_columns=cols, desc=f"tokenize {what}")
    n_tokens = sum(len(x) for x in ds["input_ids"])
    ds = ds.map(group, batched=True, batch_size=1000, desc=f"blocks of {block_size} ({what})")
    if len(ds) == 0:
        raise DataError(
            f"{what} data {data.source} has {n_tokens} tokens, fewer than one block of {block_size}; "
            "expected more text, or lower block_size (--set block_size=64)"
        )
    return ds


def load_lm(cfg: TrainConfig, auto_cls: Any) -> tuple[Any, Any]:
    from transformers import AutoTokenizer

    source = resolve_model_source(cfg.base_model)
    check_model_config(source, revision=cfg.revision)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, revision=cfg.revision, trust_remote_code=cfg.trust_remote_code)
        model, info = auto_cls.from_pretrained(
            source, revision=cfg.revision, trust_remote_code=cfg.trust_remote_code, use_safetensors=True,
            output_loading_info=True,
        )
    except Exception as exc:
        text = " ".join(str(exc).split())[:300]
        raise ModelLoadError(
            f"could not load base model {cfg.base_model!r} as {auto_cls.__name__} ({type(exc).__name__}: {text}); "
            f"pass a {cfg.task} model (Hub id or directory with safetensors weights) to --base-model"
        ) from exc
    check_tokenizer_fits(tokenizer, model, cfg.base_model, "--base-model")
    get_task(cfg.task).prepare_tokenizer(tokenizer, model, cfg.base_model)  # pad = eos (causal), a mask token (masked)
    # weights of the LM head the checkpoint lacks (a bare encoder, e.g. a sentence-embedding model): freshly
    # initialised, so the model before training is not the base model's LM
    prefix = getattr(model, "base_model_prefix", "") or ""
    model.hubtune_new_head = sorted({k.rsplit(".", 1)[0] for k in (info.get("missing_keys") or [])
                                     if not (prefix and k.startswith(prefix + "."))})
    return model, tokenizer
