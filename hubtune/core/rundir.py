"""Shared run-directory helpers (not a step) for ``merge``, ``export`` and ``card``.

* :func:`find_run_dir` recognises a run directory, or a folder inside one (``RUN_DIR/model``, ``RUN_DIR/merged``).
* :func:`published_dir` is the folder that will be published: ``merged/`` when a LoRA run was merged,
  else ``model/`` (a full model, or the adapter itself).
* :func:`eval_data` loads the labeled held-out examples of a run (``--eval-dataset`` > ``data.eval_dataset``
  > the validation split that ``train`` carved out, rebuilt deterministically from the seed).
* :func:`task_eval_examples` loads them for a multi-label / regression / token-classification run
  (normalised as :mod:`hubtune.tasks.taskdata` reads that task's data).
* :func:`update_summary` records a step's figures under one key of ``run_summary.json``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hubtune.core.errors import ConfigError, DataError
from hubtune.core.layout import RunLayout
# what a run directory is, and its published folder, belong to the model references every command reads
from hubtune.core.modeling import find_run_dir, is_adapter_dir, is_run_dir, published_dir, read_json, write_json  # noqa: F401


@dataclass
class RunInfo:
    root: Path
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def layout(self) -> RunLayout:
        return RunLayout.of(self.root)

    @property
    def data_config(self) -> dict[str, Any]:
        return dict(self.config.get("data") or {})

    @property
    def mode(self) -> str:
        return str(self.config.get("mode") or self.summary.get("mode") or ("lora" if is_adapter_dir(self.layout.model_dir) else "full"))

    @property
    def base_model(self) -> str | None:
        return self.config.get("base_model") or self.summary.get("base_model")


def load_run(root: str | os.PathLike[str]) -> RunInfo:
    lay = RunLayout.of(root)
    config: dict[str, Any] = {}
    if lay.config.is_file():
        import yaml

        try:
            config = yaml.safe_load(lay.config.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{lay.config} is not valid YAML ({' '.join(str(exc).split())}); re-run hubtune train") from None
    summary = read_json(lay.summary) if lay.summary.is_file() else {}
    metrics = read_json(lay.metrics) if lay.metrics.is_file() else {}
    return RunInfo(root=Path(root), config=config, summary=summary, metrics=metrics)


def update_summary(root: str | os.PathLike[str], key: str, value: Any) -> None:
    """Set ``run_summary.json[key] = value`` (read-modify-write, atomic replace)."""
    path = RunLayout.of(root).summary
    data = read_json(path) if path.is_file() else {}
    data[key] = value
    write_json(path, data)


def resolve_local_spec(spec: str, root: str | os.PathLike[str] | None) -> str:
    """A dataset spec recorded relative to where ``train`` ran: try it as given, then beside the run dir."""
    from hubtune.data.dataset import parse_spec

    try:
        parsed = parse_spec(spec)
    except DataError:
        return spec
    if parsed.kind != "local" or Path(parsed.path).exists() or root is None or Path(parsed.path).is_absolute():
        return spec
    base = Path(root).resolve()
    for anc in [base, *base.parents][:6]:
        cand = anc / parsed.path
        if cand.exists():
            return str(cand)
    return spec


@dataclass
class EvalData:
    data: Any  # hubtune.data.dataset.LoadedData
    spec: str  # what the examples are, as recorded (never an absolute path when it came from the run)
    split: str | None = None
    # "test": a split that played no part in training or model selection; "validation": the split that chose
    # the checkpoint (no separate test split was given); "given": examples passed explicitly (--eval-dataset)
    role: str = "validation"


def eval_data(
    run: RunInfo | None,
    label_names: list[str],
    *,
    override: str | None = None,
    max_samples: int | None = None,
) -> EvalData | None:
    """Labeled examples to report, mapped onto ``label_names``: the run's test split when it has one, else the
    validation examples that chose the checkpoint (``role`` says which); None when nothing is known."""
    from hubtune.data.dataset import load_labeled, load_train_eval

    dc = run.data_config if run else {}
    cols = {k: dc.get(k) for k in ("text_column", "text_pair_column", "label_column")}
    enc = dc.get("encoding") or "utf-8"
    seed = int(dc.get("seed") or 42)
    if override:
        data = load_labeled(override, label_names=label_names, max_samples=max_samples, seed=seed, encoding=enc, **cols)
        return EvalData(data=data, spec=override, role="given")
    if run is None or not dc.get("dataset"):
        return None
    if dc.get("test_dataset"):
        spec = str(dc["test_dataset"])
        caps = [int(v) for v in (max_samples, dc.get("test_max_samples")) if v is not None]
        data = load_labeled(resolve_local_spec(spec, run.root), label_names=label_names,
                            max_samples=min(caps) if caps else None, seed=seed, encoding=enc, **cols)
        return EvalData(data=data, spec=spec, split="test", role="test")
    # the run's own held-out set (eval_max_samples), capped further by ``max_samples`` when that is smaller
    caps = [int(v) for v in (max_samples, dc.get("eval_max_samples")) if v is not None]
    limit = min(caps) if caps else None
    if dc.get("eval_dataset"):
        spec = str(dc["eval_dataset"])
        data = load_labeled(
            resolve_local_spec(spec, run.root), label_names=label_names, max_samples=limit, seed=seed, encoding=enc, **cols
        )
        return EvalData(data=data, spec=spec)
    # the validation split train carved out of data.dataset (deterministic by seed)
    from hubtune.core.config import DataConfig, from_dict

    dc2 = dict(dc)
    dc2["dataset"] = resolve_local_spec(str(dc["dataset"]), run.root)
    if limit is not None:
        dc2["eval_max_samples"] = limit
    cfg = from_dict(DataConfig, dc2)
    both = load_train_eval(cfg)
    if list(both.label_names) != list(label_names):
        raise DataError(
            f"the run's validation split has labels {both.label_names}, the model has {label_names}; "
            "pass --eval-dataset with examples labeled like the model"
        )
    return EvalData(data=both.eval, spec=f"{dc['dataset']} (validation_split={cfg.validation_split})", split="validation")


def task_eval_examples(run: RunInfo, task: str, label_names: list[str], override: str | None = None) -> tuple[Any, str, str | None]:
    """The run's held-out examples for ``task``: ``override``, the test split, else the validation examples that
    chose the checkpoint (the same split as training carved, from the same seed). (data, role, spec)."""
    from hubtune.core.config import DataConfig, from_dict
    from hubtune.data.examples import load_task_labeled, load_task_train_eval
    from hubtune.tasks.registry import get_task

    task = get_task(task)  # its own normalisation of the data (label names ignored where it has none)

    dc = dict(run.data_config)
    dc["dataset"] = resolve_local_spec(str(dc["dataset"]), run.root)
    cfg = from_dict(DataConfig, dc)
    spec = override or dc.get("test_dataset")
    if spec:
        data = load_task_labeled(resolve_local_spec(str(spec), run.root), cfg, task, label_names,
                                 max_samples=None if override else cfg.test_max_samples)
        return data, "the given examples" if override else "the test split", str(spec)
    return load_task_train_eval(cfg, task).eval, "the validation examples that chose the checkpoint", dc.get("eval_dataset")
