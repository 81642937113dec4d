"""PEFT adapters for the train recipes (a pieces module, not a recipe): LoRA, IA3 and prefix tuning on a
sequence classifier (``mode: lora | ia3 | prefix``), and LoRA on a causal LM (generative classification), where the
rows of label tokens added to the vocabulary train beside it (peft's trainable token indices), and LoRA on an
encoder-decoder (SFT of t5/bart).

The classification head stays trainable (``modules_to_save``). Used by :mod:`hubtune.train.common`
(preparing a classifier run), :mod:`hubtune.train.lm` and :mod:`hubtune.train.sft`; imports no other train module.
"""

from __future__ import annotations

from typing import Any

from hubtune.core.config import TrainConfig
from hubtune.core.errors import ConfigError, TrainingError


# the head's module names across families: BERT-likes' classifier, decoders' score, BART/T5's classification_head,
# DistilBERT's pre_classifier beside its classifier, XLNet/XLM's sequence_summary + logits_proj
HEAD_MODULES = ("classifier", "score", "classification_head", "pre_classifier", "sequence_summary", "logits_proj")


def head_modules(model: Any) -> list[str]:
    """The classification head's module names (kept trainable and saved beside the adapter)."""
    names = [n for n in HEAD_MODULES if getattr(model, n, None) is not None]
    if not names:
        raise TrainingError(
            f"no classification head found on {type(model).__name__} (looked for {'/'.join(HEAD_MODULES)}); "
            "expected an AutoModelForSequenceClassification architecture"
        )
    return names



# the attention projections of the common families, by their module names: (query-like, value-like) first, then
# the fused ones; the first set the model has is what LoRA targets where peft has no default for its family
ATTENTION_TARGETS = (
    ("q_proj", "v_proj"), ("query", "value"), ("q_lin", "v_lin"), ("q", "v"), ("query_proj", "value_proj"),
    ("Wqkv",), ("c_attn",), ("qkv_proj",), ("query_key_value",), ("in_proj",), ("q_head", "v_head"),
)
KEY_VALUE_TARGETS = (("k_proj", "v_proj"), ("key", "value"), ("k_lin", "v_lin"), ("k", "v"), ("key_proj", "value_proj"),
                     ("Wqkv",), ("c_attn",), ("qkv_proj",), ("query_key_value",))


def linear_names(model: Any, skip: list[str] | tuple[str, ...] = ()) -> set[str]:
    """The last name parts of the model's Linear (and GPT-2 Conv1D) layers outside ``skip`` (the head)."""
    names = set()
    for full, module in model.named_modules():
        if any(full == h or full.startswith(h + ".") for h in skip):
            continue
        if type(module).__name__ in ("Linear", "Conv1D"):
            names.add(full.rsplit(".", 1)[-1])
    return names


def peft_has_default(model: Any, method: str) -> bool:
    """Whether peft maps this model type to default target modules for ``method`` (lora, ia3)."""
    from peft.utils import constants

    table = getattr(constants, "TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING" if method == "lora"
                    else "TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING", {})
    return getattr(getattr(model, "config", None), "model_type", None) in table


def found_targets(model: Any, method: str = "lora") -> list[str] | str:
    """The modules an adapter targets where peft has no default: the attention projections found in the model
    (query/value for LoRA, key/value for IA3), else every Linear outside the head (XLNet's attention weights are
    bare parameters: its feed-forward layers), else peft's ``all-linear``. A name the head's layers also have is
    left out: the head trains whole (``modules_to_save``), never under an adapter too."""
    heads = head_modules(model)
    have = linear_names(model, heads)
    for group in (ATTENTION_TARGETS if method == "lora" else KEY_VALUE_TARGETS):
        if all(n in have for n in group):
            return list(group)
    in_head = {full.rsplit(".", 1)[-1] for full, _m in model.named_modules()
               if any(full == h or full.startswith(h + ".") for h in heads)}
    return sorted(have - in_head) or "all-linear"


def adapter_targets(peft_model: Any) -> list[str]:
    """The module names a peft model's adapter targets (for the run summary)."""
    cfg = next(iter(getattr(peft_model, "peft_config", {}).values()), None)
    targets = getattr(cfg, "target_modules", None) or []
    return sorted([targets] if isinstance(targets, str) else targets)


