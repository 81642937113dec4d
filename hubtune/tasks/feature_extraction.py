"""Sentence embeddings (not a step): the pooling of an encoder's token vectors into one vector per text, as
sentence-transformers computes it, and the comparison of two sets of embeddings (the gates of export and of a
reduced precision).

:func:`model_pooling` reads what a model folder's sentence-transformers files name: ``modules.json`` with its
``Pooling`` config (``pooling_mode_*``: ``cls``, ``max``, ``mean``, ``mean_sqrt_len``, ``lasttoken``; several are
concatenated in sentence-transformers' order), a ``Normalize`` module (unit vectors), and
``sentence_bert_config.json``'s ``max_seq_length`` (sentence-transformers truncates there, e.g. 256 for
all-MiniLM-L6-v2, below the tokenizer's 512); a bare encoder (no ``modules.json``) gets mean pooling, not
normalised. A module sentence-transformers would run that this pooling does not (``Dense``, ...) is refused.

:func:`pool` is that arithmetic on ``last_hidden_state`` and the attention mask (torch, on the model's device);
:func:`agreement` compares two embedding matrices by cosine per row and by the overlap of each row's top-k
neighbours. Imports `errors`, `tasks`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # numpy is imported where it runs: listing the tasks stays light
    import numpy as np


from hubtune.core.errors import ConfigError
from hubtune.tasks.base import FEATURE_EXTRACTION, CheckpointTask, Task, sentence_pooling

# sentence-transformers' Pooling concatenates the modes in this order
POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len", "lasttoken")
SERVED_MODULES = ("Transformer", "Pooling", "Normalize")
EMBEDDING_COLUMN = "embedding"
DEFAULT_MIN_COSINE = 0.9999  # fp32 export gate: cosine of every row with the PyTorch embedding
DEFAULT_NEIGHBOURS = 10


@dataclass(frozen=True)
class Pooling:
    """How token vectors become a text's vector: ``mode`` (one of POOLING_MODES, or several joined by ``+``),
    ``normalize`` (unit L2 norm), ``max_length`` (sentence-transformers' ``max_seq_length``; None: the model's
    limit) and where it was read (``source``)."""

    mode: str = "mean"
    normalize: bool = False
    max_length: int | None = None
    source: str = "no sentence-transformers config: mean pooling"

    def describe(self) -> str:
        return f"{self.mode} pooling{', normalised' if self.normalize else ''} ({self.source})"


def model_pooling(model_dir: str | Path | None, normalize: bool | None = None) -> Pooling:
    """The pooling ``model_dir``'s sentence-transformers files name (else mean, not normalised); ``normalize``
    (``--normalize``/``--no-normalize``) overrides the config's."""
    found = sentence_pooling(model_dir)
    if found is None:
        return Pooling(normalize=bool(normalize))
    root = Path(str(model_dir))
    modules = json.loads((root / "modules.json").read_text(encoding="utf-8"))
    others = [str(m.get("type", "?")) for m in modules
              if not any(str(m.get("type", "")).endswith("." + k) for k in SERVED_MODULES)]
    if others:
        raise ConfigError(
            f"model {model_dir} is a sentence-transformers model with modules {', '.join(others)} after the "
            f"encoder, which batch-predict does not run; expected only {', '.join(SERVED_MODULES)} modules: use "
            "sentence-transformers' own encode() for this model"
        )
    modes = [m.strip() for m in str(found["mode"]).split("+") if m.strip()]
    bad = [m for m in modes if m not in POOLING_MODES]
    if bad or not modes:
        raise ConfigError(
            f"model {model_dir} names pooling {found['mode']!r}; expected one of {', '.join(POOLING_MODES)} "
            "(sentence-transformers' pooling_mode_* keys in its Pooling config.json)"
        )
    max_len = None
    try:
        max_len = json.loads((root / "sentence_bert_config.json").read_text(encoding="utf-8")).get("max_seq_length")
    except (OSError, ValueError):
        pass
    mode = "+".join(m for m in POOLING_MODES if m in modes)
    norm = bool(found["normalize"]) if normalize is None else bool(normalize)
    return Pooling(mode, norm, int(max_len) if max_len else None, "the model's sentence-transformers modules.json")


def pool(hidden: Any, mask: Any, pooling: Pooling) -> Any:
    """[rows, dim] float32 torch tensor from ``hidden`` ([rows, tokens, hidden], any float dtype) and ``mask``
    ([rows, tokens], 1 for a real token), as sentence-transformers' Pooling (and Normalize) computes it."""
    import torch

    h = hidden.float()
    m = torch.as_tensor(mask, device=h.device).to(h.dtype).unsqueeze(-1)
    parts = []
    for mode in pooling.mode.split("+"):
        if mode == "cls":
            parts.append(h[:, 0])
        elif mode == "max":
            parts.append(torch.where(m > 0, h, torch.full_like(h, -1e9)).max(dim=1).values)
        elif mode in ("mean", "mean_sqrt_len"):
            total = (h * m).sum(dim=1)
            count = m.sum(dim=1).clamp(min=1e-9)
            parts.append(total / (count if mode == "mean" else count.sqrt()))
        elif mode == "lasttoken":
            last = (m.squeeze(-1).sum(dim=1).long() - 1).clamp(min=0)
            parts.append(h[torch.arange(h.shape[0], device=h.device), last])
        else:  # pragma: no cover - model_pooling checked the modes
            raise ConfigError(f"pooling {mode!r} is unknown; expected one of {', '.join(POOLING_MODES)}")
    out = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
    if pooling.normalize:
        out = torch.nn.functional.normalize(out, p=2, dim=1)
    return out


