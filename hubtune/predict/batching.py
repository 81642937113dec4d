"""From rows to logits, chunk by chunk: a :class:`Chunk` is ``chunk_size`` consecutive input rows (one output
shard); :func:`prepare_chunk` checks its texts (a missing, empty or non-string text is a row error, not a
crash) and tokenizes the valid ones; :func:`run_chunk` runs them through a runner in length-sorted batches
(little padding); :func:`prefetch` reads and tokenizes the next chunks in a thread while the model computes.

A text longer than ``max_length`` tokens is truncated (``--long-text truncate``, the default; the chunk counts
the rows that lost tokens) or, with ``--long-text chunk``, split into overlapping windows of ``max_length``
tokens (the tokenizer's ``return_overflowing_tokens`` with ``stride`` tokens shared by neighbours): each window
is scored and the row's probabilities are the mean of its windows'."""

from __future__ import annotations

import itertools
import queue
import threading
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np

from hubtune.predict.runners import Runner


@dataclass
class Encoded:
    """Token ids of many rows in flat arrays (a few bytes a token, not a Python int each): row ``i`` is
    ``ids[offsets[i]:offsets[i + 1]]``; ``type_ids`` likewise (text pairs only)."""

    ids: np.ndarray
    offsets: np.ndarray
    type_ids: np.ndarray | None = None

    @classmethod
    def from_lists(cls, ids: Sequence[Sequence[int]], type_ids: Sequence[Sequence[int]] | None = None) -> "Encoded":
        lengths = np.fromiter((len(s) for s in ids), dtype=np.int64, count=len(ids))
        offsets = np.zeros(len(ids) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int32, count=int(offsets[-1]))
        tt = None
        if type_ids is not None:
            tt = np.fromiter(itertools.chain.from_iterable(type_ids), dtype=np.int8, count=int(offsets[-1]))
        return cls(flat, offsets, tt)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def take(self, rows: np.ndarray) -> "Encoded":
        seqs = [self.ids[self.offsets[i] : self.offsets[i + 1]] for i in rows]
        types = [self.type_ids[self.offsets[i] : self.offsets[i + 1]] for i in rows] if self.type_ids is not None else None
        return Encoded.from_lists(seqs, types)


