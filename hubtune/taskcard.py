"""The model card of a run of the tasks beside single-label classification (multi-label classification,
regression, token classification): the published folder measured again on the run's held-out examples
(:mod:`hubtune.taskeval`), the figures in the card's table and its model-index (huggingface_hub ``EvalResult``,
the task's ``task_type``), the usage that reads the task's outputs with ``pipeline()``.

:func:`hubtune.card.card` hands a run of these tasks here. Imports ``config``, ``metrics``, ``modeling``, ``rundir``,
``taskdata``, ``taskeval``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hubtune.config import DataConfig, from_dict
from hubtune.metrics import TASK_SUMMARY_KEYS
from hubtune.modeling import is_adapter_dir
from hubtune.rundir import RunInfo, resolve_local_spec
from hubtune.taskdata import load_task_labeled, load_task_train_eval
from hubtune.taskeval import evaluate_task_folder

TASK_NAMES = {"multi-label-classification": ("text-classification", "Multi-label Text Classification"),
              "regression": ("text-classification", "Text Regression"),
              "token-classification": ("token-classification", "Token Classification")}
# key -> metric type, display name, args (the model-index's fields)
METRIC_INFO = {
    "f1_micro": ("f1", "F1 (micro)", {"average": "micro"}), "f1_macro": ("f1", "F1 (macro)", {"average": "macro"}),
    "subset_accuracy": ("accuracy", "Subset accuracy", None),
    "precision_micro": ("precision", "Precision (micro)", {"average": "micro"}),
    "recall_micro": ("recall", "Recall (micro)", {"average": "micro"}),
    "mse": ("mse", "MSE", None), "mae": ("mae", "MAE", None), "rmse": ("mse", "RMSE", {"squared": False}),
    "pearson": ("pearsonr", "Pearson r", None), "spearman": ("spearmanr", "Spearman rho", None), "r2": ("r_squared", "R2", None),
    "precision": ("precision", "Precision (entities, seqeval)", {"average": "micro", "level": "entity"}),
    "recall": ("recall", "Recall (entities, seqeval)", {"average": "micro", "level": "entity"}),
    "f1": ("f1", "F1 (entities, seqeval)", {"average": "micro", "level": "entity"}), "accuracy": ("accuracy", "Token accuracy", None),
}
USAGE = {
    "multi-label-classification": 'pipe = pipeline("text-classification", model="{repo}")\n'
                                  'pipe("{example}", function_to_apply="sigmoid", top_k=None)  # a score per label; '
                                  'labels >= 0.5 apply',
    "regression": 'pipe = pipeline("text-classification", model="{repo}")\n'
                  'pipe("{example}", function_to_apply="none")[0]["score"]  # the predicted value',
    "token-classification": 'pipe = pipeline("token-classification", model="{repo}", aggregation_strategy="simple")\n'
                            'pipe("Anna Berg works for Acme Corp in Oslo.")  # entities with start/end offsets',
}
TEMPLATE = """---
{{ card_data }}
---

# {{ model_name }}

A {{ task }} model fine-tuned from {{ base_model_display }} with hubtune ({{ mode }}),
on {{ train_dataset }}{% if labels %}; labels: {{ labels | join(", ") }}{% endif %}.

## Usage

```python
from transformers import pipeline

{{ usage }}
```

## Evaluation

Measured on the published files, reloaded, on {{ eval_role }} ({{ eval_examples }} examples{% if eval_dataset %}, {{ eval_dataset }}{% endif %}):

| metric | value |
|---|---|
{% for k, v in rows %}| {{ k }} | {{ v }} |
{% endfor %}
{% if data_note %}
{{ data_note }}
{% endif %}
Trained with hubtune {{ hubtune_version }}.
"""


def task_eval_examples(run: RunInfo, task: str, label_names: list[str], override: str | None = None) -> tuple[Any, str, str | None]:
    """The run's held-out examples for ``task``: ``override``, the test split, else the validation examples that
    chose the checkpoint (the same split as training carved, from the same seed). (data, role, spec)."""
    dc = dict(run.data_config)
    dc["dataset"] = resolve_local_spec(str(dc["dataset"]), run.root)
    cfg = from_dict(DataConfig, dc)
    spec = override or dc.get("test_dataset")
    if spec:
        data = load_task_labeled(resolve_local_spec(str(spec), run.root), cfg, task, label_names,
                                 max_samples=None if override else cfg.test_max_samples)
        return data, "the given examples" if override else "the test split", str(spec)
    return load_task_train_eval(cfg, task).eval, "the validation examples that chose the checkpoint", dc.get("eval_dataset")


def task_card_parts(run: RunInfo, pub: Path, task: str, *, repo_id: str | None, model_name: str,
                    eval_override: str | None = None) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    """The card's metrics (of the published files), its EvalResult fields and its template variables."""
    names = [n for n in (run.summary.get("label_names") or [])]
    data, role, spec = task_eval_examples(run, task, None if task == "regression" else names, eval_override)
    metrics = evaluate_task_folder(str(pub), task, data.dataset, max_length=int(run.config.get("max_length") or 256))
    task_type, task_name = TASK_NAMES[task]
    results = [{"task_type": task_type, "task_name": task_name, "metric_type": METRIC_INFO[k][0],
                "metric_name": METRIC_INFO[k][1], "metric_args": METRIC_INFO[k][2], "metric_value": float(metrics[k])}
               for k in TASK_SUMMARY_KEYS[task] if k in metrics]
    example = "The service was quick and the staff were friendly."
    variables = {
        "model_name": model_name, "task": task.replace("-", " "), "mode": run.mode or "full",
        "labels": names if task != "regression" else [],
        "usage": USAGE[task].format(repo=repo_id or f"YOUR_ORG/{model_name}", example=example),
        "eval_role": role, "eval_examples": metrics.get("num_examples"), "eval_dataset": spec,
        "rows": [(METRIC_INFO[k][1], f"{metrics[k]:.4f}") for k in TASK_SUMMARY_KEYS[task] if k in metrics],
        "is_adapter": is_adapter_dir(pub),
    }
    return metrics, results, variables
