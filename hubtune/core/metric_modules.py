"""Metric modules of the ``evaluate`` library, computed beside hubtune's built-in metrics (``--metric NAME``).

The built-in metrics (:mod:`hubtune.core.metrics`) are scikit-learn and need no network. ``--metric`` adds any
``evaluate`` module, loaded with ``evaluate.load``:

* a Hub id (``org/name``: the Space ``org/name`` holding ``name.py``; a bare ``name`` is the canonical
  ``evaluate-metric/name``), fetched from the endpoint every other Hugging Face client of this process uses
  (``HF_ENDPOINT``, the local Hub included: it serves ``/spaces/{id}/resolve/{revision}/{file}``);
* a local path: a folder holding ``<folder name>.py``, or the ``.py`` file itself.

Naming a module runs its code, as ``evaluate.load`` does: ``--metric`` is that request. A spec may carry
arguments for ``compute`` after the last ``:`` (``f1:average=macro``); values are read as YAML scalars.
Each module is computed on the same predictions as the built-in metrics (``predictions`` = predicted class
ids, ``references`` = true class ids; ``prediction_scores`` = probabilities when the module declares that
input). Results are a list of records, one per module::

    {"metric": "org/hits", "type": "org/hits", "source": "hub", "args": {...}, "values": {"hits": 0.75}}

``metric`` / ``type`` never hold a local absolute path (a local module is named by its folder).

Imports ``errors`` only.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from hubtune.core.errors import MetricComputeError, MetricModuleError

_ARGS_RE = re.compile(r"^[A-Za-z_]\w*=[^,]*(,[A-Za-z_]\w*=[^,]*)*$")
_HUB_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?$")


@dataclass(frozen=True)
class MetricSpec:
    spec: str  # as given
    path: str  # what evaluate.load gets
    kind: str  # "local" or "hub"
    args: tuple[tuple[str, Any], ...] = field(default_factory=tuple)

    @property
    def name(self) -> str:
        """The name to publish: the Hub id, or a local module's folder (file) name."""
        if self.kind == "hub":
            return self.path
        p = Path(self.path)
        return p.stem if p.suffix == ".py" else p.name

    @property
    def compute_args(self) -> dict[str, Any]:
        return dict(self.args)


def parse_metric_spec(spec: str) -> MetricSpec:
    """``NAME[:k=v,...]``: a local path when it exists (or looks like a path), else a Hub id."""
    import yaml

    text = str(spec).strip()
    args: dict[str, Any] = {}
    head, sep, tail = text.rpartition(":")
    if sep and head and _ARGS_RE.match(tail):
        text = head
        for pair in tail.split(","):
            k, v = pair.split("=", 1)
            args[k] = yaml.safe_load(v) if v else ""
    if not text:
        raise MetricModuleError(f"--metric {spec!r} names no module; expected a Hub id (org/name) or a local folder")
    expanded = os.path.expanduser(text)
    looks_local = os.path.exists(expanded) or text.startswith((".", "/", "~")) or text.endswith(".py") or "\\" in text
    if looks_local:
        kind = "local"
        if not os.path.exists(expanded):
            raise MetricModuleError(
                f"--metric {spec!r}: no such file or folder; expected a folder holding <folder name>.py or the "
                "metric script itself (or a Hub id org/name)"
            )
        path = expanded
    elif _HUB_RE.match(text) and ".." not in text:
        kind, path = "hub", text
    else:
        raise MetricModuleError(
            f"--metric {spec!r} is neither an existing local path nor a Hub id; expected org/name, a bare name "
            "(evaluate-metric/name) or a folder with a metric script"
        )
    return MetricSpec(spec=str(spec), path=path, kind=kind, args=tuple(sorted(args.items(), key=lambda kv: kv[0])))


def check_metric_specs(specs: Sequence[str]) -> list[MetricSpec]:
    """Parse every spec (no loading): the config check."""
    return [parse_metric_spec(s) for s in specs]


_LOADED: dict[tuple[str, str], Any] = {}


def _point_evaluate_at_endpoint() -> None:
    """evaluate copies HF_ENDPOINT into its config at import: follow the endpoint huggingface_hub uses now."""
    import evaluate.config as econfig

    try:
        from huggingface_hub import constants

        endpoint = str(getattr(constants, "ENDPOINT", "") or "").rstrip("/")
    except ImportError:  # pragma: no cover - huggingface_hub is a dependency
        endpoint = ""
    endpoint = endpoint or os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    econfig.HF_ENDPOINT = endpoint
    econfig.HUB_EVALUATE_URL = endpoint + "/spaces/{path}/resolve/{revision}/{name}"
    econfig.HF_UPDATE_DOWNLOAD_COUNTS = False  # no download-count pings to an outside bucket


