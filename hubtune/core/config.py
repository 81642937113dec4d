"""Configuration: dataclasses, loaded from YAML and overridden by CLI flags (defaults < YAML < flags).

Unknown keys are errors that name the key and the closest valid one.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Mapping, TypeVar

from hubtune.core.errors import ConfigError
from hubtune.core.trainer_fields import check_trainer_fields

T = TypeVar("T")


# --------------------------------------------------------------------------------------------------
# Generic loader
# --------------------------------------------------------------------------------------------------
def _closest(key: str, valid: list[str]) -> str:
    match = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    return f"; did you mean '{match[0]}'?" if match else f"; valid keys: {', '.join(sorted(valid))}"


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        errors = []
        for a in non_none:
            try:
                return _coerce(value, a, where)
            except ConfigError as exc:
                errors.append(exc)
        raise errors[0]
    if origin is typing.Literal:
        if isinstance(value, str):
            for a in args:
                if value.lower() == str(a).lower():
                    return a
        if value in args:
            return value
        raise ConfigError(
            f"{where}: found {value!r}, expected one of {', '.join(map(repr, args))}; fix the value in the YAML or flag"
        )
    if is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: found {type(value).__name__} {value!r}, expected a mapping of keys")
        return from_dict(tp, value, where=where)
    if origin in (list, tuple) or tp in (list, tuple):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: found {value!r}, expected a list")
        inner = args[0] if args else Any
        return [_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: found {value!r}, expected a mapping")
        vt = args[1] if len(args) == 2 else Any
        return {str(k): _coerce(v, vt, f"{where}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on", "false", "no", "0", "off"):
            return value.lower() in ("true", "yes", "1", "on")
        raise ConfigError(f"{where}: found {value!r}, expected true or false")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: found {value!r}, expected an integer")
        try:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: found {value!r}, expected an integer") from None
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: found {value!r}, expected a number")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: found {value!r}, expected a number") from None
    if tp is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{where}: found {value!r}, expected a string")
        return str(value)
    return value


def from_dict(cls: type[T], data: Mapping[str, Any], where: str = "") -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys and wrong types raise ConfigError."""
    hints = typing.get_type_hints(cls)
    valid = [f.name for f in fields(cls) if f.init]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        key = str(key).replace("-", "_")
        full = f"{where}.{key}" if where else key
        if key not in valid:
            raise ConfigError(f"unknown config key '{full}'{_closest(key, valid)}")
        kwargs[key] = _coerce(value, hints[key], full)
    try:
        obj = cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{where or cls.__name__}: {exc}") from None
    validate = getattr(obj, "validate", None)
    if callable(validate):
        validate()
    return obj


def to_dict(obj: Any) -> dict[str, Any]:
    return dataclasses.asdict(obj)


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    parts = key.replace("-", "_").split(".")
    cur = data
    for p in parts[:-1]:
        nxt = cur.get(p)
        if not isinstance(nxt, dict):
            nxt = {}
            cur[p] = nxt
        cur = nxt
    cur[parts[-1]] = value


def load_yaml(path: str | Path) -> dict[str, Any]:
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}; pass an existing YAML file with --config")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {p} is not valid YAML ({' '.join(str(exc).split())}); fix the file") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p} holds a {type(data).__name__}, expected a mapping of keys")
    return data


