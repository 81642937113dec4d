"""What a batch-predict run is asked (:class:`PredictOptions`), their validation, and what it answers
(:class:`PredictResult`, :class:`MergeResult`). Shared by both engines; imports nothing heavy."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from hubtune.core.errors import ConfigError
from hubtune.tasks.base import check_task_name
from hubtune.tasks.registry import task_names

OUTPUT_FORMATS = (".parquet", ".jsonl", ".csv")
BACKENDS = ("auto", "torch", "onnx", "openvino")
GENERATION_FLAGS = {  # option -> flag: what only a generation run reads
    "prompt_column": "--prompt-column", "messages_column": "--messages-column", "system_prompt": "--system-prompt",
    "max_new_tokens": "--max-new-tokens", "temperature": "--temperature", "top_p": "--top-p", "top_k": "--top-k",
    "stop": "--stop", "num_return_sequences": "--num-return-sequences",
}
ENGINES = ("local", "ray")
DTYPES = ("auto", "fp32", "fp16", "bf16", "int8")
REDUCED_DTYPES = ("fp16", "bf16", "int8")  # checked against fp32 on a sample of the input (--min-agreement)
DEFAULT_MAX_BATCH_TOKENS = 4096  # rows x padded length of one batch: bounds the activations (attention scores)
DEFAULT_MIN_AGREEMENT = 0.995
DEFAULT_CHECK_ROWS = 256  # valid rows of the input compared with fp32 before a reduced precision is used
LONG_TEXT = ("truncate", "chunk")  # a text longer than max_length: cut, or scored over overlapping windows


@dataclass
class PredictOptions:
    model: str
    dataset: str
    output: str
    # auto: chosen from the machine (hubtune/predict/choose.py), recorded with its reason
    backend: Literal["auto", "torch", "onnx", "openvino"] = "auto"
    device: str | None = None  # None/auto: cuda when available
    batch_size: int = 256  # rows per batch at most (and max_batch_tokens tokens at most)
    dtype: Literal["auto", "fp32", "fp16", "bf16", "int8"] = "auto"
    max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS
    min_agreement: float = DEFAULT_MIN_AGREEMENT  # label agreement with fp32 an automatic reduced precision needs
    check_rows: int = DEFAULT_CHECK_ROWS  # sample size of that check (and of the auto warm-up)
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
    # a text longer than max_length tokens: "truncate" (counted and reported) or "chunk" (overlapping windows of
    # max_length tokens sharing ``stride`` tokens, the mean of their probabilities; stride None: a quarter window)
    long_text: Literal["truncate", "chunk"] = "truncate"
    stride: int | None = None
    revision: str | None = None
    trust_remote_code: bool = False
    encoding: str = "utf-8"
    num_threads: int | None = None
    keep_parts: bool = False
    progress: bool = True
    # engine: "local" (this process) or "ray" (a Ray Data actor pool; hubtune/predict/ray.py)
    engine: Literal["local", "ray"] = "local"
    address: str | None = None  # ray: None = a local Ray (or the one already initialised), "auto", ray://HOST:PORT
    num_workers: int | None = None  # ray: model replicas (actors); default 1
    gpus_per_worker: float = 0.0  # ray: GPUs per actor (0 = CPU actors)
    # evaluate modules (--metric) computed beside the built-in metrics when the rows have labels; they read the
    # predictions only, so they are not part of the resume identity
    metric_modules: list[str] = field(default_factory=list)
    # the model's task (hubtune.tasks.base.TASKS): None reads it from the checkpoint; a checkpoint without its head
    # is refused (ModelTaskError)
    task: str | None = None
    threshold: float | None = None  # multi-label: a label is predicted when its sigmoid is over it (None: 0.5)
    # feature-extraction: unit-length embeddings (None: what the model's sentence-transformers config says)
    normalize: bool | None = None
    # --- generation (text-generation, text2text-generation; hubtune.predict.generate) ---
    prompt_column: str | None = None  # None: detected (prompt, text, source, ...)
    messages_column: str | None = None  # chat messages (a list of {role, content}) rendered with the chat template
    system_prompt: str | None = None
    max_new_tokens: int | None = None  # None: 64
    temperature: float | None = None  # > 0 (or --top-p / --top-k): sampling, seeded per row; None or 0: greedy
    top_p: float | None = None
    top_k: int | None = None
    seed: int = 0  # sampling: a row's seed is derived from it and the row id
    stop: list[str] = field(default_factory=list)
    num_return_sequences: int | None = None  # None: 1
    batching: str = "auto"  # padded | continuous | auto (measured)


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
    dtype: str = "fp32"
    # how backend/dtype were chosen: {"auto": [...], "backend", "dtype", "device", "reason", "agreement", ...}
    choice: dict[str, Any] = field(default_factory=dict)
    # valid rows that lost tokens beyond max_length (--long-text truncate), over every shard of this run
    truncated_rows: int = 0
    # {"mode": truncate|chunk, "max_length", "stride", "chunked_rows": rows scored over 2+ windows, "windows"}
    long_text: dict[str, Any] = field(default_factory=dict)
    task: str = "text-classification"  # the task predicted (hubtune.tasks.base)
    # generation runs: prompt_tokens, completion_tokens (over every shard), tokens_per_s (this run's)
    generation: dict[str, Any] = field(default_factory=dict)


@dataclass
class MergeResult:
    rows: int
    errors: int
    parts: int
    output: str
    errors_path: str | None = None
    meta_path: str | None = None


def output_format(output: str | Path) -> str:
    """The output's format (its suffix: .parquet, .jsonl or .csv), or a ConfigError naming --output."""
    suffix = Path(output).suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        raise ConfigError(
            f"output {output} has extension {suffix or '(none)'!r}; expected one of {', '.join(OUTPUT_FORMATS)} "
            "(set --output preds.parquet|preds.jsonl|preds.csv)"
        )
    return suffix