@dataclass
class Chunk:
    index: int  # shard index (0-based, within this run's row range)
    start: int  # global row id of the first row
    columns: dict[str, list[Any]]
    valid: np.ndarray  # positions in the chunk that are processed
    errors: list[tuple[int, str]]  # (position, reason)
    encodings: Encoded | None = None  # of the valid rows, in their order (--long-text chunk: of their windows)
    truncated: int = 0  # valid rows that lost tokens beyond max_length (--long-text truncate)
    windows: np.ndarray | None = None  # --long-text chunk: the valid row (0..len(valid)-1) of each window

    @property
    def size(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0

    @property
    def lengths(self) -> np.ndarray:
        return self.encodings.lengths if self.encodings is not None else np.zeros(0, np.int64)

    def subset(self, n: int) -> "Chunk":
        """The first ``n`` valid rows (their encodings only): what a warm-up or a check runs."""
        n = min(n, len(self.valid))
        if self.windows is not None:
            keep = np.flatnonzero(self.windows < n)
            enc = self.encodings.take(keep) if self.encodings is not None else None
            return Chunk(self.index, self.start, {}, self.valid[:n], [], enc, windows=self.windows[keep])
        enc = self.encodings.take(np.arange(n)) if self.encodings is not None else None
        return Chunk(self.index, self.start, {}, self.valid[:n], [], enc)


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


def resolve_stride(tokenizer: Any, max_length: int, long_text: str, stride: int | None, pair_col: str | None) -> int | None:
    """The stride of ``--long-text chunk`` (default: a quarter of a window's text tokens), checked against the
    window (the tokenizer refuses a stride that is not smaller than it); None for ``truncate``."""
    from hubtune.core.errors import ConfigError

    if long_text != "chunk":
        return None
    if pair_col:
        raise ConfigError(
            f"--long-text chunk splits one text into windows, and this run also reads text pairs ({pair_col!r}); "
            "expected single texts: use --long-text truncate for text pairs"
        )
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError(
            f"--long-text chunk needs a fast (Rust) tokenizer for its overlapping windows, and this model's is "
            f"{type(tokenizer).__name__}; expected a tokenizer.json beside the model: save the tokenizer with "
            "AutoTokenizer(..., use_fast=True), or use --long-text truncate"
        )
    room = max_length - tokenizer.num_special_tokens_to_add(pair=False)
    resolved = room // 4 if stride is None else stride
    if room < 2 or not 0 <= resolved < room:
        raise ConfigError(
            f"--stride {resolved} with --max-length {max_length}: a window holds {room} text tokens ({max_length} less "
            f"the special tokens), and the stride (tokens shared by neighbouring windows) must be smaller: pass "
            f"--stride between 0 and {max(room - 1, 0)}, or a larger --max-length"
        )
    return resolved


def _tokenize(
    tokenizer: Any, texts: list[str], pairs: list[str] | None, max_length: int, stride: int | None = None
) -> dict[str, Any]:
    """Token ids (truncated to ``max_length``) and ``truncated`` (which rows lost tokens); with ``stride``, the
    overlapping windows of every text and ``windows`` (the row of each window)."""
    if stride is not None:
        enc = tokenizer(texts, truncation=True, max_length=max_length, stride=stride, return_overflowing_tokens=True,
                        return_attention_mask=False)
        return {"input_ids": enc["input_ids"], "windows": list(enc["overflow_to_sample_mapping"])}
    enc = tokenizer(texts, pairs, truncation=True, max_length=max_length, return_attention_mask=False)
    out: dict[str, Any] = {"input_ids": enc["input_ids"]}
    if "token_type_ids" in enc and pairs is not None:
        out["token_type_ids"] = enc["token_type_ids"]
    encodings = getattr(enc, "encodings", None)
    if encodings is not None:  # a fast tokenizer keeps what truncation cut off
        out["truncated"] = [bool(e.overflowing) for e in encodings]
    else:  # a slow tokenizer: compare with the untruncated length
        full = tokenizer(texts, pairs, truncation=False, return_attention_mask=False)["input_ids"]
        out["truncated"] = [len(f) > len(t) for f, t in zip(full, enc["input_ids"])]
    return out


def prepare_chunk(
    chunk: Chunk, tokenizer: Any, text_col: str, pair_col: str | None, max_length: int, stride: int | None = None
) -> Chunk:
    """Validate the chunk's texts and tokenize the valid ones (``stride``: into windows, see the module docstring)."""
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
        enc = _tokenize(tokenizer, v_texts, v_pairs, max_length, stride) if valid else {"input_ids": [], "windows": []}
    except Exception:  # noqa: BLE001 - isolate the rows the tokenizer rejects
        keep: list[int] = []
        enc = {"input_ids": [], "windows": []}
        for j, i in enumerate(valid):
            try:
                one = _tokenize(tokenizer, [v_texts[j]], [v_pairs[j]] if v_pairs is not None else None, max_length, stride)
            except Exception as exc:  # noqa: BLE001
                errors.append((i, f"tokenizer failed: {type(exc).__name__}: {str(exc)[:100]}"))
                continue
            for k, v in one.items():
                if k == "windows":
                    enc["windows"] += [len(keep)] * len(v)
                elif k == "input_ids" and stride is not None:
                    enc["input_ids"] += v
                else:
                    enc.setdefault(k, []).append(v[0])
            keep.append(i)
        valid = keep
        errors.sort()
    chunk.valid = np.asarray(valid, dtype=np.int64)
    chunk.errors = errors
    chunk.encodings = Encoded.from_lists(enc["input_ids"], enc.get("token_type_ids"))
    chunk.truncated = int(sum(enc.get("truncated", ())))
    chunk.windows = np.asarray(enc["windows"], dtype=np.int64) if stride is not None else None
    return chunk


def mean_over_windows(logits: np.ndarray, windows: np.ndarray, rows: int) -> np.ndarray:
    """Per row, the log of the mean of its windows' probabilities: what ``softmax`` turns back into that mean,
    so the shard files, metrics and checks take chunked rows like any other."""
    from hubtune.core.metrics import softmax

    probs = softmax(logits)
    total = np.zeros((rows, probs.shape[-1]), dtype=np.float64)
    np.add.at(total, windows, probs)
    counts = np.bincount(windows, minlength=rows).astype(np.float64)
    mean = total / np.maximum(counts, 1)[:, None]
    return np.log(np.maximum(mean, np.finfo(np.float32).tiny)).astype(np.float32)


def batch_rows(longest: int, batch_size: int, max_batch_tokens: int) -> int:
    """Rows in a batch whose longest row has ``longest`` tokens: at most ``batch_size`` rows and at most
    ``max_batch_tokens`` tokens (rows x padded length; a single row longer than that still runs, alone)."""
    return max(1, min(batch_size, max_batch_tokens // max(longest, 1)))


def run_chunk(runner: Runner, chunk: Chunk, batch_size: int, max_batch_tokens: int) -> np.ndarray:
    """Logits of the chunk's valid rows, in chunk order. Batches are length-sorted (longest first, little
    padding) and hold at most ``batch_size`` rows and ``max_batch_tokens`` tokens, which bounds the memory of the
    activations (attention scores grow with rows x length^2). A chunk of windows (``--long-text chunk``) runs
    its windows and answers one row each (:func:`mean_over_windows`). A token classifier answers a logit per
    token: [rows, the chunk's longest row, labels], each row's tokens first, zeros after them.

    A batch is padded on the side the runner names (``runner.padding_side``, :func:`~hubtune.predict.runners.
    padding_side`): the model decides, not the tokenizer, so that a row's answer never depends on the rows
    batched beside it (XLNet's head reads the last position: right padding made it read a pad)."""
    enc = chunk.encodings
    n = len(enc) if enc is not None else 0
    if enc is None or n == 0:
        return np.zeros((0, max(1, len(runner.label_names))), dtype=np.float32)
    if chunk.windows is not None:
        per_window = run_chunk(runner, Chunk(chunk.index, chunk.start, {}, np.arange(n), [], enc), batch_size,
                               max_batch_tokens)
        return mean_over_windows(per_window, chunk.windows, len(chunk.valid))
    lengths = enc.lengths
    order = np.argsort(-lengths, kind="stable")
    pad_id = runner.tokenizer.pad_token_id or 0
    left = getattr(runner, "padding_side", "right") == "left"
    out: np.ndarray | None = None
    start = 0
    while start < n:
        size = batch_rows(int(lengths[order[start]]), batch_size, max_batch_tokens)
        idx = order[start : start + size]
        width = int(lengths[idx].max())
        ids = np.full((len(idx), width), pad_id, dtype=np.int64)
        mask = np.zeros((len(idx), width), dtype=np.int64)
        types = np.zeros((len(idx), width), dtype=np.int64)
        for r, i in enumerate(idx):
            a, b = enc.offsets[i], enc.offsets[i + 1]
            cols = slice(width - (b - a), width) if left else slice(0, b - a)
            ids[r, cols] = enc.ids[a:b]
            mask[r, cols] = 1
            if enc.type_ids is not None:
                types[r, cols] = enc.type_ids[a:b]
        logits = runner({"input_ids": ids, "attention_mask": mask, "token_type_ids": types})
        if out is None:  # a logit per label, or per token and label (token classification: padded to the longest)
            shape = (n, logits.shape[-1]) if logits.ndim == 2 else (n, int(lengths.max()), logits.shape[-1])
            out = np.zeros(shape, dtype=np.float32)
        if logits.ndim == 3 and left:  # each row's own tokens first, whichever side the batch was padded on
            for r, i in enumerate(idx):
                k = int(lengths[i])
                out[i, :k] = logits[r, logits.shape[1] - k :]
        elif logits.ndim == 3:
            out[idx, : logits.shape[1]] = logits
        else:
            out[idx] = logits
        start += size
    assert out is not None
    return out


def prefetch(gen: Iterator[Chunk], depth: int = 2) -> Iterator[Chunk]:
    """Run ``gen`` (reading + tokenizing) in a thread, ``depth`` chunks ahead of the consumer.

    However the consumer stops (the end, an error such as ``--on-error fail``, closing this generator), the
    thread is stopped and joined before this returns: a thread left inside native code (the tokenizer,
    pyarrow) while the interpreter shuts down aborts the process ("terminate called without an active
    exception", SIGABRT) instead of exiting with the error's code."""
    q: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in gen:
                if not put(item):
                    return
            put(done)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            put(exc)
        finally:
            close = getattr(gen, "close", None)
            if close is not None:
                try:
                    close()  # the reader's files and threads, in this thread
                except Exception:  # noqa: BLE001
                    pass

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
        t.join()
