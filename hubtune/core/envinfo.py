"""What hubtune sees on this machine (not a step): libraries, torch and its CUDA, GPUs, ONNX Runtime
providers, CPU model and the flags that decide the fast path (AMX, AVX-512 VNNI/BF16). ``hubtune env``
prints it; benchmark tables name the machine with it."""

from __future__ import annotations

import functools
import os
import platform
from typing import Any

from hubtune import __version__
from hubtune.core.compat import versions

CPU_FLAGS = ("amx_tile", "amx_bf16", "amx_int8", "avx512f", "avx512_vnni", "avx512_bf16", "avx2", "fma")


def cpu_info() -> dict[str, Any]:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name") and model in ("", platform.machine(), platform.processor()):
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                if flags and model:
                    break
    except OSError:
        pass
    return {"model": model, "cores": os.cpu_count(), "flags": {f: f in flags for f in CPU_FLAGS}}


def torch_info() -> dict[str, Any]:
    try:
        import torch
    except ImportError:
        return {"installed": False}
    out: dict[str, Any] = {
        "installed": True,
        "version": torch.__version__,
        "cuda": torch.version.cuda,
        "cuda_available": bool(torch.cuda.is_available()),
        "threads": torch.get_num_threads(),
        "gpus": [],
    }
    try:
        out["cpu_amx"] = bool(torch.cpu._is_amx_tile_supported())  # noqa: SLF001 - the documented probe
    except Exception:  # noqa: BLE001 - older torch
        out["cpu_amx"] = None
    if out["cuda_available"]:
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            out["gpus"].append({
                "index": i, "name": p.name, "memory_gib": round(p.total_memory / 2**30, 1),
                "capability": f"{p.major}.{p.minor}", "bf16": p.major >= 8,
            })
    return out


BF16_MIN_RATIO = 1.5  # a CPU's bf16 matmul must run at least this many times fp32 to count as fast


@functools.lru_cache(maxsize=1)
def cpu_bf16_matmul_ratio(n: int = 512, reps: int = 10) -> float:
    """How many times fp32 a bf16 ``torch.matmul`` runs on one core of this CPU: an ``n`` x ``n`` product, bf16
    and fp32 interleaved, best of ``reps`` each (~50 ms, once per process). One thread and interleaving keep it
    steady on a busy machine (a CI runner). Measured rather than assumed from the flags: oneDNN's bf16 kernels
    are fast only where the CPU has native bf16 dot products."""
    import time

    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        mats = {dt: (torch.randn(n, n, dtype=dt), torch.randn(n, n, dtype=dt)) for dt in (torch.float32, torch.bfloat16)}
        best = dict.fromkeys(mats, float("inf"))
        for a, b in mats.values():
            torch.matmul(a, b)  # first call: kernel selection
        for _ in range(reps):
            for dt, (a, b) in mats.items():
                t = time.perf_counter()
                torch.matmul(a, b)
                best[dt] = min(best[dt], time.perf_counter() - t)
    finally:
        torch.set_num_threads(threads)
    return best[torch.float32] / max(best[torch.bfloat16], 1e-9)


def fast_bf16() -> tuple[bool, str]:
    """Whether this machine runs bf16 matmuls several times faster than fp32, and why: a CUDA GPU of compute
    capability >= 8.0 (Ampere or newer), a CPU with AMX tiles (``torch.cpu._is_amx_tile_supported()``), or a CPU
    with native bf16 dot products (AVX-512 BF16) whose bf16 matmul measures >= ``BF16_MIN_RATIO`` x fp32."""
    import torch

    if torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability(0)
        name = torch.cuda.get_device_name(0)
        if major >= 8:
            return True, f"CUDA GPU {name} (compute {major}.{minor} >= 8.0) runs bf16 on its tensor cores"
        return False, f"CUDA GPU {name} (compute {major}.{minor} < 8.0) has no fast bf16"
    return cpu_fast_bf16()


def cpu_fast_bf16() -> tuple[bool, str]:
    """The CPU half of :func:`fast_bf16` (whatever GPU there is): AMX tiles, or AVX-512 BF16 with a bf16 matmul
    measured >= ``BF16_MIN_RATIO`` x fp32 (no flag: no measurement)."""
    import torch

    try:
        amx = bool(torch.cpu._is_amx_tile_supported())  # noqa: SLF001 - the documented probe
    except Exception:  # noqa: BLE001 - older torch
        amx = bool(cpu_info()["flags"].get("amx_tile"))
    if amx:
        return True, "CPU with AMX: bf16 matmuls run several times faster than fp32"
    if not cpu_info()["flags"].get("avx512_bf16"):
        return False, "CPU without AMX or AVX-512 BF16 (and no CUDA GPU): bf16 would be emulated, not faster than fp32"
    ratio = cpu_bf16_matmul_ratio()
    if ratio >= BF16_MIN_RATIO:
        return True, f"CPU with AVX-512 BF16 (no AMX): a bf16 matmul measured {ratio:.1f}x fp32 here"
    return False, (f"CPU with AVX-512 BF16 (no AMX), but a bf16 matmul measured only {ratio:.1f}x fp32 here "
                   f"(fast means >= {BF16_MIN_RATIO:g}x)")


def ort_info() -> dict[str, Any]:
    try:
        import onnxruntime as ort
    except ImportError:
        return {"installed": False, "providers": []}
    return {"installed": True, "version": ort.__version__, "providers": list(ort.get_available_providers())}


def fast_path(tinfo: dict[str, Any], oinfo: dict[str, Any], cinfo: dict[str, Any]) -> dict[str, str]:
    """The path the hardware favours for batch prediction, and why (a measured choice per model may differ)."""
    gpus = tinfo.get("gpus") or []
    if gpus:
        dtype = "bf16" if gpus[0]["bf16"] else "fp16"
        why = f"CUDA GPU {gpus[0]['name']} (compute {gpus[0]['capability']})"
        if "CUDAExecutionProvider" in oinfo.get("providers", []):
            why += "; onnxruntime's CUDA provider is also present"
        return {"backend": "torch", "dtype": dtype, "device": "cuda", "reason": why}
    amx = tinfo.get("cpu_amx") if tinfo.get("cpu_amx") is not None else cinfo["flags"].get("amx_tile")
    if amx:
        return {"backend": "torch", "dtype": "bf16", "device": "cpu", "reason": "CPU with AMX: bf16 matmuls run several times fp32"}
    if tinfo.get("installed"):
        fast, why = cpu_fast_bf16()
        if fast:
            return {"backend": "torch bf16, or torch/onnx fp32 (the fastest, measured per model)", "dtype": "bf16 or fp32",
                    "device": "cpu", "reason": why + "; bf16 is used only where its labels agree with fp32"}
    return {"backend": "torch or onnx (the faster, measured per model)", "dtype": "fp32", "device": "cpu",
            "reason": "no GPU and no fast bf16: fp32; onnxruntime was the faster fp32 path on AVX-512 VNNI machines"}


def describe() -> dict[str, Any]:
    cinfo, tinfo, oinfo = cpu_info(), torch_info(), ort_info()
    return {
        "hubtune": __version__,
        "python": platform.python_version(),
        "libraries": versions(),
        "cpu": cinfo,
        "torch": tinfo,
        "onnxruntime": oinfo,
        "fast_path": fast_path(tinfo, oinfo, cinfo),
    }