def pool_numpy(hidden: np.ndarray, mask: np.ndarray, pooling: Pooling) -> np.ndarray:
    """:func:`pool` on numpy arrays (an ONNX Runtime output)."""
    import numpy as np

    import torch

    return pool(torch.from_numpy(np.asarray(hidden)), torch.from_numpy(np.asarray(mask)), pooling).numpy()


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The cosine of each row of ``a`` with the same row of ``b``."""
    import numpy as np

    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    den = np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1)
    return (a64 * b64).sum(axis=1) / np.maximum(den, 1e-12)


def neighbour_overlap(a: np.ndarray, b: np.ndarray, k: int = DEFAULT_NEIGHBOURS) -> float:
    """The mean overlap (0..1) of each row's ``k`` nearest rows by cosine (itself excluded) under ``a`` and
    under ``b``: whether a search over these embeddings answers the same."""
    import numpy as np

    n = len(a)
    k = min(k, n - 1)
    if k < 1:
        return 1.0

    def top(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float64)
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        sim = x @ x.T
        np.fill_diagonal(sim, -np.inf)
        return np.argsort(-sim, axis=1, kind="stable")[:, :k]

    ta, tb = top(a), top(b)
    return float(np.mean([len(set(ra) & set(rb)) / k for ra, rb in zip(ta, tb)]))


def agreement(reference: np.ndarray, other: np.ndarray, k: int = DEFAULT_NEIGHBOURS) -> dict[str, Any]:
    """How far ``other`` is from ``reference`` (rows of embeddings of the same texts): the lowest and the mean
    cosine of a row with its reference, and the top-``k`` neighbour overlap."""
    import numpy as np

    cos = cosine_rows(reference, other) if len(reference) else np.ones(0)
    return {
        "rows": int(len(reference)),
        "min_cosine": round(float(cos.min()), 6) if len(cos) else 1.0,
        "mean_cosine": round(float(cos.mean()), 6) if len(cos) else 1.0,
        "neighbour_overlap": round(neighbour_overlap(reference, other, k), 6),
        "neighbours": int(min(k, max(len(reference) - 1, 0))),
    }


EMBEDDING_ROW_COSINE = 0.999  # a reduced precision's embedding agrees with fp32's when their cosine is at least this


def embedding_array(vectors: np.ndarray) -> Any:
    """[rows, dim] float32 as a pyarrow fixed-size list column (parquet and ``datasets`` read back a
    list<float32> of fixed length ``dim``)."""
    import numpy as np

    import pyarrow as pa

    dim = int(vectors.shape[1]) if vectors.ndim == 2 else 0
    flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1), type=pa.float32())
    return pa.FixedSizeListArray.from_arrays(flat, dim)


class FeatureExtraction(Task):
    """feature-extraction: one vector per text, the encoder's token vectors pooled as the model's
    sentence-transformers files say (:func:`model_pooling`); batch-predict writes ``embedding`` (a fixed-size
    list of float32); two runs agree on a row when their cosine is at least EMBEDDING_ROW_COSINE."""

    name = FEATURE_EXTRACTION
    description = "embeddings (the encoder's pooled vectors)"
    auto_class = "AutoModel"
    predicts = True
    embeds = True
    reads_pairs = False
    one_text = "embeds one text"
    has_labels = False
    list_column = EMBEDDING_COLUMN
    agrees = f"embedding cosine >= {EMBEDDING_ROW_COSINE}"
    argmax_labels = False
    unused_missing = ("pooler.",)  # never uses the pooler
    onnx_outputs = ("last_hidden_state",)
    optimum_task = "feature-extraction"
    pipeline_tag = "feature-extraction"
    card_name = "Feature Extraction"

    def served_by(self, found: CheckpointTask) -> bool:
        return True  # every checkpoint holds an encoder to extract features from

    def label_names(self, config: Any) -> list[str]:
        return []

    def agreement(self, candidate: Any, reference: Any, logit_threshold: float = 0.0) -> float:
        if not len(reference):
            return 1.0
        return float((cosine_rows(candidate, reference) >= EMBEDDING_ROW_COSINE).mean())

    def columns(self, head: Any, logits: Any, texts: list[str]) -> dict[str, Any]:
        import numpy as np

        vectors = np.asarray(logits, dtype=np.float32)
        if not len(vectors):
            vectors = np.zeros((0, head.embedding_dim or 0), np.float32)
        return {EMBEDDING_COLUMN: embedding_array(vectors)}
