"""The export step: ONNX (fp32, optionally ORT-optimized and/or dynamic int8) inside the published folder.

Layout: ``<published>/onnx/model.onnx`` (+ ``model_O2.onnx``, ``model_quantized.onnx``) with ``config.json`` and
the tokenizer files beside them, so ``ORTModelForSequenceClassification.from_pretrained(repo, subfolder="onnx")``
and an optimum ``pipeline()`` load it.

Gates, on real held-out texts (not dummy inputs), each against the PyTorch model:

* fp32 ``model.onnx``: max |logit diff| <= ``tolerance`` and 100% label agreement, else
  :class:`ExportParityError` and no ``onnx/`` folder is written;
* optimized / quantized variants: accuracy drop <= ``max_accuracy_drop_pt`` points on labeled data (and
  label agreement >= ``min_variant_agreement``); a variant that fails is removed and reported, the rest stay.

Size and CPU throughput of every variant (pytorch, onnx, onnx-O2, onnx-int8) go to
``run_summary.json["variants"]`` when the model belongs to a run; ``hubtune card`` reads them.
"""

from __future__ import annotations

import platform
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from hubtune.errors import (
    ConfigError,
    ExportParityError,
    MissingDependencyError,
    ModelLoadError,
    OutputExistsError,
    OutputNotWritableError,
)
from hubtune.modeling import is_adapter_dir, load_classifier, predict_logits
from hubtune.parity import (
    REFERENCE_TEXTS,
    ParityReport,
    compare_logits,
    file_sha256,
    bench_model,
    size_mb,
    weight_files,
)
from hubtune.rundir import eval_data, find_run_dir, load_run, published_dir, update_summary

OPTIMIZE_LEVELS = ("O1", "O2", "O3")
QUANTIZE_MODES = ("int8",)
FP32_FILE = "model.onnx"
QUANTIZED_FILE = "model_quantized.onnx"


@dataclass
class ExportOptions:
    source: str  # a model folder, or a run dir (uses RUN_DIR/merged for LoRA, RUN_DIR/model for full)
    output: str | None = None  # default <model folder>/onnx
    optimize: str | None = None  # O1 | O2 | O3 (ORTOptimizer)
    quantize: str | None = None  # int8 (ORTQuantizer, dynamic)
    eval_dataset: str | None = None  # default: the run's held-out examples
    tolerance: float = 1e-4  # fp32 gate: max |logit diff|
    max_accuracy_drop_pt: float = 0.5  # variant gate: accuracy points lost vs PyTorch
    min_variant_agreement: float = 0.95  # variant gate: label agreement with PyTorch
    max_examples: int | None = 1000  # parity / accuracy examples
    bench_rows: int = 128  # rows for the throughput measure
    batch_size: int = 32
    opset: int | None = None
    overwrite: bool = False


@dataclass
class VariantReport:
    name: str  # pytorch | onnx | onnx-O2 | onnx-int8
    file: str | None  # relative to the published folder
    size_mb: float
    passed: bool = True
    reason: str | None = None
    parity: ParityReport | None = None
    metrics: dict[str, Any] | None = None  # accuracy, f1_macro, ... on the labeled examples
    accuracy_drop_pt: float | None = None
    throughput: dict[str, Any] | None = None
    sha256: str | None = None
    config: str | None = None  # optimization level / quantization config


@dataclass
class ExportResult:
    model_dir: str
    output_dir: str
    run_dir: str | None
    eval_source: str
    num_examples: int
    labeled: bool
    variants: dict[str, VariantReport] = field(default_factory=dict)  # kept (pytorch included)
    refused: dict[str, VariantReport] = field(default_factory=dict)  # failed optional variants, removed
    seconds: float = 0.0


