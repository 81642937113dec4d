"""From rows to logits, chunk by chunk: a :class:`Chunk` is ``chunk_size`` consecutive input rows (one output
shard); :func:`prepare_chunk` checks its texts (a missing, empty or non-string text is a row error, not a
crash) and tokenizes the valid ones; :func:`run_chunk` runs them through a runner in length-sorted batches
(little padding); :func:`prefetch` reads and tokenizes the next chunks in a thread while the model computes."""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np

from hubtune.predict.runners import Runner


@dataclass
class Chunk:
    index: int  # shard index (0-based, within this run's row range)
    start: int  # global row id of the first row
    columns: dict[str, list[Any]]
    valid: np.ndarray  # positions in the chunk that are processed
    errors: list[tuple[int, str]]  # (position, reason)
    encodings: dict[str, list[list[int]]] | None = None

    @property
    def size(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0


def _bad_text(value: Any, column: str) -> str | None:
    if value is None:
        return f"'{column}' is missing (None)"
    if isinstance(value, float) and value != value:
        return f"'{column}' is missing (NaN)"
    if not isinstance(value, str):
        return f"'{column}' is a {type(value).__name__}, expected a string"
    if not value.strip():
        return f"'{column}' is empty"
    return None


def _tokenize(tokenizer: Any, texts: list[str], pairs: list[str] | None, max_length: int) -> dict[str, list[list[int]]]:
    enc = tokenizer(texts, pairs, truncation=True, max_length=max_length, return_attention_mask=False)
    out = {"input_ids": enc["input_ids"]}
    if "token_type_ids" in enc and pairs is not None:
        out["token_type_ids"] = enc["token_type_ids"]
    return out


def prepare_chunk(chunk: Chunk, tokenizer: Any, text_col: str, pair_col: str | None, max_length: int) -> Chunk:
    texts = chunk.columns[text_col]
    pairs = chunk.columns[pair_col] if pair_col else None
    valid: list[int] = []
    errors: list[tuple[int, str]] = []
    for i, t in enumerate(texts):
        reason = _bad_text(t, text_col) or (_bad_text(pairs[i], pair_col) if pairs is not None and pair_col else None)
        if reason:
            errors.append((i, reason))
        else:
            valid.append(i)
    v_texts = [texts[i] for i in valid]
    v_pairs = [pairs[i] for i in valid] if pairs is not None else None
    try:
        enc = _tokenize(tokenizer, v_texts, v_pairs, max_length) if valid else {"input_ids": []}
    except Exception:  # noqa: BLE001 - isolate the rows the tokenizer rejects
        keep: list[int] = []
        enc = {"input_ids": []}
        for j, i in enumerate(valid):
            try:
                one = _tokenize(tokenizer, [v_texts[j]], [v_pairs[j]] if v_pairs is not None else None, max_length)
            except Exception as exc:  # noqa: BLE001
                errors.append((i, f"tokenizer failed: {type(exc).__name__}: {str(exc)[:100]}"))
                continue
            keep.append(i)
            for k, v in one.items():
                enc.setdefault(k, []).append(v[0])
        valid = keep
        errors.sort()
    chunk.valid = np.asarray(valid, dtype=np.int64)
    chunk.errors = errors
    chunk.encodings = enc
    return chunk


def _pad(seqs: Sequence[list[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    width = max(len(s) for s in seqs)
    ids = np.full((len(seqs), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(seqs), width), dtype=np.int64)
    for r, s in enumerate(seqs):
        ids[r, : len(s)] = s
        mask[r, : len(s)] = 1
    return ids, mask


def run_chunk(runner: Runner, chunk: Chunk, batch_size: int, token_budget: int | None = None) -> np.ndarray:
    """Logits of the chunk's valid rows, in chunk order; batches are length-sorted (longest first)."""
    enc = chunk.encodings or {"input_ids": []}
    seqs = enc["input_ids"]
    n = len(seqs)
    if n == 0:
        return np.zeros((0, max(1, len(runner.label_names))), dtype=np.float32)
    lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=n)
    order = np.argsort(-lengths, kind="stable")
    pad_id = runner.tokenizer.pad_token_id or 0
    budget = token_budget or batch_size * 128
    out: np.ndarray | None = None
    start = 0
    while start < n:
        # rows per batch: at most batch_size, and (for short texts) more when the token budget allows
        longest = int(lengths[order[start]])
        size = max(1, min(max(batch_size, budget // max(longest, 1)), 4 * batch_size))
        idx = order[start : start + size]
        ids, mask = _pad([seqs[i] for i in idx], pad_id)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in enc:
            tt, _ = _pad([enc["token_type_ids"][i] for i in idx], 0)
            feeds["token_type_ids"] = tt
        else:
            feeds["token_type_ids"] = np.zeros_like(ids)
        logits = runner(feeds)
        if out is None:
            out = np.zeros((n, logits.shape[-1]), dtype=np.float32)
        out[idx] = logits
        start += size
    assert out is not None
    return out


def prefetch(gen: Iterator[Chunk], depth: int = 2) -> Iterator[Chunk]:
    """Run ``gen`` (reading + tokenizing) in a thread, ``depth`` chunks ahead of the consumer."""
    q: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def work() -> None:
        try:
            for item in gen:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(done)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            q.put(exc)

    t = threading.Thread(target=work, name="hubtune-tokenize", daemon=True)
    t.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
