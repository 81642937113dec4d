"""The batch-predict step: a classifier over a (streamed) dataset into a resumable, sharded result.

    OUTPUT                      preds.parquet | preds.jsonl | preds.csv  (row_id, kept columns, label, score[, score_<label>...])
    OUTPUT.parts/               while running: shard-00000.parquet ... + manifest.json (removed once OUTPUT is assembled)
    OUTPUT.errors.jsonl         rows that could not be processed: {"row_id", "reason"}
    OUTPUT.metrics.json         when the dataset has labels: metrics.classification_metrics of the predictions
    OUTPUT.meta.json            model identity, dataset fingerprint, row range: what merge_predictions checks

Input is read streaming in chunks (``chunk_size`` rows; one output shard per chunk), so memory stays flat.
Within a chunk the texts are sorted by token length so batches carry little padding; tokenization of the
next chunk runs in a thread while the model computes. A shard is written to a temporary name, renamed, and
only then recorded in the manifest (atomically), so after a crash ``resume=True`` continues from the last
recorded shard and every input row ends up exactly once.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Literal, Sequence

import numpy as np

from hubtune.errors import (
    ColumnNotFoundError,
    ConfigError,
    DataError,
    EmptyDatasetError,
    LabelError,
    MissingDependencyError,
    ModelLoadError,
    OutputExistsError,
    OutputNotWritableError,
    PredictError,
    ResumeMismatchError,
    RowError,
)

MANIFEST_VERSION = 1
OUTPUT_FORMATS = (".parquet", ".jsonl", ".csv")
BACKENDS = ("torch", "onnx")
ENGINES = ("local", "ray")
DTYPES = ("fp32", "fp16", "bf16")
THROTTLE_ENV = "HUBTUNE_PREDICT_THROTTLE_S"  # test hook: sleep after each shard (kill -9 tests)


# --------------------------------------------------------------------------------------------------
# Options and results
# --------------------------------------------------------------------------------------------------
@dataclass
class PredictOptions:
    model: str
    dataset: str
    output: str
    backend: Literal["torch", "onnx"] = "torch"
    device: str | None = None  # None/auto: cuda when available
    batch_size: int = 64
    dtype: Literal["fp32", "fp16", "bf16"] = "fp32"
    keep_columns: list[str] = field(default_factory=list)
    all_scores: bool = False
    limit: int | None = None
    resume: bool = False
    overwrite: bool = False
    on_error: Literal["skip", "fail"] = "skip"
    num_shards: int = 1
    shard_index: int = 0
    text_column: str | None = None
    text_pair_column: str | None = None
    label_column: str | None = None
    onnx_file: str | None = None  # e.g. model_quantized.onnx (in the model's onnx/ folder) or a path
    chunk_size: int = 4096
    max_length: int | None = None
    revision: str | None = None
    trust_remote_code: bool = False
    encoding: str = "utf-8"
    num_threads: int | None = None
    keep_parts: bool = False
    progress: bool = True
    # engine: "local" (this process) or "ray" (a Ray Data actor pool; hubtune/predict_ray.py)
    engine: Literal["local", "ray"] = "local"
    address: str | None = None  # ray: None = a local Ray (or the one already initialised), "auto", ray://HOST:PORT
    num_workers: int | None = None  # ray: model replicas (actors); default 1
    gpus_per_worker: float = 0.0  # ray: GPUs per actor (0 = CPU actors)


@dataclass
class PredictResult:
    rows: int
    errors: int
    seconds: float
    rows_per_s: float
    backend: str
    device: str
    output: str
    errors_path: str | None = None
    metrics_path: str | None = None
    meta_path: str | None = None
    metrics: dict[str, Any] | None = None
    row_range: list[int | None] = field(default_factory=list)
    resumed_rows: int = 0
    model: dict[str, Any] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)
    engine: str = "local"
    workers: int = 1


@dataclass
class MergeResult:
    rows: int
    errors: int
    parts: int
    output: str
    errors_path: str | None = None
    meta_path: str | None = None


# --------------------------------------------------------------------------------------------------
# Paths and small helpers
# --------------------------------------------------------------------------------------------------
def label_feature(ds: Any, label_column: str | None) -> Any:
    """The ``datasets`` feature of the label column (a ClassLabel carries names), or None."""
    try:
        feats = getattr(ds, "features", None)
        return feats.get(label_column) if feats and label_column else None
    except Exception:  # noqa: BLE001 - streaming datasets may not know their features
        return None


def sidecar(output: str | os.PathLike[str], suffix: str) -> Path:
    p = Path(output)
    return p.with_name(p.name + suffix)


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, sort_keys=True, default=str)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _read_json(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def _fmt(output: str | os.PathLike[str]) -> str:
    suffix = Path(output).suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        raise ConfigError(
            f"output {output} has extension {suffix or '(none)'!r}; expected one of {', '.join(OUTPUT_FORMATS)} "
            "(set --output preds.parquet|preds.jsonl|preds.csv)"
        )
    return suffix


def _sha256_files(paths: Sequence[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.name.encode())
        with open(p, "rb") as fh:
            while block := fh.read(1 << 22):
                h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------------------------------
# Model resolution and runners
# --------------------------------------------------------------------------------------------------
WEIGHT_GLOBS = ("*.safetensors", "*.bin", "adapter_model.*")


def resolve_model_dir(source: str, *, revision: str | None, backend: str) -> tuple[Path, str | None]:
    """A local directory for ``source`` (a directory, a run directory, or a Hub id) and its Hub commit."""
    local = Path(os.path.expanduser(source))
    if local.is_dir():
        if not (local / "config.json").is_file() and (local / "model" / "config.json").is_file():
            local = local / "model"  # a hubtune run directory
        if not (local / "config.json").is_file():
            raise ModelLoadError(
                f"model directory {local} has no config.json; expected a saved text-classification model "
                "(a `hubtune train` run directory, its model/ folder, or a Hub id)"
            )
        return local, None
    if local.exists() or source.startswith(("/", "./", "../")):
        raise ModelLoadError(f"model {source!r} is not a directory; pass a model directory or a Hub id as --model")
    try:
        from huggingface_hub import snapshot_download

        patterns = ["*.json", "*.safetensors", "*.txt", "*.model", "tokenizer*"]
        if backend == "onnx":
            patterns.append("onnx/*")
        path = Path(snapshot_download(source, revision=revision, allow_patterns=patterns))
    except Exception as exc:  # noqa: BLE001 - hub errors come in many types
        text = " ".join(str(exc).split())[:200]
        raise ModelLoadError(
            f"model {source!r} was not found (not a local directory, and not downloadable from "
            f"{os.environ.get('HF_ENDPOINT', 'https://huggingface.co')}: {type(exc).__name__}: {text}); "
            "pass an existing model directory or Hub id as --model"
        ) from exc
    return path, path.name


def model_identity(source: str, model_dir: Path, commit: str | None) -> dict[str, Any]:
    """What a resume must match: the weights' hash (and the Hub commit when there is one)."""
    files = sorted({p for g in WEIGHT_GLOBS for p in model_dir.glob(g) if p.is_file()})
    if not files:
        files = sorted(p for p in (model_dir / "onnx").glob("*.onnx") if p.is_file()) or sorted(model_dir.glob("*.onnx"))
    cfg = model_dir / "config.json"
    digest = _sha256_files(files + ([cfg] if cfg.is_file() else [])) if files or cfg.is_file() else "none"
    return {"source": source, "revision": commit, "weights_sha256": digest}


