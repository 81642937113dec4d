"""The task of a checkpoint (not a step): what its files say it does, the task a command is asked to run, and
the refusal of a checkpoint whose head for that task is missing (weights newly initialised on load).

A checkpoint tells its task by transformers' ``config.json`` (``architectures``: ``BertForSequenceClassification``,
``BertForTokenClassification``, ``BertForMaskedLM``, ``GPT2LMHeadModel``, a bare ``BertModel``; for a sequence
classifier ``problem_type`` single_label_classification | multi_label_classification | regression, and
``num_labels`` 1 meaning regression as transformers reads it) and by sentence-transformers' ``modules.json`` with
its pooling config (``1_Pooling/config.json``): an embedding model.

The tasks hubtune predicts (``--task``): ``text-classification`` (single label), ``multi-label-classification``,
``regression``, ``token-classification`` and ``feature-extraction`` (embeddings). Imports `errors`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from hubtune.core.errors import ConfigError, ModelTaskError

TEXT_CLASSIFICATION = "text-classification"
MULTI_LABEL = "multi-label-classification"
REGRESSION = "regression"
TOKEN_CLASSIFICATION = "token-classification"
FEATURE_EXTRACTION = "feature-extraction"
TASKS = (TEXT_CLASSIFICATION, MULTI_LABEL, REGRESSION, TOKEN_CLASSIFICATION, FEATURE_EXTRACTION)
SEQUENCE_TASKS = (TEXT_CLASSIFICATION, MULTI_LABEL, REGRESSION)  # one sequence-classification head, three readings
PROBLEM_TYPES = {
    TEXT_CLASSIFICATION: "single_label_classification",
    MULTI_LABEL: "multi_label_classification",
    REGRESSION: "regression",
}
# heads a checkpoint may have that no hubtune prediction serves: architecture suffix -> its task's name
OTHER_HEADS = {
    "ForMaskedLM": "fill-mask", "ForPreTraining": "fill-mask", "ForCausalLM": "text-generation",
    "LMHeadModel": "text-generation", "ForConditionalGeneration": "text2text-generation",
    "ForQuestionAnswering": "question-answering", "ForMultipleChoice": "multiple-choice",
}
AUTO_CLASSES = {  # the transformers Auto class that loads each task's model
    TEXT_CLASSIFICATION: "AutoModelForSequenceClassification",
    MULTI_LABEL: "AutoModelForSequenceClassification",
    REGRESSION: "AutoModelForSequenceClassification",
    TOKEN_CLASSIFICATION: "AutoModelForTokenClassification",
    FEATURE_EXTRACTION: "AutoModel",
}
# when two models (PyTorch and its ONNX graph, fp32 and int8) answer a row the same, per task
AGREES = {TEXT_CLASSIFICATION: "the same label", MULTI_LABEL: "the same labels over 0.5",
          REGRESSION: "the same value to 1%", TOKEN_CLASSIFICATION: "the same tag on every word of a text"}
# weights a task's model may lack with no effect on its outputs (feature-extraction never uses the pooler)


@dataclass(frozen=True)
class CheckpointTask:
    """What a checkpoint's files say: its task (one of TASKS, another head's name, or None when its config names
    no architecture), the architecture, and sentence-transformers' pooling when it is an embedding model."""

    task: str | None
    architecture: str | None
    num_labels: int
    pooling: dict[str, Any] | None = None  # {"mode": "mean" | "cls" | "max" | ..., "normalize": bool}
    label_names: list[str] = field(default_factory=list)
    pairs: bool = False  # it scores text pairs (natural language inference: entailment / neutral / contradiction)

    def describe(self) -> str:
        what = self.architecture or "no architectures in its config.json"
        if self.pooling is not None:
            what += f", sentence-transformers {self.pooling['mode']} pooling"
        return f"a {self.task or 'headless'} checkpoint ({what})"


# label names (any case) that make a classifier an NLI one: it reads a premise and a hypothesis, not one text
NLI_LABELS = {"entailment", "contradiction", "not_entailment", "non_entailment", "neutral"}


def scores_pairs(label_names: Iterable[str], config: Any = None) -> bool:
    """Whether a classifier scores text pairs: its labels name entailment and another NLI label (any case), or its
    config's ``finetuning_task`` is an NLI one (mnli, snli, xnli, anli, qnli, rte, wnli)."""
    names = {re.sub(r"[\s-]+", "_", str(n).strip().lower()) for n in label_names}
    if "entailment" in names and names & (NLI_LABELS - {"entailment"}):
        return True
    finetuned = str((_config_dict(config) if config is not None else {}).get("finetuning_task") or "").lower()
    return "nli" in finetuned or finetuned in ("rte", "wnli")


