"""The train step: :func:`train` picks the recipe from ``cfg.task`` / ``cfg.engine``; every recipe writes the
same run directory (:mod:`hubtune.core.layout`).

Modules, lowest first (a module imports only modules above it in this list; no recipe imports another):

``adapters``    pieces: PEFT wrappers (LoRA, IA3, prefix tuning; LoRA on a causal LM)
``ulmfit``      pieces: ULMFiT techniques for the Trainer (layer groups, discriminative lrs, STLR, unfreezing)
``common``      what every recipe shares: output-dir checks, precision flags, TrainingArguments, running
                the Trainer, the model folder swap, the run summary, :class:`TrainResult`; and both ends of
                a text-classifier run (load + tokenize; save + evaluate + write the run files)
``classifier``  recipe ``task: text-classification``, ``engine: trainer`` (with the ULMFiT options)
``accel``       recipe ``task: text-classification``, ``engine: accelerate`` (a plain Accelerate loop)
``settings``    pieces: report_to integrations installed; class weights (weighted cross-entropy)
``lmdata``      pieces: texts, blocks, the MLM collator, loading an LM, perplexity
``lm``          recipes ``task: fill-mask``, ``text-generation``, ``generative-classification`` (Trainer)
``mlm_accel``   recipe ``task: fill-mask``, ``engine: accelerate`` (the course's Accelerate loop)
``taskrun``     recipe ``task: multi-label-classification``, ``regression``, ``token-classification`` (Trainer)
``sftdata``     pieces: SFT columns, rows, features (loss on the completion), generations, exact_match/ROUGE-L
``sft``         recipe SFT: ``task: text2text-generation``, and ``text-generation`` on prompt/completion or
                chat-messages columns (Trainer)

(``common`` uses ``adapters``; ``classifier`` uses ``common`` and ``ulmfit``; ``accel`` uses ``common``;
``lm`` uses ``common`` and ``adapters``; ``sft`` uses ``common``, ``adapters`` and ``sftdata``.) This module is
the dispatcher; it also re-exports the public names of ``common`` that used to live in ``hubtune.train``.
"""

from __future__ import annotations

from typing import Any, Callable

from hubtune.core.config import TrainConfig
from hubtune.tasks.registry import get_task
from hubtune.train.accel import train_accelerate
from hubtune.train.classifier import train_classifier
from hubtune.train.common import (
    TrainResult,
    base_summary,
    check_metric,
    dist_state,
    finish_classifier,
    prepare_classifier,
    prepare_output_dir,
    replace_model_dir,
    run_trainer,
    save_classifier,
    training_args,
    worker_result,
)
from hubtune.train.lm import train_lm
from hubtune.train.settings import check_report_to
from hubtune.train.sft import sft_columns_of, train_sft
from hubtune.train.taskrun import train_task
from hubtune.train.mlm_accel import train_mlm_accelerate

__all__ = [
    "TrainResult",
    "base_summary",
    "check_metric",
    "dist_state",
    "finish_classifier",
    "prepare_classifier",
    "prepare_output_dir",
    "replace_model_dir",
    "run_trainer",
    "save_classifier",
    "train",
    "training_args",
    "worker_result",
]


def train(cfg: TrainConfig, *, overwrite: bool = False, resume: bool = False, progress: bool = True,
          on_start: Callable[[dict[str, Any]], None] | None = None) -> TrainResult:
    """Fine-tune ``cfg.base_model`` on ``cfg.data`` and write the run directory ``cfg.output_dir``.

    Dispatches on ``cfg.task`` and ``cfg.engine``; every recipe writes the same run directory layout.
    ``on_start`` (main process) receives the trainable parameter count and share before training starts
    (``{"trainable", "total", "share", ...}``), for a caller to report; the library prints nothing.
    """
    cfg.validate()
    if cfg.engine == "trainer":  # report_to integrations installed, before any work (the Trainer builds them late)
        check_report_to(cfg.report_to)
    if cfg.metrics:  # load the evaluate modules (--metric) before any work: a bad one fails first
        from hubtune.core.metric_modules import load_metric_modules

        load_metric_modules(cfg.metrics)
    recipe = get_task(cfg.task).recipe  # the task says which recipe trains it
    if recipe == "head":
        return train_task(cfg, overwrite=overwrite, resume=resume, progress=progress, on_start=on_start)
    if recipe == "sft" or recipe == "language-model" and cfg.engine == "trainer":
        cols = sft_columns_of(cfg)  # text-generation: SFT on prompt/completion or messages columns, else blocks
        if cols is not None:
            return train_sft(cfg, cols, overwrite=overwrite, resume=resume, progress=progress, on_start=on_start)
    if recipe in ("language-model", "generative"):
        if cfg.engine == "accelerate":  # the HF course's masked-LM loop (the only LM task it takes)
            return train_mlm_accelerate(cfg, overwrite=overwrite, resume=resume, progress=progress, on_start=on_start)
        return train_lm(cfg, overwrite=overwrite, resume=resume, progress=progress, on_start=on_start)
    if cfg.engine == "accelerate":
        return train_accelerate(cfg, overwrite=overwrite, resume=resume, progress=progress, on_start=on_start)
    return train_classifier(cfg, overwrite=overwrite, resume=resume, progress=progress, on_start=on_start)
