"""``batch-predict`` for the generation tasks (``text-generation``: causal LMs; ``text2text-generation``: t5, bart):

    the model (source; generators.load_generator) and the rows (a prompt column, or a chat-messages column rendered
    with the tokenizer's chat template) -> the row range of this runner (--num-shards/--shard-index)
      -> the manifest (a new run, or the interrupted one to --resume; output)
      -> the path: dtype (bf16 where this machine is fast at it and greedy outputs on a sample are identical to
         fp32's, else fp32) and batching (padded batches of similar length, or transformers' continuous batching:
         both measured on a sample, the faster one with identical outputs; cached like --backend auto's choice)
      -> chunks of ``chunk_size`` rows: each row's prompt ids (a bad row: a row error), generated, read back
         (generators.finish) -> OUTPUT.parts/shard-NNNNN.parquet (shards.write_table_shard), recorded in the
         manifest after each chunk
      -> OUTPUT and its sidecars (output.assemble)

Columns: ``row_id``, the ``--keep-columns``, ``generated_text`` (a list with ``--num-return-sequences`` > 1),
``finish_reason`` (``stop``/``length``; a list likewise), ``prompt_tokens``, ``completion_tokens`` (a list
likewise). Sampled texts depend only on ``--seed`` and the row id (generators.RowSeededSampler), so shards and
``--resume`` reproduce them byte for byte."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from hubtune.core.errors import (
    ColumnNotFoundError,
    ConfigError,
    EmptyDatasetError,
    MissingDependencyError,
    RowError,
)
from hubtune.predict.dataset import count_rows
from hubtune.predict.generators import (
    BATCHING,
    GenSettings,
    continuous_supported,
    finish,
    generate_continuous,
    generate_padded,
    load_generator,
    row_seed,
)
from hubtune.predict.options import DEFAULT_MAX_BATCH_TOKENS, PredictOptions, PredictResult, check_options, make_result
from hubtune.predict.output import assemble, compare_requested, new_manifest, take_over, write_json
from hubtune.predict.shards import kill_point, write_table_shard
from hubtune.predict.source import model_identity

PROMPT_COLUMNS = ("prompt", "text", "source", "input", "question", "instruction", "sentence", "document")
MESSAGES_COLUMNS = ("messages", "conversation", "conversations", "chat")
OUTPUT_COLUMNS = ("row_id", "generated_text", "finish_reason", "prompt_tokens", "completion_tokens")
GEN_BACKENDS = ("auto", "torch", "onnx", "vllm")
# rows x (longest prompt + new tokens) a generation batch holds when --max-batch-tokens is left at its default
# (4096, a classifier's): bigger batches share each decoding step (bench/bench_generate.py, docs/benchmarks.md)
GEN_MAX_BATCH_TOKENS = 16384
SAMPLE_ROWS = 16  # rows of the input the auto choices measure and compare
# why --batching auto does not measure continuous batching on a CPU (its warm-up alone costs more than it can win)
CPU_CONTINUOUS = ("on a CPU continuous batching ran 8-35x slower than padded batches in bench/bench_generate.py "
                  "(docs/benchmarks.md); --batching continuous runs it")


def settings_of(opts: PredictOptions) -> GenSettings:
    """The generation settings of the options, checked (one line naming the flag for each refusal)."""
    n = opts.num_return_sequences or 1
    sampling = any(v is not None for v in (opts.top_p, opts.top_k)) or (opts.temperature or 0) > 0
    if opts.max_new_tokens is not None and opts.max_new_tokens < 1:
        raise ConfigError(f"--max-new-tokens must be >= 1, found {opts.max_new_tokens}")
    if opts.temperature is not None and opts.temperature < 0:
        raise ConfigError(f"--temperature must be >= 0 (0: greedy), found {opts.temperature}")
    if opts.top_p is not None and not 0 < opts.top_p <= 1:
        raise ConfigError(f"--top-p must be in (0, 1], found {opts.top_p}")
    if opts.top_k is not None and opts.top_k < 1:
        raise ConfigError(f"--top-k must be >= 1, found {opts.top_k}")
    if n < 1:
        raise ConfigError(f"--num-return-sequences must be >= 1, found {n}")
    if n > 1 and not sampling:
        raise ConfigError(f"--num-return-sequences {n} with greedy decoding would repeat one text {n} times; "
                          "expected sampling: pass --temperature (e.g. 0.8), --top-p or --top-k")
    if opts.temperature == 0 and (opts.top_p is not None or opts.top_k is not None):
        raise ConfigError("--temperature 0 is greedy decoding, which --top-p/--top-k do not change; expected a "
                          "temperature > 0 with them, or neither")
    stop = tuple(s for s in (opts.stop or []) if s)
    return GenSettings(max_new_tokens=opts.max_new_tokens or 64, do_sample=sampling,
                       temperature=opts.temperature if sampling else None, top_p=opts.top_p, top_k=opts.top_k,
                       seed=opts.seed, stop=stop, num_return_sequences=n)


def check_generation_options(opts: PredictOptions) -> None:
    """Refuse classifier options a generation run cannot take."""
    if opts.backend == "openvino":
        raise ConfigError("--backend openvino runs the classifier, embedding and token-classification tasks; a "
                          "generation model is generated with --backend torch or onnx (onnxruntime-genai): pass one "
                          "of those, or --backend auto")
    if opts.backend not in GEN_BACKENDS:
        raise ConfigError(f"--backend {opts.backend!r} is unknown; expected one of {', '.join(GEN_BACKENDS)}")
    if opts.batching not in BATCHING:
        raise ConfigError(f"--batching {opts.batching!r} is unknown; expected one of {', '.join(BATCHING)}")
    if opts.dtype == "int8":
        raise ConfigError("--dtype int8 is an ONNX classifier's; expected auto, fp32, bf16 or fp16 for generation")
    for flag, value in (("--text-pair-column", opts.text_pair_column), ("--label-column", opts.label_column),
                        ("--threshold", opts.threshold), ("--onnx-file", opts.onnx_file), ("--stride", opts.stride)):
        if value is not None:
            raise ConfigError(f"{flag} is a classifier's option, and this run generates text; drop {flag}")
    if opts.all_scores or opts.long_text != "truncate" or opts.metric_modules:
        raise ConfigError("--all-scores, --long-text chunk and --metric score classifiers, and this run generates "
                          "text; drop them")
    if opts.engine != "local":
        raise ConfigError(f"--engine {opts.engine}: generation runs on --engine local (with --num-shards for "
                          "several processes or machines)")


def open_prompts(opts: PredictOptions, task: Any) -> tuple[Any, Any, str, bool, list[str]]:
    """(spec, streamed dataset, the prompt or messages column, whether it holds messages, kept columns)."""
    from hubtune.data.dataset import open_dataset, parse_spec
    from hubtune.predict.dataset import first_columns

    spec = parse_spec(opts.dataset)
    ds = open_dataset(spec, streaming=True, encoding=opts.encoding, default_split="test",
                      revision=opts.revision if spec.kind == "hub" else None)
    available = first_columns(ds)
    if not available:
        raise EmptyDatasetError(f"dataset {opts.dataset} has no rows; expected at least one prompt")
    asked = opts.messages_column or opts.prompt_column or opts.text_column
    if opts.messages_column and (opts.prompt_column or opts.text_column):
        raise ConfigError("--messages-column and --prompt-column name two inputs; expected one of them")
    if asked is not None and asked not in available:
        raise ColumnNotFoundError(f"column {asked!r} is not in dataset {opts.dataset}; it has columns: "
                                  f"{', '.join(available)} (fix --prompt-column / --messages-column)")
    if asked is not None:
        column, messages = asked, bool(opts.messages_column)
    else:
        found_prompt = next((c for c in PROMPT_COLUMNS if c in available), None)
        found_chat = next((c for c in MESSAGES_COLUMNS if c in available), None) if task.chat else None
        if found_prompt is None and found_chat is None:
            raise ColumnNotFoundError(
                f"dataset {opts.dataset} has no prompt column (looked for {', '.join(PROMPT_COLUMNS)}"
                f"{', or messages: ' + ', '.join(MESSAGES_COLUMNS) if task.chat else ''}); it has: "
                f"{', '.join(available)}; pass --prompt-column NAME" + (" or --messages-column NAME" if task.chat else ""))
        column, messages = (found_prompt, False) if found_prompt is not None else (found_chat, True)
    if messages and not task.chat:
        raise ConfigError(f"--messages-column: a {task.name} model reads a source text, not chat messages; "
                          "expected --prompt-column")
    keep = [c.strip() for c in opts.keep_columns if c and c.strip()]
    for c in keep:
        if c not in available:
            raise ColumnNotFoundError(f"--keep-columns names '{c}', which is not in the dataset; it has columns: "
                                      f"{', '.join(available)} (fix --keep-columns)")
        if c in OUTPUT_COLUMNS:
            raise ConfigError(f"--keep-columns '{c}' clashes with an output column ({', '.join(OUTPUT_COLUMNS)}); drop it")
    return spec, ds, column, messages, keep


def _prompts(task: Any, tokenizer: Any, values: list[Any], *, messages: bool, system_prompt: str | None,
             limit: int | None, new_tokens: int) -> tuple[list[int], list[list[int]], list[tuple[int, str]]]:
    """(valid positions, their prompt ids, (position, reason) of the rows that cannot be generated)."""
    valid, ids, errors = [], [], []
    for pos, value in enumerate(values):
        try:
            p = task.prompt_ids(tokenizer, value, messages=messages, system_prompt=system_prompt)
        except RowError as exc:
            errors.append((pos, str(exc)))
            continue
        if not p:
            errors.append((pos, "the prompt has no tokens"))
        elif limit is not None and len(p) + (0 if task.encoder_decoder else new_tokens) > limit:
            errors.append((pos, f"the prompt has {len(p)} tokens; with --max-new-tokens {new_tokens} that is over "
                                f"the model's {limit} positions (a shorter prompt or a smaller --max-new-tokens)"))
        else:
            valid.append(pos)
            ids.append(p)
    return valid, ids, errors


class Generator:
    """One run's model and path: ``run(prompts, row_ids)`` -> per prompt, per sequence, the new token ids
    (``genai``: an onnxruntime-genai model, :mod:`hubtune.predict.genai`, for ``--backend onnx``)."""

    def __init__(self, loaded: Any, task: Any, settings: GenSettings, batching: str, opts: PredictOptions,
                 genai: Any = None) -> None:
        self.loaded, self.task, self.settings, self.batching, self.opts = loaded, task, settings, batching, opts
        self.genai = genai

    def run(self, prompts: list[list[int]], row_ids: list[int]) -> list[list[list[int]]]:
        n = self.settings.num_return_sequences
        flat = [p for p in prompts for _ in range(n)]
        seeds = [row_seed(self.settings.seed, r, j) for r in row_ids for j in range(n)] if self.settings.do_sample else None
        if self.genai is not None:
            new = self.genai.generate(flat, self.settings.max_new_tokens, self.opts.batch_size)
        elif self.batching == "continuous":
            new = generate_continuous(self.loaded, flat, self.settings)
        else:
            budget = self.opts.max_batch_tokens
            budget = GEN_MAX_BATCH_TOKENS if budget == DEFAULT_MAX_BATCH_TOKENS else budget
            new = generate_padded(self.loaded, flat, seeds, self.settings, batch_size=self.opts.batch_size,
                                  max_batch_tokens=budget, encoder_decoder=self.task.encoder_decoder)
        return [new[i * n:(i + 1) * n] for i in range(len(prompts))]


def _timed(fn: Any) -> tuple[Any, float]:
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def choose_path(opts: PredictOptions, model_dir: Path, task: Any, settings: GenSettings, identity: dict[str, Any],
                sample: list[list[int]], previous: dict[str, Any] | None) -> tuple[Generator, dict[str, Any]]:
    """The dtype and batching of this run (see the module docstring) and the record of why."""
    from hubtune.predict.choose import cache_key, detect_hardware, read_cache, write_cache

    if previous is not None and isinstance(previous.get("choice"), dict):  # a resume takes the run's own path
        prev = previous["choice"]
        loaded = load_generator(model_dir, task, source=opts.model, device=opts.device, dtype=prev["dtype"],
                                trust_remote_code=opts.trust_remote_code)
        genai = None
        if prev.get("backend") == "onnx":
            from hubtune.predict.genai import GenaiModel, build

            genai = GenaiModel(build(model_dir, identity.get("weights_sha256", ""), loaded.device, opts.model))
        return (Generator(loaded, task, settings, prev["batching"], opts, genai),
                dict(prev, reason="resumed: " + prev.get("reason", "")))
    if opts.backend == "onnx":
        return _genai_path(opts, model_dir, task, settings, identity, sample)
    hw = detect_hardware(opts.device)
    fast_bf16 = hw["gpu_bf16"] if hw["cuda"] else hw["cpu_bf16"]
    dtype = opts.dtype if opts.dtype != "auto" else ("bf16" if fast_bf16 else "fp32")
    reasons = []
    loaded = load_generator(model_dir, task, source=opts.model, device=opts.device, dtype=dtype,
                            trust_remote_code=opts.trust_remote_code)
    quick = replace(settings, max_new_tokens=min(settings.max_new_tokens, 16), do_sample=False, temperature=None,
                    top_p=None, top_k=None, num_return_sequences=1)
    ids = list(range(len(sample)))
    if opts.dtype == "auto" and dtype != "fp32" and sample:
        reference = load_generator(model_dir, task, source=opts.model, device=opts.device, dtype="fp32",
                                   trust_remote_code=opts.trust_remote_code)
        ref = Generator(reference, task, quick, "padded", opts).run(sample, ids)
        got = Generator(loaded, task, quick, "padded", opts).run(sample, ids)
        same = sum(a == b for a, b in zip(got, ref))
        if same < len(sample):
            loaded, dtype = reference, "fp32"
            reasons.append(f"fp32: bf16's greedy outputs differed on {len(sample) - same} of {len(sample)} sample rows")
        else:
            reasons.append(f"bf16: this machine is fast at it, and its greedy outputs equal fp32's on {len(sample)} sample rows")
            del reference
    else:
        reasons.append(f"{dtype}: " + ("asked (--dtype)" if opts.dtype != "auto" else "bf16 is not fast on this machine"))
    batching = opts.batching
    why_not = continuous_supported(loaded, settings, task.encoder_decoder)
    measured: dict[str, float] = {}
    if batching == "continuous" and why_not:
        raise ConfigError(f"--batching continuous: {why_not}; pass --batching padded (or auto)")
    if batching == "auto":
        if why_not or not sample or not loaded.device.startswith("cuda"):
            batching = "padded"
            reasons.append(f"padded batches ({why_not or ('no sample to measure' if not sample else CPU_CONTINUOUS)})")
        else:
            key = cache_key(identity.get("weights_sha256", ""), hw, [("generate", dtype)], opts, None,
                            f"generate:{task.name}:{settings.max_new_tokens}")
            cached = read_cache(key)
            if cached is not None and cached.get("batching") in ("padded", "continuous"):
                batching, measured = cached["batching"], cached.get("measured", {})
                reasons.append(f"{batching} batching (measured before on this machine, cached)")
            else:
                pad_out, t_pad = _timed(lambda: Generator(loaded, task, quick, "padded", opts).run(sample, ids))
                try:
                    Generator(loaded, task, quick, "continuous", opts).run(sample[:2], ids[:2])  # its warm-up
                    cb_out, t_cb = _timed(lambda: Generator(loaded, task, quick, "continuous", opts).run(sample, ids))
                except Exception as exc:  # noqa: BLE001 - a path that fails here is not chosen
                    cb_out, t_cb = None, float("inf")
                    reasons.append(f"continuous batching failed ({type(exc).__name__})")
                measured = {"padded_s": round(t_pad, 4), "continuous_s": round(t_cb, 4)}
                same = cb_out is not None and cb_out == pad_out
                batching = "continuous" if same and t_cb < t_pad else "padded"
                reasons.append(f"{batching} batching: measured on {len(sample)} rows, padded {t_pad:.2f}s, continuous "
                               f"{t_cb:.2f}s" + ("" if same or cb_out is None else " (continuous's outputs differed)"))
                write_cache(key, {"backend": "torch", "dtype": dtype, "batching": batching, "measured": measured})
    else:
        reasons.append(f"{batching} batching (--batching)")
    choice = {"backend": "torch", "dtype": dtype, "device": loaded.device, "batching": batching,
              "reason": "; ".join(reasons), "measured": measured}
    return Generator(loaded, task, settings, batching, opts), choice


def _genai_path(opts: PredictOptions, model_dir: Path, task: Any, settings: GenSettings, identity: dict[str, Any],
                sample: list[list[int]]) -> tuple[Generator, dict[str, Any]]:
    """``--backend onnx``: the onnxruntime-genai build of the model, its greedy outputs on the sample compared with
    PyTorch's (fp32) first."""
    from hubtune.predict.genai import GenaiModel, build

    loaded = load_generator(model_dir, task, source=opts.model, device=opts.device, dtype="fp32",
                            trust_remote_code=opts.trust_remote_code)
    folder = build(model_dir, identity.get("weights_sha256", ""), loaded.device, opts.model)
    genai = GenaiModel(folder)
    quick = replace(settings, max_new_tokens=min(settings.max_new_tokens, 16))
    ids = list(range(len(sample)))
    ref = Generator(loaded, task, quick, "padded", opts).run(sample, ids)
    got = Generator(loaded, task, quick, "padded", opts, genai).run(sample, ids)
    same = sum(a == b for a, b in zip(got, ref))
    if same < len(sample):
        raise ConfigError(f"--backend onnx: onnxruntime-genai's greedy outputs differ from PyTorch's on {len(sample) - same} "
                          f"of {len(sample)} sample rows; expected identical texts: pass --backend torch")
    choice = {"backend": "onnx", "dtype": "fp32", "device": loaded.device, "batching": "same-length",
              "reason": f"onnxruntime-genai (--backend onnx): its greedy outputs equal PyTorch's on {len(sample)} sample rows",
              "measured": {}, "genai_folder": folder.name}
    return Generator(loaded, task, settings, "same-length", opts, genai), choice


