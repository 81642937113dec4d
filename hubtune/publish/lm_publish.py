"""Publishing language models (``task: fill-mask`` / ``text-generation``): the steps after training that
``train-and-push`` runs for them, beside the classifier's ``export`` and ``card``.

* :func:`lm_export` writes ``model/onnx/model.onnx`` (logits for every position) through Optimum's exporter
  where it supports the installed transformers (``main_export`` with the run's task), else
  ``torch.onnx.export(dynamo=True)``; then the parity gate: ONNX Runtime's logits on the probe texts equal
  PyTorch's within ``tolerance`` and every position's top token agrees, or :class:`ExportParityError` (exit 13)
  stops the run before anything is pushed. ``export_info.json`` records the source weights' sha256.
* :func:`probe_texts`: deterministic probes from the run's eval texts: a masked word (fill-mask) or a prompt
  (text-generation), the golden examples the fresh-process verification compares.
* :func:`lm_card` writes README.md: pipeline tag, base model, datasets, the perplexity before and after training
  (model-index: the ``perplexity`` of the published model), the usage with ``pipeline()`` and ONNX Runtime.

Imports ``card`` (public helpers), ``compat``, ``data``, ``errors``, ``onnx_tools``, ``parity``, ``rundir``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from hubtune.core.errors import ConfigError, ExportParityError
from hubtune.core.onnx_tools import FP32_FILE, copy_model_files, exporter_label, feeds_for, graph_opset, session, write_info
from hubtune.core.parity import compare_logits, file_sha256, size_mb, weight_files
from hubtune.core.rundir import RunInfo, load_run, resolve_local_spec, update_summary
from hubtune.tasks.registry import find_task, get_task

Say = Callable[[str], None]


def probe_texts(task: str, texts: list[str], mask_token: str | None, n: int = 16) -> list[str]:
    """Up to ``n`` probes: the first words of each text with its middle word masked (fill-mask), or its first
    words as a prompt (text-generation). Deterministic: no sampling."""
    spec = get_task(task)
    out = []
    for t in texts:
        probe = spec.probe(t, mask_token)
        if probe is None:
            continue
        out.append(probe)
        if len(out) >= n:
            break
    return out


def run_eval_texts(run: RunInfo, n: int = 64) -> list[str]:
    """Texts of the run's eval data (``data.eval_dataset``, else the train data's rows after the carve-out)."""
    from hubtune.data.dataset import load_labeled

    dc = run.data_config
    spec = dc.get("eval_dataset") or dc.get("dataset")
    if not spec:
        return []
    cols = {k: dc.get(k) for k in ("text_column", "text_pair_column", "label_column")}
    data = load_labeled(resolve_local_spec(str(spec), run.root), default_split="validation" if dc.get("eval_dataset") else "train",
                        require_label=False, max_samples=n, seed=int(dc.get("seed") or 42),
                        encoding=dc.get("encoding") or "utf-8", **cols)  # type: ignore[arg-type]
    return [str(t) for t in data.dataset["text"]]


def run_task(run_dir: str | Path) -> str | None:
    """The task a run directory was trained for (None when ``run_dir`` is no run directory)."""
    from hubtune.core.rundir import find_run_dir

    root = find_run_dir(run_dir)
    return str(load_run(root).config.get("task") or "") or None if root is not None else None


def is_lm_run(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` is a run of a language-model task (fill-mask, text-generation): its own card."""
    spec = find_task(run_task(run_dir))
    return spec is not None and spec.language_model


@dataclass
class LmExportResult:
    onnx_path: str
    exporter: str
    parity: dict[str, Any] = field(default_factory=dict)


def _auto_cls(task: str) -> Any:
    import transformers

    return getattr(transformers, get_task(task).auto_class)


