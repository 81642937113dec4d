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
UNUSED_MISSING = {FEATURE_EXTRACTION: ("pooler.",)}


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


def check_task_name(task: str | None, flag: str = "--task") -> str | None:
    """``task`` as given (None: read from the checkpoint), refused unless it is one of TASKS."""
    if task is None or task in ("", "auto"):
        return None
    if task not in TASKS:
        raise ConfigError(f"{flag} {task!r} is unknown; expected one of {', '.join(TASKS)} (or leave it out to use the "
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


def resolve_task(config: Any, requested: str | None, *, source: str, model_dir: str | Path | None = None,
                 served: Iterable[str] = TASKS, peft_task_type: str | None = None) -> tuple[str, CheckpointTask]:
    """(the task to run, what the checkpoint says): ``requested`` (``--task``) or the checkpoint's own task; a
    checkpoint without the head that task needs is a :class:`ModelTaskError`. ``served``: the tasks the calling
    command runs (evaluate, export, card: the sequence-classification ones); ``peft_task_type``: a peft adapter's
    ``task_type``, whose head the adapter carries."""
    if peft_task_type is not None:
        config = adapter_config_task(config, peft_task_type)
    found = checkpoint_task(config, model_dir)
    served = tuple(served)
    task = check_task_name(requested)
    if task is None:
        task = found.task if found.task in TASKS else TEXT_CLASSIFICATION
        if task not in served:  # e.g. an embedding model handed to evaluate: it has no classifier to evaluate
            task = served[0]
    if task not in served:
        raise ConfigError(f"--task {task} is not served here; expected one of {', '.join(served)}")
    if not has_head(found, task):
        raise missing_head_error(source, task, found, served=served)
    return task, found


def check_loading_info(source: str, task: str, found: CheckpointTask, info: dict[str, Any] | None) -> None:
    """Refuse a model whose load left weights newly initialised (transformers' ``output_loading_info``:
    ``missing_keys``), but the ones the task never uses."""
    missing = [k for k in (info or {}).get("missing_keys", ()) or ()
               if not any(str(k).startswith(p) for p in UNUSED_MISSING.get(task, ()))]
    if missing:
        raise missing_head_error(source, task, found, missing)


def reads_one_sequence(task: str) -> bool:
    """Whether the task's head answers once per sequence (text classification, multi-label, regression), not per
    token or as a pooled embedding (batch-predict pads such a batch on the side its head needs)."""
    return task in SEQUENCE_TASKS
