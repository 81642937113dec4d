"""The export gates of an embedding model (feature-extraction), beside the classifiers' in :mod:`hubtune.publish.export`:
its ONNX graph answers ``last_hidden_state`` (Optimum's layout for feature-extraction), and the graph is judged
by the sentence embeddings pooled from it (the model's sentence-transformers pooling, :mod:`hubtune.tasks.feature_extraction`)
against the PyTorch model's, on real texts (``--eval-dataset``'s text column, else the reference texts):

* fp32 ``model.onnx``: max |embedding diff| <= ``tolerance`` and every row's cosine >= 0.9999;
* optimized / int8 variants: the mean cosine per row >= ``min_cosine`` and the overlap of each text's top-10
  neighbours (by cosine, among the sample) >= ``min_overlap``: labels mean nothing for an embedding.

Imports `data`, `embeddings`, `errors`, `onnx_tools`, `parity`.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Sequence

import numpy as np

from hubtune.tasks.feature_extraction import DEFAULT_MIN_COSINE, DEFAULT_NEIGHBOURS, Pooling, agreement, pool
from hubtune.core.errors import DataError, EmptyDatasetError
from hubtune.core.onnx_tools import HIDDEN_OUTPUT, feeds_for, run_graph
from hubtune.core.onnx_session import open_session
from hubtune.core.parity import REFERENCE_TEXTS, ParityReport, measure_throughput

DEFAULT_VARIANT_COSINE = 0.99  # int8/optimized: mean cosine per row with the PyTorch embedding
DEFAULT_MIN_OVERLAP = 0.8  # int8/optimized: top-10 neighbour overlap with the PyTorch embeddings


class OrtEncoder:
    """An encoder's ONNX graph behind the call shape of a transformers encoder: ``model(**enc).last_hidden_state``.
    ``path``: the graph's file, or a session already made (an ``OvSession``)."""

    def __init__(self, path: Any, *, threads: int | None = None) -> None:
        self.session, self.path = open_session(path, threads)

    def __call__(self, **enc: Any) -> Any:
        import torch

        arrays = {k: (v.cpu().numpy() if hasattr(v, "cpu") else np.asarray(v)) for k, v in enc.items()}
        out = run_graph(self.session, [HIDDEN_OUTPUT], feeds_for(self.session, arrays))[0]
        return SimpleNamespace(last_hidden_state=torch.from_numpy(np.asarray(out, dtype=np.float32)))


def encode(model: Any, tokenizer: Any, texts: Sequence[str], pooling: Pooling, *, batch_size: int = 32,
           max_length: int | None = None) -> np.ndarray:
    """[len(texts), dim] float32 embeddings of ``texts`` by ``model`` (a transformers encoder or an
    :class:`OrtEncoder`), in padded batches, truncated at ``max_length``."""
    import torch

    out = []
    for i in range(0, len(texts), batch_size):
        enc = tokenizer(list(texts[i:i + batch_size]), padding=True, truncation=True, max_length=max_length,
                        return_tensors="pt")
        with torch.inference_mode():
            hidden = model(**enc).last_hidden_state
            out.append(pool(hidden, enc["attention_mask"], pooling).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def bench_encoder(model: Any, tokenizer: Any, texts: Sequence[str], pooling: Pooling, batch_size: int = 32,
                  max_length: int | None = None) -> dict[str, Any]:
    """CPU throughput of an encoder: tokenize + forward + pooling, ``batch_size`` rows at a time."""
    return measure_throughput(lambda b: encode(model, tokenizer, b, pooling, batch_size=len(b), max_length=max_length),
                              texts, batch_size=batch_size)


def gate_texts(eval_dataset: str | None, max_examples: int | None, text_column: str | None = None) -> tuple[list[str], str]:
    """(real texts to compare embeddings on, where they come from): the text column of ``eval_dataset`` (no
    labels needed), else hubtune's reference texts."""
    if not eval_dataset:
        return list(REFERENCE_TEXTS), "built-in reference texts"
    from hubtune.data.dataset import open_dataset, parse_spec, resolve_columns

    spec = parse_spec(eval_dataset)
    ds = open_dataset(spec, streaming=True, default_split="test")
    first = next(iter(ds.take(1)), None)
    if first is None:
        raise EmptyDatasetError(f"--eval-dataset {eval_dataset} has no rows; expected texts to compare embeddings on")
    cols = resolve_columns(list(first), text_column=text_column, require_label=False)
    texts = [r[cols.text] for r in ds.take(max_examples or 1000) if isinstance(r.get(cols.text), str) and r[cols.text].strip()]
    if len(texts) < 2:
        raise DataError(f"--eval-dataset {eval_dataset} has {len(texts)} non-empty texts in {cols.text!r}; expected at "
                        "least 2 to compare embeddings and their neighbours on")
    return texts, eval_dataset


def embedding_gate(reference: np.ndarray, candidate: np.ndarray, *, is_base: bool, tolerance: float,
                   min_cosine: float = DEFAULT_VARIANT_COSINE, min_overlap: float = DEFAULT_MIN_OVERLAP,
                   texts_source: str = "") -> tuple[ParityReport, dict[str, Any], str | None]:
    """(the parity report, the embedding agreement, why it failed or None). The report's ``label_agreement`` is
    the top-10 neighbour overlap (what a search over the embeddings answers); ``max_abs_diff`` is per
    embedding component."""
    ref = np.asarray(reference, np.float64)
    got = np.asarray(candidate, np.float64)
    n = int(len(ref))
    if ref.shape != got.shape or not np.all(np.isfinite(got)):
        rep = ParityReport(float("inf"), float("inf"), 0.0, n, tolerance if is_base else None, min_overlap, False, texts_source)
        return rep, {}, f"embeddings of shape {got.shape} (finite: {bool(np.all(np.isfinite(got)))}), expected {ref.shape}"
    diff = np.abs(ref - got)
    agree = agreement(ref, got, DEFAULT_NEIGHBOURS)
    max_diff, mean_diff = (float(diff.max()), float(diff.mean())) if n else (0.0, 0.0)
    reasons = []
    if is_base:
        if max_diff > tolerance:
            reasons.append(f"max |embedding diff| {max_diff:.3g} > tolerance {tolerance:g}")
        if agree["min_cosine"] < DEFAULT_MIN_COSINE:
            reasons.append(f"lowest cosine {agree['min_cosine']:.6f} < {DEFAULT_MIN_COSINE}")
    else:
        if agree["mean_cosine"] < min_cosine:
            reasons.append(f"mean cosine {agree['mean_cosine']:.4f} < {min_cosine:g}")
        if agree["neighbour_overlap"] < min_overlap:
            reasons.append(f"top-{agree['neighbours']} neighbour overlap {agree['neighbour_overlap']:.1%} < {min_overlap:.0%}")
    why = None
    if reasons:
        why = "; ".join(reasons) + f" on {n} texts from {texts_source}"
    rep = ParityReport(max_diff, mean_diff, agree["neighbour_overlap"], n, tolerance if is_base else None,
                       0.0 if is_base else min_overlap, why is None and n > 0, texts_source)
    return rep, agree, why
