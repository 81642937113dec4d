"""Shared gate helpers (not a step) for ``merge`` and ``export``: logit parity, sizes, CPU throughput.

A parity gate compares the logits of a reference model (the adapter, the PyTorch model) with the logits of
the files about to be published (the merged model, the ONNX graph), on real texts, batched identically.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

# Real, varied English texts used when no held-out dataset is known (a bare adapter or model folder and no
# --eval-dataset). Parity only needs realistic inputs: lengths, punctuation, casing, emoji, mentions, urls.
REFERENCE_TEXTS: tuple[str, ...] = (
    "@united I would encourage you to re-interview the flight attendant on that flight. Uncomfortable.",
    "@JetBlue thanks for the quick rebooking, you guys are great!",
    "@AmericanAir my bag has been lost for three days and nobody answers the phone",
    "@SouthwestAir is the 6am flight to Denver on time?",
    "The hotel was clean, the staff friendly and breakfast was included. Would stay again.",
    "Worst customer service I have ever experienced. Never again.",
    "The package arrived on Tuesday.",
    "I can't believe how good this movie was, the ending made me cry :)",
    "meh",
    "It's fine I guess, nothing special, does what it says on the box.",
    "Absolutely terrible. The screen cracked after two days and support refused a refund!!!",
    "Flight delayed again... third time this month #frustrated",
    "Does anyone know if the store opens at 9 or 10 on Sundays?",
    "Loved the concert last night, the band played for almost three hours",
    "The battery lasts about a day with normal use.",
    "I waited 45 minutes on hold just to be disconnected. Unacceptable.",
    "Great food, slow service, decent prices.",
    "just landed in Boston, snow everywhere",
    "Thank you so much for your help today, you made my day! 😊",
    "The update broke everything and now the app crashes on start.",
    "Our meeting has been moved to Thursday at 3pm.",
    "This is hands down the best coffee in town.",
    "not sure how I feel about the new design tbh",
    "The instructions were confusing and two screws were missing from the box.",
    "@VirginAmerica you've got the best inflight entertainment, seriously",
    "Customer since 2009 and this is how you treat me? Cancelling my membership.",
    "The train leaves from platform 4.",
    "What a beautiful morning for a run along the river!",
    "Price went up again but the quality stayed the same.",
    "I ordered a medium and received a large, not complaining though",
    "Check out our new schedule at https://example.com/schedule",
    "The seats were cramped, the wifi did not work and the crew was rude.",
    "Can you please DM me the confirmation number?",
    "Fantastic experience from start to finish, highly recommended.",
    "It rained all weekend so we stayed in and played board games.",
    "Why is it so hard to get a straight answer from your agents?",
    "The museum is free on the first Sunday of every month.",
    "Really disappointed with the room, it smelled of smoke.",
    "Kudos to the pilot for that smooth landing in strong winds!",
    "I have no strong opinion on this one.",
)


@dataclass
class ParityReport:
    """How closely new logits match reference logits, and whether the gate passed."""

    max_abs_diff: float
    mean_abs_diff: float
    label_agreement: float
    num_examples: int
    tolerance: float | None
    min_label_agreement: float
    passed: bool
    texts_source: str
    scale: float | None = None  # a scaled gate: max |reference logit|, the tolerance allowed tolerance * max(1, scale)

    @property
    def allowed(self) -> float | None:
        """The largest |logit diff| the gate allowed (None: no logit check)."""
        if self.tolerance is None:
            return None
        return self.tolerance * max(1.0, self.scale) if self.scale is not None else self.tolerance

    def describe(self) -> str:
        tol = f" (tolerance {self.tolerance:g})" if self.tolerance is not None else ""
        if self.tolerance is not None and self.scale is not None and self.scale > 1.0:
            tol = f" (allowed {self.allowed:.3g}: tolerance {self.tolerance:g} x max |logit| {self.scale:.3g})"
        return (
            f"max |logit diff| {self.max_abs_diff:.3g}{tol}, label agreement {self.label_agreement:.2%} "
            f"(required {self.min_label_agreement:.2%}) on {self.num_examples} examples from {self.texts_source}"
        )


# Why an export gate's tolerance follows the logits' scale (issue 35: a faithful T5 graph was refused at max |diff|
# 7.3e-4 against a fixed 1e-4, with 100% of its labels the same):
SCALED_TOLERANCE_WHY = (
    "float32 keeps ~7 significant digits, and onnxruntime sums in another order than PyTorch (fused kernels, "
    "other tilings), so a faithful graph's error grows with the size of the values it sums: at |logit| ~100 a "
    "fixed 1e-4 asks for ~1e-6 relative, below what fp32 arithmetic through a deep network keeps. A wrong graph "
    "(a missing op, a wrong input, a fixed mask) is off by the logits' own order, 1e3-1e4 times the scaled "
    "tolerance; and 100% label agreement stays required. Logits within +-1 keep the absolute tolerance."
)


def output_agreement(candidate: np.ndarray, reference: np.ndarray, task: Any = None, logit_threshold: float = 0.0) -> float:
    """The fraction of rows that answer the same: ``task``'s own reading (a :class:`hubtune.tasks.base.Task`:
    multi-label, the same labels over the threshold, ``logit_threshold`` the threshold as a logit; regression, the
    same value to 1%), else the label (argmax); per-token outputs ([rows, tokens, labels], padded alike): the same
    tag on every token of the row, so the same entities."""
    candidate, reference = np.asarray(candidate), np.asarray(reference)
    if not len(reference):
        return 1.0
    if callable(getattr(task, "agreement", None)):
        return float(task.agreement(candidate, reference, logit_threshold))
    if reference.ndim == 3:
        return float((candidate.argmax(-1) == reference.argmax(-1)).all(-1).mean())
    return float((candidate.argmax(-1) == reference.argmax(-1)).mean())


def compare_logits(
    reference: np.ndarray,
    candidate: np.ndarray,
    *,
    tolerance: float | None,
    min_label_agreement: float = 1.0,
    texts_source: str = "",
    task: Any = None,
    scaled: bool = False,
) -> ParityReport:
    """Compare two ``(n, num_labels)`` logit arrays. ``tolerance=None`` skips the logit check; ``task``: how a
    row agrees (:func:`output_agreement`; default the argmax label).

    ``scaled``: the tolerance follows the logits' scale, max |diff| <= tolerance x max(1, max |reference logit|)
    (see :data:`SCALED_TOLERANCE_WHY`); logits within +-1 are held to ``tolerance`` itself."""
    reference = np.asarray(reference, dtype=np.float64)
    candidate = np.asarray(candidate, dtype=np.float64)
    scale = (float(np.abs(reference).max()) if reference.size and np.all(np.isfinite(reference)) else 0.0) if scaled else None
    if reference.shape != candidate.shape:
        return ParityReport(float("inf"), float("inf"), 0.0, int(reference.shape[0]), tolerance, min_label_agreement,
                            False, texts_source, scale)
    n = int(reference.shape[0])
    diff = np.abs(reference - candidate)
    max_diff = float(diff.max()) if n else 0.0
    mean_diff = float(diff.mean()) if n else 0.0
    if not np.all(np.isfinite(candidate)):
        max_diff = mean_diff = float("inf")
    agreement = output_agreement(candidate, reference, task) if n else 1.0
    report = ParityReport(max_diff, mean_diff, agreement, n, tolerance, min_label_agreement, False, texts_source, scale)
    report.passed = bool(n > 0 and agreement >= min_label_agreement and (tolerance is None or max_diff <= report.allowed))
    return report


def file_sha256(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def size_mb(paths: Sequence[str | os.PathLike[str]]) -> float:
    total = 0
    for p in paths:
        p = Path(p)
        if p.is_file():
            total += p.stat().st_size
        elif p.is_dir():
            total += sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    return round(total / 1e6, 2)


def weight_files(model_dir: str | os.PathLike[str]) -> list[Path]:
    """The weight files of a saved transformers/peft folder (safetensors, or bin as a fallback)."""
    d = Path(model_dir)
    files = sorted(d.glob("*.safetensors"))
    return files or sorted(d.glob("*.bin"))


def measure_throughput(
    run_batch: Callable[[Sequence[str]], Any],
    texts: Sequence[str],
    *,
    batch_size: int = 32,
    warmup_batches: int = 1,
) -> dict[str, Any]:
    """Rows/s and mean latency per batch of ``run_batch`` over ``texts`` (CPU, tokenization included)."""
    texts = list(texts)
    batches = [texts[i : i + batch_size] for i in range(0, len(texts), batch_size)]
    for b in batches[:warmup_batches]:
        run_batch(b)
    times = []
    t_all = time.perf_counter()
    for b in batches:
        t0 = time.perf_counter()
        run_batch(b)
        times.append(time.perf_counter() - t0)
    total = time.perf_counter() - t_all
    try:
        import torch

        threads = int(torch.get_num_threads())
    except Exception:  # noqa: BLE001
        threads = os.cpu_count() or 1
    return {
        "device": "cpu",
        "rows": len(texts),
        "batch_size": batch_size,
        "rows_per_s": round(len(texts) / total, 1) if total > 0 else None,
        "latency_ms_per_batch": round(1000 * float(np.mean(times)), 2) if times else None,
        "threads": threads,
    }


def bench_model(model: Any, tokenizer: Any, texts: Sequence[str], batch_size: int = 32, max_length: int = 512) -> dict[str, Any]:
    """CPU throughput of a PyTorch or ORT sequence classifier: tokenize + forward, ``batch_size`` rows at a time."""
    import torch

    def run(batch: Sequence[str]) -> Any:
        enc = tokenizer(list(batch), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        with torch.inference_mode():
            return model(**enc).logits

    return measure_throughput(run, texts, batch_size=batch_size)


def bench_texts(texts: Sequence[str], n: int) -> list[str]:
    """``n`` rows taken from ``texts`` (cycled when fewer)."""
    texts = list(texts) or list(REFERENCE_TEXTS)
    reps = -(-n // len(texts))
    return (texts * reps)[:n]
