"""ONNX files of a text classifier (not a step): write, optimize, quantize, and run them with onnxruntime.

The layout is Optimum's, whichever exporter wrote it: ``onnx/model.onnx`` with inputs ``input_ids``,
``attention_mask`` (and ``token_type_ids`` where the model takes them), output ``logits``, the dynamic axes
``batch_size`` and ``sequence_length``, and ``config.json`` plus the tokenizer files beside it, so that
``ORTModelForSequenceClassification.from_pretrained(repo, subfolder="onnx")`` loads it wherever optimum-onnx
is installed. Optimum's exporter writes it where it supports the installed transformers (the Optimum lane);
``torch.onnx.export(dynamo=True)`` writes it otherwise. ``export_info.json`` records which one did, and the
sha256 of the weights the graph came from.

Optimization and int8 quantization use onnxruntime's own tools (``onnxruntime.transformers.optimizer``,
``onnxruntime.quantization.quantize_dynamic``); the int8 variant keeps in fp32 the MatMuls measured as most
sensitive to int8 on real texts (:func:`matmul_sensitivity`).
"""

from __future__ import annotations

import contextlib
import inspect
import io
import json
import logging
import shutil
import warnings
from pathlib import Path
from typing import Any, Iterator, Sequence

from hubtune.core.compat import installed_version, optimum_exporter_available
from hubtune.core.errors import (
    ConfigError,
    ExportParityError,
    ExportUnsupportedError,
    MissingDependencyError,
    ModelLoadError,
)
from hubtune.core.onnx_session import OrtClassifier, feeds_for, run_graph, session  # noqa: F401 - re-exported

FP32_FILE = "model.onnx"
QUANTIZED_FILE = "model_quantized.onnx"
INFO_FILE = "export_info.json"
EXPORTERS = ("auto", "optimum", "torch")
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_NAME = "logits"
HIDDEN_OUTPUT = "last_hidden_state"  # an encoder's graph (feature-extraction), as Optimum names it
DYNAMIC_AXES = ("batch_size", "sequence_length")
DEFAULT_OPSET = 18  # what Optimum uses for BERT-like encoders
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "vocab.json",
    "merges.txt", "sentencepiece.bpe.model", "spiece.model", "added_tokens.json",
)
# Optimum's O-levels, mapped onto onnxruntime's own optimizer
OPTIMIZE_LEVELS = ("O1", "O2", "O3")


def choose_exporter(requested: str = "auto") -> str:
    if requested not in EXPORTERS:
        raise ConfigError(f"--exporter {requested!r} is not supported; expected one of {', '.join(EXPORTERS)}")
    if requested == "optimum" and not optimum_exporter_available():
        raise MissingDependencyError(
            "--exporter optimum needs optimum-onnx, which requires transformers < 4.58; install it with "
            "pip install 'hubtune[optimum]' or use --exporter torch"
        )
    if requested == "auto":
        return "optimum" if optimum_exporter_available() else "torch"
    return requested


def exporter_label(name: str) -> str:
    if name == "optimum":
        return f"optimum-onnx {installed_version('optimum-onnx')} (main_export)"
    return f"torch.onnx dynamo (torch {installed_version('torch')})"


@contextlib.contextmanager
def _quiet() -> Any:
    """The exporters' chatter (tracer warnings, registry notes, print()s) off; errors still raise."""
    names = ("", "torch.onnx", "torch.export", "torch._dynamo", "torch.fx", "onnxscript", "optimum", "onnxruntime")
    saved = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for n, lvl in saved.items():
            logging.getLogger(n).setLevel(lvl)


def copy_model_files(model_dir: Path, out: Path) -> None:
    """config.json and the tokenizer files, next to the graph (what Optimum's exporter copies)."""
    for name in ("config.json", *TOKENIZER_FILES):
        src = model_dir / name
        if src.is_file():
            shutil.copy2(src, out / name)