def check_text_input(task: str, has_pairs: bool, source: str, *, found: CheckpointTask | None = None,
                     label_names: Iterable[str] = ()) -> None:
    """Refuse single texts for a classifier that scores text pairs (``found.pairs``, or its ``label_names``): an
    NLI checkpoint given one text per row answers much the same label (neutral) for every row."""
    names = list(found.label_names if found is not None and found.label_names else label_names)
    pairs = found.pairs if found is not None else scores_pairs(names)
    if has_pairs or not pairs or task not in SEQUENCE_TASKS:
        return
    raise ModelTaskError(
        f"model {source} scores text pairs (natural language inference: labels {', '.join(names) or 'of an NLI task'}"
        "), and the input has one text per row, so every row would get much the same label; expected a premise and "
        "a hypothesis per row: pass the hypothesis column with --text-pair-column (the premise stays the text "
        "column); zero-shot labels of single texts (each label as a hypothesis) are transformers' "
        "pipeline('zero-shot-classification'), which hubtune does not run"
    )


def check_task_name(task: str | None, flag: str = "--task", known: Iterable[str] = TASKS) -> str | None:
    """``task`` as given (None: read from the checkpoint), refused unless it is one of ``known`` (the registry's
    names the command serves)."""
    if task is None or task in ("", "auto"):
        return None
    known = tuple(known)
    if task not in known:
        raise ConfigError(f"{flag} {task!r} is unknown; expected one of {', '.join(known)} (or leave it out to use the "
                          "task the checkpoint has)")
    return task


def _config_dict(config: Any) -> dict[str, Any]:
    if isinstance(config, dict):
        return config
    to_dict = getattr(config, "to_dict", None)
    return to_dict() if callable(to_dict) else dict(vars(config))


