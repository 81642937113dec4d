"""The OpenVINO variant of `hubtune export --openvino` (issue 38), beside the ONNX files of :mod:`hubtune.publish.export`.

Layout (optimum-intel's): ``<model>/openvino/openvino_model.xml`` + ``.bin`` beside ``<model>/onnx/``, with
``config.json`` and the tokenizer files, and ``export_info.json`` (the ``source_weights`` of the ONNX export, the
gate the IR passed, the OpenVINO version), so ``OVModelForSequenceClassification.from_pretrained(repo,
subfolder="openvino")`` loads it and ``batch-predict --backend openvino`` runs it (checked against the weights
beside it by ``check_matches_weights``).

The IR is OpenVINO's conversion of the fp32 ``model.onnx`` once that graph passed its gate, and it passes the SAME
gate (compiled at fp32, its logits / embeddings / task outputs against PyTorch's on the same texts: the export's
``check``, given an :class:`~hubtune.core.ov_session.OvSession`); a failed gate writes nothing and is an
:class:`ExportParityError`. It is written like ``onnx/``: into a temporary folder beside it, renamed once
everything passed (``--overwrite`` replaces an existing one). Imports `errors`, `modeling`, `onnx_tools`,
`ov_session`, `parity`.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

from hubtune.core import ov_session
from hubtune.core.errors import ExportParityError, OutputExistsError
from hubtune.core.modeling import follow_umask
from hubtune.core.onnx_tools import INFO_FILE, write_info
from hubtune.core.parity import file_sha256, size_mb

FLAG = "--openvino"
NAME = "openvino"  # the variant's name in the export table and the run summary's variants
OV_XML = ov_session.OV_XML


def ir_folder(onnx_out: Path) -> Path:
    """Where the IR goes: ``openvino/`` beside an ``onnx/`` folder; beside another ``--output DIR``,
    ``DIR-openvino``."""
    return onnx_out.parent / (ov_session.OV_DIR if onnx_out.name == "onnx" else f"{onnx_out.name}-{ov_session.OV_DIR}")


def prepare(onnx_out: Path, overwrite: bool) -> Path:
    """Before any work: OpenVINO installed (else MissingDependencyError) and the IR folder free (else
    OutputExistsError, unless ``overwrite``); returns the IR folder."""
    ov_session.require(FLAG)
    dest = ir_folder(onnx_out)
    if dest.exists() and not overwrite:
        raise OutputExistsError(f"OpenVINO folder {dest} already exists; pass --overwrite to replace it, or drop {FLAG}")
    return dest


def build(onnx_dir: Path, onnx_file: str, dest: Path, info: dict[str, Any],
          check: Callable[[Any, Path], Any], gate: Callable[[Any], dict[str, Any]],
          say: Callable[[str], None]) -> tuple[Path, Any]:
    """The IR of ``onnx_dir/onnx_file`` (a graph that passed its gate) in a temporary folder beside ``dest``,
    gated by ``check(session, folder)`` (the export's fp32 check, returning its VariantReport): (the folder to
    rename into ``dest`` with :func:`commit`, the report). A failed gate removes the folder: ExportParityError."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    follow_umask(tmp)
    try:
        say(f"converting {onnx_file} to OpenVINO's IR ({ov_session.OV_XML})")
        files = ov_session.save_ir(onnx_dir / onnx_file, tmp)
        for f in sorted(onnx_dir.iterdir()):  # config.json and the tokenizer files, as optimum-intel lays them out
            if f.is_file() and ".onnx" not in f.name and f.name not in (INFO_FILE, "ort_config.json"):
                shutil.copy2(f, tmp / f.name)
        rep = check(ov_session.OvSession(files[0], precision="fp32"), tmp)
        if not rep.passed:
            allowed = rep.parity.allowed if rep.parity is not None else None
            expected = (f"max diff <= {allowed:.3g} and 100% agreement, the gate the fp32 ONNX passed"
                        if allowed is not None else "the gate the fp32 ONNX passed")
            err = ExportParityError(
                f"OpenVINO's IR of {onnx_file} does not match PyTorch: {rep.reason}; expected {expected}. Nothing "
                f"was written; drop {FLAG}, or loosen --tolerance if it is float noise"
            )
            err.figures, err.expected = rep.reason, expected
            raise err
        rep.file = f"{dest.name}/{ov_session.OV_XML}"
        rep.size_mb = size_mb(files)
        rep.sha256 = file_sha256(files[0])
        rep.config = f"fp32 IR of {onnx_file}, OpenVINO {version()}"
        write_info(tmp, {
            "format": "openvino-ir",
            "openvino": version(),
            "source": onnx_file,
            "source_sha256": file_sha256(onnx_dir / onnx_file),
            "source_weights": info.get("source_weights"),
            "gate": gate(rep),
            "files": {f.name: file_sha256(f) for f in files},
        })
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp, rep


def commit(tmp: Path, dest: Path) -> None:
    """The gated IR folder in place (an existing one replaced: ``--overwrite`` was checked in :func:`prepare`)."""
    if dest.exists():
        shutil.rmtree(dest)
    tmp.rename(dest)


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("openvino")
    except PackageNotFoundError:
        return "unknown"