def check_options(opts: PredictOptions) -> str:
    """Refuse contradictory or unknown options (both engines); returns the output format."""
    fmt = output_format(opts.output)
    if opts.backend not in (*BACKENDS, "vllm"):
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
    if opts.max_length is not None and opts.max_length < 1:
        raise ConfigError(f"--max-length must be >= 1 (tokens per text), found {opts.max_length}; pass a positive "
                          "--max-length or leave it out for the model's limit")
    if opts.max_batch_tokens < 1:
        raise ConfigError(f"--max-batch-tokens must be >= 1, found {opts.max_batch_tokens}")
    if not 0.0 <= opts.min_agreement <= 1.0:
        raise ConfigError(f"--min-agreement must be between 0 and 1 (0.995 = 99.5%), found {opts.min_agreement}")
    if opts.check_rows < 1:
        raise ConfigError(f"check_rows must be >= 1, found {opts.check_rows}")
    if (opts.dtype in ("bf16", "fp16") and opts.backend == "onnx" or opts.dtype == "int8" and opts.backend == "torch"
            or opts.dtype == "fp16" and opts.backend == "openvino"):
        raise ConfigError(
            f"--dtype {opts.dtype} with --backend {opts.backend}: bf16 runs on --backend torch or openvino, fp16 on "
            "torch (CUDA), int8 on --backend onnx (onnx/model_quantized.onnx) or openvino (weights compressed on load); "
            "pass a matching pair or --backend auto"
        )
    if opts.long_text not in LONG_TEXT:
        raise ConfigError(f"--long-text {opts.long_text!r} is unknown; expected one of {', '.join(LONG_TEXT)}")
    if opts.stride is not None and (opts.long_text != "chunk" or opts.stride < 0):
        raise ConfigError(
            f"--stride {opts.stride} with --long-text {opts.long_text}: the stride (tokens shared by neighbouring "
            "windows, >= 0) is for --long-text chunk; pass --long-text chunk, or drop --stride"
        )
    if opts.limit is not None and opts.limit < 0:
        raise ConfigError(f"--limit must be >= 0, found {opts.limit}")
    check_task_name(opts.task, known=task_names(predicts=True) + task_names(generates=True))
    if opts.threshold is not None and not 0.0 <= opts.threshold <= 1.0:
        raise ConfigError(f"--threshold must be between 0 and 1 (a sigmoid score), found {opts.threshold}")
    if opts.resume and opts.overwrite:
        raise ConfigError("--resume and --overwrite contradict each other; pass one of them")
    return fmt


def generation_flags(opts: PredictOptions) -> list[str]:
    """The generation-only flags these options set (refused for a classifier)."""
    flags = [flag for key, flag in GENERATION_FLAGS.items() if getattr(opts, key) not in (None, [])]
    if opts.batching != "auto":
        flags.append("--batching")
    return flags


def make_result(
    opts: PredictOptions, done: dict[str, Any], *, output: Path, started: float, seconds_run: float, processed: int,
    device: str, resumed: int, identity: dict[str, Any], notices: list[str], choice: dict[str, Any], **extra: Any,
) -> PredictResult:
    """The summary of a finished run (both engines), from what :func:`hubtune.predict.output.assemble` returned."""
    return PredictResult(
        rows=done["rows"],
        errors=done["errors"],
        seconds=round(time.perf_counter() - started, 3),
        rows_per_s=round(processed / seconds_run, 2) if seconds_run > 0 and processed else 0.0,
        backend=choice.get("backend", opts.backend),
        dtype=choice.get("dtype", opts.dtype),
        choice=choice,
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
        truncated_rows=done.get("truncated_rows", 0),
        long_text=done.get("long_text", {}),
        task=done.get("task") or "text-classification",
        **extra,
    )