class TorchRunner:
    def __init__(self, model_dir: Path, opts: PredictOptions) -> None:
        import torch

        from hubtune.modeling import load_classifier, pick_device

        self.device = pick_device(opts.device)
        if opts.num_threads:
            torch.set_num_threads(opts.num_threads)
        dtype = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[opts.dtype]
        if opts.dtype == "fp16" and not self.device.startswith("cuda"):
            raise ConfigError("--dtype fp16 needs a CUDA GPU (--device cuda); on CPU use --dtype fp32 or bf16")
        loaded = load_classifier(
            str(model_dir), device=self.device, torch_dtype=dtype, trust_remote_code=opts.trust_remote_code
        )
        self.loaded = loaded
        self.tokenizer = loaded.tokenizer
        self.label_names = loaded.label_names
        self.max_length = loaded.max_length
        self.torch = torch
        self.notices: list[str] = []

    def __call__(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        torch = self.torch
        with torch.inference_mode():
            batch = {k: torch.from_numpy(v).to(self.device, non_blocking=True) for k, v in feeds.items()}
            return self.loaded.model(**batch).logits.float().cpu().numpy()


class OnnxRunner:
    def __init__(self, model_dir: Path, opts: PredictOptions, export_dir: Path) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:  # pragma: no cover - a declared dependency
            raise MissingDependencyError("--backend onnx needs onnxruntime; pip install onnxruntime") from exc
        from transformers import AutoConfig, AutoTokenizer

        from hubtune.modeling import _effective_max_length, label_names_from_config
        from hubtune.onnx_tools import session as ort_session

        if opts.dtype != "fp32":
            raise ConfigError(
                f"--dtype {opts.dtype} is for --backend torch; the onnx backend runs the ONNX file as exported "
                "(use --onnx-file model_quantized.onnx for int8)"
            )
        if (model_dir / "adapter_config.json").is_file():
            raise ModelLoadError(
                f"model {model_dir} is a LoRA adapter; the onnx backend needs a full model: run `hubtune merge` "
                "first or use --backend torch"
            )
        self.notices: list[str] = []
        onnx_path = self._find_onnx(model_dir, opts.onnx_file)
        if onnx_path is None:
            onnx_path = self._export(model_dir, export_dir, opts)
        self.onnx_path = onnx_path
        providers = ["CPUExecutionProvider"]
        want_cuda = opts.device in (None, "", "auto") or str(opts.device).startswith("cuda")
        if want_cuda and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        elif opts.device and str(opts.device).startswith("cuda"):
            raise ModelLoadError(
                "--device cuda was asked for but onnxruntime has no CUDAExecutionProvider "
                "(install onnxruntime-gpu); use --device cpu"
            )
        self.session = ort_session(onnx_path, threads=opts.num_threads, providers=providers)
        self.device = "cuda" if self.session.get_providers()[0] == "CUDAExecutionProvider" else "cpu"
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_name = self.session.get_outputs()[0].name
        cfg = AutoConfig.from_pretrained(model_dir, trust_remote_code=opts.trust_remote_code)
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=opts.trust_remote_code)
        self.label_names = label_names_from_config(cfg)
        self.max_length = _effective_max_length(self.tokenizer, cfg)

    @staticmethod
    def _find_onnx(model_dir: Path, onnx_file: str | None) -> Path | None:
        if onnx_file:
            for cand in (Path(onnx_file), model_dir / "onnx" / onnx_file, model_dir / onnx_file):
                if cand.is_file():
                    return cand
            raise ModelLoadError(
                f"ONNX file {onnx_file!r} not found (looked at it, {model_dir / 'onnx' / onnx_file} and "
                f"{model_dir / onnx_file}); run `hubtune export` or fix --onnx-file"
            )
        for cand in (model_dir / "onnx" / "model.onnx", model_dir / "model.onnx"):
            if cand.is_file():
                return cand
        return None

    def _export(self, model_dir: Path, export_dir: Path, opts: PredictOptions) -> Path:
        from hubtune.onnx_tools import FP32_FILE, export_onnx

        target = export_dir / FP32_FILE
        if not target.is_file():
            try:
                info = export_onnx(model_dir, export_dir)
            except (MissingDependencyError, ModelLoadError):
                raise
            except Exception as exc:  # noqa: BLE001
                raise ModelLoadError(
                    f"exporting {model_dir} to ONNX failed ({type(exc).__name__}: {str(exc)[:200]}); "
                    "run `hubtune export` or use --backend torch"
                ) from exc
            how = info["exporter"]
        else:
            how = "an earlier run"
        self.notices.append(
            f"{model_dir} has no onnx/model.onnx: exported one on the fly ({how}; run `hubtune export` to skip this)"
        )
        return target

    def __call__(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        inputs = {k: feeds[k] for k in self.input_names if k in feeds}
        if "token_type_ids" in self.input_names and "token_type_ids" not in inputs:
            inputs["token_type_ids"] = np.zeros_like(feeds["input_ids"])
        return np.asarray(self.session.run([self.output_name], inputs)[0], dtype=np.float32)


def make_runner(model_dir: Path, opts: PredictOptions, export_dir: Path) -> Any:
    """The backend runner (shared by the local and the Ray engine): tokenizer, label_names, max_length, __call__."""
    if opts.backend == "onnx":
        return OnnxRunner(model_dir, opts, export_dir)
    return TorchRunner(model_dir, opts)


# --------------------------------------------------------------------------------------------------
# Chunks: read, validate, tokenize (in a thread), sort by length, run
# --------------------------------------------------------------------------------------------------
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


def _prepare(chunk: Chunk, tokenizer: Any, text_col: str, pair_col: str | None, max_length: int) -> Chunk:
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


def run_chunk(runner: Any, chunk: Chunk, batch_size: int, token_budget: int | None = None) -> np.ndarray:
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


def _prefetch(gen: Iterator[Chunk], depth: int = 2) -> Iterator[Chunk]:
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


# --------------------------------------------------------------------------------------------------
# Dataset side
# --------------------------------------------------------------------------------------------------
def _first_columns(ds: Any) -> list[str]:
    cols = getattr(ds, "column_names", None)
    if cols:
        return list(cols)
    for row in ds.take(1):
        return list(row.keys())
    return []


def count_rows(ds: Any, spec: Any, text_col: str) -> int:
    """Rows in a streamed dataset: split metadata or parquet footers when available, else one counting pass."""
    info = getattr(ds, "info", None)
    splits = getattr(info, "splits", None) if info is not None else None
    if splits and spec.kind == "hub":
        split = spec.split or "train"
        if split in splits and splits[split].num_examples:
            return int(splits[split].num_examples)
    if spec.kind == "local":
        from hubtune.data import _local_files

        builder, files, _ = _local_files(Path(spec.path))
        if builder == "parquet":
            import pyarrow.parquet as pq

            return sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    n = 0
    for batch in ds.select_columns([text_col]).iter(batch_size=8192):
        n += len(batch[text_col])
    return n


def dataset_fingerprint(spec: Any, ds: Any, revision: str | None) -> str:
    """Cheap identity of the data: the files' sizes, heads and tails (local) or the split metadata (Hub), plus the first rows."""
    h = hashlib.sha256()
    h.update(json.dumps({"kind": spec.kind, "path": spec.path, "config": spec.config, "split": spec.split, "rev": revision}).encode())
    if spec.kind == "local":
        from hubtune.data import _local_files

        _, files, _ = _local_files(Path(spec.path))
        for f in files:
            size = os.path.getsize(f)
            h.update(f"{os.path.basename(f)}:{size}".encode())
            with open(f, "rb") as fh:
                h.update(fh.read(1 << 20))
                if size > 2 << 20:
                    fh.seek(size - (1 << 20))
                    h.update(fh.read(1 << 20))
    else:
        info = getattr(ds, "info", None)
        if info is not None:
            h.update(repr(getattr(info, "splits", None)).encode())
            h.update(repr(getattr(info, "download_checksums", None)).encode())
    for row in ds.take(64):
        h.update(repr(sorted(row.items())).encode())
    return h.hexdigest()


# --------------------------------------------------------------------------------------------------
# Shard files
# --------------------------------------------------------------------------------------------------
def _shard_table(chunk: Chunk, logits: np.ndarray, keep: list[str], label_names: list[str], all_scores: bool) -> Any:
    import pyarrow as pa

    from hubtune.metrics import softmax

    probs = softmax(logits) if len(logits) else np.zeros((0, len(label_names)), dtype=np.float32)
    pred = probs.argmax(-1) if len(probs) else np.zeros(0, dtype=np.int64)
    valid = chunk.valid
    cols: dict[str, Any] = {"row_id": pa.array(chunk.start + valid, type=pa.int64())}
    for c in keep:
        values = chunk.columns[c]
        cols[c] = pa.array([values[i] for i in valid])
    names = label_names or [str(i) for i in range(probs.shape[-1])]
    cols["label"] = pa.array([names[i] for i in pred], type=pa.string())
    cols["score"] = pa.array(probs[np.arange(len(pred)), pred] if len(pred) else [], type=pa.float32())
    if all_scores:
        for j, name in enumerate(names):
            cols[f"score_{name}"] = pa.array(probs[:, j], type=pa.float32())
    return pa.table(cols), probs, pred


def write_shard(
    parts: Path,
    name: str,
    chunk: Chunk,
    logits: np.ndarray,
    *,
    keep: list[str],
    label_names: list[str],
    all_scores: bool,
    label_column: str | None,
    feature: Any,
    source: str,
) -> tuple[dict[str, Any], str | None]:
    """Write one chunk's files under ``parts`` (NAME.parquet, NAME.errors.jsonl, NAME.eval.npz; each atomically,
    the parquet last) and return its manifest entry, plus a notice when its labels cannot be scored
    (``label_column=None``: no eval file). Shared by the local and the Ray engine."""
    table, probs, pred = _shard_table(chunk, logits, keep, label_names, all_scores)
    entry: dict[str, Any] = {
        "file": f"{name}.parquet",
        "start": chunk.start,
        "end": chunk.start + chunk.size,
        "rows": int(len(chunk.valid)),
        "errors": len(chunk.errors),
    }
    notice = None
    if chunk.errors:
        lines = "".join(json.dumps({"row_id": chunk.start + p, "reason": r}) + "\n" for p, r in chunk.errors)
        entry["errors_file"] = f"{name}.errors.jsonl"
        _atomic_bytes(lines.encode("utf-8"), parts / entry["errors_file"])
    if label_column is not None and label_names:
        try:
            labels_raw = [chunk.columns[label_column][i] for i in chunk.valid]
            pos, ids = _label_ids(labels_raw, feature, label_names, source)
            import io

            buf = io.BytesIO()
            np.savez(buf, y_true=ids, y_pred=pred[pos], probs=probs[pos].astype(np.float32))
            entry["eval_file"] = f"{name}.eval.npz"
            _atomic_bytes(buf.getvalue(), parts / entry["eval_file"])
        except LabelError as exc:
            notice = f"no metrics: {exc}"
    _atomic_parquet(table, parts / entry["file"])
    return entry, notice


def _atomic_parquet(table: Any, path: Path) -> None:
    import pyarrow.parquet as pq

    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _atomic_bytes(data: bytes, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _label_ids(values: list[Any], feature: Any, label_names: list[str], source: str) -> tuple[np.ndarray, np.ndarray]:
    """(positions with a label, their ids in the model's label order). Raises LabelError for unknown labels."""
    from hubtune.data import _is_missing, _to_ids

    pos = [i for i, v in enumerate(values) if not _is_missing(v)]
    ids = _to_ids([values[i] for i in pos], feature, label_names, source, "pass --label-column or a model trained on these labels")
    return np.asarray(pos, dtype=np.int64), np.asarray(ids, dtype=np.int64)


# --------------------------------------------------------------------------------------------------
# Final assembly (shared by batch_predict and merge_predictions)
# --------------------------------------------------------------------------------------------------
def _unified_schema(files: Sequence[Path]) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schemas = [pq.read_schema(f) for f in files]
    try:
        return pa.unify_schemas(schemas, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
        return schemas[0]


def _iter_tables(files: Sequence[Path]) -> Iterator[Any]:
    import pyarrow.parquet as pq

    schema = _unified_schema(files) if files else None
    for f in files:
        t = pq.read_table(f)
        if schema is not None and t.schema != schema:
            try:
                t = t.select(schema.names).cast(schema)
            except Exception:  # noqa: BLE001 - fall back to strings for columns whose type drifted
                import pyarrow as pa

                t = pa.table({n: t[n].cast(pa.string()) if t.schema.field(n).type != schema.field(n).type else t[n] for n in schema.names})
        yield t


class _Writer:
    """Stream tables into OUTPUT (written to a temp name, renamed at close)."""

    def __init__(self, output: Path, metadata: dict[str, Any] | None = None) -> None:
        self.output = output
        self.fmt = _fmt(output)
        self.tmp = output.with_name(f".{output.name}.tmp")
        self.metadata = metadata
        self._pq: Any = None
        self._fh: Any = None
        self._header = True

    def write(self, table: Any) -> None:
        if self.fmt == ".parquet":
            import pyarrow.parquet as pq

            if self._pq is None:
                schema = table.schema
                if self.metadata is not None:
                    schema = schema.with_metadata({b"hubtune": json.dumps(self.metadata, sort_keys=True, default=str).encode()})
                self._pq = pq.ParquetWriter(self.tmp, schema)
                self._schema = schema
            self._pq.write_table(table.cast(self._schema) if table.schema != self._schema else table)
        elif self.fmt == ".csv":
            import pyarrow.csv as pcsv

            if self._fh is None:
                self._fh = open(self.tmp, "wb")
            pcsv.write_csv(table, self._fh, write_options=pcsv.WriteOptions(include_header=self._header))
            self._header = False
        else:
            if self._fh is None:
                self._fh = open(self.tmp, "w", encoding="utf-8")
            for row in table.to_pylist():
                self._fh.write(json.dumps(row, ensure_ascii=False, default=str))
                self._fh.write("\n")

    def close(self, empty_schema: Any = None) -> None:
        if self._pq is None and self._fh is None:
            import pyarrow as pa

            self.write(pa.table({}, schema=empty_schema) if empty_schema is not None else pa.table({"row_id": pa.array([], pa.int64())}))
        if self._pq is not None:
            self._pq.close()
        if self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
        os.replace(self.tmp, self.output)


def _write_errors(path: Path, errors: Iterator[dict[str, Any]]) -> int:
    tmp = path.with_name(f".{path.name}.tmp")
    n = 0
    with open(tmp, "w", encoding="utf-8") as fh:
        for e in errors:
            fh.write(json.dumps(e, ensure_ascii=False) + "\n")
            n += 1
    if n:
        os.replace(tmp, path)
    else:
        tmp.unlink()
        if path.exists():
            path.unlink()
    return n


# --------------------------------------------------------------------------------------------------
# The step
# --------------------------------------------------------------------------------------------------
def _check_options(opts: PredictOptions) -> str:
    fmt = _fmt(opts.output)
    if opts.backend not in BACKENDS:
        raise ConfigError(f"--backend {opts.backend!r} is unknown; expected one of {', '.join(BACKENDS)}")
    if opts.engine not in ENGINES:
        raise ConfigError(f"--engine {opts.engine!r} is unknown; expected one of {', '.join(ENGINES)}")
    if opts.dtype not in DTYPES:
        raise ConfigError(f"--dtype {opts.dtype!r} is unknown; expected one of {', '.join(DTYPES)}")
    if opts.on_error not in ("skip", "fail"):
        raise ConfigError(f"--on-error {opts.on_error!r} is unknown; expected skip or fail")
    if opts.num_shards < 1 or not 0 <= opts.shard_index < opts.num_shards:
        raise ConfigError(
            f"--shard-index {opts.shard_index} with --num-shards {opts.num_shards}; expected 0 <= shard-index < num-shards"
        )
    if opts.batch_size < 1 or opts.chunk_size < 1:
        raise ConfigError(f"--batch-size and --chunk-size must be >= 1, found {opts.batch_size} and {opts.chunk_size}")
    if opts.limit is not None and opts.limit < 0:
        raise ConfigError(f"--limit must be >= 0, found {opts.limit}")
    if opts.resume and opts.overwrite:
        raise ConfigError("--resume and --overwrite contradict each other; pass one of them")
    return fmt


def _prepare_output(opts: PredictOptions) -> tuple[Path, Path, dict[str, Any] | None]:
    output = Path(opts.output)
    parts = sidecar(output, ".parts")
    manifest_path = parts / "manifest.json"
    previous = None
    if opts.overwrite:
        for p in (output, sidecar(output, ".errors.jsonl"), sidecar(output, ".metrics.json"), sidecar(output, ".meta.json")):
            if p.is_file():
                p.unlink()
        if parts.is_dir():
            shutil.rmtree(parts)
    elif opts.resume:
        if manifest_path.is_file():
            previous = _read_json(manifest_path)
        elif output.exists():
            raise OutputExistsError(
                f"output {output} is already complete (no {parts.name}/ to resume from); "
                "pass --overwrite to predict again or choose another --output"
            )
    else:
        if output.exists() or parts.exists():
            what = output if output.exists() else parts
            raise OutputExistsError(
                f"{what} already exists; pass --resume to continue an interrupted run, --overwrite to start over, "
                "or choose another --output"
            )
    try:
        parts.mkdir(parents=True, exist_ok=True)
        probe = parts / ".write-probe"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise OutputNotWritableError(
            f"cannot write the output {output} ({type(exc).__name__}: {exc.strerror or exc}); "
            "expected a writable directory: choose another --output"
        ) from None
    return output, parts, previous


def _compare_manifest(prev: dict[str, Any], cur: dict[str, Any], output: Path) -> None:
    pe, ce = prev.get("engine", "local"), cur.get("engine", "local")
    if pe != ce:  # the engines name and record their shards differently
        raise ResumeMismatchError(
            f"cannot resume {output}: it was started with --engine {pe}, this run uses --engine {ce}; "
            "resume with the same --engine, or pass --overwrite to start over"
        )
    pm, cm = prev.get("model", {}), cur["model"]
    if (pm.get("weights_sha256"), pm.get("revision")) != (cm["weights_sha256"], cm["revision"]):
        raise ResumeMismatchError(
            f"cannot resume {output}: it was started with model {pm.get('source')!r} "
            f"(weights sha256 {str(pm.get('weights_sha256'))[:12]}, revision {pm.get('revision')}), this run has "
            f"{cm['source']!r} (weights sha256 {cm['weights_sha256'][:12]}, revision {cm['revision']}); "
            "pass the same --model, or --overwrite to start over"
        )
    pd, cd = prev.get("dataset", {}), cur["dataset"]
    if pd.get("fingerprint") != cd["fingerprint"] or pd.get("spec") != cd["spec"]:
        raise ResumeMismatchError(
            f"cannot resume {output}: it was started on dataset {pd.get('spec')!r} (fingerprint "
            f"{str(pd.get('fingerprint'))[:12]}), this run reads {cd['spec']!r} (fingerprint {cd['fingerprint'][:12]}); "
            "pass the same --dataset, or --overwrite to start over"
        )
    for key, value in cur["options"].items():
        if prev.get("options", {}).get(key) != value:
            raise ResumeMismatchError(
                f"cannot resume {output}: option {key} was {prev.get('options', {}).get(key)!r}, now {value!r}; "
                "pass the same options as the interrupted run, or --overwrite to start over"
            )


def open_input(opts: PredictOptions) -> tuple[Any, Any, Any, list[str]]:
    """(spec, streamed dataset, resolved columns, kept columns) of ``opts.dataset``; validates --keep-columns."""
    from hubtune.data import open_dataset, parse_spec, resolve_columns

    spec = parse_spec(opts.dataset)
    ds = open_dataset(spec, streaming=True, encoding=opts.encoding, default_split="test", revision=opts.revision if spec.kind == "hub" else None)
    available = _first_columns(ds)
    if not available:
        raise EmptyDatasetError(f"dataset {opts.dataset} has no rows; expected at least one row to predict")
    cols = resolve_columns(
        available,
        text_column=opts.text_column,
        text_pair_column=opts.text_pair_column,
        label_column=opts.label_column,
        require_label=False,
    )
    keep = [c.strip() for c in opts.keep_columns if c and c.strip()]
    for c in keep:
        if c not in available:
            raise ColumnNotFoundError(
                f"--keep-columns names '{c}', which is not in the dataset; it has columns: {', '.join(available)} "
                "(fix --keep-columns)"
            )
        if c in ("row_id", "label", "score"):
            raise ConfigError(f"--keep-columns '{c}' clashes with an output column (row_id, label, score); drop it")
    return spec, ds, cols, keep


def new_manifest(
    opts: PredictOptions, identity: dict[str, Any], label_names: list[str] | None, spec: Any, ds: Any, cols: Any,
    keep: list[str], fmt: str, start: int, end: int | None, total: int | None,
) -> dict[str, Any]:
    """The manifest of a run (what a resume and merge-predictions compare), with no shards yet."""
    return {
        "version": MANIFEST_VERSION,
        "model": identity,
        "label_names": label_names,
        "dataset": {
            "spec": opts.dataset,
            "fingerprint": dataset_fingerprint(spec, ds, opts.revision),
            "text_column": cols.text,
            "text_pair_column": cols.text_pair,
            "label_column": cols.label,
        },
        "options": {
            "keep_columns": keep,
            "all_scores": opts.all_scores,
            "limit": opts.limit,
            "num_shards": opts.num_shards,
            "shard_index": opts.shard_index,
            "format": fmt,
        },
        "range": {"start": start, "end": end, "total": total},
        "shards": [],
        "complete": False,
    }


def batch_predict(opts: PredictOptions) -> PredictResult:
    """Predict every row of ``opts.dataset`` into ``opts.output`` (resumable; see the module docstring).

    ``opts.engine == "ray"`` runs the same runners and shard files on a Ray Data actor pool (hubtune.predict_ray)."""
    if opts.engine == "ray":
        _check_options(opts)
        from hubtune.predict_ray import batch_predict_ray

        return batch_predict_ray(opts)
    t0 = time.perf_counter()
    fmt = _check_options(opts)
    output, parts, previous = _prepare_output(opts)
    spec, ds, cols, keep = open_input(opts)

    model_dir, commit = resolve_model_dir(opts.model, revision=opts.revision, backend=opts.backend)
    identity = model_identity(opts.model, model_dir, commit)
    runner = make_runner(model_dir, opts, parts / "_onnx_export")
    label_names = runner.label_names
    max_length = opts.max_length or runner.max_length
    notices = list(runner.notices)

    # the row range of this runner
    total: int | None = opts.limit
    start, end = 0, opts.limit
    if opts.num_shards > 1:
        n_all = count_rows(ds, spec, cols.text)
        total = min(n_all, opts.limit) if opts.limit is not None else n_all
        start = total * opts.shard_index // opts.num_shards
        end = total * (opts.shard_index + 1) // opts.num_shards
    manifest = new_manifest(opts, identity, label_names, spec, ds, cols, keep, fmt, start, end, total)
    if previous is not None:
        _compare_manifest(previous, manifest, output)
        manifest["shards"] = previous.get("shards", [])
        manifest["complete"] = previous.get("complete", False)
    done = sum(s["rows"] + s["errors"] for s in manifest["shards"])
    resumed = done
    _write_json(parts / "manifest.json", manifest)
    # remove leftovers of an interrupted shard write (never recorded in the manifest)
    recorded = {s[k] for s in manifest["shards"] for k in ("file", "errors_file", "eval_file") if s.get(k)}
    for p in parts.iterdir():
        if p.is_file() and p.name.startswith((".shard-", "shard-")) and p.name not in recorded:
            p.unlink()

    from_row = start + done
    n_todo = None if end is None else max(0, end - from_row)
    feature = label_feature(ds, cols.label)
    metrics_enabled = cols.label is not None and bool(label_names)

    needed = [c for c in dict.fromkeys([cols.text, cols.text_pair, cols.label, *keep]) if c]

    def chunks() -> Iterator[Chunk]:
        if manifest["complete"] or n_todo == 0:
            return
        stream = ds.select_columns(needed)
        if from_row:
            stream = stream.skip(from_row)
        if n_todo is not None:
            stream = stream.take(n_todo)
        idx = len(manifest["shards"])
        row = from_row
        for batch in stream.iter(batch_size=opts.chunk_size):
            chunk = Chunk(index=idx, start=row, columns=batch, valid=np.zeros(0, np.int64), errors=[])
            yield _prepare(chunk, runner.tokenizer, cols.text, cols.text_pair, max_length)
            row += chunk.size
            idx += 1

    from tqdm.auto import tqdm

    bar_total = None if end is None else end - start
    bar = tqdm(total=bar_total, initial=done, unit="rows", unit_scale=True, disable=not opts.progress, dynamic_ncols=True, desc="batch-predict")
    throttle = float(os.environ.get(THROTTLE_ENV, "0") or 0)
    processed = 0
    t_run = time.perf_counter()
    try:
        for chunk in _prefetch(chunks()):
            if chunk.errors and opts.on_error == "fail":
                pos, reason = chunk.errors[0]
                raise RowError(
                    f"row {chunk.start + pos} cannot be predicted: {reason}; fix the data, or pass --on-error skip "
                    "to record such rows in the errors file and go on"
                )
            logits = run_chunk(runner, chunk, opts.batch_size)
            entry, notice = write_shard(
                parts, f"shard-{chunk.index:05d}", chunk, logits, keep=keep, label_names=label_names,
                all_scores=opts.all_scores, label_column=cols.label if metrics_enabled else None,
                feature=feature, source=opts.dataset,
            )
            entry = {"index": chunk.index, **entry}
            if notice:
                metrics_enabled = False
                notices.append(notice)
            manifest["shards"].append(entry)
            _write_json(parts / "manifest.json", manifest)
            processed += chunk.size
            bar.update(chunk.size)
            if throttle:
                time.sleep(throttle)
    finally:
        bar.close()
    seconds_run = time.perf_counter() - t_run

    if not manifest["shards"] and previous is None and processed == 0 and (n_todo is None or n_todo > 0) and start == 0:
        manifest["complete"] = True
        _write_json(parts / "manifest.json", manifest)
        raise EmptyDatasetError(f"dataset {opts.dataset} has no rows to predict (check the spec or --limit)")
    done_info = assemble(opts, output, parts, manifest, label_names=label_names, metrics_enabled=metrics_enabled)
    return make_result(opts, done_info, output=output, started=t0, seconds_run=seconds_run, processed=processed,
                       device=runner.device, resumed=resumed, identity=identity, notices=notices)


def make_result(
    opts: PredictOptions, done: dict[str, Any], *, output: Path, started: float, seconds_run: float, processed: int,
    device: str, resumed: int, identity: dict[str, Any], notices: list[str], **extra: Any,
) -> PredictResult:
    """The summary of a finished run (both engines), from what :func:`assemble` returned."""
    return PredictResult(
        rows=done["rows"],
        errors=done["errors"],
        seconds=round(time.perf_counter() - started, 3),
        rows_per_s=round(processed / seconds_run, 2) if seconds_run > 0 and processed else 0.0,
        backend=opts.backend,
        device=device,
        output=str(output),
        errors_path=done["errors_path"],
        metrics_path=done["metrics_path"],
        meta_path=done["meta_path"],
        metrics=done["metrics"],
        row_range=done["row_range"],
        resumed_rows=resumed,
        model=identity,
        notices=notices,
        **extra,
    )


def assemble(
    opts: PredictOptions, output: Path, parts: Path, manifest: dict[str, Any], *, label_names: list[str], metrics_enabled: bool
) -> dict[str, Any]:
    """Mark the manifest complete and assemble OUTPUT and its sidecars (.errors.jsonl, .metrics.json, .meta.json)
    from the recorded shards, in manifest order; remove OUTPUT.parts/ unless keep_parts. Shared by both engines."""
    manifest["complete"] = True
    _write_json(parts / "manifest.json", manifest)
    shards = manifest["shards"]
    start, end, total = manifest["range"]["start"], manifest["range"]["end"], manifest["range"]["total"]
    identity = manifest["model"]
    n_rows = sum(s["rows"] for s in shards)
    n_err = sum(s["errors"] for s in shards)
    last = shards[-1]["end"] if shards else start
    meta = {
        "hubtune_batch_predict": MANIFEST_VERSION,
        "model": identity,
        "label_names": label_names,
        "dataset": manifest["dataset"],
        "options": manifest["options"],
        "range": {"start": start, "end": end if end is not None else last, "total": total if total is not None else (last if opts.num_shards == 1 else None)},
        "rows": n_rows,
        "errors": n_err,
    }
    writer = _Writer(output, meta)
    for t in _iter_tables([parts / s["file"] for s in shards]):
        writer.write(t)
    writer.close()
    errors_path = sidecar(output, ".errors.jsonl")

    def err_rows() -> Iterator[dict[str, Any]]:
        for s in shards:
            if s.get("errors_file"):
                with open(parts / s["errors_file"], encoding="utf-8") as fh:
                    for line in fh:
                        yield json.loads(line)

    _write_errors(errors_path, err_rows())
    metrics = None
    metrics_path = sidecar(output, ".metrics.json")
    eval_files = [parts / s["eval_file"] for s in shards if s.get("eval_file")]
    if metrics_enabled and eval_files and len(eval_files) == len([s for s in shards if s["rows"]]):
        from hubtune.metrics import classification_metrics

        loaded = [np.load(f) for f in eval_files]
        y_true = np.concatenate([z["y_true"] for z in loaded])
        y_pred = np.concatenate([z["y_pred"] for z in loaded])
        probs_all = np.concatenate([z["probs"] for z in loaded])
        if len(y_true):
            metrics = classification_metrics(y_true, y_pred, label_names, probs_all)
            _write_json(metrics_path, {"model": opts.model, "dataset": opts.dataset, "metrics": metrics})
    meta_path = sidecar(output, ".meta.json")
    _write_json(meta_path, meta)
    if not opts.keep_parts:
        shutil.rmtree(parts, ignore_errors=True)
    return {
        "rows": n_rows,
        "errors": n_err,
        "errors_path": str(errors_path) if n_err else None,
        "metrics_path": str(metrics_path) if metrics is not None else None,
        "meta_path": str(meta_path),
        "metrics": metrics,
        "row_range": [start, meta["range"]["end"]],
    }


# --------------------------------------------------------------------------------------------------
# merge-predictions
# --------------------------------------------------------------------------------------------------
def read_meta(part: str | os.PathLike[str]) -> dict[str, Any]:
    p = Path(part)
    if not p.is_file():
        raise DataError(f"prediction part {p} does not exist; pass the outputs of `hubtune batch-predict --num-shards K`")
    side = sidecar(p, ".meta.json")
    if side.is_file():
        return _read_json(side)
    if p.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        md = pq.read_schema(p).metadata or {}
        if b"hubtune" in md:
            return json.loads(md[b"hubtune"])
    raise PredictError(
        f"{p} has no batch-predict metadata (neither {side.name} beside it nor parquet metadata); "
        "expected an output of `hubtune batch-predict` (keep its .meta.json next to it)"
    )


def _read_part(path: Path) -> Any:
    fmt = _fmt(path)
    if fmt == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path)
    if fmt == ".csv":
        import pyarrow.csv as pcsv

        return pcsv.read_csv(path)
    import pyarrow.json as pjson

    return pjson.read_json(path)


def merge_predictions(parts: Sequence[str], output: str, *, overwrite: bool = False) -> MergeResult:
    """Join the outputs of K sharded runs into one result ordered by row id; refuse overlaps, gaps, mismatches."""
    out = Path(output)
    _fmt(out)
    if not parts:
        raise ConfigError("no parts given; pass the outputs of the sharded batch-predict runs")
    if out.exists() and not overwrite:
        raise OutputExistsError(f"{out} already exists; pass --overwrite or choose another --output")
    metas = [(Path(p), read_meta(p)) for p in parts]
    p0, m0 = metas[0]
    for p, m in metas[1:]:
        if (m["model"].get("weights_sha256"), m["model"].get("revision")) != (
            m0["model"].get("weights_sha256"), m0["model"].get("revision")
        ):
            raise ResumeMismatchError(
                f"{p} was predicted with model {m['model'].get('source')!r} (weights sha256 "
                f"{str(m['model'].get('weights_sha256'))[:12]}), {p0} with {m0['model'].get('source')!r} "
                f"({str(m0['model'].get('weights_sha256'))[:12]}); expected one model: re-run the odd part"
            )
        if m["dataset"].get("fingerprint") != m0["dataset"].get("fingerprint") or m["options"] | {"shard_index": 0} != m0["options"] | {"shard_index": 0}:
            raise ResumeMismatchError(
                f"{p} and {p0} come from different datasets or options ({m['dataset'].get('spec')!r} vs "
                f"{m0['dataset'].get('spec')!r}); expected parts of one sharded run"
            )
    metas.sort(key=lambda pm: pm[1]["range"]["start"])
    total = m0["range"].get("total")
    expect = 0
    for p, m in metas:
        s, e = m["range"]["start"], m["range"]["end"]
        if s < expect:
            raise PredictError(f"{p} covers rows {s}..{e - 1}, which overlap the previous part (up to row {expect - 1}); pass each part once")
        if s > expect:
            raise PredictError(f"rows {expect}..{s - 1} are in no part (gap before {p}); run the missing --shard-index and pass its output")
        expect = e
    if total is not None and expect != total:
        raise PredictError(f"the parts cover rows 0..{expect - 1} but the dataset has {total} rows; run the missing shards and pass their outputs")
    if out.exists():
        out.unlink()
    meta = dict(m0)
    meta["range"] = {"start": 0, "end": expect, "total": total}
    meta["options"] = dict(m0["options"], num_shards=1, shard_index=0)
    meta["rows"] = sum(m["rows"] for _, m in metas)
    meta["errors"] = sum(m["errors"] for _, m in metas)
    meta["merged_from"] = [str(p) for p, _ in metas]
    writer = _Writer(out, meta)
    rows = 0
    for p, m in metas:
        t = _read_part(p)
        if t.num_rows:
            ids = t["row_id"].to_numpy()
            s, e = m["range"]["start"], m["range"]["end"]
            if ids.min() < s or ids.max() >= e or (len(ids) > 1 and not (np.diff(ids) > 0).all()):
                raise PredictError(f"{p} holds row ids outside its range {s}..{e - 1} or out of order; expected an untouched batch-predict output")
        if t.num_rows != m["rows"]:
            raise PredictError(f"{p} holds {t.num_rows} rows but its metadata says {m['rows']}; expected an untouched batch-predict output")
        rows += t.num_rows
        writer.write(t)
    writer.close()
    errors_path = sidecar(out, ".errors.jsonl")

    def errs() -> Iterator[dict[str, Any]]:
        for p, _ in metas:
            ep = sidecar(p, ".errors.jsonl")
            if ep.is_file():
                with open(ep, encoding="utf-8") as fh:
                    for line in fh:
                        yield json.loads(line)

    n_err = _write_errors(errors_path, errs())
    meta_path = sidecar(out, ".meta.json")
    _write_json(meta_path, meta)
    return MergeResult(rows=rows, errors=n_err, parts=len(metas), output=str(out), errors_path=str(errors_path) if n_err else None, meta_path=str(meta_path))


__all__ = [
    "PredictOptions",
    "PredictResult",
    "MergeResult",
    "batch_predict",
    "merge_predictions",
    "read_meta",
    "resolve_model_dir",
    "model_identity",
    "run_chunk",
    "make_runner",
    "write_shard",
    "assemble",
]