def apply_adapter(model: Any, cfg: TrainConfig, extra_modules: list[str] | tuple[str, ...] = ()) -> Any:
    """Wrap ``model`` with the PEFT method of ``cfg.mode`` (lora, ia3 or prefix); the head stays trainable, and so
    do ``extra_modules`` (weights the base checkpoint lacks): both are saved beside the adapter."""
    save = [*head_modules(model), *extra_modules]
    if cfg.mode == "lora":
        return apply_lora(model, cfg, save)
    from peft import IA3Config, PrefixTuningConfig, TaskType, get_peft_model

    if cfg.mode == "ia3":
        targets: Any = cfg.peft.ia3_target_modules or None
        feedforward: Any = cfg.peft.ia3_feedforward_modules or None
        if targets is None and not peft_has_default(model, "ia3"):
            targets, feedforward = found_targets(model, "ia3"), []
        pcfg: Any = IA3Config(
            task_type=TaskType.SEQ_CLS,
            target_modules=targets,
            feedforward_modules=feedforward,
            modules_to_save=save,
        )
        flag = "peft.ia3_target_modules and peft.ia3_feedforward_modules (e.g. key,value,output.dense)"
    else:
        pcfg = PrefixTuningConfig(task_type=TaskType.SEQ_CLS, num_virtual_tokens=cfg.peft.num_virtual_tokens,
                                  modules_to_save=save)
        flag = "--mode lora (prefix tuning needs a model whose attention accepts past key values)"
    try:
        return get_peft_model(model, pcfg)
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"{cfg.mode} could not be applied to {cfg.base_model} ({' '.join(str(exc).split())[:200]}); set {flag}"
        ) from exc


def apply_lora(model: Any, cfg: TrainConfig, modules_to_save: list[str] | None = None) -> Any:
    from peft import LoraConfig, TaskType, get_peft_model

    targets: Any = cfg.lora.target_modules or None  # None: peft's per-architecture default mapping
    if targets is None and not peft_has_default(model, "lora"):  # the attention projections found in the model
        targets = found_targets(model, "lora")
    lcfg = LoraConfig(
        task_type=TaskType.TOKEN_CLS if type(model).__name__.endswith("ForTokenClassification") else TaskType.SEQ_CLS,
        r=cfg.lora.r,
        lora_alpha=cfg.lora.alpha,
        lora_dropout=cfg.lora.dropout,
        bias=cfg.lora.bias,
        target_modules=targets,
        modules_to_save=modules_to_save or head_modules(model),
    )
    try:
        return get_peft_model(model, lcfg)
    except ValueError as exc:
        raise ConfigError(
            f"LoRA could not be applied to {cfg.base_model} ({' '.join(str(exc).split())[:200]}); "
            "set lora.target_modules to the model's attention projection names (e.g. query,value)"
        ) from exc


def trainable_token_indices(model: Any, token_ids: list[int]) -> Any:
    """peft's ``trainable_token_indices`` for ``token_ids``: the input embedding rows (peft ties the output rows to
    them where the model ties its word embeddings), else the rows of both the input and the output embeddings."""
    if not token_ids:
        return None
    if getattr(model.config, "tie_word_embeddings", False) or model.get_output_embeddings() is None:
        return list(token_ids)
    names = {id(m): n for n, m in model.named_modules()}
    return {names[id(model.get_input_embeddings())]: list(token_ids), names[id(model.get_output_embeddings())]: list(token_ids)}


def apply_causal_lora(model: Any, cfg: TrainConfig, trainable_token_ids: list[int] | None = None) -> Any:
    """LoRA on a causal LM; the rows of ``trainable_token_ids`` (label tokens added to the vocabulary, whose rows
    start random) train too and are saved with the adapter (peft's trainable tokens)."""
    from peft import LoraConfig, TaskType, get_peft_model

    lcfg = LoraConfig(
        task_type=TaskType.CAUSAL_LM, r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
        bias=cfg.lora.bias, target_modules=cfg.lora.target_modules or None,
        trainable_token_indices=trainable_token_indices(model, list(trainable_token_ids or [])),
    )
    try:
        return get_peft_model(model, lcfg)
    except ValueError as exc:
        raise ConfigError(
            f"LoRA could not be applied to {cfg.base_model} ({' '.join(str(exc).split())[:200]}); "
            "set lora.target_modules (e.g. c_attn for GPT-2)"
        ) from exc



def apply_seq2seq_lora(model: Any, cfg: TrainConfig) -> Any:
    """LoRA on an encoder-decoder (t5, bart; SFT): peft's default targets for the family, else the attention
    projections found in the model."""
    from peft import LoraConfig, TaskType, get_peft_model

    targets: Any = cfg.lora.target_modules or None
    if targets is None and not peft_has_default(model, "lora"):
        have = linear_names(model)
        targets = next((list(g) for g in ATTENTION_TARGETS if all(n in have for n in g)), "all-linear")
    lcfg = LoraConfig(
        task_type=TaskType.SEQ_2_SEQ_LM, r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
        bias=cfg.lora.bias, target_modules=targets,
    )
    try:
        return get_peft_model(model, lcfg)
    except ValueError as exc:
        raise ConfigError(
            f"LoRA could not be applied to {cfg.base_model} ({' '.join(str(exc).split())[:200]}); "
            "set lora.target_modules (e.g. q,v for T5, q_proj,v_proj for BART)"
        ) from exc
