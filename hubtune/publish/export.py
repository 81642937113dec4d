"""The export step: ONNX (fp32, optionally ORT-optimized and/or dynamic int8) inside the published folder.

Layout: ``<published>/onnx/model.onnx`` (+ ``model_O2.onnx``, ``model_quantized.onnx``) with ``config.json`` and
the tokenizer files beside them and ``export_info.json`` (exporter, opset, sha256 of the source weights and of
every graph), so ``ORTModelForSequenceClassification.from_pretrained(repo, subfolder="onnx")`` loads it where
optimum-onnx is installed, and onnxruntime anywhere. The graph is written by Optimum's exporter where it
supports the installed transformers, by ``torch.onnx.export(dynamo=True)`` otherwise (:mod:`hubtune.core.onnx_tools`).

Gates, on real held-out texts (not dummy inputs), each against the PyTorch model:

* fp32 ``model.onnx``: max |logit diff| <= ``tolerance`` x max(1, max |logit|) (the tolerance follows the
  logits' scale: :data:`hubtune.core.parity.SCALED_TOLERANCE_WHY`) and 100% label agreement, else
  :class:`ExportParityError` and no ``onnx/`` folder is written;
* optimized / quantized variants: accuracy drop <= ``max_accuracy_drop_pt`` points on labeled data (and
  label agreement >= ``min_variant_agreement``); a variant that fails is removed and reported, the rest stay.

Multi-label, regression and token-classification models are gated by what their task answers (labels over the
threshold, values, tags per word; :mod:`hubtune.publish.head_export`), on the run's held-out examples of that task.

An embedding model (feature-extraction: a bare encoder, or a sentence-transformers folder) is exported as its
encoder, the graph answering ``last_hidden_state``, and gated by its pooled sentence embeddings instead of labels
(cosine per row and top-10 neighbour overlap, :mod:`hubtune.publish.embed_export`).

Size and CPU throughput of every variant (pytorch, onnx, onnx-O2, onnx-int8) go to
``run_summary.json["variants"]`` when the model belongs to a run; ``hubtune card`` reads them.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from hubtune.publish.embed_export import (
    DEFAULT_MIN_OVERLAP,
    DEFAULT_VARIANT_COSINE,
    OrtEncoder,
    bench_encoder,
    embedding_gate,
    encode,
    gate_texts,
)
from hubtune.tasks.feature_extraction import model_pooling
from hubtune.core.errors import (
    ConfigError,
    ExportParityError,
    ModelLoadError,
    OutputExistsError,
    OutputNotWritableError,
)
from hubtune.tasks.loading import load_classifier
from hubtune.core.modeling import download_model, follow_umask, is_adapter_dir, predict_logits, resolve_model_ref
from hubtune.core.parity import (
    REFERENCE_TEXTS,
    ParityReport,
    compare_logits,
    file_sha256,
    bench_model,
    size_mb,
    weight_files,
)
from hubtune.core.onnx_tools import (
    FP32_FILE,
    OPTIMIZE_LEVELS,
    QUANTIZED_FILE,
    OrtClassifier,
    calibration_feeds,
    choose_exporter,
    encoder_of,
    export_onnx,
    optimize,
    quantize_int8,
    write_info,
)
from hubtune.core.rundir import eval_data, load_run, update_summary
from hubtune.publish import ov_export
from hubtune.publish.head_export import flat, metric_drop, task_examples, task_gate_metrics, task_outputs_of
from hubtune.publish.variant_claims import INT8_KINDS, int8_kind, machine, refusal, versus_fp32
from hubtune.tasks.base import TEXT_CLASSIFICATION, checkpoint_task
from hubtune.tasks.registry import get_task, task_names

QUANTIZE_MODES = ("int8",)
CALIBRATION_ROWS = 256  # real texts on which int8 sensitivity is measured


@dataclass
class ExportOptions:
    source: str  # a model folder, or a run dir (uses RUN_DIR/merged for LoRA, RUN_DIR/model for full)
    output: str | None = None  # default <model folder>/onnx
    optimize: str | None = None  # O1 | O2 | O3 (ORTOptimizer)
    quantize: str | None = None  # int8 (ORTQuantizer, dynamic)
    eval_dataset: str | None = None  # default: the run's held-out examples
    tolerance: float = 1e-4  # fp32 gate: max |logit diff| <= tolerance x max(1, max |logit|) (parity.SCALED_TOLERANCE_WHY)
    max_accuracy_drop_pt: float = 0.5  # variant gate: accuracy points lost vs PyTorch
    min_variant_agreement: float = 0.99  # variant gate: label agreement with PyTorch (issue 14: >= 99%)
    min_variant_cosine: float = DEFAULT_VARIANT_COSINE  # embeddings' variant gate: mean cosine with PyTorch
    min_neighbour_overlap: float = DEFAULT_MIN_OVERLAP  # embeddings' variant gate: top-10 neighbour overlap
    max_examples: int | None = 1000  # parity / accuracy examples
    bench_rows: int = 128  # rows for the throughput measure
    batch_size: int = 32
    opset: int | None = None
    exporter: str = "auto"  # auto (optimum-onnx where installed, else torch.onnx) | optimum | torch
    overwrite: bool = False
    task: str | None = None  # default: the checkpoint's (batch-predict --task hands its own)
    measure_speed: bool = True  # throughput of each variant (off for batch-predict's export on the fly)
    record: bool = True  # write the figures into the run's summary (off for batch-predict's export on the fly)
    openvino: bool = False  # also openvino/ (OpenVINO's IR of model.onnx, the same gate): publish.ov_export


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
    claims: dict[str, Any] | None = None  # size and speed vs fp32 as measured here (publish.variant_claims)


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
    exporter: str = ""  # which exporter wrote model.onnx (optimum-onnx or torch.onnx), with its version
    seconds: float = 0.0
    task: str = "text-classification"  # or feature-extraction (the graph answers last_hidden_state)


# --------------------------------------------------------------------------------------------------
# The exporter and onnxruntime's tools (small wrappers so tests can wrap them)
# --------------------------------------------------------------------------------------------------
def _run_main_export(model_dir: Path, out: Path, opset: int | None, *, model: Any = None, tokenizer: Any = None,
                     exporter: str = "auto", task: str | None = None) -> dict[str, Any]:
    return export_onnx(model_dir, out, model=model, tokenizer=tokenizer, opset=opset, exporter=exporter, task=task)


def _optimize(onnx_dir: Path, level: str, work: Path) -> tuple[Path, str]:
    dest = work / f"model_{level}.onnx"
    return dest, optimize(onnx_dir / FP32_FILE, dest, level)


def _quantize(onnx_dir: Path, work: Path, calibration: list[dict[str, Any]] | None = None,
              calibration_source: str = "", **kw: Any) -> tuple[Path, dict[str, Any]]:
    dest = work / QUANTIZED_FILE
    return dest, quantize_int8(onnx_dir / FP32_FILE, dest, calibration=calibration, calibration_source=calibration_source,
                               **kw)


def calibration_texts(run: Any, ev_texts: list[str], ev_pairs: list[str] | None, source: str,
                      n: int = CALIBRATION_ROWS) -> tuple[list[str], list[str] | None, str]:
    """Real texts to measure int8 sensitivity on: the run's training examples (never the gate's), else the
    gate's own texts (said so in ``export_info.json``)."""
    dc = run.data_config if run is not None else {}
    if dc.get("dataset"):
        try:
            from hubtune.core.config import DataConfig, from_dict
            from hubtune.data.dataset import load_train_eval
            from hubtune.core.rundir import resolve_local_spec

            dc2 = dict(dc)
            dc2["dataset"] = resolve_local_spec(str(dc["dataset"]), run.root)
            if dc2.get("eval_dataset"):
                dc2["eval_dataset"] = resolve_local_spec(str(dc2["eval_dataset"]), run.root)
            train = load_train_eval(from_dict(DataConfig, dc2)).train.dataset
            rows = train.select(range(min(n, len(train))))
            pairs = list(rows["text_pair"]) if "text_pair" in rows.column_names else None
            return list(rows["text"]), pairs, f"{len(rows)} training texts of {dc['dataset']}"
        except Exception:  # noqa: BLE001 - training data gone or moved: measure on the gate's texts instead
            pass
    k = min(n, len(ev_texts))
    return ev_texts[:k], (ev_pairs[:k] if ev_pairs else None), f"{k} texts of {source} (no training data found)"