def _sample_prompts(ds: Any, task: Any, tokenizer: Any, column: str, messages: bool, opts: PredictOptions,
                    limit: int | None, new_tokens: int) -> list[list[int]]:
    values = [row[column] for row in ds.select_columns([column]).take(SAMPLE_ROWS if opts.limit is None else min(SAMPLE_ROWS, opts.limit))]
    _, ids, _ = _prompts(task, tokenizer, values, messages=messages, system_prompt=opts.system_prompt, limit=limit,
                         new_tokens=new_tokens)
    return ids


def _table(chunk_start: int, valid: list[int], columns: dict[str, list[Any]], keep: list[str],
           prompts: list[list[int]], results: list[tuple[list[str], list[str], list[int]]], n: int) -> Any:
    import pyarrow as pa

    cols: dict[str, Any] = {"row_id": pa.array([chunk_start + p for p in valid], type=pa.int64())}
    for c in keep:
        cols[c] = pa.array([columns[c][p] for p in valid])
    texts, reasons, counts = ([r[k] for r in results] for k in range(3))
    if n == 1:
        cols["generated_text"] = pa.array([t[0] for t in texts], type=pa.string())
        cols["finish_reason"] = pa.array([f[0] for f in reasons], type=pa.string())
    else:
        cols["generated_text"] = pa.array(texts, type=pa.list_(pa.string()))
        cols["finish_reason"] = pa.array(reasons, type=pa.list_(pa.string()))
    cols["prompt_tokens"] = pa.array([len(p) for p in prompts], type=pa.int64())
    cols["completion_tokens"] = pa.array([c[0] for c in counts] if n == 1 else counts,
                                         type=pa.int64() if n == 1 else pa.list_(pa.int64()))
    return pa.table(cols)