@contextlib.contextmanager
def eager_attention(model: Any) -> Iterator[None]:
    """The model (and its sub-configs) on transformers' eager attention while it is traced: SDPA and flex mask
    builders are what torch.export cannot trace for several families (distilbert, mpnet, modernbert, llama, ...);
    the graph computes the same function. The implementation it had is put back after."""
    configs = [c for c in {id(c): c for c in _configs(getattr(model, "config", None))}.values()]
    before = [getattr(c, "_attn_implementation", None) for c in configs]
    setter = getattr(model, "set_attn_implementation", None)
    try:
        if callable(setter):
            try:
                setter("eager")
            except Exception:  # noqa: BLE001 - a model without an eager path keeps its own
                pass
        for c in configs:
            try:
                c._attn_implementation = "eager"
            except Exception:  # noqa: BLE001 - read-only on some configs
                pass
        yield
    finally:
        if callable(setter) and before and before[0]:
            try:
                setter(before[0])
            except Exception:  # noqa: BLE001 - the configs below are put back anyway
                pass
        for c, b in zip(configs, before):
            try:
                c._attn_implementation = b
            except Exception:  # noqa: BLE001
                pass


def _configs(cfg: Any) -> list[Any]:
    if cfg is None:
        return []
    out = [cfg]
    for key in getattr(cfg, "sub_configs", {}) or {}:
        sub = getattr(cfg, key, None)
        if sub is not None:
            out.append(sub)
    return out


def encoder_of(model: Any) -> Any:
    """What answers ``last_hidden_state`` for feature-extraction: an encoder-decoder's encoder (T5, BART: the
    decoder needs decoder inputs, and sentence-T5 embeds with the encoder alone), else the model itself."""
    if getattr(getattr(model, "config", None), "is_encoder_decoder", False) and callable(getattr(model, "get_encoder", None)):
        return model.get_encoder()
    return model


def _torch_export(model: Any, tokenizer: Any, out_file: Path, opset: int, output: str = OUTPUT_NAME) -> None:
    import torch

    if output == HIDDEN_OUTPUT:
        model = encoder_of(model)
    params = inspect.signature(model.forward).parameters
    wanted = list(getattr(tokenizer, "model_input_names", None) or INPUT_NAMES[:2])
    names = [n for n in INPUT_NAMES if n in params and n in wanted]
    if "input_ids" not in names or "attention_mask" not in names:
        raise ModelLoadError(
            f"{type(model).__name__} does not take input_ids and attention_mask; expected a text-classification model"
        )

    class Logits(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any = None) -> Any:
            kw = {"input_ids": input_ids, "attention_mask": attention_mask}
            if token_type_ids is not None:
                kw["token_type_ids"] = token_type_ids
            return getattr(self.inner(**kw), output)

    # two rows of different lengths, so neither axis is specialised to a constant
    sample = tokenizer(["an example text that is a little longer than the other one", "short"],
                       padding=True, return_tensors="pt")
    args = tuple(sample[n] if n in sample else torch.zeros_like(sample["input_ids"]) for n in names)
    # by position, one entry per input given (a dict by name would also name the inputs left out)
    axes = {0: torch.export.Dim(DYNAMIC_AXES[0]), 1: torch.export.Dim(DYNAMIC_AXES[1], min=2)}
    shapes = tuple(axes for _ in names)
    wrapped = Logits(model).eval()
    try:
        with torch.no_grad(), eager_attention(model):
            program = torch.onnx.export(
                wrapped, args, None, input_names=names, output_names=[output], dynamic_shapes=shapes,
                dynamo=True, external_data=False, opset_version=opset, optimize=True, verbose=False,
            )
    except Exception as exc:  # noqa: BLE001 - torch.export raises its own error types for what it cannot trace
        family = getattr(getattr(model, "config", None), "model_type", None) or type(model).__name__
        first = plain(exc)[:160]
        raise ExportUnsupportedError(
            f"torch.onnx could not export this {family} model ({type(exc).__name__}: {first}); expected a graph "
            f"torch.export can trace: predict with PyTorch instead (batch-predict --backend torch), or try "
            "--exporter optimum in the Optimum lane"
        ) from exc
    if program is None:  # pragma: no cover - torch always returns the program for f=None
        raise ExportParityError("torch.onnx.export returned no program; expected an ONNX graph")
    program.save(str(out_file), external_data=False)