def _torch_export(model: Any, tokenizer: Any, out_file: Path, opset: int = 18) -> None:
    import torch

    names = ["input_ids", "attention_mask"]

    class Logits(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            return self.inner(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits

    sample = tokenizer(["an example text that is a little longer than the other", "short one"], padding=True,
                       return_tensors="pt")
    dims = {0: torch.export.Dim("batch_size"), 1: torch.export.Dim("sequence_length")}
    with torch.no_grad():
        program = torch.onnx.export(
            Logits(model).eval(), (sample["input_ids"], sample["attention_mask"]), None, input_names=names,
            output_names=["logits"], dynamic_shapes={n: dims for n in names}, dynamo=True, external_data=False,
            opset_version=opset, optimize=True, verbose=False,
        )
    program.save(str(out_file), external_data=False)


def lm_export(run_dir: str | Path, *, tolerance: float = 1e-3, say: Say | None = None) -> LmExportResult:
    """Export ``model/`` to ``model/onnx/model.onnx`` and gate it on logit parity over the probe texts."""
    import numpy as np
    import torch
    from transformers import AutoTokenizer

    from hubtune.core.compat import optimum_exporter_available

    say = say or (lambda _m: None)
    run = load_run(run_dir)
    task = str(run.config.get("task"))
    model_dir = run.layout.model_dir
    out = model_dir / "onnx"
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = _auto_cls(task).from_pretrained(str(model_dir), use_safetensors=True).eval()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    out.mkdir(parents=True, exist_ok=True)
    if optimum_exporter_available():
        from optimum.exporters.onnx import main_export

        name = "optimum"
        say(f"export: {task} through Optimum's main_export")
        main_export(str(model_dir), output=str(out), task=task, do_validation=False, local_files_only=True)
    else:
        name = "torch"
        say(f"export: {task} through torch.onnx (dynamo); Optimum's exporter needs transformers < 4.58")
        _torch_export(model, tokenizer, out / FP32_FILE)
        copy_model_files(model_dir, out)
    if not (out / FP32_FILE).is_file():
        raise ExportParityError(f"the exporter wrote no {FP32_FILE} in {out}; expected one ONNX graph for {task}")
    write_info(out, {"exporter": exporter_label(name), "exporter_name": name, "opset": graph_opset(out / FP32_FILE),
                     "source_weights": {w.name: file_sha256(w) for w in weight_files(model_dir)}, "task": task})
    # parity: every real position's logits, PyTorch vs ONNX Runtime, on the probe texts
    probes = probe_texts(task, run_eval_texts(run), tokenizer.mask_token) or ["an example text to compare logits on"]
    sess = session(out / FP32_FILE)
    ref, cand = [], []
    for text in probes:
        enc = tokenizer([text], return_tensors="pt")
        with torch.no_grad():
            ref.append(model(**{k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}).logits[0].numpy())
        feeds = feeds_for(sess, {k: v.numpy() for k, v in enc.items()})
        if "position_ids" in {i.name for i in sess.get_inputs()}:
            feeds["position_ids"] = np.arange(enc["input_ids"].shape[1], dtype=np.int64)[None, :]
        cand.append(sess.run(None, feeds)[0][0])
    report = compare_logits(np.concatenate(ref), np.concatenate(cand), tolerance=tolerance, min_label_agreement=1.0,
                            texts_source=f"{len(probes)} probe texts of the eval data")
    parity = {"max_abs_diff": report.max_abs_diff, "top1_agreement": report.label_agreement, "positions": report.num_examples,
              "tolerance": tolerance, "passed": report.passed, "probes": len(probes)}
    update_summary(run.root, "variants", {"pytorch": {"file": None}, "onnx": {"file": f"onnx/{FP32_FILE}",
                   "sha256": file_sha256(out / FP32_FILE), "size_mb": size_mb([out / FP32_FILE]), "parity": parity}})
    if not report.passed:
        raise ExportParityError(
            f"the ONNX export of the {task} model disagrees with PyTorch ({report.describe()}); nothing was pushed; "
            "expected equal logits: raise --set export.tolerance, or publish without ONNX (--set export.onnx=false)"
        )
    say(f"export: parity passed (max |diff| {report.max_abs_diff:.2e} over {report.num_examples} positions)")
    return LmExportResult(onnx_path=str(out / FP32_FILE), exporter=exporter_label(name), parity=parity)


def lm_card(run_dir: str | Path, *, repo_id: str, license: str = "apache-2.0", language: list[str] | None = None,
            tags: list[str] | None = None, dataset_id: str | None = None, base_model_id: str | None = None) -> dict[str, Any]:
    """README.md in ``model/`` for a fill-mask / text-generation run: perplexity before and after training (the
    model-index carries the published model's), the usage with ``pipeline()`` and ONNX Runtime; returns the metrics."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    from hubtune import __version__
    from hubtune.publish.card import check_public, hub_base_model, public_spec

    run = load_run(run_dir)
    task = str(run.config.get("task"))
    spec = find_task(task)
    if spec is None or not spec.language_model:
        raise ConfigError(f"lm_card needs a fill-mask or text-generation run; {run.root.name} is {task}")
    pub = run.layout.model_dir
    ev = dict(run.metrics.get("eval") or {})
    dc = run.data_config
    base_id, base_display = hub_base_model(run.base_model, base_model_id)
    eval_spec = public_spec(dc.get("eval_dataset") or f"{dc.get('dataset')} (validation_split={dc.get('validation_split', 0.1)})")
    data_name = dataset_id or (public_spec(dc.get("dataset")) or "").split(":")[0]
    results = []
    if "perplexity_after" in ev and data_name:
        results.append(EvalResult(task_type=task, task_name=task.replace("-", " ").title(), dataset_type=data_name,
                                  dataset_name=data_name, metric_type="perplexity", metric_name="Perplexity",
                                  metric_value=float(ev["perplexity_after"])))
    onnx = (pub / "onnx" / FP32_FILE).is_file()
    variants = dict(run.summary.get("variants") or {})
    tag_list = list(dict.fromkeys([task, "hubtune", *(["onnx"] if onnx else []), *(tags or [])]))
    data = ModelCardData(language=language or ["en"], license=license, library_name="transformers", pipeline_tag=task,
                         tags=tag_list, base_model=base_id, datasets=[dataset_id] if dataset_id else None,
                         metrics=["perplexity"] if results else None, model_name=repo_id.split("/")[-1],
                         eval_results=results or None)
    mask = None
    if spec.masked:
        from transformers import AutoTokenizer

        mask = AutoTokenizer.from_pretrained(str(pub)).mask_token
    example = spec.card_example(mask)
    mc = ModelCard.from_template(
        data, template_path=str(Path(__file__).parent / "templates" / "lm.md"), task=task, repo_id=repo_id,
        model_name=repo_id.split("/")[-1], base_model_id=base_id, base_model_display=base_display,
        train_dataset=public_spec(dc.get("dataset")), eval_dataset=eval_spec, ev=ev, engine=run.summary.get("engine"),
        sizes=run.summary.get("sizes") or {}, block_size=run.summary.get("block_size"),
        mlm_probability=run.summary.get("mlm_probability"), warnings=run.summary.get("warnings") or [],
        new_head=run.summary.get("new_head_modules") or [], onnx=onnx, parity=(variants.get("onnx") or {}).get("parity"),
        example=example, hubtune_version=__version__,
        versions={k: v for k, v in sorted((run.summary.get("versions") or {}).items()) if isinstance(v, str)},
    )
    text = str(mc)
    check_public(text, run.root, pub)
    out = pub / "README.md"
    tmp = out.with_name(".README.md.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, out)
    metrics = {k: ev[k] for k in ("perplexity_before", "perplexity_after", "eval_loss") if k in ev}
    update_summary(run.root, "card", {"path": "model/README.md", "metrics": metrics, "task": task})
    return metrics
