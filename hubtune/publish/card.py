"""The card step: README.md (metadata + model-index + body) for the folder that will be published.

The figures come from the exact files being published: the PyTorch model in the published folder is
re-evaluated on the run's test split (``data.test_dataset``), else on the validation examples that chose the
checkpoint, and the card says which (``--eval-dataset`` overrides); ONNX variants use the figures the
export gate measured on those exact files, kept only while the file's sha256 still matches.

``base_model`` rule (the Hub wants a Hub id, and a card must never leak a local path):

1. a base given as a Hub id (``org/name`` or ``name``, not an existing local path) is used as is;
2. a local folder inside a Hub cache (``models--org--name``) gives ``org/name``;
3. a local folder whose ``config.json`` ``_name_or_path`` is a Hub id (``org/name``) gives that id;
4. otherwise ``--base-model-id`` if given, else no ``base_model`` metadata and only the folder's basename
   in the body.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from hubtune.core.errors import ConfigError, ModelLoadError, OutputNotWritableError, TemplateError, VerificationError
from hubtune.core.adapterhub import MARKER as BOTTLENECK_MARKER
from hubtune.core.adapterhub import SUBDIR, is_bottleneck_dir
from hubtune.core.modeling import is_adapter_dir, read_json
from hubtune.core.parity import bench_model, bench_texts, file_sha256, size_mb, weight_files
from hubtune.tasks.registry import find_task, get_task
from hubtune.core.rundir import RunInfo, eval_data, load_run, published_dir, update_summary
from hubtune.publish.head_card import task_card_parts
from hubtune.publish.variant_claims import int8_kind, int8_sentence
from hubtune.publish.head_card import TEMPLATE as TASK_TEMPLATE

HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?$")
TOKEN_RE = re.compile(r"\bhf_[A-Za-z0-9]{20,}\b")
ABS_PATH_RE = re.compile(r"(?<![\w.:/])(/(?:home|root|tmp|work|Users|var|opt|mnt|data|srv|private)/[^\s`'\")]+|[A-Za-z]:\\\\?[^\s`'\"]+)")
METRICS = (
    # key, metric type, display name, metric args
    ("accuracy", "accuracy", "Accuracy", None),
    ("f1_macro", "f1", "F1 (macro)", {"average": "macro"}),
    ("f1_micro", "f1", "F1 (micro)", {"average": "micro"}),
    ("precision_macro", "precision", "Precision (macro)", {"average": "macro"}),
    ("recall_macro", "recall", "Recall (macro)", {"average": "macro"}),
    ("roc_auc", "roc_auc", "ROC AUC", None),
)
SPLIT_STEMS = {"train", "test", "validation", "valid", "val", "dev", "eval"}


@dataclass
class CardOptions:
    run_dir: str
    template: str | None = None  # default: the packaged hubtune/publish/templates/default.md
    repo_id: str | None = None  # ORG/NAME, used in the usage snippets and as model name
    license: str = "apache-2.0"
    language: list[str] = field(default_factory=lambda: ["en"])
    tags: list[str] = field(default_factory=list)
    eval_dataset: str | None = None  # default: the run's held-out examples
    dataset_id: str | None = None  # Hub id to record for a local dataset
    base_model_id: str | None = None  # Hub id of a local base model
    output: str | None = None  # default: <published folder>/README.md
    bench_rows: int = 128
    batch_size: int = 32
    metrics: list[str] | None = None  # evaluate modules (--metric); None: those the run was trained with


@dataclass
class CardResult:
    path: str
    published_dir: str
    metadata: dict[str, Any]
    eval_results: list[dict[str, Any]]
    metrics: dict[str, Any]
    variants: list[str]
    eval_source: str | None
    metric_modules: list[dict[str, Any]] = field(default_factory=list)  # evaluate modules (--metric)


def template_path(explicit: str | None = None) -> Path:
    if explicit:
        p = Path(explicit)
        if not p.is_file():
            raise ConfigError(f"card template {p} does not exist; pass an existing Jinja file with --template")
        check_template(p)
        return p
    return Path(__file__).parent / "templates" / "default.md"


def check_template(path: Path) -> None:
    """A --template that does not parse as Jinja (or is no UTF-8 text) is refused before any evaluation."""
    import jinja2

    try:
        jinja2.Environment().parse(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise TemplateError(f"card template {path} is not UTF-8 text (byte {exc.start}); expected a UTF-8 Jinja file: "
                            "re-save it as UTF-8 or pass another --template") from None
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"card template {path} does not parse as Jinja: {exc.message} (line {exc.lineno}); "
                            "expected a valid Jinja template: fix that line or pass another --template") from None


def render_card(data: Any, *, template_path: str | None = None, template_str: str | None = None, **text_vars: Any) -> Any:
    """``ModelCard.from_template``; a template that fails while rendering (an undefined name called, a filter
    Jinja lacks) is a TemplateError naming it, not an internal error."""
    import jinja2
    from huggingface_hub import ModelCard

    kwargs = {"template_path": template_path} if template_path else {"template_str": template_str}
    try:
        return ModelCard.from_template(data, **kwargs, **text_vars)
    except jinja2.TemplateError as exc:
        raise TemplateError(f"card template {template_path or '(built in)'} failed to render ({type(exc).__name__}: "
                            f"{exc}); expected a template that renders with the card's variables: fix it or pass "
                            "another --template") from None


def _is_hub_id(s: str) -> bool:
    return bool(HUB_ID.match(s)) and not s.startswith(".") and ".." not in s


def hub_base_model(base: str | None, override: str | None = None) -> tuple[str | None, str | None]:
    """(Hub id for ``base_model`` metadata or None, display name without local paths). See the module doc."""
    if override:
        return override, override
    if not base:
        return None, None
    if base.startswith("packaged:"):  # an alias for a model shipped in a PyPI package (see modeling)
        from hubtune.core.modeling import public_model_ref

        ref = public_model_ref(base)
        return (ref, ref) if _is_hub_id(ref) else (None, ref)
    p = Path(os.path.expanduser(base))
    if not p.exists() and _is_hub_id(base):
        return base, base
    for part in p.parts:
        if part.startswith("models--"):
            hub = part[len("models--") :].replace("--", "/")
            if _is_hub_id(hub):
                return hub, hub
    cfg = p / "config.json"
    if cfg.is_file():
        try:
            name = str(read_json(cfg).get("_name_or_path") or "")
        except (OSError, ValueError):
            name = ""
        if "/" in name and _is_hub_id(name) and not Path(name).exists():
            return name, name
    return None, p.name if p.name not in ("model", "") else f"{p.parent.name}/{p.name}"


def public_spec(spec: str | None) -> str | None:
    """A dataset spec safe to publish: Hub specs as is; local paths relative, or reduced to parent/name."""
    if not spec:
        return spec
    suffix = ""
    m = re.match(r"^(.*?)( \(.*\))$", spec)
    if m:
        spec, suffix = m.group(1), m.group(2)
    if os.path.isabs(os.path.expanduser(spec)) or spec.startswith("~"):
        p = Path(spec)
        spec = f"{p.parent.name}/{p.name}" if p.parent.name else p.name
    return spec + suffix


def _dataset_identity(spec: str | None, split: str | None, dataset_id: str | None) -> dict[str, Any]:
    """dataset type/name/config/split for model-index, and whether it is a Hub dataset."""
    from hubtune.data.dataset import parse_spec

    if not spec:
        return {}
    base = re.sub(r" \(.*\)$", "", spec)
    try:
        parsed = parse_spec(base)
    except Exception:  # noqa: BLE001
        parsed = None
    if parsed is not None and parsed.kind == "hub":
        return {"type": dataset_id or parsed.path, "name": parsed.path, "config": parsed.config, "split": split or parsed.split, "hub": True}
    p = Path(base)
    stem = p.stem
    name = p.parent.name if stem.lower() in SPLIT_STEMS and p.parent.name else stem
    sp = split or (stem.lower() if stem.lower() in SPLIT_STEMS else None)
    return {"type": dataset_id or name, "name": dataset_id or name, "config": None, "split": sp, "hub": bool(dataset_id)}


def _fmt(v: Any, digits: int = 4) -> str:
    return "-" if v is None else (f"{v:.{digits}f}" if isinstance(v, float) else str(v))


def card(opts: CardOptions, progress: Callable[[str], None] | None = None) -> CardResult:
    from huggingface_hub import EvalResult, ModelCardData

    from hubtune import __version__
    from hubtune.core.modeling import evaluate_loaded, resolve_model_ref
    from hubtune.tasks.loading import load_classifier

    say = progress or (lambda _m: None)
    ref = resolve_model_ref(opts.run_dir, flag="RUN_DIR of hubtune card")  # the references every command reads
    root = ref.run_dir
    if root is None:
        what = {"hub": "a Hub model", "packaged": "a packaged model"}.get(ref.kind, "a model folder outside a run")
        raise ModelLoadError(
            f"{opts.run_dir} is {what}, not a run directory (model/ beside run_summary.json or config.yaml): the card "
            "reports the run's data, base model and held-out metrics, which only a run records; pass the folder "
            f"written by hubtune train (e.g. hubtune train --base-model {opts.run_dir} ...)"
        )
    tpl = template_path(opts.template)
    run: RunInfo = load_run(root)
    pub = published_dir(root)
    spec = find_task(run.config.get("task"))
    if spec is not None and spec.recipe == "head":  # multi-label, regression, token classification
        return _task_card(opts, run, root, pub)
    adapter = is_adapter_dir(pub)
    bottleneck = is_bottleneck_dir(pub)  # mode adapter: AdapterHub's adapters library, loaded on the base model
    say(f"evaluating the published files in {pub.name}/")
    loaded = load_classifier(str(pub), device="cpu")
    names = loaded.label_names
    ev = eval_data(run, names, override=opts.eval_dataset)
    metrics: dict[str, Any] = {}
    modules = list(opts.metrics if opts.metrics is not None else (run.config.get("metrics") or []))
    if ev is not None and len(ev.data):
        metrics = evaluate_loaded(loaded, ev.data, metric_modules=modules)
    # variants: PyTorch measured now (or the export's figures when the weights are unchanged), ONNX from export
    recorded: dict[str, Any] = dict(run.summary.get("variants") or {})
    wfiles = weight_files(pub / SUBDIR) if bottleneck else weight_files(pub)
    sha = file_sha256(wfiles[0]) if wfiles else None
    pt_rec = recorded.get("pytorch") or {}
    throughput = pt_rec.get("throughput") if (pt_rec.get("sha256") == sha and sha) else None
    if throughput is None:
        say("measuring PyTorch CPU throughput")
        texts = list(ev.data.dataset["text"]) if ev is not None else []
        throughput = bench_model(loaded.model, loaded.tokenizer, bench_texts(texts, opts.bench_rows), opts.batch_size, loaded.max_length)
        if sha:  # kept for the same weights, so an unchanged re-run writes the same card (and pushes nothing)
            recorded["pytorch"] = {**pt_rec, "sha256": sha, "throughput": throughput}
            update_summary(root, "variants", recorded)
    rows: list[dict[str, Any]] = [
        {
            "name": "PyTorch" + (" (LoRA adapter)" if adapter else " (bottleneck adapter)" if bottleneck else ""),
            "file": ", ".join((f"{SUBDIR}/" if bottleneck else "") + p.name for p in wfiles),
            "accuracy": _fmt(metrics.get("accuracy")),
            "f1_macro": _fmt(metrics.get("f1_macro")),
            "examples": _fmt(metrics.get("num_examples")),
            "size_mb": _fmt(size_mb(wfiles), 1),
            "rows_per_s": _fmt(throughput.get("rows_per_s"), 0),
            "latency": _fmt(throughput.get("latency_ms_per_batch"), 1),
        }
    ]
    onnx_files: list[str] = []
    quantized_file = openvino_file = None
    for key, rec in recorded.items():
        if key == "pytorch" or not rec.get("file"):
            continue
        f = pub / rec["file"]
        if not f.is_file() or (rec.get("sha256") and file_sha256(f) != rec["sha256"]):
            say(f"skipping {key}: {rec['file']} is missing or changed since hubtune export (re-run export)")
            continue
        m = rec.get("metrics") or {}
        tp = rec.get("throughput") or {}
        label = {"onnx": "ONNX (fp32)", "onnx-int8": f"ONNX int8 ({int8_kind({**rec, **(rec.get('claims') or {})})})"}.get(
            key, key.replace("onnx-", "ONNX optimized "))
        rows.append(
            {
                "name": label,
                "file": rec["file"],
                "accuracy": _fmt(m.get("accuracy")),
                "f1_macro": _fmt(m.get("f1_macro")),
                "examples": _fmt(m.get("num_examples")),
                "size_mb": _fmt(rec.get("size_mb"), 1),
                "rows_per_s": _fmt(tp.get("rows_per_s"), 0),
                "latency": _fmt(tp.get("latency_ms_per_batch"), 1),
            }
        )
        if key == "openvino":  # OpenVINO's IR of model.onnx (export --openvino): its own usage lines
            rows[-1]["name"], openvino_file = "OpenVINO IR (fp32)", rec["file"]
        else:
            onnx_files.append(Path(rec["file"]).name)
        if key == "onnx-int8":
            quantized_file = Path(rec["file"]).name

    cfg = run.config
    base_id, base_display = hub_base_model(run.base_model, opts.base_model_id)
    dc = run.data_config
    train_ds = public_spec(dc.get("dataset") or run.summary.get("dataset"))
    eval_spec = public_spec(ev.spec) if ev is not None else None
    ident = _dataset_identity(eval_spec, ev.split if ev is not None else None, opts.dataset_id)
    model_name = opts.repo_id.split("/")[-1] if opts.repo_id else root.resolve().name
    eval_results = []
    for key, mtype, mname, margs in METRICS:
        if key in metrics and ident:
            eval_results.append(
                EvalResult(
                    task_type="text-classification",
                    task_name="Text Classification",
                    dataset_type=ident["type"],
                    dataset_name=ident["name"],
                    dataset_config=ident.get("config"),
                    dataset_split=ident.get("split"),
                    dataset_revision=run.summary.get("eval_dataset_revision") or run.summary.get("dataset_revision"),
                    metric_type=mtype,
                    metric_name=mname,
                    metric_value=float(metrics[key]),
                    metric_args=margs,
                )
            )
    module_rows = []
    for rec in metrics.get("metric_modules") or [] if ident else []:  # evaluate modules (--metric)
        for key, value in rec["values"].items():
            label = rec["metric"] if key == rec["metric"].split("/")[-1] else f"{rec['metric']} ({key})"
            eval_results.append(EvalResult(
                task_type="text-classification", task_name="Text Classification", dataset_type=ident["type"],
                dataset_name=ident["name"], dataset_config=ident.get("config"), dataset_split=ident.get("split"),
                dataset_revision=run.summary.get("eval_dataset_revision") or run.summary.get("dataset_revision"),
                metric_type=rec["type"], metric_name=label, metric_value=float(value), metric_args=rec.get("args"),
            ))
            module_rows.append({"module": rec["metric"], "source": rec["source"], "key": key, "value": _fmt(float(value)),
                                "args": ", ".join(f"{a}={b}" for a, b in (rec.get("args") or {}).items())})
    datasets = []
    for spec in (dc.get("dataset"), dc.get("eval_dataset")):
        i = _dataset_identity(public_spec(spec), None, opts.dataset_id) if spec else {}
        if i.get("hub") and i["type"] not in datasets:
            datasets.append(i["type"])
    # tags describe what is published: an adapter is PEFT; a merged LoRA model is a plain transformers model
    adapter_tags = ["peft", run.mode] if adapter and run.mode else ["adapter-transformers", "adapters"] if bottleneck else []
    tags = list(dict.fromkeys(["text-classification", "hubtune", *adapter_tags, *(["onnx"] if onnx_files else []),
                                 *(["openvino"] if openvino_file else []), *opts.tags]))
    data = ModelCardData(
        language=opts.language or None,
        license=opts.license,
        library_name="peft" if adapter else "adapter-transformers" if bottleneck else "transformers",
        pipeline_tag="text-classification",
        tags=tags,
        base_model=base_id,
        datasets=datasets or None,
        metrics=sorted({r.metric_type for r in eval_results}) or None,
        model_name=model_name,
        eval_results=eval_results or None,
    )
    hyper = {}
    for k in ("num_epochs", "max_steps", "learning_rate", "batch_size", "gradient_accumulation_steps", "max_length", "weight_decay", "warmup_ratio", "precision", "seed"):
        if k in cfg and not (k == "max_steps" and cfg[k] in (-1, None)):
            hyper[k.replace("_", " ")] = cfg[k]
    example = "The service was quick and the staff were friendly."
    text_vars = dict(
        model_name=model_name,
        repo_id=opts.repo_id or f"YOUR_ORG/{model_name}",
        base_model_id=base_id,
        base_model_display=base_display,
        train_dataset=train_ds,
        label_names=names,
        has_pair=bool(dc.get("text_pair_column")),
        is_adapter=adapter,
        bottleneck=read_json(pub / BOTTLENECK_MARKER) if bottleneck else None,
        mode=run.mode,
        lora=cfg.get("lora") if run.mode == "lora" else None,
        hyperparameters=hyper,
        sizes={"train": (run.summary.get("sizes") or {}).get("train"), "eval": (run.summary.get("sizes") or {}).get("eval")},
        versions={k: v for k, v in sorted((run.summary.get("versions") or {}).items()) if isinstance(v, (str, int, float))},
        eval_dataset=eval_spec,
        eval_split=ident.get("split"),
        eval_role=ev.role if ev is not None else None,
        eval_examples=metrics.get("num_examples"),
        per_class=metrics.get("per_class"),
        metric_modules=module_rows,
        variants=rows,
        bench_batch_size=throughput.get("batch_size", opts.batch_size),
        onnx_files=onnx_files,
        openvino_file=openvino_file,
        quantized_file=quantized_file,
        has_quantized=quantized_file is not None,
        int8_note=int8_sentence(recorded) if quantized_file else None,  # kind, size and speed vs fp32 as measured
        example_text=example,
        max_length=min(loaded.max_length, int(cfg.get("max_length") or loaded.max_length)),
        hubtune_version=__version__,
        training_warnings=[str(w) for w in run.summary.get("warnings") or []],  # e.g. groups never unfrozen
    )
    mc = render_card(data, template_path=str(tpl), **text_vars)
    text = str(mc)
    check_public(text, root, pub)
    out = Path(opts.output) if opts.output else pub / "README.md"
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, out)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise OutputNotWritableError(
            f"cannot write the card {out} ({exc.strerror or type(exc).__name__}); expected a writable folder: "
            "fix its permissions or pass --output PATH"
        ) from None
    summary_rec = {
        "path": _rel(out, root),
        "published_dir": _rel(pub, root),
        "eval_source": eval_spec,
        "metrics": {k: metrics[k] for k, *_ in METRICS if k in metrics},
        "variants": [r["name"] for r in rows],
        **({"metric_modules": metrics["metric_modules"]} if metrics.get("metric_modules") else {}),
    }
    update_summary(root, "card", summary_rec)
    return CardResult(
        path=str(out),
        published_dir=str(pub),
        metadata=data.to_dict(),
        eval_results=[r.__dict__ for r in eval_results],
        metrics={k: metrics[k] for k, *_ in METRICS if k in metrics},
        variants=[r["name"] for r in rows],
        eval_source=eval_spec,
        metric_modules=list(metrics.get("metric_modules") or []),
    )


def _task_card(opts: CardOptions, run: RunInfo, root: Path, pub: Path) -> CardResult:
    """The card of a multi-label / regression / token-classification run (:mod:`hubtune.publish.head_card`)."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    from hubtune import __version__

    task = str(run.config["task"])
    model_name = opts.repo_id.split("/")[-1] if opts.repo_id else root.resolve().name
    metrics, results, variables = task_card_parts(run, pub, task, repo_id=opts.repo_id, model_name=model_name,
                                                  eval_override=opts.eval_dataset)
    dc = run.data_config
    eval_spec = public_spec(opts.eval_dataset or dc.get("test_dataset") or dc.get("eval_dataset") or dc.get("dataset"))
    ident = _dataset_identity(eval_spec, "test" if dc.get("test_dataset") else None, opts.dataset_id)
    eval_results = [EvalResult(dataset_type=ident["type"], dataset_name=ident["name"], dataset_config=ident.get("config"),
                               dataset_split=ident.get("split"), **r) for r in results] if ident else []
    base_id, base_display = hub_base_model(run.base_model, opts.base_model_id)
    adapter = variables.pop("is_adapter")
    pipeline_tag = get_task(task).pipeline_tag
    data = ModelCardData(
        language=opts.language or None, license=opts.license, library_name="peft" if adapter else "transformers",
        pipeline_tag=pipeline_tag, base_model=base_id, model_name=model_name, eval_results=eval_results or None,
        tags=list(dict.fromkeys([pipeline_tag, task, "hubtune", *(["peft", "lora"] if adapter else []), *opts.tags])),
        metrics=sorted({r.metric_type for r in eval_results}) or None,
    )
    mc = ModelCard.from_template(data, template_str=TASK_TEMPLATE, base_model_display=base_display,
                                 train_dataset=public_spec(dc.get("dataset")), hubtune_version=__version__,
                                 data_note=None, **variables)
    text = str(mc)
    check_public(text, root, pub)
    out = Path(opts.output) if opts.output else pub / "README.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    scalar = {r_key: metrics[r_key] for r_key in get_task(task).summary_keys if r_key in metrics}
    update_summary(root, "card", {"path": _rel(out, root), "published_dir": _rel(pub, root), "eval_source": eval_spec,
                                  "metrics": scalar, "variants": ["PyTorch"]})
    return CardResult(path=str(out), published_dir=str(pub), metadata=data.to_dict(),
                      eval_results=[r.__dict__ for r in eval_results], metrics=scalar, variants=["PyTorch"],
                      eval_source=eval_spec)


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return path.name


def check_public(text: str, root: Path, pub: Path) -> None:
    """Refuse a card that would leak a token or a local absolute path."""
    secrets = [v for k, v in os.environ.items() if ("TOKEN" in k.upper() or k.upper().startswith("HF_API")) and len(v) >= 8]
    if TOKEN_RE.search(text) or any(s in text for s in secrets):
        raise VerificationError("the rendered card contains an access token; expected none: remove it from the template or variables")
    locals_ = {str(Path(p).resolve()) for p in (root, pub, Path.cwd(), Path.home())} - {"/"}
    hit = next((p for p in locals_ if re.search(r"(?<![\w.:/-])" + re.escape(p) + r"(?![\w.-])", text)), None) or (ABS_PATH_RE.search(text).group(0) if ABS_PATH_RE.search(text) else None)
    if hit:
        raise VerificationError(
            f"the rendered card contains a local absolute path ({hit}); expected only Hub ids and relative names: "
            "pass --base-model-id / --dataset-id or fix the template"
        )
