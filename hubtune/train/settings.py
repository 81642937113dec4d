"""Trainer settings beside the hand-mirrored keys: the ``report_to`` integrations (installed, checked before any work)
and class weights for classification (``class_weights: balanced | {label: weight}``: weighted cross-entropy handed
to the Trainer as its ``compute_loss_func``).

Pieces module of the train package: imports :mod:`hubtune.core.errors` only.
"""

from __future__ import annotations

import difflib
from typing import Any, Callable, Mapping, Sequence

from hubtune.core.errors import ConfigError, MissingDependencyError

# report_to name -> (the availability check in transformers.integrations, the pip line that installs it)
_INTEGRATIONS = {
    "tensorboard": ("is_tensorboard_available", "pip install tensorboard"),
    "wandb": ("is_wandb_available", "pip install wandb"),
    "mlflow": ("is_mlflow_available", "pip install mlflow"),
    "comet_ml": ("is_comet_available", "pip install comet-ml"),
    "azure_ml": ("is_azureml_available", "pip install azureml-core"),
    "neptune": ("is_neptune_available", "pip install neptune"),
    "clearml": ("is_clearml_available", "pip install clearml"),
    "codecarbon": ("is_codecarbon_available", "pip install codecarbon"),
    "dagshub": ("is_dagshub_available", "pip install dagshub mlflow"),
    "flyte": ("is_flytekit_available", "pip install flytekit flytekitplugins-deck-standard"),
    "dvclive": ("is_dvclive_available", "pip install dvclive"),
    "swanlab": ("is_swanlab_available", "pip install swanlab"),
    "trackio": ("is_trackio_available", "pip install trackio"),
    "kubeflow": ("is_kubeflow_available", "pip install kubeflow"),
}


def check_report_to(report_to: Sequence[str]) -> None:
    """Every ``report_to`` integration is one the installed transformers knows and its library is installed; else
    ConfigError (naming the closest) or MissingDependencyError (naming the pip line), before anything is written."""
    from transformers import integrations
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

    known = sorted(INTEGRATION_TO_CALLBACK)
    for name in report_to:
        if name in ("none", "all"):  # all: transformers picks the installed ones
            continue
        if name not in INTEGRATION_TO_CALLBACK:
            match = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
            hint = f"did you mean '{match[0]}'?" if match else f"expected one of none, all, {', '.join(known)}"
            raise ConfigError(f"report_to names {name!r}, which this transformers does not know; {hint} "
                              "(--set report_to=NAME)")
        check, pip = _INTEGRATIONS.get(name, (f"is_{name}_available", f"pip install {name.replace('_', '-')}"))
        available = getattr(integrations, check, None)
        if available is not None and not available():
            raise MissingDependencyError(
                f"report_to {name} needs the {name} library, which is not installed; expected it installed: "
                f"{pip} (or drop {name} from report_to, e.g. --set report_to=none)"
            )


def class_weight_vector(spec: str | Mapping[str, float], train_labels: Sequence[int], label_names: Sequence[str]) -> list[float]:
    """One weight per class: ``balanced`` is scikit-learn's ``n_samples / (n_classes * count)`` over the train
    labels (a class absent from them gets 1.0); a mapping weights the classes it names (the others 1.0)."""
    if isinstance(spec, str):
        counts = [0] * len(label_names)
        for y in train_labels:
            counts[int(y)] += 1
        n, k = len(train_labels), len(label_names)
        return [n / (k * c) if c else 1.0 for c in counts]
    unknown = [name for name in spec if name not in label_names]
    if unknown:
        raise ConfigError(
            f"class_weights names {', '.join(map(repr, unknown))}, not a label of the training data; expected one of "
            f"{', '.join(label_names)} (fix class_weights in the YAML or --set class_weights.LABEL=WEIGHT)"
        )
    return [float(spec.get(name, 1.0)) for name in label_names]


def weighted_loss(weights: Sequence[float], label_smoothing: float = 0.0) -> Callable[..., Any]:
    """The Trainer's ``compute_loss_func``: cross-entropy weighted by the true class, summed and divided by the
    batch's item count (the Trainer passes it across gradient accumulation; without it, the batch size)."""
    import torch

    table = torch.tensor(list(weights), dtype=torch.float32)

    def loss(outputs: Any, labels: Any, num_items_in_batch: Any = None) -> Any:
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs.logits
        logits = logits.float().view(-1, logits.shape[-1])
        labels = labels.view(-1).to(logits.device)
        w = table.to(logits.device)
        per_item = torch.nn.functional.cross_entropy(logits, labels, reduction="none", label_smoothing=label_smoothing)
        total = (w[labels] * per_item).sum()
        count = num_items_in_batch if num_items_in_batch is not None else labels.numel()
        if torch.is_tensor(count):
            count = count.to(total.device)
        return total / count

    return loss