def batch_generate(opts: PredictOptions, task: Any, model_dir: Path, commit: str | None) -> PredictResult:
    """Generate for every row of ``opts.dataset`` into ``opts.output`` with ``task`` (a generation task of the
    registry) on the model in ``model_dir`` (see the module docstring)."""
    from hubtune.predict.local import guarded

    t0 = time.perf_counter()
    fmt = check_options(opts)
    check_generation_options(opts)
    settings = settings_of(opts)
    if opts.backend == "vllm":
        import importlib.util

        if importlib.util.find_spec("vllm") is None:
            raise MissingDependencyError(
                "--backend vllm needs vLLM, which is not installed here; expected `pip install vllm` on a machine "
                "with a CUDA GPU, or --backend torch")
        raise ConfigError("--backend vllm: vLLM is installed, and hubtune's vLLM engine is not built yet (its "
                          "per-row seeds and outputs are unverified); expected --backend torch or onnx")
    if opts.backend == "onnx":
        from hubtune.predict.genai import check_genai_settings

        if task.encoder_decoder:
            raise ConfigError(f"--backend onnx generates causal LMs (onnxruntime-genai's model builder), and this is a "
                              f"{task.name} model; expected --backend torch")
        check_genai_settings(settings)
    if str(opts.output).lower().endswith(".csv") and settings.num_return_sequences > 1:
        raise ConfigError(f"--output {opts.output}: --num-return-sequences {settings.num_return_sequences} writes a "
                          "list per row, which CSV cannot hold; expected .parquet or .jsonl")
    return guarded(opts, lambda output, parts, previous: _run(opts, t0, fmt, task, model_dir, commit, settings,
                                                              output, parts, previous))