def _optimum_export(model_dir: Path, out: Path, opset: int | None, task: str = "text-classification") -> None:
    from optimum.exporters.onnx import main_export

    try:
        # library_name="transformers": a sentence-transformers folder exported for feature-extraction would
        # otherwise answer token_embeddings/sentence_embedding; hubtune's layout is the encoder's last_hidden_state.
        main_export(str(model_dir), output=str(out), task=task, opset=opset,
                    do_validation=False, local_files_only=True, library_name="transformers")
    except (ValueError, KeyError, NotImplementedError, RuntimeError) as exc:  # what Optimum raises for a family it lacks
        family = family_of(model_dir)
        first = plain(exc)[:160]
        raise ExportUnsupportedError(
            f"Optimum's exporter could not export this {family} model for {task} ({type(exc).__name__}: {first}); "
            "expected a family Optimum supports: try --exporter torch, or predict with PyTorch (batch-predict --backend torch)"
        ) from exc


def plain(exc: BaseException) -> str:
    """A library error's text on one line, without the terminal colour codes torch.onnx puts in it."""
    import re

    return " ".join(re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).split())


def fixed_inputs(path: Path) -> list[str]:
    """The inputs of an ONNX graph with a fixed batch or sequence size (``input_ids[1] = 14``): such a graph
    answers only inputs of that shape (torch.onnx writes one where the model's code turns the length into a
    Python number, e.g. funnel's pooling); [] when every axis is dynamic."""
    return [f"{i['name']}[{k}] = {d}" for i in graph_signature(path)["inputs"] for k, d in enumerate(i["dims"])
            if isinstance(d, int) and d > 0]


def check_dynamic(path: Path, family: str, exporter: str = "", sess: Any = None) -> None:
    """Refuse (ExportUnsupportedError, exit 19) a graph whose batch or sequence size is fixed (read from ``sess``,
    an onnxruntime session of it, when given)."""
    fixed = (fixed_inputs(path) if sess is None else
             [f"{i.name}[{k}] = {d}" for i in sess.get_inputs() for k, d in enumerate(i.shape) if isinstance(d, int) and d > 0])
    if fixed:
        what = f"{exporter} exported this {family} model" if exporter else f"ONNX graph {path} of this {family} model"
        raise ExportUnsupportedError(
            f"{what} with a fixed input size ({', '.join(fixed[:3])}): the graph runs only inputs of that shape; "
            f"expected dynamic {' and '.join(DYNAMIC_AXES)} axes: predict with PyTorch instead (batch-predict "
            "--backend torch)"
        )


def family_of(model_dir: Path) -> str:
    try:
        return json.loads((Path(model_dir) / "config.json").read_text()).get("model_type") or "unknown"
    except (OSError, ValueError):
        return "unknown"


def export_onnx(model_dir: Path, out: Path, *, model: Any = None, tokenizer: Any = None, opset: int | None = None,
                exporter: str = "auto", task: str | None = None) -> dict[str, Any]:
    """Write ``out/model.onnx`` (+ config and tokenizer) for the classifier in ``model_dir``; returns the facts
    of the export (exporter, opset, the source weights' sha256) that also go to ``out/export_info.json``.
    ``task`` ``feature-extraction``: the encoder alone, its graph answering ``last_hidden_state``."""
    from hubtune.core.parity import file_sha256, weight_files

    from hubtune.tasks.registry import get_task, task_names

    name = choose_exporter(exporter)
    spec = get_task(task) if task else None
    embed = bool(spec and spec.embeds)
    out.mkdir(parents=True, exist_ok=True)
    with _quiet():
        if name == "optimum":
            _optimum_export(model_dir, out, opset, task=spec.optimum_task if spec else "text-classification")
        else:
            if model is None or tokenizer is None:
                from hubtune.tasks.loading import load_classifier

                loaded = load_classifier(str(model_dir), device="cpu",
                                         **({"task": task, "served": task_names(predicts=True)} if task else {}))
                model, tokenizer = loaded.model, loaded.tokenizer
            _torch_export(model, tokenizer, out / FP32_FILE, opset or DEFAULT_OPSET,
                          output=spec.onnx_outputs[0] if spec else OUTPUT_NAME)
            copy_model_files(model_dir, out)
    if not (out / FP32_FILE).is_file():
        raise ExportParityError(f"the exporter wrote no {FP32_FILE} in {out}; expected one ONNX graph for {task or 'text-classification'}")
    check_dynamic(out / FP32_FILE, family_of(model_dir), "Optimum's exporter" if name == "optimum" else "torch.onnx")
    weights = weight_files(model_dir)
    info = {
        "exporter": exporter_label(name),
        "exporter_name": name,
        "opset": graph_opset(out / FP32_FILE),
        "source_weights": {w.name: file_sha256(w) for w in weights},
        "task": task or "text-classification",
    }
    if embed:
        info["output"] = HIDDEN_OUTPUT
    write_info(out, info)
    return info


