"""Running a graph with OpenVINO (not a step): :class:`OvSession` reads an ONNX file or an OpenVINO IR
(``openvino_model.xml`` + ``.bin``, optimum-intel's layout) and compiles it for the CPU at a precision (OpenVINO's
inference precision hint: ``fp32`` = f32, ``bf16`` = bf16 where the CPU has bf16 units; ``int8``: the weights
compressed to int8 by NNCF, activations at the CPU's default precision), behind the subset of onnxruntime's
``InferenceSession`` that hubtune's ONNX code uses (``get_inputs``, ``get_outputs``, ``get_providers``, ``run``),
so :class:`~hubtune.core.onnx_session.OrtClassifier`, the export gates and batch-predict's graph runner take it
as they take an onnxruntime session. openvino (and nncf) are imported when a session is made."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from hubtune.core.errors import ConfigError, MissingDependencyError, ModelLoadError

OV_DIR = "openvino"  # optimum-intel's layout in a model repo: openvino/openvino_model.xml + .bin
OV_XML = "openvino_model.xml"
OV_BIN = "openvino_model.bin"
PRECISIONS = {"fp32": "f32", "bf16": "bf16", "int8": None}  # int8: weights int8, the CPU's default activations
INSTALL = 'pip install openvino (x86-64: `pip install hubtune` includes it; int8: pip install "hubtune[openvino]")'


def openvino_module() -> Any:
    """``import openvino``, or MissingDependencyError naming the pip line."""
    try:
        import openvino
    except ImportError as exc:
        raise MissingDependencyError(
            f"--backend openvino needs OpenVINO, which is not installed ({exc}); {INSTALL}, or use --backend onnx/torch"
        ) from None
    return openvino


def require(flag: str) -> None:
    """OpenVINO importable, else MissingDependencyError naming ``flag`` (checked before any work)."""
    try:
        openvino_module()
    except MissingDependencyError:
        raise MissingDependencyError(
            f"{flag} needs OpenVINO, which is not installed (`import openvino` failed); expected it installed: "
            f"{INSTALL}, or drop {flag}"
        ) from None


def available() -> bool:
    """Whether OpenVINO can be imported (found without importing it)."""
    import importlib.util

    return importlib.util.find_spec("openvino") is not None


def cpu_bf16() -> bool:
    """Whether OpenVINO's CPU plugin runs bf16 natively here (AVX-512 BF16 or AMX): its default precision then."""
    try:
        ov = openvino_module()
        caps = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except Exception:  # noqa: BLE001 - no OpenVINO or no CPU plugin: no bf16 path
        return False
    return "BF16" in [str(c).upper() for c in caps]


def compress_int8(model: Any) -> Any:
    """The model with its weights compressed to int8 by NNCF (``compress_weights``: asymmetric int8 per output
    channel, weight-only; activations stay at the CPU's precision)."""
    try:
        import nncf
    except ImportError as exc:
        raise MissingDependencyError(
            f"OpenVINO int8 compresses the weights with NNCF, which is not installed ({exc}); "
            'pip install "hubtune[openvino]" (or nncf), or use --dtype fp32/bf16'
        ) from None
    import contextlib
    import io
    import logging

    nncf.set_log_level(logging.ERROR)  # its statistics table and progress bar: hubtune reports the step itself
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_ASYM)


class OvSession:
    """A compiled OpenVINO model with an onnxruntime session's call shape. ``path``: an ONNX file or an IR
    ``.xml``; ``precision``: ``fp32``, ``bf16`` or ``int8`` (see the module docstring)."""

    def __init__(self, path: Path, *, precision: str = "fp32", threads: int | None = None) -> None:
        if precision not in PRECISIONS:
            raise ConfigError(f"OpenVINO precision {precision!r} is unknown; expected one of {', '.join(PRECISIONS)}")
        if precision == "bf16" and not cpu_bf16():
            raise ConfigError(
                "--dtype bf16 with --backend openvino needs a CPU with bf16 units (AVX-512 BF16 or AMX), which this "
                "one lacks; use --dtype fp32 (or --dtype auto)"
            )
        ov = openvino_module()
        self.path = Path(path)
        self.precision = precision
        core = ov.Core()
        try:
            model = core.read_model(str(path))
        except Exception as exc:  # noqa: BLE001 - OpenVINO's own error types
            raise ModelLoadError(
                f"OpenVINO could not read {path} ({type(exc).__name__}: {' '.join(str(exc).split())[:200]}); expected "
                "an ONNX file or openvino_model.xml + .bin: re-export with `hubtune export`, or use --backend onnx/torch"
            ) from None
        if precision == "int8":
            model = compress_int8(model)
        config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY",
                                  "INFERENCE_NUM_THREADS": int(threads or os.cpu_count() or 1)}
        if PRECISIONS[precision]:
            config["INFERENCE_PRECISION_HINT"] = PRECISIONS[precision]
        self.compiled = core.compile_model(model, "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.inference_precision = str(self.compiled.get_property("INFERENCE_PRECISION_HINT"))

    def get_inputs(self) -> list[Any]:
        return [SimpleNamespace(name=p.get_any_name(), shape=dims(p)) for p in self.compiled.inputs]

    def get_outputs(self) -> list[Any]:
        return [SimpleNamespace(name=p.get_any_name(), shape=dims(p)) for p in self.compiled.outputs]

    def get_providers(self) -> list[str]:
        return ["OpenVINO CPU"]

    def run(self, outputs: list[str] | None, feeds: dict[str, Any]) -> list[Any]:
        import numpy as np

        self.request.infer({k: np.ascontiguousarray(v) for k, v in feeds.items()})
        ports = self.compiled.outputs if not outputs else [self.compiled.output(n) for n in outputs]
        return [np.array(self.request.get_tensor(p).data, copy=True) for p in ports]


def dims(port: Any) -> list[Any]:
    """A port's dimensions as onnxruntime reports them: an int where fixed, a name (str) where dynamic."""
    out: list[Any] = []
    for k, d in enumerate(port.get_partial_shape()):
        out.append(d.get_length() if d.is_static else f"dim{k}")
    return out


def save_ir(path: Path, folder: Path) -> list[Path]:
    """OpenVINO's IR of the ONNX file ``path`` in ``folder`` (``openvino_model.xml`` + ``.bin``, fp32 weights as
    the graph has them: no fp16 compression); returns the two files."""
    ov = openvino_module()
    folder.mkdir(parents=True, exist_ok=True)
    model = ov.Core().read_model(str(path))
    ov.save_model(model, str(folder / OV_XML), compress_to_fp16=False)
    return [folder / OV_XML, folder / OV_BIN]
