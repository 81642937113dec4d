"""What an exported variant may claim against the fp32 graph, as measured by the export that made it.

Every optional variant (``onnx-O2``, ``onnx-int8``, ...) is compared with ``model.onnx`` (fp32) on the machine
that exported it: its size and, when the export measured speed, its CPU rows/s against fp32's (the ratio and the
CPU model named). An int8 file is named by what it is (:data:`INT8_KINDS`: dynamic, static or weight-only int8),
and a variant that is neither faster nor smaller than fp32 is refused (:func:`refusal`) like one failing its
gate. The card's int8 sentence (:func:`int8_sentence`) says only what was measured: "smaller" when it is,
"x.xx times the fp32 speed on CPU" always, "faster" never unless the ratio is above 1.
"""

from __future__ import annotations

from typing import Any

INT8_KINDS = {
    "dynamic": "dynamic int8 (weights int8, activations quantized to int8 at run time)",
    "static": "static int8 (weights int8, activations quantized with ranges calibrated ahead of time)",
    "weight-only": "weight-only int8 (MatMulNBits: weights stored int8, dequantized to fp32 at run time)",
}
NOT_MEASURED = "speed not measured (this export ran without a throughput measure)"


def machine() -> str:
    """The CPU the speeds were measured on, as the card and the export table name it."""
    from hubtune.core.envinfo import cpu_info

    cpu = cpu_info()
    return f"{cpu['model']} ({cpu['cores']} cores)" if cpu.get("cores") else str(cpu["model"])


def int8_kind(record: dict[str, Any] | None) -> str:
    """``dynamic`` / ``static`` / ``weight-only`` from a quantization record (or a variant's ``config`` text of an
    export by an older hubtune, which named no kind)."""
    rec = record or {}
    if rec.get("kind") in INT8_KINDS:
        return str(rec["kind"])
    text = " ".join(str(rec.get(k) or "") for k in ("method", "description", "config")).lower()
    return "weight-only" if "weight-only" in text or "matmulnbits" in text else "static" if "static" in text else "dynamic"


def versus_fp32(size_mb: float, throughput: dict[str, Any] | None, fp32_size_mb: float,
                fp32_throughput: dict[str, Any] | None, cpu: str | None = None) -> dict[str, Any]:
    """A variant's size and speed against fp32's: ``smaller`` (fewer bytes), ``faster`` (rows/s ratio above 1;
    None when either speed was not measured), the ratios and the CPU they were measured on."""
    rec: dict[str, Any] = {"size_mb": size_mb, "fp32_size_mb": fp32_size_mb,
                           "size_ratio": round(size_mb / fp32_size_mb, 3) if fp32_size_mb else None,
                           "smaller": bool(fp32_size_mb) and size_mb < fp32_size_mb}
    rate, base = (throughput or {}).get("rows_per_s"), (fp32_throughput or {}).get("rows_per_s")
    if rate and base:
        ratio = float(rate) / float(base)
        rec.update(rows_per_s=rate, fp32_rows_per_s=base, speed_ratio=round(ratio, 2), faster=round(ratio, 2) > 1.0,
                   cpu=cpu or machine())
    else:
        rec.update(speed_ratio=None, faster=None, speed=NOT_MEASURED)
    return rec


def refusal(claim: dict[str, Any]) -> str | None:
    """Why a variant is not worth publishing: measured no faster than fp32 and no smaller (None otherwise; an
    unmeasured speed refuses nothing)."""
    if claim.get("faster") is False and not claim.get("smaller"):
        return (f"neither faster nor smaller than fp32: {speed_phrase(claim)}, {claim['size_mb']:.2f} MB vs "
                f"{claim['fp32_size_mb']:.2f} MB")
    return None


def speed_phrase(claim: dict[str, Any]) -> str:
    """``0.94 times the fp32 speed on AMD EPYC (2 cores) (22.1 vs 23.5 rows/s)``, or that it was not measured."""
    if claim.get("speed_ratio") is None:
        return NOT_MEASURED
    return (f"{claim['speed_ratio']:.2f} times the fp32 speed on {claim.get('cpu') or 'the machine that exported it'} "
            f"({claim['rows_per_s']} vs {claim['fp32_rows_per_s']} rows/s)")


def size_phrase(claim: dict[str, Any]) -> str:
    word = "smaller than" if claim.get("smaller") else "not smaller than"
    return f"{claim['size_mb']:.1f} MB vs {claim['fp32_size_mb']:.1f} MB for fp32 ({word} fp32)"


def claim_of(variants: dict[str, dict[str, Any]], name: str) -> dict[str, Any] | None:
    """The recorded claim of variant ``name`` (``run_summary.json["variants"]``), or one computed from its size and
    throughput beside fp32's where an older export recorded none (CPU unknown)."""
    rec, base = variants.get(name) or {}, variants.get("onnx") or {}
    if rec.get("claims"):
        return dict(rec["claims"])
    if not rec or not base.get("size_mb"):
        return None
    return versus_fp32(float(rec.get("size_mb") or 0), rec.get("throughput"), float(base["size_mb"]),
                       base.get("throughput"), cpu="the machine that exported it")


def int8_sentence(variants: dict[str, dict[str, Any]], name: str = "onnx-int8") -> str | None:
    """The card's int8 sentence, from what the export recorded: which kind of int8, its size and speed against
    fp32 as measured, and its agreement / accuracy drop against PyTorch."""
    rec = variants.get(name) or {}
    claim = claim_of(variants, name)
    if not rec.get("file") or claim is None:
        return None
    kind = INT8_KINDS[claim.get("kind") or int8_kind(rec)]
    if claim.get("speed_ratio") is None:
        speed = "its speed was not measured"
    elif claim.get("faster"):
        speed = f"it is faster: {speed_phrase(claim)}"
    else:
        speed = f"it is not faster: {speed_phrase(claim)}"
    par = rec.get("parity") or {}
    measured = []
    if par.get("label_agreement") is not None:
        measured.append(f"agreement with PyTorch {float(par['label_agreement']):.2%}")
    if rec.get("accuracy_drop_pt") is not None:
        measured.append(f"accuracy drop {float(rec['accuracy_drop_pt']):.2f} pt")
    on = f" on {par['num_examples']} examples" if par.get("num_examples") else ""
    gate = f" Measured by the export gate{on}: {', '.join(measured)}." if measured else ""
    return (f"The int8 variant (`{rec['file']}`) is {kind}: {size_phrase(claim)}; {speed}.{gate} "
            "Use the fp32 files when every point matters.")