def sentence_pooling(model_dir: str | Path | None) -> dict[str, Any] | None:
    """The pooling (and normalisation) sentence-transformers' ``modules.json`` names, or None when the folder
    is no sentence-transformers model."""
    if model_dir is None:
        return None
    root = Path(model_dir)
    try:
        modules = json.loads((root / "modules.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(modules, list):
        return None
    mode, normalize = "mean", False
    for module in modules:
        kind = str(module.get("type", ""))
        if kind.endswith(".Pooling"):
            try:
                pcfg = json.loads((root / str(module.get("path", "")) / "config.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                pcfg = {}
            modes = [k[len("pooling_mode_"):] for k, v in pcfg.items() if k.startswith("pooling_mode_") and v is True]
            mode = pcfg.get("pooling_mode") or ("+".join(m.replace("_tokens", "").replace("_token", "") for m in modes)
                                                if modes else "mean")
        elif kind.endswith(".Normalize"):
            normalize = True
    return {"mode": mode, "normalize": normalize}


def checkpoint_task(config: Any, model_dir: str | Path | None = None) -> CheckpointTask:
    """The task ``config`` (a transformers config or its dict) and the files in ``model_dir`` say."""
    cfg = _config_dict(config)
    archs = cfg.get("architectures") or []
    arch = str(archs[0]) if archs else None
    id2label = cfg.get("id2label") or {}
    names = [str(id2label[k]) for k in sorted(id2label, key=lambda k: int(k))] if id2label else []
    num_labels = int(cfg.get("num_labels") or len(names) or 0)
    pooling = sentence_pooling(model_dir)
    task: str | None = None
    if arch is None:
        task = FEATURE_EXTRACTION if pooling is not None else None
    elif arch.endswith("ForSequenceClassification"):
        problem = cfg.get("problem_type")
        if problem == "multi_label_classification":
            task = MULTI_LABEL
        elif problem == "regression" or (problem is None and num_labels == 1):
            task = REGRESSION
        else:
            task = TEXT_CLASSIFICATION
    elif arch.endswith("ForTokenClassification"):
        task = TOKEN_CLASSIFICATION
    else:
        task = next((name for suffix, name in OTHER_HEADS.items() if arch.endswith(suffix)), None)
        if task is None:
            task = FEATURE_EXTRACTION if arch.endswith("Model") else arch
    if pooling is not None and task == FEATURE_EXTRACTION:
        return CheckpointTask(task, arch, num_labels, pooling, names)
    return CheckpointTask(task, arch, num_labels, None, names, task in SEQUENCE_TASKS and scores_pairs(names, cfg))


PEFT_HEADS = {"SEQ_CLS": "ForSequenceClassification", "TOKEN_CLS": "ForTokenClassification"}


def adapter_config_task(config: Any, peft_task_type: str | None) -> dict[str, Any]:
    """The config a peft adapter's checkpoint stands for: the base model's config (often a bare ``BertModel``)
    with the architecture of the head the adapter was trained with (its ``task_type``: ``SEQ_CLS``, ``TOKEN_CLS``)
    and saves itself (``modules_to_save``)."""
    cfg = dict(_config_dict(config))
    suffix = PEFT_HEADS.get(str(peft_task_type or ""))
    archs = cfg.get("architectures") or []
    arch = str(archs[0]) if archs else None
    if suffix and (arch is None or not arch.endswith(suffix)):
        stem = re.sub(r"(Model|For[A-Za-z]+|LMHeadModel)$", "", arch) if arch else ""
        cfg["architectures"] = [(stem or str(cfg.get("model_type", "")).capitalize()) + suffix]
    return cfg


def has_head(found: CheckpointTask, task: str) -> bool:
    """Whether a checkpoint of ``found`` holds the trained weights that ``task`` needs (unknown: True, the
    loading info decides). Every checkpoint holds an encoder to extract features from."""
    if task == FEATURE_EXTRACTION or found.task is None:
        return True
    if task in SEQUENCE_TASKS:
        if found.task not in SEQUENCE_TASKS:
            return False
        if task == REGRESSION:
            return found.num_labels == 1
        # one output read as classes: a softmax over one logit is 1.0 on every row, a regression value is no class
        return not (found.num_labels == 1 and (task == TEXT_CLASSIFICATION or found.task == REGRESSION))
    return found.task == task


def head_weights(task: str) -> str:
    """The weights a task's head adds, in words (what is missing when a checkpoint lacks it)."""
    if task == TOKEN_CLASSIFICATION:
        return "the token-classification head (classifier.weight, classifier.bias)"
    if task == REGRESSION:
        return "a regression head with one output (classifier.weight, classifier.bias)"
    return "the sequence-classification head (classifier.weight, classifier.bias)"


def missing_head_error(source: str, task: str, found: CheckpointTask, missing: Iterable[str] = (),
                       served: Iterable[str] = TASKS) -> ModelTaskError:
    """The one-line refusal of a checkpoint that has no trained head for ``task`` (``served``: the tasks the
    command runs, one of which the refusal may point at)."""
    keys = sorted(missing)
    shown = ", ".join(keys[:6]) + (f" and {len(keys) - 6} more" if len(keys) > 6 else "")
    weights = f"its {shown} would be newly initialised (random)" if keys else f"it lacks {head_weights(task)}"
    has = found.task if found.task in tuple(served) and found.task != task else None
    if task == REGRESSION and found.task in SEQUENCE_TASKS and found.num_labels != 1:
        weights = f"its classifier has {found.num_labels} outputs, a regression head has one"
    if task != REGRESSION and found.task in SEQUENCE_TASKS and found.num_labels == 1:
        weights = ("its head has one output (a regression value): read as classes, every row would get the same "
                   "label (a softmax over one logit is 1.0)")
        has = REGRESSION if REGRESSION in tuple(served) else has
    pick = (f"pick the task it has with --task {has}" if has
            else f"pass --model a checkpoint trained for {task} (or name its task with --task)")
    return ModelTaskError(
        f"model {source} has no trained head for {task}: it is {found.describe()}, and {weights}; expected a "
        f"checkpoint trained for {task}: train one with `hubtune train` (base model {source}), or {pick}"
    )


def check_loading_info(source: str, task: str, found: CheckpointTask, info: dict[str, Any] | None,
                       unused: Iterable[str] = ()) -> None:
    """Refuse a model whose load left weights newly initialised (transformers' ``output_loading_info``:
    ``missing_keys``), but the ones the task never uses (``unused``: its ``unused_missing`` prefixes)."""
    unused = tuple(unused)
    missing = [k for k in (info or {}).get("missing_keys", ()) or ()
               if not any(str(k).startswith(p) for p in unused)]
    if missing:
        raise missing_head_error(source, task, found, missing)


def reads_one_sequence(task: str) -> bool:
    """Whether the task's head answers once per sequence (text classification, multi-label, regression), not per
    token or as a pooled embedding (batch-predict pads such a batch on the side its head needs)."""
    return task in SEQUENCE_TASKS


# --------------------------------------------------------------------------------------------------
# The interface every task module implements (one object per task, in hubtune.tasks.registry)
# --------------------------------------------------------------------------------------------------
class Task:
    """What differs by task, asked by every step (train, evaluate, card, merge, export, verify, batch-predict),
    which never compares a task's name. A task module subclasses it (or a task near it) and registers one
    instance; the defaults are those of a task nothing serves (each step refuses it naming what it lacks).

    Facts (class attributes) first, then the behaviour (methods) a step calls."""

    name: str = ""
    description: str = ""  # one line: what it answers (``--task`` help)
    auto_class: str | None = "AutoModelForSequenceClassification"  # the transformers class of its model
    problem_type: str | None = None  # config.json's problem_type that tells it (sequence-classification heads)
    # --- training (hubtune train: which recipe, with what) ---
    recipe: str | None = None  # "classifier" | "head" | "language-model" | "generative" | None (not trained)
    train_modes: tuple[str, ...] = ("full", "lora")
    engines: tuple[str, ...] = ("trainer",)
    ulmfit: bool = False  # the ULMFiT options apply
    metric_modules: bool = False  # --metric (evaluate modules on class predictions) applies
    class_weights: bool = False
    summary_keys: tuple[str, ...] = ()  # its scalar metrics, in the order they are shown
    best_metric: tuple[str, bool] | None = None  # the metric that chooses the checkpoint, larger is better
    main_metric: str | None = None  # a variant's drop (export gates) is measured on it, in points
    main_metric_name: str = "accuracy"  # ... and named so
    gate_metrics: tuple[str, ...] = ()  # the --min-metric names train-and-push may gate on
    # --- its labels and outputs ---
    has_labels: bool = True  # label names (a regression value has none)
    one_sequence: bool = False  # a head answering once per sequence (batch padding side, NLI check)
    predicts: bool = False  # batch-predict and evaluate serve it (--task)
    generates: bool = False  # batch-predict generates text with it (hubtune.predict.generate; tasks.generation)
    reads_pairs: bool = True  # it may read text pairs (--text-pair-column)
    one_text: str = "reads one text"  # what it does with one text (the refusal of a pair column says it)
    list_column: str | None = None  # the output column holding a list per row (CSV cannot hold it)
    single_label: bool = False  # batch-predict writes label/score and the classification metrics (shards' own)
    embeds: bool = False  # an embedding: the encoder alone, pooled (feature-extraction)
    threshold: float | None = None  # a sigmoid threshold it reads labels with (--threshold)
    language_model: bool = False  # fill-mask / text-generation: texts in blocks, perplexity, generated text
    argmax_labels: bool = True  # its rows' answer is the argmax of the logits (int8 sensitivity by label flips)
    masked: bool = False  # a masked LM (fill-mask): its tokenizer has a mask token, its probes mask a word
    agrees: str = "the same label"  # when two models (PyTorch and ONNX, fp32 and int8) answer a row the same
    unused_missing: tuple[str, ...] = ()  # weight prefixes its model may lack with no effect on its outputs
    onnx_outputs: tuple[str, ...] = ("logits",)
    optimum_task: str = "text-classification"  # Optimum's name of its ONNX export
    # --- its card ---
    pipeline_tag: str = "text-classification"
    card_name: str = "Text Classification"  # the model-index task name
    usage: str = ""  # the card's usage lines (``{repo}``, ``{example}`` filled in)

    def __repr__(self) -> str:
        return f"<task {self.name}>"

    # --- checkpoints -----------------------------------------------------------------------------
    def head_kwargs(self, label_names: list[str]) -> dict[str, Any]:
        """The config keywords that make a checkpoint tell this task (problem_type, num_labels, id2label)."""
        out: dict[str, Any] = {"num_labels": len(label_names), "id2label": dict(enumerate(label_names)),
                               "label2id": {n: i for i, n in enumerate(label_names)}}
        if self.problem_type:
            out["problem_type"] = self.problem_type
        return out

    def label_names(self, config: Any) -> list[str]:
        """The label names a loaded model's config holds, in id order."""
        from hubtune.core.modeling import label_names_from_config

        return label_names_from_config(config)


    def configure(self, config: Any) -> None:
        """Set what a new checkpoint of this task saves in config.json beyond ``head_kwargs`` (a registered task's
        own marker, read back by ``declares``)."""

    def declares(self, config: dict[str, Any]) -> bool:
        """Whether a checkpoint's config.json tells this task beyond what :func:`checkpoint_task` reads (a
        registered task's own marker); the built-in tasks are read there."""
        return False

    def served_by(self, found: CheckpointTask) -> bool:
        """Whether a checkpoint of ``found`` holds the trained weights this task needs (unknown: True, the
        loading info decides)."""
        return found.task is None or found.task == self.name

    # --- training data, outputs, metrics -----------------------------------------------------------
    def normalise(self, ds: Any, dc: Any, source: str, names: list[str] | None) -> Any:
        """A dataset of this task as its training/evaluation reads it (a :class:`hubtune.data.dataset.LoadedData`)."""
        raise ConfigError(f"task {self.name} reads no labeled data; expected a task with labels")

    def check_raw(self, ds: Any, dc: Any, source: str) -> None:
        """Checks of the raw rows before any shuffle (a bad row is named by its place in the file)."""

    def unlabeled(self, texts: list[str]) -> Any:
        """Examples of ``texts`` without labels, normalised as ``normalise`` makes them (an export gate's texts)."""
        from datasets import Dataset

        return Dataset.from_dict({"text": list(texts)})

    def padded(self, outputs: Any) -> Any:
        """The outputs as one array, a row per example, for the export gates (per-token tasks pad the words)."""
        import numpy as np

        return np.asarray(outputs)

    def texts(self, ds: Any) -> list[str]:
        """The text of each normalised example (golden examples, calibration)."""
        return list(ds["text"])

    def outputs(self, model: Any, tokenizer: Any, ds: Any, max_length: int, *, batch_size: int = 64,
                device: str | None = None) -> Any:
        """What ``model`` answers on normalised data (an ONNX graph behind its call shape with ``device="cpu"``)."""
        from hubtune.core.modeling import predict_logits

        pairs = ds["text_pair"] if "text_pair" in ds.column_names else None
        return predict_logits(model, tokenizer, ds["text"], pairs, batch_size=batch_size, max_length=max_length,
                              device=device)

    def flat(self, outputs: Any) -> Any:
        """The outputs as one array, a row per example (what the parity gates compare)."""
        import numpy as np

        return np.asarray(outputs)

    def metrics(self, outputs: Any, ds: Any, label_names: list[str], *, tokenizer: Any = None,
                max_length: int = 512, threshold: float = 0.5) -> dict[str, Any]:
        raise ConfigError(f"task {self.name} has no metrics here; expected a task with labels")

    def load_labeled(self, spec: str, dc: Any, label_names: list[str] | None, *,
                     max_samples: int | None = None) -> Any:
        """One labeled dataset (``spec``, read with a DataConfig ``dc``'s columns, encoding and seed) normalised onto a
        model's ``label_names`` (what ``hubtune evaluate`` measures on)."""
        from hubtune.data.examples import load_task_labeled

        return load_task_labeled(spec, dc, self, label_names, max_samples=max_samples)

    def evaluate(self, loaded: Any, data: Any, *, batch_size: int = 64, metric_modules: Any = ()) -> dict[str, Any]:
        """Its metrics of a loaded model (:class:`hubtune.tasks.loading.LoadedModel`) on ``load_labeled``'s data,
        measured on the files as loaded."""
        from hubtune.core.modeling import DEFAULT_MAX_LENGTH

        limit = min(loaded.max_length, DEFAULT_MAX_LENGTH)
        outputs = self.outputs(loaded.model, loaded.tokenizer, data.dataset, limit, batch_size=batch_size)
        out = self.metrics(outputs, data.dataset, loaded.label_names, tokenizer=loaded.tokenizer, max_length=limit)
        out["source"] = "reloaded"
        return out

    def agreement(self, candidate: Any, reference: Any, logit_threshold: float = 0.0) -> float:
        """The fraction of rows two runs answer the same (see ``agrees``)."""
        import numpy as np

        if not len(reference):
            return 1.0
        if reference.ndim == 3:
            return float((candidate.argmax(-1) == reference.argmax(-1)).all(-1).mean())
        return float((np.asarray(candidate).argmax(-1) == np.asarray(reference).argmax(-1)).mean())

    # --- training (the head recipe) -----------------------------------------------------------------
    def tokenize(self, ds: Any, tokenizer: Any, max_length: int) -> Any:
        def fn(batch: dict[str, list[Any]]) -> Any:
            return tokenizer(batch["text"], batch.get("text_pair"), truncation=True, max_length=max_length)

        cols = [c for c in ds.column_names if c not in ("label", "labels")]
        return ds.map(fn, batched=True, remove_columns=cols, desc="tokenize")

    def collator(self, tokenizer: Any) -> Any:
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(tokenizer)

    def check_tokenizer(self, tokenizer: Any, source: str) -> None:
        """Refuse a tokenizer the task cannot use (token classification: a slow one)."""

    def eval_metrics(self, logits: Any, labels: Any, label_names: list[str]) -> dict[str, Any]:
        """The metrics of the Trainer's evaluation (logits and label ids of the eval split)."""
        raise ConfigError(f"task {self.name} has no training metrics; expected a task with labels")

    def check_config(self, cfg: Any) -> None:
        """Refuse training settings the task's recipe cannot take (``cfg``: a TrainConfig); the default is the
        head recipe's: its modes, on its engines, without the ULMFiT options unless it takes them."""
        check_trained(self)
        if cfg.mode not in self.train_modes or cfg.engine not in self.engines or (cfg.ulmfit.enabled and not self.ulmfit):
            raise ConfigError(
                f"task {self.name} with mode {cfg.mode}, engine {cfg.engine}{', ulmfit on' if cfg.ulmfit.enabled else ''}"
                f"; expected --mode {' or '.join(self.train_modes)} on --engine {' or '.join(self.engines)} without "
                "ulmfit options"
            )

    # --- batch-predict --------------------------------------------------------------------------------
    def check_predict_options(self, long_text: str, pair_column: str | None, threshold: float | None) -> None:
        """Refuse batch-predict options the task cannot take."""
        if long_text == "chunk":
            raise ConfigError(
                f"--long-text chunk averages the class probabilities of a text's windows, and this model's task is "
                f"{self.name}; expected a text-classification model: use --long-text truncate (the rows cut are counted)"
            )
        if pair_column and not self.reads_pairs:
            raise ConfigError(
                f"--text-pair-column {pair_column} with a {self.name} model, which {self.one_text}; expected single "
                "texts: drop --text-pair-column"
            )
        if threshold is not None:
            raise ConfigError(
                f"--threshold {threshold} is for multi-label-classification (the labels whose sigmoid is over it), and "
                f"this model's task is {self.name}: drop --threshold, or pass --task multi-label-classification"
            )

    def columns(self, head: Any, logits: Any, texts: list[str]) -> dict[str, Any]:
        """Its output columns (pyarrow arrays) for the valid rows of a chunk."""
        raise ConfigError(f"task {self.name} has no output columns in batch-predict; expected a task batch-predict "
                          "serves (hubtune batch-predict --help lists them)")

    # --- verification after push (a fresh process, the published files) ----------------------------------
    def pipeline_answers(self, model_ref: str, texts: list[str], revision: str | None, threshold: float) -> dict[str, Any]:
        """What ``pipeline()`` answers on ``texts``: ``pytorch`` the labels, ``pytorch_scores`` the scores."""
        raise ConfigError(f"task {self.name} has no pipeline() check; expected a published classifier")

    def logits_answer(self, logits: Any, mask: Any, names: list[str], threshold: float) -> tuple[list[str], list[Any]]:
        """Labels and scores of a batch of an ONNX graph's logits (``mask``: the tokens that are words)."""
        raise ConfigError(f"task {self.name} has no ONNX check; expected a published classifier")


def check_trained(task: Task) -> None:
    if task.recipe is None:
        raise ConfigError(f"task {task.name} is not trained by hubtune; expected a task with a training recipe "
                          "(hubtune train --help lists them)")


def check_engine(task: Task, cfg: Any) -> None:
    """The Accelerate loops train text classification and fill-mask, without the ULMFiT options."""
    if cfg.engine not in task.engines or (cfg.engine == "accelerate" and cfg.ulmfit.enabled):
        raise ConfigError(
            f"engine accelerate supports tasks text-classification and fill-mask without ulmfit options (found "
            f"task {task.name}{', ulmfit on' if cfg.ulmfit.enabled else ''}); use --engine trainer"
        )
