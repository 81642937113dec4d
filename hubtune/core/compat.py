"""Version facts and the few keyword differences between the library lines hubtune supports (not a step).

hubtune runs on two lines of the Hugging Face stack: the current one (transformers >= 5.3, huggingface_hub
1.x/2.x, torch's ONNX exporter) and the Optimum lane (transformers 4.57, huggingface_hub 0.36, optimum-onnx).
Everything that differs between them by name only lives here, so the steps read the same on both.
Nothing here imports torch or transformers at import time: versions come from the installed metadata.
"""

from __future__ import annotations

import functools
import importlib.metadata as md
import importlib.util
import re
from typing import Any

REPORTED_PACKAGES = ("transformers", "huggingface_hub", "torch", "onnxruntime")


def installed_version(dist: str) -> str | None:
    """The installed version of a distribution, or None (read from metadata, nothing imported)."""
    names = [dist, dist.replace("_", "-"), dist.replace("-", "_")]
    for name in names:
        try:
            return md.version(name)
        except md.PackageNotFoundError:
            continue
    if dist == "onnxruntime":  # the GPU build installs under another name
        for alt in ("onnxruntime-gpu", "onnxruntime-directml", "onnxruntime-openvino"):
            try:
                return md.version(alt)
            except md.PackageNotFoundError:
                continue
    return None


def version_tuple(text: str | None) -> tuple[int, int, int, str]:
    """``"5.0.0rc3"`` -> ``(5, 0, 0, "rc3")``; a final release sorts after its pre-releases (suffix ``"~"``)."""
    if not text:
        return (0, 0, 0, "")
    m = re.match(r"(\d+)(?:\.(\d+))?(?:\.(\d+))?(.*)", text.strip())
    if not m:
        return (0, 0, 0, "")
    major, minor, patch, rest = m.groups()
    rest = rest.split("+", 1)[0].lstrip(".")
    # "~" sorts after letters: 5.0.0 (final) > 5.0.0rc3 > 5.0.0dev0 ; ".post1" stays after the final
    suffix = "~" if not rest else ("~" + rest if rest.startswith("post") else rest)
    return (int(major), int(minor or 0), int(patch or 0), suffix)


def versions() -> dict[str, str | None]:
    """The versions of the libraries hubtune runs on (``hubtune --version`` prints them)."""
    return {name: installed_version(name) for name in REPORTED_PACKAGES}


@functools.lru_cache(maxsize=None)
def transformers_version() -> str:
    return installed_version("transformers") or "0"


def transformers_major() -> int:
    return version_tuple(transformers_version())[0]


def dtype_kwargs(dtype: Any) -> dict[str, Any]:
    """``from_pretrained`` takes ``dtype`` on transformers 5 and ``torch_dtype`` before."""
    if dtype is None:
        return {}
    return {"dtype": dtype} if transformers_major() >= 5 else {"torch_dtype": dtype}


def training_arguments(**kw: Any) -> Any:
    """``TrainingArguments`` from the 4.57 names, translated where transformers 5 renamed or dropped them.

    * ``warmup_ratio=r`` -> ``warmup_steps=r`` (5.x takes a ratio as a float in [0, 1));
    * ``group_by_length=True`` -> ``train_sampling_strategy="group_by_length"``;
    * ``save_safetensors`` is dropped where safetensors is the only format.
    """
    import dataclasses

    from transformers import TrainingArguments

    fields = {f.name for f in dataclasses.fields(TrainingArguments)}
    if "warmup_ratio" in kw and "warmup_ratio" not in fields:
        ratio = float(kw.pop("warmup_ratio") or 0.0)
        if ratio > 0 and not kw.get("warmup_steps"):
            kw["warmup_steps"] = ratio
    if "group_by_length" in kw and "group_by_length" not in fields:
        if kw.pop("group_by_length"):
            kw["train_sampling_strategy"] = "group_by_length"
    if "save_safetensors" in kw and "save_safetensors" not in fields:
        kw.pop("save_safetensors")
    return TrainingArguments(**kw)


def trainer_loss_over_resumed_steps() -> bool:
    """transformers >= 5.19 reports a resumed ``Trainer.train``'s ``train_loss`` as the mean over the steps that
    call trained; before, the sum over those steps was divided by every step since the start (issue 16.10)."""
    return version_tuple(transformers_version()) >= (5, 19, 0, "")


# Warnings the libraries raise about themselves on a correct run (regex on the message start, any category):
# a user can do nothing about them, and they hide what matters. Anything else still shows.
EXPECTED_WARNINGS = (
    # pyarrow >= 25 about datasets' own sort options (train_test_split, shuffle)
    r"Specifying null_placement in SortOptions is deprecated",
    # peft calls transformers' old name
    r"`is_gradient_checkpointing` is deprecated",
    # the ONNX export traces the model; the export's parity gate measures the result
    r"Converting a tensor to a Python (boolean|index|integer|float)",
    r"torch\.tensor results are registered as constants in the trace",
    r"Iterating over a tensor might cause the trace to be incorrect",
    # libraries (optimum, pipeline) passing the 4.x keyword to transformers 5
    r"`torch_dtype` is deprecated",
)


def quiet_warnings() -> None:
    """Silence :data:`EXPECTED_WARNINGS` (imports nothing; the CLI calls it before each command)."""
    import warnings

    for pattern in EXPECTED_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)


def quiet_libraries(progress: bool = False) -> None:
    """Library chatter off: transformers warnings below error, and its weight-loading bars; datasets' bars
    too unless ``progress``. Model loading is hubtune's own step, reported by hubtune."""
    import transformers

    quiet_warnings()
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    if not progress:
        import datasets

        datasets.disable_progress_bars()


def optimum_exporter_available() -> bool:
    """True where Optimum's ONNX exporter (optimum-onnx) is installed beside a transformers it supports."""
    if importlib.util.find_spec("optimum") is None:
        return False
    try:
        return importlib.util.find_spec("optimum.exporters.onnx") is not None
    except (ImportError, ValueError):
        return False