def write_info(out: Path, info: dict[str, Any]) -> None:
    (out / INFO_FILE).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def read_info(onnx_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((onnx_dir / INFO_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def check_matches_weights(onnx_path: Path, model_dir: Path) -> str:
    """Refuse an ONNX graph whose ``export_info.json`` names other weights than those in ``model_dir``.

    Returns a note when nothing can be checked (a graph written without ``export_info.json``)."""
    from hubtune.core.errors import StaleOnnxError
    from hubtune.core.parity import file_sha256, weight_files

    info = read_info(onnx_path.parent)
    recorded = (info or {}).get("source_weights")
    if not recorded:
        return f"{onnx_path.name} has no {INFO_FILE}: cannot check that it was exported from the weights beside it"
    current = {w.name: file_sha256(w) for w in weight_files(model_dir)}
    if current and current != recorded:
        name = next(iter(sorted(set(current) | set(recorded))))
        raise StaleOnnxError(
            f"{onnx_path.parent.name}/{onnx_path.name} was exported from weights with sha256 "
            f"{str(recorded.get(name, '-'))[:12]}, the {name} beside it has sha256 {str(current.get(name, '-'))[:12]}; "
            f"expected the ONNX of these weights: run `hubtune export {model_dir} --overwrite`, or use --backend torch"
        )
    return ""


def graph_opset(path: Path) -> int | None:
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    return next((int(o.version) for o in m.opset_import if o.domain in ("", "ai.onnx")), None)


def graph_signature(path: Path) -> dict[str, Any]:
    """Input/output names, element types and dims (names for dynamic axes) of an ONNX graph."""
    import onnx

    m = onnx.load(str(path), load_external_data=False)

    def desc(v: Any) -> dict[str, Any]:
        t = v.type.tensor_type
        return {"name": v.name, "elem_type": int(t.elem_type), "dims": [d.dim_param or d.dim_value for d in t.shape.dim]}

    return {"inputs": [desc(v) for v in m.graph.input], "outputs": [desc(v) for v in m.graph.output]}


# --------------------------------------------------------------------------------------------------
# onnxruntime's own optimizer and quantizer
# --------------------------------------------------------------------------------------------------
def _model_type(config: dict[str, Any]) -> str:
    from onnxruntime.transformers.optimizer import MODEL_TYPES

    mt = str(config.get("model_type") or "bert")
    return mt if mt in MODEL_TYPES else "bert"


def optimize(src: Path, dest: Path, level: str) -> str:
    """O1: onnxruntime's basic graph optimizations; O2: plus transformer fusions (attention, layer norm, GELU);
    O3: O2 plus the GELU approximation. Writes ``dest``; returns a description."""
    level = level.upper()
    if level not in OPTIMIZE_LEVELS:
        raise ConfigError(f"--optimize {level!r} is not supported; expected one of {', '.join(OPTIMIZE_LEVELS)} (O4 needs a GPU)")
    import onnxruntime as ort

    with _quiet():
        if level == "O1":
            so = ort.SessionOptions()
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
            so.optimized_model_filepath = str(dest)
            ort.InferenceSession(str(src), sess_options=so, providers=["CPUExecutionProvider"])
            return "onnxruntime basic graph optimizations (O1)"
        from onnxruntime.transformers.fusion_options import FusionOptions
        from onnxruntime.transformers.optimizer import optimize_model

        cfg = json.loads((src.parent / "config.json").read_text(encoding="utf-8")) if (src.parent / "config.json").is_file() else {}
        mt = _model_type(cfg)
        opts = FusionOptions(mt)
        opts.enable_gelu_approximation = level == "O3"
        m = optimize_model(str(src), model_type=mt, num_heads=int(cfg.get("num_attention_heads") or 0),
                           hidden_size=int(cfg.get("hidden_size") or 0), optimization_options=opts, opt_level=1)
        m.save_model_to_file(str(dest))
        fused = {k: v for k, v in (m.get_fused_operator_statistics() or {}).items() if v}
    return f"onnxruntime transformer optimizer {level} ({mt}; fused {fused or 'none'})"


INT8_OP_TYPES = ("MatMul",)
SENSITIVITY_RATIO = 2.0  # a MatMul whose simulated int8 error is this many times the median error stays fp32
FP32_FRACTION = 1 / 6  # and so does the most int8-sensitive sixth of the MatMuls
CALIBRATION_AGREEMENT = 1.0  # dynamic int8 that changes any calibration label (texts the model was trained on): weight-only int8
WEIGHT_ONLY_BLOCK = 32


def const_matmuls(model: Any) -> list[tuple[str, str, str]]:
    """(node name, activation input, weight initializer) of every named MatMul whose B is a 2-D float
    initializer: the nodes onnxruntime's dynamic quantizer turns into int8 (``MatMulConstBOnly``)."""
    inits = {i.name: i for i in model.graph.initializer}
    out = []
    for node in model.graph.node:
        if node.op_type != "MatMul" or not node.name or len(node.input) < 2:
            continue
        w = inits.get(node.input[1])
        if w is not None and len(w.dims) == 2 and w.data_type == 1:  # FLOAT
            out.append((node.name, node.input[0], node.input[1]))
    return out


def _int8_weight(w: Any) -> Any:
    """``w`` through onnxruntime's int8 weights: symmetric, one scale per output channel."""
    import numpy as np

    ws = np.abs(w).max(axis=0, keepdims=True) / 127.0
    ws[ws == 0] = 1.0
    return (np.round(w / ws) * ws).astype(np.float32)


def _uint8_activation(a: Any, lo: float, hi: float) -> Any:
    """``a`` through DynamicQuantizeLinear: uint8, asymmetric, one scale for the whole tensor (range lo..hi)."""
    import numpy as np

    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = (hi - lo) / 255.0 or 1.0
    zp = np.clip(np.round(-lo / scale), 0, 255)
    return ((np.clip(np.round(a / scale) + zp, 0, 255) - zp) * scale).astype(np.float32)


def matmul_sensitivity(src: Path, feeds: Sequence[dict[str, Any]], *, max_rows: int = 256,
                       sample_rows: int = 64) -> dict[str, float]:
    """Per-node sensitivity to int8, measured on real inputs: the fp32 graph runs ``feeds`` once with every
    quantizable MatMul's activation exposed; for each node, the relative error ||AW - q(A)q(W)|| / ||AW|| of
    onnxruntime's dynamic int8 arithmetic on those activations (batches as they come, padding included)."""
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    model = onnx.load(str(src))
    cands = const_matmuls(model)
    inits = {i.name: i for i in model.graph.initializer}
    have = {o.name for o in model.graph.output}
    acts = sorted({a for _, a, _ in cands})
    for a in acts:
        if a not in have:
            model.graph.output.append(onnx.ValueInfoProto(name=a))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC  # no fusions: every MatMul stays
    so.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), sess_options=so, providers=["CPUExecutionProvider"])
    weights = {n: numpy_helper.to_array(inits[w]).astype(np.float32) for n, _, w in cands}
    qweights = {n: _int8_weight(w) for n, w in weights.items()}
    num = dict.fromkeys(weights, 0.0)
    den = dict.fromkeys(weights, 0.0)
    rows, rng = 0, np.random.default_rng(0)
    for feed in feeds:
        got = dict(zip(acts, sess.run(acts, feed)))
        for name, act, _ in cands:
            w = weights[name]
            a = np.asarray(got[act], dtype=np.float32).reshape(-1, w.shape[0])
            lo, hi = float(a.min()), float(a.max())  # the range onnxruntime sees: the whole batch
            a = a[rng.permutation(len(a))[:sample_rows]]  # the error on a sample of its rows
            y = a @ w
            num[name] += float(np.square(y - _uint8_activation(a, lo, hi) @ qweights[name]).sum())
            den[name] += float(np.square(y).sum())
        rows += int(next(iter(feed.values())).shape[0])
        if rows >= max_rows:
            break
    return {n: float(np.sqrt(num[n] / den[n])) if den[n] > 0 else 0.0 for n in weights}


def sensitive_nodes(sensitivity: dict[str, float], fraction: float = FP32_FRACTION,
                    ratio: float = SENSITIVITY_RATIO) -> list[str]:
    """The nodes to keep in fp32, most sensitive first: the top ``fraction`` of nodes by measured int8 error
    (one in six: on a 6-layer BERT, about one MatMul per layer), and any outlier whose error is more than
    ``ratio`` times the median node's."""
    import math

    import numpy as np

    if not sensitivity:
        return []
    order = sorted(sensitivity, key=lambda n: -sensitivity[n])
    med = float(np.median(list(sensitivity.values())))
    top = math.ceil(fraction * len(order)) if len(order) > 4 else 0
    return [n for i, n in enumerate(order) if i < top or sensitivity[n] > ratio * med]


def calibration_feeds(onnx_path: Path, tokenizer: Any, texts: Sequence[str], pairs: Sequence[str] | None = None, *,
                      max_length: int | None = None, batch_size: int = 32) -> list[dict[str, Any]]:
    """The graph's inputs for ``texts``, tokenized in padded batches as batch prediction feeds them."""
    import numpy as np

    names = [i["name"] for i in graph_signature(onnx_path)["inputs"]]
    feeds = []
    for i in range(0, len(texts), batch_size):
        args = (list(texts[i:i + batch_size]),) + ((list(pairs[i:i + batch_size]),) if pairs else ())
        enc = tokenizer(*args, padding=True, truncation=True, max_length=max_length, return_tensors="np")
        feed = {k: np.asarray(enc[k], dtype=np.int64) for k in names if k in enc}
        if "token_type_ids" in names and "token_type_ids" not in feed:
            feed["token_type_ids"] = np.zeros_like(feed["input_ids"])
        feeds.append(feed)
    return feeds


def _agreement(a: Path, b: Path, feeds: Sequence[dict[str, Any]]) -> float:
    """Label agreement of two graphs' first output on ``feeds``."""
    import numpy as np

    sa, sb = session(a), session(b)
    same = total = 0
    for feed in feeds:
        la = sa.run(None, {k: v for k, v in feed.items() if k in {i.name for i in sa.get_inputs()}})[0].argmax(-1)
        lb = sb.run(None, {k: v for k, v in feed.items() if k in {i.name for i in sb.get_inputs()}})[0].argmax(-1)
        same, total = same + int(np.sum(la == lb)), total + int(la.size)
    return same / total if total else 1.0


def quantize_int8(src: Path, dest: Path, *, calibration: Sequence[dict[str, Any]] | None = None,
                  calibration_source: str = "", per_channel: bool = True, exclude_nodes: Sequence[str] = (),
                  min_agreement: float = CALIBRATION_AGREEMENT) -> dict[str, Any]:
    """int8 with onnxruntime's quantizers; writes ``dest`` and returns the method as recorded in
    ``export_info.json``.

    First dynamic int8 (``quantize_dynamic``: weights int8 per output channel, activations uint8 per tensor at
    run time, the fastest on CPU) of every MatMul with constant weights except the ones measured as sensitive
    on ``calibration`` (feeds of real texts, :func:`matmul_sensitivity`), which stay fp32, plus
    ``exclude_nodes``. When its labels agree with fp32 on fewer than ``min_agreement`` of the calibration
    texts, weight-only int8 instead (``MatMulNBitsQuantizer``, 8-bit symmetric weights in blocks of 32,
    fp32 activations): a third smaller than fp32 but not faster; it keeps the labels."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    sens: dict[str, float] = {}
    if calibration:
        sens = matmul_sensitivity(src, calibration)
    keep = list(dict.fromkeys([*sensitive_nodes(sens), *exclude_nodes]))
    total = len(const_matmuls(onnx.load(str(src), load_external_data=False)))
    with _quiet():
        quantize_dynamic(str(src), str(dest), op_types_to_quantize=list(INT8_OP_TYPES), per_channel=per_channel,
                         weight_type=QuantType.QInt8, nodes_to_exclude=keep or None,
                         extra_options={"MatMulConstBOnly": True})
    how = "per-channel" if per_channel else "per-tensor"
    info: dict[str, Any] = {
        "method": "onnxruntime quantize_dynamic",
        "kind": "dynamic",  # weights int8, activations quantized at run time (variant_claims.INT8_KINDS)
        "description": (f"dynamic int8 (onnxruntime quantize_dynamic, MatMul, {how} int8 weights, uint8 activations "
                        f"per tensor at run time); {len(keep)} of {total} MatMuls kept fp32"
                        + (f" (the most int8-sensitive, measured on {calibration_source})" if sens else "")),
        "op_types": list(INT8_OP_TYPES),
        "weights": f"int8 symmetric {how}",
        "activations": "uint8 asymmetric per tensor, dynamic",
        "quantized_nodes": total - len(keep),
        "fp32_nodes": keep,
        "selection": (f"measured: the most sensitive {FP32_FRACTION:.0%} of MatMuls by simulated int8 error, and any "
                      f"above {SENSITIVITY_RATIO:g}x the median node's"
                      if sens else "none (no calibration texts)"),
        "calibration": calibration_source or None,
        "sensitivity": {n: round(e, 5) for n, e in sorted(sens.items(), key=lambda kv: -kv[1])},
    }
    if not calibration:
        return info
    info["calibration_agreement"] = agree = round(_agreement(src, dest, calibration), 5)
    if agree >= min_agreement:
        return info
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    with _quiet():
        q = MatMulNBitsQuantizer(str(src), bits=8, block_size=WEIGHT_ONLY_BLOCK, is_symmetric=True, accuracy_level=1,
                                 nodes_to_exclude=list(exclude_nodes))
        q.process()
        q.model.save_model_to_file(str(dest), use_external_data_format=False)
    agree2 = round(_agreement(src, dest, calibration), 5)
    return {
        "method": "onnxruntime MatMulNBitsQuantizer (weight-only int8)",
        "kind": "weight-only",  # MatMulNBits: weights int8, dequantized to fp32 at run time
        "description": (f"weight-only int8 (onnxruntime MatMulNBitsQuantizer, 8-bit symmetric weights in blocks of "
                        f"{WEIGHT_ONLY_BLOCK}, dequantized to fp32 for the matmul); dynamic int8 agreed with fp32 on only {agree:.1%} of "
                        f"{calibration_source} (< {min_agreement:.1%})"),
        "op_types": list(INT8_OP_TYPES),
        "weights": f"int8 symmetric, blocks of {WEIGHT_ONLY_BLOCK}",
        "activations": "fp32 (accuracy_level 1: weights dequantized in the kernel)",
        "quantized_nodes": total - len(exclude_nodes),
        "fp32_nodes": list(exclude_nodes),
        "calibration": calibration_source,
        "calibration_agreement": agree2,
        "rejected": {k: info[k] for k in ("method", "kind", "description", "fp32_nodes", "calibration_agreement")},
        "sensitivity": info["sensitivity"],
    }