def _run(opts: PredictOptions, t0: float, fmt: str, task: Any, model_dir: Path, commit: str | None,
         settings: GenSettings, output: Path, parts: Path, previous: dict[str, Any] | None) -> PredictResult:
    spec, ds, column, messages, keep = open_prompts(opts, task)
    identity = model_identity(opts.model, model_dir, commit)
    if previous is not None:
        compare_requested(previous, opts, identity, output)
    from transformers import AutoTokenizer

    if opts.num_threads:
        import torch

        torch.set_num_threads(opts.num_threads)
    tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=opts.trust_remote_code)
    task.check_prompt_input(tokenizer, messages, opts.system_prompt, opts.model)
    cfg = json.loads((model_dir / "config.json").read_text(encoding="utf-8")) if (model_dir / "config.json").is_file() else {}
    limit = None if task.encoder_decoder else (cfg.get("max_position_embeddings") or cfg.get("n_positions"))
    sample = _sample_prompts(ds, task, tokenizer, column, messages, opts, limit, settings.max_new_tokens)
    gen, choice = choose_path(opts, model_dir, task, settings, identity, sample, previous)
    tokenizer = gen.loaded.tokenizer

    total: int | None = opts.limit
    start, end = 0, opts.limit
    if opts.num_shards > 1:
        n_all = count_rows(ds, spec, column)
        total = min(n_all, opts.limit) if opts.limit is not None else n_all
        start = total * opts.shard_index // opts.num_shards
        end = total * (opts.shard_index + 1) // opts.num_shards
    cols = SimpleNamespace(text=column, text_pair=None, label=None)
    prediction = {"task": task.name, "backend": choice["backend"], "dtype": choice["dtype"], "max_length": None,
                  "onnx_file": None, "onnx_sha256": None, "text_column": column, "text_pair_column": None,
                  "label_names": None, "long_text": "truncate", "stride": None, "threshold": None, "normalize": None,
                  "pooling": None, "prompt_column": None if messages else column,
                  "messages_column": column if messages else None, "system_prompt": opts.system_prompt,
                  **settings.record()}
    manifest = new_manifest(opts, identity, None, spec, ds, cols, keep, fmt, start, end, total, prediction)
    manifest["choice"] = choice
    done = resumed = take_over(parts, manifest, previous, output)

    from_row = start + done
    n_todo = None if end is None else max(0, end - from_row)
    needed = list(dict.fromkeys([column, *keep]))
    from tqdm.auto import tqdm

    bar = tqdm(total=None if end is None else end - start, initial=done, unit="rows", disable=not opts.progress,
               dynamic_ncols=True, desc="batch-predict (generate)")
    processed = prompt_tokens = completion_tokens = 0
    t_run = time.perf_counter()
    try:
        if not manifest["complete"] and n_todo != 0:
            stream = ds.select_columns(needed)
            if from_row:
                stream = stream.skip(from_row)
            if n_todo is not None:
                stream = stream.take(n_todo)
            idx, row = len(manifest["shards"]), from_row
            for batch in stream.iter(batch_size=opts.chunk_size):
                size = len(batch[column])
                valid, prompts, errors = _prompts(task, tokenizer, batch[column], messages=messages,
                                                  system_prompt=opts.system_prompt, limit=limit,
                                                  new_tokens=settings.max_new_tokens)
                if errors and opts.on_error == "fail":
                    pos, reason = errors[0]
                    raise RowError(f"row {row + pos} cannot be generated: {reason}; fix the data, or pass "
                                   "--on-error skip to record such rows in the errors file and go on")
                new = gen.run(prompts, [row + p for p in valid]) if prompts else []
                results = []
                for prompt, seqs in zip(prompts, new):
                    decode = lambda body, p=prompt: task.decode(tokenizer, body, p)  # noqa: E731 - as the pipeline
                    read = [finish(tokenizer, s, gen.loaded.eos_ids, tokenizer.pad_token_id, settings.stop,
                                   settings.max_new_tokens, decode) for s in seqs]
                    results.append(([r[0] for r in read], [r[1] for r in read], [r[2] for r in read]))
                table = _table(row, valid, batch, keep, prompts, results, settings.num_return_sequences)
                tokens_in = sum(len(p) for p in prompts)
                tokens_out = sum(sum(r[2]) for r in results)
                entry = write_table_shard(parts, f"shard-{idx:05d}", row, size, table, errors,
                                          prompt_tokens=tokens_in, completion_tokens=tokens_out)
                kill_point("shard-written")
                manifest["shards"].append({"index": idx, **entry})
                write_json(parts / "manifest.json", manifest)
                kill_point("shard-recorded")
                processed += size
                prompt_tokens += tokens_in
                completion_tokens += tokens_out
                bar.update(size)
                idx += 1
                row += size
    finally:
        bar.close()
    seconds_run = time.perf_counter() - t_run
    if not manifest["shards"] and previous is None and processed == 0 and (n_todo is None or n_todo > 0) and start == 0:
        raise EmptyDatasetError(f"dataset {opts.dataset} has no rows to generate for (check the spec or --limit)")
    done_info = assemble(opts, output, parts, manifest, label_names=[], metrics_enabled=False)
    tokens = {"prompt_tokens": sum(int(s.get("prompt_tokens", 0)) for s in manifest["shards"]),
              "completion_tokens": sum(int(s.get("completion_tokens", 0)) for s in manifest["shards"]),
              "tokens_per_s": round(completion_tokens / seconds_run, 2) if seconds_run > 0 and completion_tokens else 0.0}
    return make_result(opts, done_info, output=output, started=t0, seconds_run=seconds_run, processed=processed,
                       device=gen.loaded.device, resumed=resumed, identity=identity, notices=list(done_info["notices"]),
                       choice=choice, generation=tokens)
