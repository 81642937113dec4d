"""The task registry: a task's name to its object (:class:`hubtune.tasks.base.Task`). Every step asks it
(``get_task``) and never compares a task's name; the CLI's ``--task`` choices come from ``task_names``.

The built-in tasks are its modules, one per task; ``register`` adds another (a plugin, a test's toy task).
Nothing here imports torch: ``hubtune --help`` lists the tasks without it."""

from __future__ import annotations

from typing import Any

from hubtune.core.errors import ConfigError
from hubtune.tasks.base import Task
from hubtune.tasks.feature_extraction import FeatureExtraction
from hubtune.tasks.generation import Text2TextGeneration
from hubtune.tasks.language_models import FillMask, GenerativeClassification, TextGeneration
from hubtune.tasks.multi_label import MultiLabelClassification
from hubtune.tasks.regression import Regression
from hubtune.tasks.text_classification import TextClassification
from hubtune.tasks.token_classification import TokenClassification

REGISTRY: dict[str, Task] = {}


def register(task: Task, *, replace: bool = False) -> Task:
    """Add ``task`` under its name (a name already taken is refused unless ``replace``)."""
    if not task.name:
        raise ConfigError(f"task {task!r} has no name; expected a Task subclass with name set")
    if task.name in REGISTRY and not replace:
        raise ConfigError(f"task {task.name} is registered already; expected a new name (or replace=True)")
    REGISTRY[task.name] = task
    return task


def unregister(name: str) -> None:
    REGISTRY.pop(name, None)


for _task in (TextClassification(), MultiLabelClassification(), Regression(), TokenClassification(),
              FeatureExtraction(), FillMask(), TextGeneration(), GenerativeClassification(), Text2TextGeneration()):
    register(_task)


def task_names(*, trained: bool | None = None, predicts: bool | None = None, **facts: Any) -> tuple[str, ...]:
    """The registered names, in registration order, of the tasks with these facts (``trained``: hubtune trains
    it; ``predicts``: batch-predict serves it; any other Task attribute by name)."""
    out = []
    for name, t in REGISTRY.items():
        if trained is not None and (t.recipe is not None) != trained:
            continue
        if predicts is not None and bool(t.predicts) != predicts:
            continue
        if any(getattr(t, k) != v for k, v in facts.items()):
            continue
        out.append(name)
    return tuple(out)


def get_task(task: str | Task | None, *, flag: str = "--task", served: tuple[str, ...] | None = None) -> Task:
    """The object of ``task`` (a name, or an object already); an unknown name is a ConfigError listing the names
    (``served``: the ones the asking command runs; default every registered task)."""
    if isinstance(task, Task):
        return task
    names = tuple(served) if served is not None else tuple(REGISTRY)
    if task in REGISTRY and (served is None or task in names):
        return REGISTRY[str(task)]
    raise ConfigError(f"{flag} {task!r} is unknown; expected one of {', '.join(names)} (or leave it out to use the "
                      "task the checkpoint has)")


def find_task(task: str | None) -> Task | None:
    """The object of ``task``, or None for a name no task has (a checkpoint's other head, no task at all)."""
    return REGISTRY.get(str(task)) if task else None