def load_metric(spec: MetricSpec) -> Any:
    """The ``evaluate`` module of ``spec`` (cached per process and endpoint); MetricModuleError if it fails."""
    import evaluate

    _point_evaluate_at_endpoint()
    import evaluate.config as econfig

    evaluate.disable_progress_bar()  # a few hundred bytes of script: no bar

    key = (spec.path, econfig.HF_ENDPOINT if spec.kind == "hub" else "")
    if key in _LOADED:
        return _LOADED[key]
    where = spec.path if spec.kind == "local" else f"{econfig.HF_ENDPOINT}/spaces/{spec.path}"
    try:
        module = evaluate.load(spec.path)
    except (FileNotFoundError, ConnectionError, OSError) as exc:
        raise MetricModuleError(
            f"--metric {spec.spec}: the evaluate module was not found at {where} ({' '.join(str(exc).split())[:200]}); "
            "expected a Space org/name holding name.py on the Hub (HF_ENDPOINT), or a local folder with a metric script"
        ) from None
    except Exception as exc:  # noqa: BLE001 - the module's own code failed while loading
        raise MetricModuleError(
            f"--metric {spec.spec}: the evaluate module at {where} failed to load ({type(exc).__name__}: "
            f"{' '.join(str(exc).split())[:200]}); fix the metric script or drop --metric"
        ) from None
    _LOADED[key] = module
    return module


def load_metric_modules(specs: Sequence[str]) -> list[tuple[MetricSpec, Any]]:
    """Parse and load every spec; done before any work so a bad ``--metric`` fails first."""
    return [(m, load_metric(m)) for m in check_metric_specs(specs)]


def _input_names(module: Any) -> set[str]:
    feats = getattr(module, "features", None)
    feats = feats if isinstance(feats, list) else [feats] if feats is not None else []
    return {str(k) for f in feats for k in (f.keys() if hasattr(f, "keys") else [])}


def _scalars(values: Any, spec: MetricSpec) -> dict[str, float]:
    if not isinstance(values, dict):
        raise MetricComputeError(
            f"--metric {spec.spec} returned {type(values).__name__}; expected a dict of name -> number from compute()"
        )
    out: dict[str, float] = {}
    for k, v in values.items():
        try:
            import numpy as np

            arr = np.asarray(v, dtype=float)
        except (TypeError, ValueError):
            continue  # non-numeric parts (e.g. strings) are not published figures
        if arr.ndim == 0:
            out[str(k)] = float(arr)
    if not out:
        raise MetricComputeError(
            f"--metric {spec.spec} returned no scalar number ({sorted(values)}); expected compute() to return "
            "at least one number (pass arguments such as average=macro after ':')"
        )
    return out


def module_metrics(
    specs: Sequence[str],
    y_true: Sequence[int] | Any,
    y_pred: Sequence[int] | Any,
    probs: Any = None,
) -> list[dict[str, Any]]:
    """Compute every ``evaluate`` module of ``specs`` on these predictions; [] when ``specs`` is empty."""
    import numpy as np

    if not specs:
        return []
    refs = [int(x) for x in np.asarray(y_true).tolist()]
    preds = [int(x) for x in np.asarray(y_pred).tolist()]
    out = []
    for spec, module in load_metric_modules(specs):
        kwargs: dict[str, Any] = {"predictions": preds, "references": refs, **spec.compute_args}
        names = _input_names(module)
        if "prediction_scores" in names and probs is not None:
            p = np.asarray(probs)
            kwargs["prediction_scores"] = (p[:, 1] if p.ndim == 2 and p.shape[1] == 2 else p).tolist()
        try:
            values = module.compute(**kwargs)
        except Exception as exc:  # noqa: BLE001 - the module's own code
            raise MetricComputeError(
                f"--metric {spec.spec} failed on {len(refs)} predictions ({type(exc).__name__}: "
                f"{' '.join(str(exc).split())[:200]}); expected compute(predictions=class ids, references=class ids"
                "[, args after ':']): pass the arguments it needs (e.g. f1:average=macro) or drop it"
            ) from None
        out.append({"metric": spec.name, "type": spec.name, "source": spec.kind,
                    "args": spec.compute_args or None, "values": _scalars(values, spec)})
    return out


def flat(records: Sequence[dict[str, Any]] | None) -> dict[str, float]:
    """``{"org/hits.hits": 0.75, ...}``: one scalar per module value (for tables and JSON)."""
    out: dict[str, float] = {}
    for r in records or []:
        for k, v in r["values"].items():
            label = r["metric"] if k == r["metric"].split("/")[-1] else f"{r['metric']}.{k}"
            if r.get("args"):
                label += "(" + ",".join(f"{a}={b}" for a, b in r["args"].items()) + ")"
            out[label] = v
    return out