# --------------------------------------------------------------------------------------------------
# Optimum wrappers (small so tests can wrap them)
# --------------------------------------------------------------------------------------------------
def _optimum() -> Any:
    try:
        from optimum.exporters.onnx import main_export  # noqa: F401
        from optimum.onnxruntime import ORTModelForSequenceClassification  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(
            f"ONNX export needs optimum-onnx and onnxruntime ({exc}); install them with pip install 'optimum-onnx' onnxruntime"
        ) from None


def _run_main_export(model_dir: Path, out: Path, opset: int | None) -> None:
    from optimum.exporters.onnx import main_export

    main_export(
        str(model_dir),
        output=str(out),
        task="text-classification",
        opset=opset,
        do_validation=False,  # our own gate runs on real texts below
        local_files_only=True,
    )


def _optimize(onnx_dir: Path, level: str, work: Path) -> Path:
    from optimum.onnxruntime import ORTOptimizer
    from optimum.onnxruntime.configuration import AutoOptimizationConfig

    opt = ORTOptimizer.from_pretrained(str(onnx_dir), file_names=[FP32_FILE])
    opt.optimize(AutoOptimizationConfig.with_optimization_level(level), save_dir=str(work), file_suffix=level)
    return work / f"model_{level}.onnx"


def quantization_config_name() -> str:
    """The ORT dynamic-quantization config for this CPU: arm64, avx512_vnni, avx512 or avx2."""
    if platform.machine().lower() in ("arm64", "aarch64"):
        return "arm64"
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    if "avx512_vnni" in flags:
        return "avx512_vnni"
    if "avx512f" in flags and "avx512bw" in flags:
        return "avx512"
    return "avx2"


def _quantize(onnx_dir: Path, work: Path) -> tuple[Path, str]:
    from optimum.onnxruntime import ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    name = quantization_config_name()
    qconfig = getattr(AutoQuantizationConfig, name)(is_static=False, per_channel=False)
    q = ORTQuantizer.from_pretrained(str(onnx_dir), file_name=FP32_FILE)
    q.quantize(qconfig, save_dir=str(work), file_suffix="quantized")
    return work / QUANTIZED_FILE, f"dynamic int8 ({name}, per-tensor)"


def _load_ort(onnx_dir: Path, file_name: str) -> Any:
    from optimum.onnxruntime import ORTModelForSequenceClassification

    return ORTModelForSequenceClassification.from_pretrained(str(onnx_dir), file_name=file_name)


def _move_onnx(src: Path, dest_dir: Path) -> Path:
    """Move an .onnx file and any external-data files named after it."""
    for extra in src.parent.glob(src.name + "*"):
        shutil.move(str(extra), str(dest_dir / extra.name))
    return dest_dir / src.name


# --------------------------------------------------------------------------------------------------
def _metrics(labels: Sequence[int] | None, logits: np.ndarray, names: list[str]) -> dict[str, Any] | None:
    if labels is None:
        return None
    from hubtune.metrics import classification_metrics, softmax, summary

    probs = softmax(logits)
    m = classification_metrics(labels, probs.argmax(-1), names, probs)
    out = dict(summary(m))
    out["num_examples"] = m["num_examples"]
    return out