def resolve(
    cls: type[T],
    config_path: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> T:
    """defaults < YAML < overrides. ``overrides`` use dotted keys (``lora.r``); ``None`` values are skipped."""
    data: dict[str, Any] = load_yaml(config_path) if config_path else {}
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        _set_dotted(data, key, value)
    return from_dict(cls, data)


# what a --resume may change: settings that never change the trained weights, and how long to train (a resume
# with more epochs or steps continues the same run further)
RESUME_FREE_KEYS = ("output_dir", "eval_batch_size", "logging_steps", "report_to", "dataloader_num_workers", "metrics",
                    "num_epochs", "max_steps")


def resume_changes(saved: dict[str, Any], current: Any, prefix: str = "") -> list[str]:
    """The dotted keys whose value differs between the config a run started with and the one a --resume brings
    (a config dataclass, or its YAML mapping): ``key: old -> new``, leaving out :data:`RESUME_FREE_KEYS`."""
    if is_dataclass(current):
        import yaml

        current = yaml.safe_load(dump_yaml(current))
    out: list[str] = []
    for key in sorted(set(saved) | set(current)):
        name = f"{prefix}{key}"
        if name in RESUME_FREE_KEYS:
            continue
        old, new = saved.get(key), current.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            out += resume_changes(old, new, f"{name}.")
        elif old != new:
            out.append(f"{name}: {old!r} -> {new!r}")
    return out


def dump_yaml(obj: Any) -> str:
    import yaml

    return yaml.safe_dump(to_dict(obj) if is_dataclass(obj) else obj, sort_keys=False)


# --------------------------------------------------------------------------------------------------
# The configs
# --------------------------------------------------------------------------------------------------
@dataclass
class DataConfig:
    """Where the examples come from and which columns hold what."""

    dataset: str = ""
    eval_dataset: str | None = None  # chooses the checkpoint (model selection); default: carved from dataset
    test_dataset: str | None = None  # reported in metrics.json["test"] and the card; never used for selection
    text_column: str | None = None
    text_pair_column: str | None = None
    label_column: str | None = None
    max_samples: int | None = None
    eval_max_samples: int | None = None
    test_max_samples: int | None = None
    validation_split: float = 0.1
    encoding: str = "utf-8"
    seed: int = 42
    label_delimiter: str = ","  # task multi-label-classification: a string label column holds labels joined by it
    # SFT (text-generation, text2text-generation); None: detected (prompt/completion, source/target,
    # instruction/output, messages)
    prompt_column: str | None = None
    completion_column: str | None = None
    messages_column: str | None = None  # chat messages (a list of {role, content}) with the tokenizer's chat template

    def validate(self) -> None:
        if not self.label_delimiter:
            raise ConfigError("label_delimiter is empty; expected the string that joins a row's labels (e.g. ',' or '|'): "
                              "pass --label-delimiter")
        if not 0.0 < self.validation_split < 1.0:
            raise ConfigError(
                f"validation_split is {self.validation_split}, expected a fraction between 0 and 1 (e.g. 0.1)"
            )
        for name in ("max_samples", "eval_max_samples", "test_max_samples"):
            v = getattr(self, name)
            if v is not None and v <= 0:
                raise ConfigError(f"{name} is {v}, expected a positive number of rows (--limit)")


@dataclass
class LoraSettings:
    r: int = 8
    alpha: int = 16
    dropout: float = 0.1
    target_modules: list[str] | None = None
    bias: typing.Literal["none", "all", "lora_only"] = "none"


@dataclass
class PeftSettings:
    """Settings of the PEFT methods beside LoRA (``mode: ia3`` and ``mode: prefix``)."""

    num_virtual_tokens: int = 10  # prefix tuning: virtual tokens per layer
    ia3_target_modules: list[str] | None = None  # None: peft's per-architecture default
    ia3_feedforward_modules: list[str] | None = None

    def validate(self) -> None:
        if self.num_virtual_tokens <= 0:
            raise ConfigError(f"peft.num_virtual_tokens is {self.num_virtual_tokens}, expected a positive integer")


@dataclass
class UlmfitSettings:
    """ULMFiT training techniques (Howard & Ruder 2018). All off by default.

    ``discriminative_lr_decay``: lr of layer l-1 = lr of layer l / decay (2.6 in the paper); the head gets
    ``learning_rate``. ``slanted_triangular``: linear warm-up to the peak at ``cut_frac`` of the steps,
    then linear decay to peak/``ratio``. ``gradual_unfreezing``: epoch 1 trains the head only, each
    later epoch unfreezes the next lower layer group.
    """

    discriminative_lr_decay: float | None = None
    slanted_triangular: bool = False
    cut_frac: float = 0.1
    ratio: float = 32.0
    gradual_unfreezing: bool = False

    @property
    def enabled(self) -> bool:
        return bool(self.discriminative_lr_decay or self.slanted_triangular or self.gradual_unfreezing)

    def validate(self) -> None:
        if self.discriminative_lr_decay is not None and self.discriminative_lr_decay < 1.0:
            raise ConfigError(
                f"ulmfit.discriminative_lr_decay is {self.discriminative_lr_decay}, expected a factor >= 1 "
                "(2.6 in the ULMFiT paper; leave it unset to disable)"
            )
        if not 0.0 < self.cut_frac < 1.0:
            raise ConfigError(f"ulmfit.cut_frac is {self.cut_frac}, expected a fraction between 0 and 1 (e.g. 0.1)")
        if self.ratio < 1.0:
            raise ConfigError(f"ulmfit.ratio is {self.ratio}, expected a number >= 1 (e.g. 32)")


@dataclass
class BottleneckSettings:
    """``mode: adapter``: a bottleneck adapter of the ``adapters`` library (AdapterHub; ``hubtune[adapters]``).

    ``config``: ``pfeiffer`` (one adapter after each layer's feed-forward block, adapters' ``SeqBnConfig``) or
    ``houlsby`` (two per layer, after attention and feed-forward, ``DoubleSeqBnConfig``). ``reduction_factor``:
    hidden size / bottleneck size (16: a 384-wide model gets 24-wide adapters).
    """

    config: typing.Literal["pfeiffer", "houlsby"] = "pfeiffer"
    reduction_factor: int = 16

    def validate(self) -> None:
        if self.reduction_factor < 1:
            raise ConfigError(f"bottleneck.reduction_factor is {self.reduction_factor}, expected an integer >= 1 (e.g. 16)")


ADAPTER_MODES = ("lora", "ia3", "prefix")


@dataclass
class TrainConfig:
    """Everything ``hubtune train`` needs. Keys of the YAML file are these field names."""

    base_model: str = ""
    output_dir: str = "runs/hubtune"
    data: DataConfig = field(default_factory=DataConfig)
    task: str = "text-classification"  # a trained task of hubtune.tasks.registry
    mode: typing.Literal["full", "lora", "ia3", "prefix", "adapter"] = "full"
    engine: typing.Literal["trainer", "accelerate"] = "trainer"
    lora: LoraSettings = field(default_factory=LoraSettings)
    peft: PeftSettings = field(default_factory=PeftSettings)
    bottleneck: BottleneckSettings = field(default_factory=BottleneckSettings)  # mode: adapter
    ulmfit: UlmfitSettings = field(default_factory=UlmfitSettings)
    # language-model tasks (fill-mask, text-generation): texts are concatenated and cut into blocks
    block_size: int = 128
    mlm_probability: float = 0.15
    whole_word_mask: bool = False
    max_new_tokens: int = 64  # SFT: greedy tokens generated per held-out prompt (exact_match, rouge_l)
    num_epochs: float = 3.0
    max_steps: int = -1
    learning_rate: float = 5e-5
    batch_size: int = 16
    eval_batch_size: int = 64
    gradient_accumulation_steps: int = 1
    max_length: int = 256
    group_by_length: bool = False
    weight_decay: float = 0.0
    warmup_ratio: float = 0.0
    metric_for_best_model: str = "f1_macro"
    # evaluate modules (Hub id org/name or local folder; args after ':') computed beside the built-in metrics
    metrics: list[str] = field(default_factory=list)
    early_stopping_patience: int | None = None
    precision: typing.Literal["auto", "fp32", "fp16", "bf16"] = "auto"
    seed: int = 42
    logging_steps: int = 50
    report_to: list[str] = field(default_factory=lambda: ["none"])
    trust_remote_code: bool = False
    revision: str | None = None
    dataloader_num_workers: int = 0
    # classification: weighted cross-entropy, "balanced" (n / (classes * count) on the train split) or {label: weight}
    class_weights: str | dict[str, float] | None = None
    # any other TrainingArguments field of the installed transformers (trainer.max_grad_norm, lr_scheduler_type, ...)
    trainer: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        if not self.base_model:
            raise ConfigError("base_model is empty; set base_model in the YAML or pass --base-model (Hub id or directory)")
        if not self.data.dataset:
            raise ConfigError("data.dataset is empty; set data.dataset in the YAML or pass --dataset SPEC")
        for name in ("batch_size", "eval_batch_size", "gradient_accumulation_steps", "max_length"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} is {getattr(self, name)}, expected a positive integer")
        if self.learning_rate <= 0:
            raise ConfigError(f"learning_rate is {self.learning_rate}, expected a positive number")
        if self.num_epochs <= 0 and self.max_steps <= 0:
            raise ConfigError("num_epochs and max_steps are both <= 0; set --epochs or max_steps")
        if self.max_new_tokens <= 0:
            raise ConfigError(f"max_new_tokens is {self.max_new_tokens}, expected a positive integer "
                              "(--set max_new_tokens=64)")
        if self.block_size <= 1:
            raise ConfigError(f"block_size is {self.block_size}, expected an integer > 1 (tokens per LM block)")
        if not 0.0 < self.mlm_probability < 1.0:
            raise ConfigError(
                f"mlm_probability is {self.mlm_probability}, expected a fraction between 0 and 1 (0.15 in BERT)"
            )
        from hubtune.tasks.registry import get_task, task_names

        trained = task_names(trained=True)
        self.task = next((n for n in trained if n.lower() == str(self.task).lower()), self.task)
        if self.task not in trained:
            raise ConfigError(f"task: found {self.task!r}, expected one of {', '.join(map(repr, trained))}; fix the "
                              "value in the YAML or flag")
        task = get_task(self.task)
        task.check_config(self)  # the modes, engines and options the task's recipe takes
        if self.metrics and not task.metric_modules:
            raise ConfigError(
                f"metrics (--metric) with task {self.task}: evaluate modules are computed on class predictions; "
                "expected task text-classification, or drop --metric"
            )
        if self.metrics:
            from hubtune.core.metric_modules import check_metric_specs

            check_metric_specs(self.metrics)
        if self.mode == "adapter" and ("adapter" not in task.train_modes or self.engine != "trainer"):
            raise ConfigError(
                f"mode adapter (bottleneck adapters) with task {self.task}, engine {self.engine}; expected task "
                "text-classification on --engine trainer, or another --mode"
            )
        if self.ulmfit.enabled and self.mode in ("ia3", "prefix", "adapter"):
            raise ConfigError(f"ulmfit options with mode {self.mode}; expected --mode full or lora")
        self._validate_trainer_settings()

    def _validate_trainer_settings(self) -> None:
        if self.trainer and self.engine != "trainer":
            raise ConfigError(f"trainer settings ({', '.join(self.trainer)}) with engine {self.engine}: they are "
                              "TrainingArguments fields; expected --engine trainer, or drop the trainer: section")
        if self.engine != "trainer" and [r for r in self.report_to if r != "none"]:
            raise ConfigError(f"report_to {', '.join(self.report_to)} with engine {self.engine}: the Accelerate loops "
                              "report to no tracker; expected --engine trainer, or --set report_to=none")
        self.trainer = check_trainer_fields(self.trainer, _coerce)
        if self.warmup_ratio and "warmup_steps" in self.trainer:
            raise ConfigError(f"warmup_ratio {self.warmup_ratio} and trainer.warmup_steps both set; expected one of them")
        stlr = {"lr_scheduler_type", "lr_scheduler_kwargs", "warmup_steps"} & set(self.trainer)
        if self.ulmfit.enabled and {"optim", "optim_args"} & set(self.trainer):
            raise ConfigError("ulmfit options build their own AdamW (layer-group learning rates), and trainer.optim "
                              "asks for another optimizer; expected one of them")
        if self.ulmfit.slanted_triangular and stlr:
            raise ConfigError(f"ulmfit.slanted_triangular is the schedule, and trainer.{sorted(stlr)[0]} sets another; "
                              "expected one of them")
        if self.class_weights is not None:
            from hubtune.tasks.registry import get_task

            if not get_task(self.task).class_weights or self.engine != "trainer":
                raise ConfigError(f"class_weights with task {self.task}, engine {self.engine}; expected task "
                                  "text-classification on --engine trainer, or drop class_weights")
            if isinstance(self.class_weights, str) and self.class_weights != "balanced":
                raise ConfigError(f"class_weights is {self.class_weights!r}; expected 'balanced' or a mapping "
                                  "{label: weight} (--set class_weights=balanced or --set class_weights.LABEL=2.0)")
            bad = {k: w for k, w in (self.class_weights if isinstance(self.class_weights, dict) else {}).items() if not w > 0}
            if bad:
                raise ConfigError(f"class_weights {bad} are not positive; expected a weight > 0 for each label named")


TAG_PLACEHOLDERS = {"n": "[0-9]+", "date": "[0-9]{8}", "short_sha": "[0-9a-f]{7}"}
_TAG_NAME_RE = re.compile(r"^[A-Za-z0-9._-]+(?:/[A-Za-z0-9._-]+)*$")


def check_tag_template(template: str) -> None:
    """A tag name, or a template with ``{n}``, ``{date}``, ``{short_sha}`` (see PublishSettings); else ConfigError."""
    placeholders = re.findall(r"\{([^{}]*)\}", template)
    sample = re.sub(r"\{(n|date|short_sha)\}", "1", template)
    unknown = [f for f in placeholders if f not in TAG_PLACEHOLDERS]
    if unknown or not _TAG_NAME_RE.match(sample) or ".." in sample or sample.endswith(".lock"):
        what = f"unknown placeholder {{{unknown[0]}}}" if unknown else "characters a tag cannot hold"
        raise ConfigError(
            f"publish.tag / --tag {template!r} has {what}; expected a tag name or a template using "
            "{n} (next number), {date} (UTC YYYYMMDD), {short_sha} (7 hex digits of the commit), e.g. 'v{n}'"
        )


def resolve_tag(template: str, tags: Mapping[str, str], commit: str, *, date: str | None = None) -> tuple[str, bool]:
    """(tag name, whether it already points at ``commit``) for ``template`` among a repo's ``tags`` (name -> commit).

    A tag matching the template that already points at ``commit`` is reused: a commit is released once.
    Else ``{n}`` is one more than the highest number among the tags matching the template (1 for the first),
    ``{date}`` today's UTC date as YYYYMMDD and ``{short_sha}`` the commit's first 7 hex digits.
    """
    import datetime
    import string

    check_tag_template(template)
    pattern, seen_n = "", False
    for literal, name, _, _ in string.Formatter().parse(template):
        pattern += re.escape(literal)
        if name == "n":
            pattern += "(?P=n)" if seen_n else "(?P<n>[0-9]+)"
            seen_n = True
        elif name:
            pattern += TAG_PLACEHOLDERS[name]
    matches = {tag: m for tag in tags if (m := re.fullmatch(pattern, tag))}

    def number(tag: str) -> int:
        return int(matches[tag].group("n")) if seen_n else 0

    released = sorted((tag for tag in matches if tags[tag] == commit), key=number)
    if released:
        return released[-1], True
    n = max((number(tag) for tag in matches), default=0) + 1
    today = date or datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d")
    return template.format(n=n, date=today, short_sha=commit[:7]), False


@dataclass
class PublishSettings:
    """Where ``train-and-push`` publishes.

    ``tag`` names the release tag put on the verified commit: a fixed name (``v1``: a second release with new
    files is refused before anything is pushed, since the name is taken) or a template whose placeholders make
    every release's name new: ``{n}`` one more than the highest number among the repo's tags matching the
    template (``v{n}``: v1, v2, ...), ``{date}`` the UTC date as YYYYMMDD, ``{short_sha}`` the first 7 hex digits
    of the released commit (``{date}-{short_sha}``). A commit that already carries a tag matching the template
    is not tagged again: re-running with nothing changed makes no commit and no tag.
    ``keep_remote``: remote paths (fnmatch) the push keeps although the published folder lacks them; every other
    remote file the folder lacks is deleted in the same commit.
    ``dataset_id``: the Hub id of the training data when it was read from local files (the card's ``datasets:``
    and model-index name it); data read from the Hub is named by its own id without it.
    """

    repo_id: str | None = None
    private: bool = True
    revision: str | None = None
    tag: str | None = None
    create_pr: bool = False
    license: str = "apache-2.0"
    language: str = "en"
    tags: list[str] = field(default_factory=list)
    keep_remote: list[str] = field(default_factory=list)
    dataset_id: str | None = None

    def validate(self) -> None:
        if self.tag is not None:
            check_tag_template(self.tag)


VARIANT_NAMES = {"int8": "onnx-int8", "o1": "onnx-O1", "o2": "onnx-O2", "o3": "onnx-O3"}


@dataclass
class ExportSettings:
    """``require_variants``: optional ONNX variants (``int8``, ``O1``-``O3``) whose refusal by their gate fails
    the run (exit 13) before anything is pushed; a refused variant not listed is published without, and said so."""

    onnx: bool = True
    optimize: typing.Literal["O1", "O2", "O3"] | None = None
    quantize: typing.Literal["int8"] | None = None
    openvino: bool = False  # also openvino/: OpenVINO's IR of model.onnx through the same gate (export --openvino)
    tolerance: float = 1e-4
    require_variants: list[str] = field(default_factory=list)

    def required(self) -> list[str]:
        """The required variants by their export names (``onnx-int8``, ``onnx-O2``)."""
        return [VARIANT_NAMES[v.lower().removeprefix("onnx-")] for v in self.require_variants]

    def validate(self) -> None:
        if self.openvino:  # the IR is converted from onnx/model.onnx; OpenVINO checked before any work
            if not self.onnx:
                raise ConfigError("export.openvino converts onnx/model.onnx, and export.onnx is false; expected "
                                  "export.onnx true (--set export.onnx=true), or drop export.openvino")
            from hubtune.core.ov_session import require

            require("export.openvino")
        for v in self.require_variants:
            key = v.lower().removeprefix("onnx-")
            if key not in VARIANT_NAMES:
                raise ConfigError(f"export.require_variants names {v!r}; expected int8, O1, O2 or O3 (--require-variant)")
            built = self.onnx and (self.quantize == "int8" if key == "int8" else (self.optimize or "").lower() == key)
            if not built:
                raise ConfigError(
                    f"--require-variant {v} asks for a variant this run does not build (export.onnx {self.onnx}, "
                    f"quantize {self.quantize}, optimize {self.optimize}); expected --set export.quantize=int8 / "
                    "export.optimize=O2, or drop --require-variant"
                )


@dataclass
class GateSettings:
    """Checks that stop ``train-and-push`` before anything is pushed."""

    min_metrics: dict[str, float] = field(default_factory=dict)
    merge_tolerance: float = 1e-4
    max_accuracy_drop: float = 0.5
    golden_examples: int = 32


@dataclass
class PipelineConfig(TrainConfig):
    """``hubtune train-and-push``: a TrainConfig plus publish, export and gate sections."""

    publish: PublishSettings = field(default_factory=PublishSettings)
    export: ExportSettings = field(default_factory=ExportSettings)
    gates: GateSettings = field(default_factory=GateSettings)
