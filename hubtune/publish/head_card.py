"""The model card of a run of the tasks beside single-label classification (multi-label classification,
regression, token classification): the published folder measured again on the run's held-out examples
(:mod:`hubtune.tasks.taskeval`), the figures in the card's table and its model-index (huggingface_hub ``EvalResult``,
the task's ``task_type``), the usage that reads the task's outputs with ``pipeline()``.

:func:`hubtune.publish.card.card` hands a run of these tasks here. Imports ``config``, ``metrics``, ``modeling``, ``rundir``,
``taskdata``, ``taskeval``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hubtune.core.modeling import is_adapter_dir
from hubtune.core.rundir import RunInfo, task_eval_examples
from hubtune.tasks.loading import evaluate_task_folder
from hubtune.tasks.registry import get_task

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
{% if onnx %}
## ONNX

`onnx/` holds ONNX graphs in Optimum's layout (output `logits`), each checked against the PyTorch model above on
{{ onnx_examples }} examples ({{ onnx_agrees }}):

| variant | file | size (MB) | agreement | max abs diff | CPU rows/s |
|:--|:--|--:|--:|--:|--:|
{% for v in onnx -%}
| {{ v.name }} | `{{ v.file }}` | {{ v.size_mb }} | {{ v.agreement }} | {{ v.max_diff }} | {{ v.rows_per_s }} |
{% endfor %}
{% if onnx_int8_note %}
{{ onnx_int8_note }}
{% endif %}
{% if openvino %}
`{{ openvino }}` is OpenVINO's IR of `onnx/model.onnx` (optimum-intel's layout), checked like it: optimum-intel's
`OVModelFor...from_pretrained(repo, subfolder="openvino")` loads it, and
`hubtune batch-predict --model REPO --dataset DATA --output preds.parquet --backend openvino` runs it.
{% endif %}
{% endif %}
{% if data_note %}
{{ data_note }}
{% endif %}
Trained with hubtune {{ hubtune_version }}.
"""


def task_card_parts(run: RunInfo, pub: Path, task: str, *, repo_id: str | None, model_name: str,
                    eval_override: str | None = None) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    """The card's metrics (of the published files), its EvalResult fields and its template variables."""
    t = get_task(task)
    names = [n for n in (run.summary.get("label_names") or [])] if t.has_labels else []
    data, role, spec = task_eval_examples(run, task, names, eval_override)
    metrics = evaluate_task_folder(str(pub), task, data.dataset, max_length=int(run.config.get("max_length") or 256))
    task_type, task_name = t.pipeline_tag, t.card_name
    results = [{"task_type": task_type, "task_name": task_name, "metric_type": METRIC_INFO[k][0],
                "metric_name": METRIC_INFO[k][1], "metric_args": METRIC_INFO[k][2], "metric_value": float(metrics[k])}
               for k in t.summary_keys if k in metrics]
    example = "The service was quick and the staff were friendly."
    graphs = onnx_rows(run, pub)
    variables = {
        "model_name": model_name, "task": task.replace("-", " "), "mode": run.mode or "full",
        "labels": names,
        "usage": t.usage.format(repo=repo_id or f"YOUR_ORG/{model_name}", example=example),
        "eval_role": role, "eval_examples": metrics.get("num_examples"), "eval_dataset": spec,
        "rows": [(METRIC_INFO[k][1], f"{metrics[k]:.4f}") for k in t.summary_keys if k in metrics],
        "is_adapter": is_adapter_dir(pub),
        "onnx": graphs, "onnx_agrees": t.agrees,
        "openvino": next((r["file"] for r in graphs if r["name"] == "openvino"), None),  # export --openvino
        "onnx_int8_note": int8_note(run, pub),
        "onnx_examples": (run.summary.get("export") or {}).get("num_examples"),
    }
    return metrics, results, variables


def int8_note(run: RunInfo, pub: Path) -> str | None:
    """What the published int8 file is, with its size and speed vs fp32 as the export measured them."""
    from hubtune.publish.variant_claims import int8_sentence

    rows = {r["name"] for r in onnx_rows(run, pub)}
    return int8_sentence(run.summary.get("variants") or {}) if "onnx-int8" in rows else None


def onnx_rows(run: RunInfo, pub: Path) -> list[dict[str, Any]]:
    """The ONNX variants the export recorded for the published folder (none when its ``onnx/`` is missing or
    was exported from other weights)."""
    from hubtune.core.errors import StaleOnnxError
    from hubtune.core.onnx_tools import FP32_FILE, check_matches_weights

    graph = pub / "onnx" / FP32_FILE
    if not graph.is_file():
        return []
    try:
        check_matches_weights(graph, pub)
    except StaleOnnxError:
        return []
    rows = []
    for name, v in (run.summary.get("variants") or {}).items():
        if name == "pytorch" or not v.get("file") or not (pub / v["file"].split(",")[0].strip()).is_file():
            continue
        par = v.get("parity") or {}
        speed = (v.get("throughput") or {}).get("rows_per_s")
        rows.append({"name": name, "file": v["file"], "size_mb": f"{float(v.get('size_mb') or 0):.2f}",
                     "agreement": f"{float(par.get('label_agreement', 0)):.2%}",
                     "max_diff": f"{float(par.get('max_abs_diff', 0)):.2g}", "rows_per_s": speed if speed else "-"})
    return rows
