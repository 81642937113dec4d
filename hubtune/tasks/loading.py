"""A checkpoint loaded for its task: the task resolved (``--task``, or what the checkpoint's files say, among the
tasks the command serves; a checkpoint without the trained head for it refused, exit 59) and the model loaded with
that task's transformers class (full model, peft adapter on its base, or a bottleneck adapter), in eval mode:
``load_classifier`` (batch-predict, evaluate, export, merge, card), ``load_task_model`` (a folder of a task that
normalises its own data, with its metrics: ``evaluate_task_folder``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from hubtune.core.adapterhub import is_bottleneck_dir
from hubtune.core.compat import dtype_kwargs, quiet_libraries
from hubtune.core.errors import ConfigError, MissingDependencyError, ModelLoadError
from hubtune.core.modeling import (
    check_tokenizer_fits,
    effective_max_length,
    ensure_pad_token,
    is_adapter_dir,
    label_names_from_config,
    model_load_error,
    pick_device,
    resolve_model_source,
)
from hubtune.core.security import check_model_config
from hubtune.tasks.base import (CheckpointTask, adapter_config_task, check_loading_info, check_task_name, checkpoint_task,
                                missing_head_error)
from hubtune.tasks.registry import REGISTRY, get_task, task_names


def classifier_tasks() -> tuple[str, ...]:
    """What load_classifier serves unless asked: the tasks batch-predict serves with a head (not an embedding)."""
    return task_names(predicts=True, embeds=False)


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    label_names: list[str]
    is_adapter: bool
    base_model: str | None
    source: str
    max_length: int
    task: str = "text-classification"  # one of hubtune.tasks.base.TASKS
    checkpoint: CheckpointTask | None = None  # what the checkpoint's files say (architecture, pooling)


def declared_task(config: Any, model_dir: str | Path | None = None) -> CheckpointTask:
    """What a checkpoint's files say (:func:`hubtune.tasks.base.checkpoint_task`), a registered task that
    declares it first."""
    found = checkpoint_task(config, model_dir)
    cfg = config if isinstance(config, dict) else config.to_dict()
    spec = next((t for t in REGISTRY.values() if t.declares(cfg)), None)
    if spec is None:
        return found
    return CheckpointTask(spec.name, found.architecture, found.num_labels, None, found.label_names)


def resolve_task(config: Any, requested: str | None, *, source: str, model_dir: str | Path | None = None,
                 served: Iterable[str] | None = None, peft_task_type: str | None = None) -> tuple[str, CheckpointTask]:
    """(the task to run, what the checkpoint says): ``requested`` (``--task``) or the checkpoint's own task; a
    checkpoint without the head that task needs is a :class:`ModelTaskError`. ``served``: the tasks the calling
    command runs (evaluate, export, card: the sequence-classification ones); ``peft_task_type``: a peft adapter's
    ``task_type``, whose head the adapter carries."""
    if peft_task_type is not None:
        config = adapter_config_task(config, peft_task_type)
    found = declared_task(config, model_dir)
    known = task_names(predicts=True)
    served = tuple(known if served is None else served)
    task = check_task_name(requested, known=known)
    if task is None:
        task = found.task if found.task in known else known[0]
        if task not in served:  # e.g. an embedding model handed to evaluate: it has no classifier to evaluate
            task = served[0]
    if task not in served:
        raise ConfigError(f"--task {task} is not served here; expected one of {', '.join(served)}")
    if not get_task(task).served_by(found):
        raise missing_head_error(source, task, found, served=served)
    return task, found



def load_classifier(
    source: str,
    *,
    revision: str | None = None,
    trust_remote_code: bool = False,
    device: str | None = "cpu",
    torch_dtype: Any = None,
    task: str | None = None,
    served: Sequence[str] | None = None,
    display: str | None = None,
) -> LoadedModel:
    """Load a classifier (full model or LoRA adapter) and its tokenizer, in eval mode, for ``task`` (``--task``;
    None: the task the checkpoint has, among ``served``): a sequence classifier (single-label, multi-label,
    regression), a token classifier, or with ``task="feature-extraction"`` the encoder alone. A checkpoint whose
    head for that task is missing (its config names no such head, or loading it leaves weights newly
    initialised) is a :class:`~hubtune.core.errors.ModelTaskError`, before anything is predicted with it; ``display``:
    the model's name in that message (default ``source``)."""
    import transformers
    from transformers import AutoConfig, AutoTokenizer

    quiet_libraries(progress=True)
    dev = pick_device(device)
    given = display or source
    source = resolve_model_source(source)
    local = Path(source)
    is_adapter = local.is_dir() and is_adapter_dir(local)
    if not is_adapter and not local.is_dir():
        try:
            from huggingface_hub import file_exists

            is_adapter = file_exists(source, "adapter_config.json", revision=revision) and not file_exists(
                source, "model.safetensors", revision=revision
            )
        except Exception:  # noqa: BLE001 - not reachable / not a repo: the normal load below says so
            is_adapter = False
    base_model = None
    check_model_config(source, revision=revision)
    try:
        cfg = AutoConfig.from_pretrained(source, revision=revision, trust_remote_code=trust_remote_code)
    except Exception as exc:  # noqa: BLE001 - transformers raises OSError/ValueError/HF errors
        raise model_load_error(source, exc) from exc
    peft_cfg = None
    if is_adapter:
        from peft import PeftConfig

        try:
            peft_cfg = PeftConfig.from_pretrained(source, revision=revision)
        except Exception as exc:  # noqa: BLE001 - peft raises ValueError/OSError/HF errors
            raise model_load_error(source, exc) from exc
    served = classifier_tasks() if served is None else served
    task, found = resolve_task(cfg, task, source=given, model_dir=local if local.is_dir() else None, served=served,
                               peft_task_type=getattr(peft_cfg, "task_type", None) if peft_cfg else None)
    auto = getattr(transformers, get_task(task).auto_class)
    info: dict[str, Any] | None = None
    try:
        if local.is_dir() and is_bottleneck_dir(local):  # a bottleneck adapter (hubtune.core.adapterhub) on its base
            from hubtune.core.adapterhub import attach_bottleneck, bottleneck_base

            base_model = bottleneck_base(local)
            base_source = resolve_model_source(base_model)
            check_model_config(base_source)
            base = auto.from_pretrained(
                base_source, config=cfg, trust_remote_code=trust_remote_code, use_safetensors=True,
                **dtype_kwargs(torch_dtype),
            )
            model = attach_bottleneck(base, local)
        elif is_adapter:
            from peft import PeftModel

            base_model = peft_cfg.base_model_name_or_path
            check_model_config(base_model)
            base = auto.from_pretrained(
                base_model,
                config=cfg,
                trust_remote_code=trust_remote_code,
                use_safetensors=True,
                **dtype_kwargs(torch_dtype),
            )
            model = PeftModel.from_pretrained(base, source, revision=revision)
        else:
            model, info = auto.from_pretrained(
                source,
                config=cfg,
                revision=revision,
                trust_remote_code=trust_remote_code,
                use_safetensors=True,
                output_loading_info=True,
                **dtype_kwargs(torch_dtype),
            )
            cfg = model.config
        tokenizer = AutoTokenizer.from_pretrained(source, revision=revision, trust_remote_code=trust_remote_code)
    except (ModelLoadError, MissingDependencyError):
        raise
    except Exception as exc:  # noqa: BLE001 - transformers raises OSError/ValueError/HF errors
        raise model_load_error(source, exc) from exc
    check_loading_info(given, task, found, info, get_task(task).unused_missing)  # an adapter brings its head (modules_to_save) itself
    check_tokenizer_fits(tokenizer, model, given)
    ensure_pad_token(tokenizer, model.config, source)
    if cfg is not model.config:
        cfg.pad_token_id = model.config.pad_token_id
    model.to(dev)
    model.eval()
    names = [] if get_task(task).embeds else label_names_from_config(cfg)
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        label_names=names,
        is_adapter=is_adapter,
        base_model=base_model,
        source=source,
        max_length=effective_max_length(tokenizer, cfg),
        task=task,
        checkpoint=found,
    )


def load_task_model(source: str, task: str, *, device: str | None = "cpu") -> LoadedModel:
    """A saved folder of ``task`` (a full model, or a LoRA adapter on its base), in eval mode: the one loader
    (:func:`load_classifier`) with that task asked, its label names as the task reads them."""
    loaded = load_classifier(source, device=device, task=task, served=task_names(predicts=True))
    spec = get_task(task)
    if not spec.has_labels:  # a regression value: named as the task names it
        loaded.label_names = spec.label_names(loaded.model.config)
    return loaded


def evaluate_task_folder(source: str, task: str, ds: Any, *, max_length: int | None = None) -> dict[str, Any]:
    """Load a saved folder of ``task`` and measure it on normalised data ``ds`` (the card's figures)."""
    from types import SimpleNamespace

    loaded = load_task_model(source, task)
    loaded.max_length = min(max_length or loaded.max_length, loaded.max_length)
    return get_task(task).evaluate(loaded, SimpleNamespace(dataset=ds))