def _move_onnx(src: Path, dest_dir: Path) -> Path:
    """Move an .onnx file and any external-data files named after it."""
    for extra in src.parent.glob(src.name + "*"):
        shutil.move(str(extra), str(dest_dir / extra.name))
    return dest_dir / src.name


# --------------------------------------------------------------------------------------------------
def _metrics(labels: Sequence[int] | None, logits: np.ndarray, names: list[str]) -> dict[str, Any] | None:
    if labels is None:
        return None
    from hubtune.core.metrics import classification_metrics, softmax, summary

    probs = softmax(logits)
    m = classification_metrics(labels, probs.argmax(-1), names, probs)
    out = dict(summary(m))
    out["num_examples"] = m["num_examples"]
    return out


def _bench_texts(texts: Sequence[str], n: int) -> list[str]:
    texts = list(texts) or list(REFERENCE_TEXTS)
    reps = -(-n // len(texts))
    return (texts * reps)[:n]


def resolve_model_dir(source: str, output: str | None = None) -> tuple[Path, Path | None]:
    """(model folder to export, run dir or None): a model folder, a run directory (its published folder), a Hub id
    (downloaded) or ``packaged:minilm`` (:func:`hubtune.core.modeling.resolve_model_ref`); the last two need ``output``
    (their folders are a cache and an installed package)."""
    ref = resolve_model_ref(source, flag="MODEL_DIR of hubtune export")
    if ref.kind in ("hub", "packaged") and not output:
        raise ConfigError(
            f"{source} is a {'Hub model' if ref.kind == 'hub' else 'packaged model'}, whose folder is not yours to "
            "write an onnx/ into; expected --output DIR for the ONNX files"
        )
    model_dir = download_model(source, flag="MODEL_DIR of hubtune export") if ref.kind == "hub" else Path(ref.path)
    run_root = ref.run_dir
    if is_adapter_dir(model_dir):
        hint = f"hubtune merge {run_root}" if run_root is not None else f"hubtune merge {model_dir}"
        raise ConfigError(
            f"{model_dir} is a LoRA adapter, expected a standalone model to export; run `{hint}` first "
            "and export the merged folder"
        )
    if not (model_dir / "config.json").is_file():
        raise ModelLoadError(f"{model_dir} has no config.json; pass a saved text-classification model folder")
    return model_dir, run_root


def model_task(model_dir: Path) -> str:
    """The task the checkpoint has (feature-extraction for an encoder without a head: a bare ``BertModel``, a
    sentence-transformers folder; multi-label, regression, token classification), else text-classification
    (whose load refuses a checkpoint without that head)."""
    import json

    try:
        cfg = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return TEXT_CLASSIFICATION
    task = checkpoint_task(cfg, model_dir).task
    return task if task in task_names(predicts=True) else TEXT_CLASSIFICATION


def export(opts: ExportOptions, progress: Callable[[str], None] | None = None) -> ExportResult:
    say = progress or (lambda _m: None)
    t0 = time.perf_counter()
    if opts.optimize is not None and opts.optimize.upper() not in OPTIMIZE_LEVELS:
        raise ConfigError(f"--optimize {opts.optimize!r} is not supported; expected one of {', '.join(OPTIMIZE_LEVELS)} (O4 needs a GPU)")
    if opts.quantize is not None and opts.quantize.lower() not in QUANTIZE_MODES:
        raise ConfigError(f"--quantize {opts.quantize!r} is not supported; expected {', '.join(QUANTIZE_MODES)}")
    if not opts.tolerance >= 0 or not opts.max_accuracy_drop_pt >= 0:
        raise ConfigError("--tolerance and --max-accuracy-drop must be non-negative numbers (e.g. 1e-4 and 0.5)")
    model_dir, run_root = resolve_model_dir(opts.source, opts.output)
    run = load_run(run_root) if run_root else None
    out = Path(opts.output) if opts.output else model_dir / "onnx"
    if out.exists() and not opts.overwrite:
        raise OutputExistsError(f"ONNX folder {out} already exists; pass --overwrite to replace it or --output DIR")
    choose_exporter(opts.exporter)  # a missing exporter fails before any work
    ov_dest = ov_export.prepare(out, opts.overwrite) if opts.openvino else None  # openvino missing: before any work
    ov_tmp: Path | None = None

    say(f"loading PyTorch model {model_dir}")
    task = opts.task or model_task(model_dir)
    spec = get_task(task, served=task_names(predicts=True))
    embed = spec.embeds
    other = spec.recipe == "head"  # multi-label, regression, token classification: their own gates
    loaded = load_classifier(str(model_dir), device="cpu", task=task, served=task_names(predicts=True))
    if embed:  # an encoder-decoder's (T5's) embeddings are its encoder's
        loaded.model = encoder_of(loaded.model)
    names = loaded.label_names
    pooling = model_pooling(model_dir) if embed else None
    ev = None if embed or other else eval_data(run, names, override=opts.eval_dataset, max_samples=opts.max_examples)
    ex = task_examples(task, run, names, override=opts.eval_dataset, max_examples=opts.max_examples) if other else None
    if embed:
        texts, source = gate_texts(opts.eval_dataset, opts.max_examples)
        pairs, labels = None, None
    elif ex is not None:
        texts, pairs, labels, source = ex.texts, None, None, ex.source
    elif ev is not None and len(ev.data):
        ds = ev.data.dataset
        texts = list(ds["text"])
        pairs = list(ds["text_pair"]) if "text_pair" in ds.column_names else None
        labels: list[int] | None = list(ds["label"])
        source = ev.spec
    else:
        texts, pairs, labels, source = list(REFERENCE_TEXTS), None, None, "built-in reference texts"
    max_len = min(loaded.max_length, pooling.max_length or loaded.max_length) if pooling else loaded.max_length
    bs = opts.batch_size
    bench_texts = _bench_texts(texts, opts.bench_rows)

    def raw_outputs(model: Any, tokenizer: Any, **kw: Any) -> Any:  # the task's (token classification: per example)
        if ex is not None:
            return task_outputs_of(task, model, tokenizer, ex, max_len, bs, **kw)
        return outputs(model, tokenizer, **kw)

    def outputs(model: Any, tokenizer: Any, **kw: Any) -> np.ndarray:  # logits, or pooled embeddings
        if pooling is not None:
            return encode(model, tokenizer, texts, pooling, batch_size=bs, max_length=max_len)
        if ex is not None:
            return flat(task, raw_outputs(model, tokenizer, **kw))
        return predict_logits(model, tokenizer, texts, pairs, batch_size=bs, max_length=max_len, **kw)

    def scores(raw: Any, tokenizer: Any) -> dict[str, Any] | None:  # the task's metrics on labeled examples
        if ex is not None:
            return task_gate_metrics(task, raw, ex, names, tokenizer, max_len)
        return _metrics(labels, raw, names)

    def speed(model: Any, tokenizer: Any) -> dict[str, Any] | None:
        if not opts.measure_speed:
            return None
        if pooling is not None:
            return bench_encoder(model, tokenizer, bench_texts, pooling, bs, max_len)
        return bench_model(model, tokenizer, bench_texts, bs, max_len)

    say(f"PyTorch {'embeddings' if embed else 'logits'} on {len(texts)} examples from {source}")
    ref_raw = raw_outputs(loaded.model, loaded.tokenizer)
    ref = flat(task, ref_raw) if other else ref_raw
    ref_metrics = None if embed else scores(ref_raw, loaded.tokenizer)
    say(f"PyTorch throughput on {len(bench_texts)} rows")
    variants: dict[str, VariantReport] = {
        "pytorch": VariantReport(
            name="pytorch",
            file=", ".join(p.name for p in weight_files(model_dir)) or None,
            size_mb=size_mb(weight_files(model_dir)),
            metrics=ref_metrics,
            throughput=speed(loaded.model, loaded.tokenizer),
            sha256=file_sha256(weight_files(model_dir)[0]) if weight_files(model_dir) else None,
        )
    }
    refused: dict[str, VariantReport] = {}
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
        follow_umask(tmp)  # mkdtemp makes 0700; the output renamed from it follows the umask like any folder
    except OSError as exc:
        raise OutputNotWritableError(f"cannot write beside {out} ({exc.strerror}); pass a writable --output DIR") from None
    rel_prefix = _rel(out, model_dir)
    try:
        say(f"exporting to ONNX ({choose_exporter(opts.exporter)} exporter, task {task})")
        info = _run_main_export(model_dir, tmp, opts.opset, model=loaded.model, tokenizer=loaded.tokenizer,
                                exporter=opts.exporter, task=task)
        del loaded

        def check(name: str, file_name: str, is_base: bool, cfg: str | None = None, session: Any = None,
                  folder: Path | None = None) -> VariantReport:  # session/folder: a graph made elsewhere (OpenVINO)
            say(f"checking {name} ({file_name}) against PyTorch")
            where = folder or tmp
            src = session if session is not None else where / file_name
            ort = OrtEncoder(src) if embed else OrtClassifier(src, ort_config)
            raw = raw_outputs(ort, ort_tokenizer, device="cpu")
            logits = flat(task, raw) if other else raw
            gate_why = None
            if embed:
                parity, m, gate_why = embedding_gate(ref, logits, is_base=is_base, tolerance=opts.tolerance,
                                                     min_cosine=opts.min_variant_cosine,
                                                     min_overlap=opts.min_neighbour_overlap, texts_source=source)
            elif is_base:
                parity = compare_logits(ref, logits, tolerance=opts.tolerance, min_label_agreement=1.0,
                                        texts_source=source, task=spec, scaled=True)
            else:
                parity = compare_logits(ref, logits, tolerance=None, min_label_agreement=opts.min_variant_agreement,
                                        texts_source=source, task=spec)
            if not embed:
                m = scores(raw, ort_tokenizer)
            drop = None
            if other:
                drop = metric_drop(task, ref_metrics, m)
            elif m is not None and ref_metrics is not None:
                drop = round(100.0 * (ref_metrics["accuracy"] - m["accuracy"]), 3)
            rep = VariantReport(
                name=name,
                file=f"{rel_prefix}/{file_name}",
                size_mb=size_mb(list(where.glob(file_name + "*"))),
                parity=parity,
                metrics=m,
                accuracy_drop_pt=drop,
                sha256=file_sha256(where / file_name),
                config=cfg,
            )
            reasons = []
            if not parity.passed:
                reasons.append(gate_why or parity.describe())
            if not is_base and drop is not None and drop > opts.max_accuracy_drop_pt:
                what = spec.main_metric_name
                reasons.append(f"{what} drop {drop:.2f} pt > {opts.max_accuracy_drop_pt:g} pt allowed")
            if reasons:
                rep.passed, rep.reason = False, "; ".join(reasons)
            else:
                say(f"{name} throughput on {len(bench_texts)} rows")
                rep.throughput = speed(ort, ort_tokenizer)
            return rep

        from transformers import AutoConfig, AutoTokenizer

        ort_tokenizer = AutoTokenizer.from_pretrained(str(tmp))
        ort_config = AutoConfig.from_pretrained(str(tmp))
        base = check("onnx", FP32_FILE, True, cfg=f"fp32, opset {info['opset']}, {info['exporter']}")
        if not base.passed:
            allowed = opts.tolerance if embed or base.parity is None else base.parity.allowed
            expected = (f"max diff <= {opts.tolerance:g} and every cosine >= 0.9999" if embed else
                        f"max diff <= {allowed:.3g} and 100% agreement ({spec.agrees})")
            err = ExportParityError(
                f"ONNX export does not match PyTorch: {base.reason}; expected {expected}. Nothing was written; try "
                "another --opset, or loosen --tolerance if it is float noise"
            )
            err.figures, err.expected = base.reason, expected  # what batch-predict's export on the fly reports
            raise err
        variants["onnx"] = base
        cpu = machine() if opts.measure_speed else None
        info["gate"] = gate_record(base, source, opts.tolerance)
        if ov_dest is not None:  # OpenVINO's IR of the gated model.onnx, through the same gate
            ov_tmp, variants[ov_export.NAME] = ov_export.build(
                tmp, FP32_FILE, ov_dest, info, lambda sess, where: check(ov_export.NAME, ov_export.OV_XML, True,
                                                                         session=sess, folder=where),
                lambda rep: gate_record(rep, source, opts.tolerance), say)
        extra: list[tuple[str, Callable[[Path], tuple[Path, str]]]] = []
        if opts.optimize:
            level = opts.optimize.upper()
            extra.append((f"onnx-{level}", lambda w, level=level: _optimize(tmp, level, w)))
        quant_info: dict[str, Any] = {}
        if opts.quantize:
            def make_int8(w: Path) -> tuple[Path, str]:
                if ex is not None:
                    c_texts, c_pairs, c_source = ex.calibration, None, ex.calibration_source
                else:
                    c_texts, c_pairs, c_source = calibration_texts(run, texts, pairs, source)
                say(f"measuring int8 sensitivity per MatMul on {c_source}")
                feeds = calibration_feeds(tmp / FP32_FILE, ort_tokenizer, c_texts, c_pairs, max_length=max_len)
                # embeddings, multi-label, regression: dynamic int8 is judged by the task's agreement (the check
                # below), not by argmax labels
                argmax_free = not spec.argmax_labels
                produced, q = _quantize(tmp, w, feeds, c_source, **({"min_agreement": 0.0} if argmax_free else {}))
                quant_info.update(q)
                return produced, q["description"]  # it starts with the kind: dynamic / weight-only int8 (...)

            extra.append(("onnx-int8", make_int8))
        for name, make in extra:
            work = Path(tempfile.mkdtemp(prefix=".variant-", dir=out.parent))
            try:
                say(f"building {name}")
                produced, cfg = make(work)
                moved = _move_onnx(produced, tmp)
            finally:
                shutil.rmtree(work, ignore_errors=True)
            rep = check(name, moved.name, False, cfg=cfg)
            rep.claims = versus_fp32(rep.size_mb, rep.throughput, base.size_mb, base.throughput, cpu=cpu)
            if name == "onnx-int8":  # size and speed are int8's only reasons to exist: neither, not published
                rep.claims["kind"] = int8_kind(quant_info)
                if rep.passed and refusal(rep.claims):
                    rep.passed, rep.reason = False, refusal(rep.claims)
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
        info["files"] = {f.name: file_sha256(f) for f in sorted(tmp.glob("*.onnx"))}
        if quant_info and "onnx-int8" in variants:
            info["quantization"] = {"file": QUANTIZED_FILE, **quant_info, "kind_description": INT8_KINDS[int8_kind(quant_info)],
                                    "versus_fp32": variants["onnx-int8"].claims}
        write_info(tmp, info)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
        if ov_tmp is not None and ov_dest is not None:
            ov_export.commit(ov_tmp, ov_dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if ov_tmp is not None:
            shutil.rmtree(ov_tmp, ignore_errors=True)
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
        exporter=info["exporter"],
        seconds=round(time.perf_counter() - t0, 2),
        task=task,
    )
    if run_root is not None and opts.record:
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
                "exporter": info["exporter"],
                "opset": info["opset"],
                "tolerance": opts.tolerance,
                "max_accuracy_drop_pt": opts.max_accuracy_drop_pt,
                "refused": {k: asdict(v) for k, v in refused.items()},
                "seconds": result.seconds,
            },
        )
    return result


def gate_record(base: VariantReport, source: str, tolerance: float) -> dict[str, Any]:
    """The fp32 gate that ``model.onnx`` passed, as ``export_info.json`` keeps it: batch-predict runs a graph it
    exported on the fly only when this says it passed (:func:`gated`)."""
    p = base.parity
    rec: dict[str, Any] = {"passed": True, "texts": source, "tolerance": tolerance}
    if p is not None:
        rec.update(max_abs_diff=p.max_abs_diff, allowed=p.allowed, agreement=p.label_agreement, examples=p.num_examples)
    return rec


def gated(info: dict[str, Any] | None) -> bool:
    """Whether an ``export_info.json`` records a passed fp32 gate (an export by this version of hubtune)."""
    return bool(((info or {}).get("gate") or {}).get("passed"))


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return path.name