def _bench_texts(texts: Sequence[str], n: int) -> list[str]:
    texts = list(texts) or list(REFERENCE_TEXTS)
    reps = -(-n // len(texts))
    return (texts * reps)[:n]


def resolve_model_dir(source: str) -> tuple[Path, Path | None]:
    """(model folder to export, run dir or None)."""
    src = Path(source)
    if not src.exists():
        raise ModelLoadError(f"{src} does not exist; pass a model folder or a run directory to hubtune export")
    run_root = find_run_dir(src)
    model_dir = published_dir(run_root) if (run_root is not None and src == run_root) else src
    if is_adapter_dir(model_dir):
        hint = f"hubtune merge {run_root}" if run_root is not None else f"hubtune merge {model_dir}"
        raise ConfigError(
            f"{model_dir} is a LoRA adapter, expected a standalone model to export; run `{hint}` first "
            "and export the merged folder"
        )
    if not (model_dir / "config.json").is_file():
        raise ModelLoadError(f"{model_dir} has no config.json; pass a saved text-classification model folder")
    return model_dir, run_root


def export(opts: ExportOptions, progress: Callable[[str], None] | None = None) -> ExportResult:
    say = progress or (lambda _m: None)
    t0 = time.perf_counter()
    if opts.optimize is not None and opts.optimize.upper() not in OPTIMIZE_LEVELS:
        raise ConfigError(f"--optimize {opts.optimize!r} is not supported; expected one of {', '.join(OPTIMIZE_LEVELS)} (O4 needs a GPU)")
    if opts.quantize is not None and opts.quantize.lower() not in QUANTIZE_MODES:
        raise ConfigError(f"--quantize {opts.quantize!r} is not supported; expected {', '.join(QUANTIZE_MODES)}")
    if not opts.tolerance >= 0 or not opts.max_accuracy_drop_pt >= 0:
        raise ConfigError("--tolerance and --max-accuracy-drop must be non-negative numbers (e.g. 1e-4 and 0.5)")
    model_dir, run_root = resolve_model_dir(opts.source)
    run = load_run(run_root) if run_root else None
    out = Path(opts.output) if opts.output else model_dir / "onnx"
    if out.exists() and not opts.overwrite:
        raise OutputExistsError(f"ONNX folder {out} already exists; pass --overwrite to replace it or --output DIR")
    _optimum()

    say(f"loading PyTorch model {model_dir}")
    loaded = load_classifier(str(model_dir), device="cpu")
    names = loaded.label_names
    ev = eval_data(run, names, override=opts.eval_dataset, max_samples=opts.max_examples)
    if ev is not None and len(ev.data):
        ds = ev.data.dataset
        texts = list(ds["text"])
        pairs = list(ds["text_pair"]) if "text_pair" in ds.column_names else None
        labels: list[int] | None = list(ds["label"])
        source = ev.spec
    else:
        texts, pairs, labels, source = list(REFERENCE_TEXTS), None, None, "built-in reference texts"
    max_len = loaded.max_length
    bs = opts.batch_size
    bench_texts = _bench_texts(texts, opts.bench_rows)

    say(f"PyTorch logits on {len(texts)} examples from {source}")
    ref = predict_logits(loaded.model, loaded.tokenizer, texts, pairs, batch_size=bs, max_length=max_len)
    ref_metrics = _metrics(labels, ref, names)
    say(f"PyTorch throughput on {len(bench_texts)} rows")
    variants: dict[str, VariantReport] = {
        "pytorch": VariantReport(
            name="pytorch",
            file=", ".join(p.name for p in weight_files(model_dir)) or None,
            size_mb=size_mb(weight_files(model_dir)),
            metrics=ref_metrics,
            throughput=bench_model(loaded.model, loaded.tokenizer, bench_texts, bs, max_len),
            sha256=file_sha256(weight_files(model_dir)[0]) if weight_files(model_dir) else None,
        )
    }
    del loaded
    refused: dict[str, VariantReport] = {}
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    except OSError as exc:
        raise OutputNotWritableError(f"cannot write beside {out} ({exc.strerror}); pass a writable --output DIR") from None
    rel_prefix = _rel(out, model_dir)
    try:
        say("exporting to ONNX (optimum, task text-classification)")
        _run_main_export(model_dir, tmp, opts.opset)
        if not (tmp / FP32_FILE).is_file():
            raise ExportParityError(f"optimum wrote no {FP32_FILE} in the export folder; expected one ONNX graph for text-classification")

        def check(name: str, file_name: str, is_base: bool, cfg: str | None = None) -> VariantReport:
            say(f"checking {name} ({file_name}) against PyTorch")
            ort = _load_ort(tmp, file_name)
            logits = predict_logits(ort, ort_tokenizer, texts, pairs, batch_size=bs, max_length=max_len, device="cpu")
            if is_base:
                parity = compare_logits(ref, logits, tolerance=opts.tolerance, min_label_agreement=1.0, texts_source=source)
            else:
                parity = compare_logits(ref, logits, tolerance=None, min_label_agreement=opts.min_variant_agreement, texts_source=source)
            m = _metrics(labels, logits, names)
            drop = None
            if m is not None and ref_metrics is not None:
                drop = round(100.0 * (ref_metrics["accuracy"] - m["accuracy"]), 3)
            rep = VariantReport(
                name=name,
                file=f"{rel_prefix}/{file_name}",
                size_mb=size_mb(list(tmp.glob(file_name + "*"))),
                parity=parity,
                metrics=m,
                accuracy_drop_pt=drop,
                sha256=file_sha256(tmp / file_name),
                config=cfg,
            )
            reasons = []
            if not parity.passed:
                reasons.append(parity.describe())
            if not is_base and drop is not None and drop > opts.max_accuracy_drop_pt:
                reasons.append(f"accuracy drop {drop:.2f} pt > {opts.max_accuracy_drop_pt:g} pt allowed")
            if reasons:
                rep.passed, rep.reason = False, "; ".join(reasons)
            else:
                say(f"{name} throughput on {len(bench_texts)} rows")
                rep.throughput = bench_model(ort, ort_tokenizer, bench_texts, bs, max_len)
            return rep

        from transformers import AutoTokenizer

        ort_tokenizer = AutoTokenizer.from_pretrained(str(tmp))
        base = check("onnx", FP32_FILE, True, cfg=f"fp32, opset {opts.opset or 'default'}")
        if not base.passed:
            raise ExportParityError(
                f"ONNX export does not match PyTorch: {base.reason}; expected max diff <= {opts.tolerance:g} and 100% "
                "label agreement. Nothing was written; try another --opset, or loosen --tolerance if it is float noise"
            )
        variants["onnx"] = base
        extra: list[tuple[str, Callable[[Path], tuple[Path, str]]]] = []
        if opts.optimize:
            level = opts.optimize.upper()
            extra.append((f"onnx-{level}", lambda w, level=level: (_optimize(tmp, level, w), f"ORTOptimizer {level}")))
        if opts.quantize:
            extra.append(("onnx-int8", lambda w: _quantize(tmp, w)))
        for name, make in extra:
            work = Path(tempfile.mkdtemp(prefix=".variant-", dir=out.parent))
            try:
                say(f"building {name}")
                produced, cfg = make(work)
                moved = _move_onnx(produced, tmp)
            finally:
                shutil.rmtree(work, ignore_errors=True)
            rep = check(name, moved.name, False, cfg=cfg)
            if rep.passed:
                variants[name] = rep
            else:
                for f in tmp.glob(moved.name + "*"):
                    f.unlink()
                rep.file = None
                refused[name] = rep
                say(f"{name} refused: {rep.reason}")
        for junk in ("ort_config.json",):
            (tmp / junk).unlink(missing_ok=True)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    result = ExportResult(
        model_dir=str(model_dir),
        output_dir=str(out),
        run_dir=str(run_root) if run_root else None,
        eval_source=source,
        num_examples=len(texts),
        labeled=labels is not None,
        variants=variants,
        refused=refused,
        seconds=round(time.perf_counter() - t0, 2),
    )
    if run_root is not None:
        update_summary(run_root, "variants", {k: asdict(v) for k, v in variants.items()})
        update_summary(
            run_root,
            "export",
            {
                "model_dir": _rel(model_dir, run_root),
                "output": _rel(out, run_root),
                "eval_source": source,
                "num_examples": len(texts),
                "labeled": labels is not None,
                "tolerance": opts.tolerance,
                "max_accuracy_drop_pt": opts.max_accuracy_drop_pt,
                "refused": {k: asdict(v) for k, v in refused.items()},
                "seconds": result.seconds,
            },
        )
    return result


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return path.name
