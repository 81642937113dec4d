"""PEFT adapters for the train recipes (a pieces module, not a recipe): LoRA, IA3 and prefix tuning on a
sequence classifier (``mode: lora | ia3 | prefix``), and LoRA on a causal LM (generative classification), where the
rows of label tokens added to the vocabulary train beside it (peft's trainable token indices).

The classification head stays trainable (``modules_to_save``). Used by :mod:`hubtune.train.common`
(preparing a classifier run) and :mod:`hubtune.train.lm`; imports no other train module.
"""

from __future__ import annotations

from typing import Any

from hubtune.config import TrainConfig
from hubtune.errors import ConfigError, TrainingError


def head_modules(model: Any) -> list[str]:
    """The classification head's module names (kept trainable and saved beside the adapter)."""
    names = [n for n in ("classifier", "score", "classification_head", "pre_classifier") if hasattr(model, n)]
    if not names:
        raise TrainingError(
            f"no classification head found on {type(model).__name__} (looked for classifier/score); "
            "expected an AutoModelForSequenceClassification architecture"
        )
    return names


def apply_adapter(model: Any, cfg: TrainConfig, extra_modules: list[str] | tuple[str, ...] = ()) -> Any:
    """Wrap ``model`` with the PEFT method of ``cfg.mode`` (lora, ia3 or prefix); the head stays trainable, and so
    do ``extra_modules`` (weights the base checkpoint lacks): both are saved beside the adapter."""
    save = [*head_modules(model), *extra_modules]
    if cfg.mode == "lora":
        return apply_lora(model, cfg, save)
    from peft import IA3Config, PrefixTuningConfig, TaskType, get_peft_model

    if cfg.mode == "ia3":
        pcfg: Any = IA3Config(
            task_type=TaskType.SEQ_CLS,
            target_modules=cfg.peft.ia3_target_modules or None,
            feedforward_modules=cfg.peft.ia3_feedforward_modules or None,
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

    targets = cfg.lora.target_modules or None  # None: peft's per-architecture default mapping
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

