"""``--backend auto`` and ``--dtype auto``: the fastest path this machine has for this model, and the check that a
reduced precision keeps the labels.

    the machine (:func:`detect_hardware`: envinfo's CUDA, AMX, fast-bf16 and onnxruntime facts)
      -> the candidates (:func:`candidates`): CUDA: torch bf16 (fp16 before Ampere), plus ONNX Runtime's CUDA
         provider when the model has a matching onnx/; a CPU with AMX: torch bf16; otherwise torch fp32 and
         ONNX Runtime fp32 (when the model has an onnx/ exported from these weights; auto never exports one),
         plus torch bf16 where the CPU has native bf16 dot products and a bf16 matmul measured fast
      -> more than one: each runs a few batches of the real input, the fastest wins; the result is cached per
         model (weights sha256), machine (CPU model and flags, GPU, threads, library versions) and text length
         (short, medium or long rows) in ``$HF_HOME/hubtune/backend-choice.json``
      -> a reduced precision (bf16, fp16, int8) is compared with fp32 on a sample of the input (``check_rows``
         valid rows): chosen automatically, it is used only when the labels agree on ``min_agreement`` of them
         (else fp32, said in the reason); asked for explicitly, it is used and its agreement reported. An input
         smaller than the sample takes fp32 at once (the check would run all of it in fp32 anyway).

:func:`choose_runner` returns the runner and the choice (backend, dtype, device, reason, agreement), which the
engines record in the manifest, OUTPUT.meta.json and the summary. A resume takes the interrupted run's choice.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from hubtune.core.errors import ResumeMismatchError
from hubtune.core.onnx_tools import QUANTIZED_FILE
from hubtune.core.parity import output_agreement
from hubtune.tasks.registry import get_task
from hubtune.predict.batching import Chunk, prepare_chunk, run_chunk
from hubtune.predict.options import REDUCED_DTYPES, PredictOptions
from hubtune.predict.runners import Runner, find_onnx, make_runner

CACHE_VERSION = 1
WARMUP_BATCHES = 3  # timed batches per candidate (after one untimed batch)


def detect_hardware(device: str | None = None) -> dict[str, Any]:
    """What decides the path: CUDA (and whether its GPU runs bf16), AMX, the CPU model and flags."""
    from hubtune.core.envinfo import cpu_fast_bf16, cpu_info, torch_info
    from hubtune.core.ov_session import available as ov_available

    cinfo, tinfo = cpu_info(), torch_info()
    gpus = tinfo.get("gpus") or []
    cuda = bool(tinfo.get("cuda_available")) and not (device or "").startswith("cpu")
    amx = tinfo.get("cpu_amx")
    return {
        "cuda": cuda,
        "gpu": gpus[0]["name"] if cuda and gpus else None,
        "gpu_bf16": bool(gpus and gpus[0].get("bf16")),
        "amx": bool(cinfo["flags"].get("amx_tile") if amx is None else amx),
        "cpu_bf16": not cuda and cpu_fast_bf16()[0],  # AMX, or AVX-512 BF16 measured fast
        "openvino": ov_available(),  # installed (auto measures it on the CPU); "ov_bf16": see choose_runner
        "cpu": cinfo["model"],
        "flags": sorted(k for k, v in cinfo["flags"].items() if v),
    }


NO_MACHINE = {"cuda": False, "gpu": None, "gpu_bf16": False, "amx": False, "cpu_bf16": False, "cpu": "", "flags": []}


def asks_machine(opts: PredictOptions) -> bool:
    """Whether the path depends on the machine's facts (auto anywhere but an onnx/openvino backend's dtype)."""
    if opts.backend in ("onnx", "openvino") or opts.onnx_file and opts.backend == "auto":
        return False
    return "auto" in (opts.backend, opts.dtype)


def ort_providers() -> list[str]:
    """onnxruntime's execution providers ([] when it is not installed)."""
    from hubtune.core.envinfo import ort_info

    return list(ort_info().get("providers") or [])


def onnx_state(model_dir: Path, onnx_file: str | None) -> tuple[Path | None, str]:
    """(the ONNX file auto may run, or None; why not). Auto runs only a graph exported from these weights."""
    from hubtune.core.errors import StaleOnnxError
    from hubtune.core.onnx_tools import check_matches_weights

    if (model_dir / "adapter_config.json").is_file():
        return None, "a LoRA adapter has no ONNX graph (run `hubtune merge` and `hubtune export` for one)"
    path = find_onnx(model_dir, onnx_file)
    if path is None:
        return None, (
            "the model has no onnx/ folder, and auto does not export one silently (a minute or more): torch only; "
            "run `hubtune export` once (with --openvino: OpenVINO's IR too) to let auto measure onnxruntime and OpenVINO"
        )
    try:
        note = check_matches_weights(path, model_dir)
    except StaleOnnxError as exc:
        return None, f"its ONNX graph is not from these weights ({exc}): torch only"
    if note:
        return None, f"{note}: torch only (re-export with `hubtune export` to let auto measure onnxruntime)"
    return path, ""


def ov_ready(model_dir: Path, hw: dict[str, Any]) -> bool:
    """Whether auto may measure OpenVINO: it is installed on a CPU machine, and the model is no LoRA adapter."""
    return bool(hw.get("openvino")) and not hw["cuda"] and not (model_dir / "adapter_config.json").is_file()


def ov_ir(model_dir: Path) -> Path | None:
    """The model's OpenVINO IR exported from these weights (``openvino/openvino_model.xml``), or None."""
    from hubtune.core.errors import StaleOnnxError
    from hubtune.core.onnx_tools import check_matches_weights
    from hubtune.core.ov_session import OV_DIR, OV_XML

    path = model_dir / OV_DIR / OV_XML
    try:
        return path if path.is_file() and not check_matches_weights(path, model_dir) else None
    except StaleOnnxError:
        return None


def candidates(opts: PredictOptions, hw: dict[str, Any], onnx_ok: bool, cuda_ort: bool,
               ov_ok: bool = False) -> tuple[list[tuple[str, str]], str]:
    """The (backend, dtype) pairs to consider, best guess first, and why (pure: tested on made-up machines).
    ``ov_ok``: OpenVINO is installed and the model has a graph it may run (its IR, or an ONNX file from these
    weights); ``hw["ov_bf16"]``: OpenVINO's CPU plugin runs bf16 here."""
    b, d = opts.backend, opts.dtype
    if b != "auto" and d != "auto":
        return [(b, d)], f"--backend {b} --dtype {d} as asked"
    if b == "openvino":
        dtype = d if d != "auto" else ("bf16" if hw.get("ov_bf16") else "fp32")
        pairs = [("openvino", dtype)] + ([("openvino", "fp32")] if d == "auto" and dtype != "fp32" else [])
        why = "--backend openvino: " + ("bf16 (the CPU has bf16 units) or fp32, the faster on a warm-up"
                                        if len(pairs) > 1 else dtype)
        return pairs, why
    if opts.onnx_file and b == "auto":
        b = "onnx"  # --onnx-file names a graph to run
    if d == "int8" or b == "onnx":
        dtype = "fp32" if d == "auto" else d
        return [("onnx", dtype)], (f"--backend onnx: {dtype}" if d == "auto" else f"--dtype {d}: onnx")
    if d in ("bf16", "fp16") and b == "torch" or d == "fp16":
        return [("torch", d)], f"--dtype {d}: torch"
    ov = ov_ok and b == "auto" and not hw["cuda"]
    ov_bf16 = [("openvino", "bf16")] if ov and hw.get("ov_bf16") else []
    if d == "bf16":
        return [("torch", "bf16")] + ov_bf16, "--dtype bf16: " + ("torch or openvino, the faster on a warm-up" if ov_bf16 else "torch")
    if hw["cuda"]:
        half = "bf16" if hw["gpu_bf16"] else "fp16"
        why = f"CUDA GPU {hw['gpu']}: " + ("bf16 (compute capability 8+)" if half == "bf16" else "fp16 (no fast bf16 before Ampere)")
        dtype = half if d == "auto" else d
        pairs = [("torch", dtype)]
        if b == "auto" and onnx_ok and cuda_ort:
            pairs.append(("onnx", "fp32"))
            why += "; onnxruntime's CUDA provider measured beside it"
        return pairs, why
    if hw["amx"] and d == "auto":
        why = "CPU with AMX: torch bf16 (its bf16 matmuls run several times faster than fp32)"
        if ov_bf16:
            return [("torch", "bf16")] + ov_bf16, why[:-1] + " or OpenVINO bf16, the faster on a warm-up)"
        return [("torch", "bf16")], why
    fp32 = ([("torch", "fp32")] + ([("onnx", "fp32")] if b == "auto" and onnx_ok else [])
            + ([("openvino", "fp32")] if ov else []))
    names = {"torch": "torch", "onnx": "onnxruntime", "openvino": "OpenVINO"}
    if hw.get("cpu_bf16") and d == "auto" and not hw["amx"] or ov_bf16 and d == "auto":
        half = ([("torch", "bf16")] if hw.get("cpu_bf16") else []) + ov_bf16
        listed = " or ".join(f"{names[p[0]]} {p[1]}" for p in fp32 + half)
        return fp32 + half, (
            "no GPU and no AMX, but bf16 units on this CPU (AVX-512 BF16): "
            f"{listed}, the fastest on a warm-up")
    why = "no GPU" + ("" if hw["amx"] else " and no AMX") + ": fp32"
    if len(fp32) > 1:
        return fp32, why + ", " + " or ".join(names[p[0]] for p in fp32) + ", the fastest on a warm-up"
    return fp32, why + " on torch"


def text_length(rows: list[dict[str, Any]], names: list[str]) -> str:
    """The input's length class for the cache (``short`` <= 300 characters a row, ``medium`` <= 1,200, ``long``):
    the fastest path on tweets need not be the fastest on reviews."""
    sizes = sorted(sum(len(str(row.get(c) or "")) for c in names) for row in rows)
    median = sizes[len(sizes) // 2] if sizes else 0
    return "short" if median <= 300 else "medium" if median <= 1200 else "long"


# --------------------------------------------------------------------------------------------------
# The cache of measured choices
# --------------------------------------------------------------------------------------------------
def cache_path() -> Path:
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
    return Path(os.path.expanduser(home)) / "hubtune" / "backend-choice.json"


def cache_key(weights_sha256: str, hw: dict[str, Any], pairs: list[tuple[str, str]], opts: PredictOptions,
              onnx_path: Path | None, length: str = "") -> str:
    from hubtune.core.compat import versions

    facts = {
        "v": CACHE_VERSION, "weights": weights_sha256, "cpu": hw["cpu"], "flags": hw["flags"], "gpu": hw["gpu"],
        "threads": opts.num_threads or os.cpu_count(), "versions": versions(), "pairs": pairs,
        "onnx": [onnx_path.name, onnx_path.stat().st_size] if onnx_path is not None else None,
        "length": length,
    }
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()


def read_cache(key: str) -> dict[str, Any] | None:
    try:
        entry = json.loads(cache_path().read_text(encoding="utf-8")).get("entries", {}).get(key)
    except (OSError, ValueError, AttributeError):
        return None
    return entry if isinstance(entry, dict) and "backend" in entry and "dtype" in entry else None


def write_cache(key: str, entry: dict[str, Any]) -> None:
    """Record a measured choice (best effort: a read-only HF_HOME only costs a new measurement next time)."""
    path = cache_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        if not isinstance(data, dict) or data.get("version") != CACHE_VERSION:
            data = {"version": CACHE_VERSION, "entries": {}}
        data["entries"][key] = entry
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except (OSError, ValueError):
        pass


# --------------------------------------------------------------------------------------------------
# Measuring on the real input
# --------------------------------------------------------------------------------------------------
def sample_chunk(rows: Iterable[dict[str, Any]], runner: Runner, cols: Any, max_length: int) -> Chunk:
    """The first rows of the input as one chunk, tokenized (invalid rows are left out, as in the run)."""
    names = [c for c in (cols.text, cols.text_pair) if c]
    columns: dict[str, list[Any]] = {c: [] for c in names}
    for row in rows:
        for c in names:
            columns[c].append(row.get(c))
    chunk = Chunk(index=0, start=0, columns=columns, valid=np.zeros(0, np.int64), errors=[])
    return prepare_chunk(chunk, runner.tokenizer, cols.text, cols.text_pair, max_length)


def rows_per_second(runner: Runner, chunk: Chunk, opts: PredictOptions) -> float:
    """Steady-state rows/s of ``runner`` on the first few batches of ``chunk`` (one untimed batch first)."""
    longest = max(chunk.lengths[:64].max(initial=1), 1) if chunk.encodings else 1
    per_batch = max(1, min(opts.batch_size, opts.max_batch_tokens // longest))
    warm = chunk.subset(per_batch)
    run_chunk(runner, warm, opts.batch_size, opts.max_batch_tokens)
    timed = chunk.subset(per_batch * WARMUP_BATCHES)
    t = time.perf_counter()
    run_chunk(runner, timed, opts.batch_size, opts.max_batch_tokens)
    return len(timed.valid) / max(time.perf_counter() - t, 1e-9)




def logit_of(threshold: float | None) -> float:
    """A sigmoid threshold (``--threshold``, None: 0.5) as the logit it stands for."""
    t = min(max(0.5 if threshold is None else float(threshold), 1e-7), 1 - 1e-7)
    return float(np.log(t / (1 - t)))


def agreement(reduced: np.ndarray, reference: np.ndarray, task: str = "", logit_threshold: float = 0.0) -> float:
    """The fraction of rows whose label (argmax) is the same; of embeddings (``task`` feature-extraction), the
    fraction whose cosine with the fp32 embedding is at least EMBEDDING_ROW_COSINE; multi-label: the same labels
    over the threshold (``logit_threshold``: the threshold as a logit); regression: the same value to 1%."""
    if not len(reference):
        return 1.0
    return output_agreement(reduced, reference, get_task(task) if task else None, logit_threshold)


def choose_runner(
    opts: PredictOptions, model_dir: Path, identity: dict[str, Any], sample: Callable[[int], Iterable[dict[str, Any]]],
    cols: Any, export_dir: Path, previous: dict[str, Any] | None = None, *, hardware: dict[str, Any] | None = None,
) -> tuple[Runner, dict[str, Any]]:
    """The runner this run uses and how it was chosen (see the module docstring). ``sample(n)`` yields the first
    ``n`` input rows; ``previous`` is the interrupted run's manifest (a resume keeps its backend and dtype)."""
    asked = {"backend": opts.backend, "dtype": opts.dtype}
    if opts.dtype == "auto" and opts.onnx_file and Path(opts.onnx_file).name == QUANTIZED_FILE:
        opts = replace(opts, dtype="int8")  # naming the int8 graph asks for int8
    prev = (previous or {}).get("prediction") or {}
    if previous is not None and "auto" in (opts.backend, opts.dtype) and prev.get("backend"):
        for key in ("backend", "dtype"):  # what was asked besides auto must be what the interrupted run used
            if asked[key] not in ("auto", prev.get(key)):
                raise ResumeMismatchError(
                    f"cannot resume {opts.output}: {key} was {prev.get(key)!r}, this run has {asked[key]!r}, which "
                    f"changes the predictions; pass the same --{key} as the interrupted run (or auto), or --overwrite "
                    "to start over"
                )
        opts = replace(opts, backend=prev["backend"] if opts.backend == "auto" else opts.backend,
                       dtype=prev["dtype"] if opts.dtype == "auto" else opts.dtype)
        runner = make_runner(model_dir, opts, export_dir)
        pchoice = previous.get("choice") or {}
        return runner, {"asked": asked, "backend": opts.backend, "dtype": opts.dtype, "device": runner.device,
                        "reason": f"resumed: the interrupted run's choice ({pchoice.get('reason', 'as recorded')})",
                        "agreement": pchoice.get("agreement")}
    if hardware is not None:
        hw = hardware
    elif asks_machine(opts):
        hw = detect_hardware(opts.device)
    else:  # a path named in full (or onnx, whose dtype needs no machine fact): no torch import to read the machine
        hw = dict(NO_MACHINE, openvino=opts.backend == "openvino")
    if hw.get("openvino") and "ov_bf16" not in hw and opts.backend in ("auto", "openvino") and opts.dtype == "auto":
        from hubtune.core.ov_session import cpu_bf16 as ov_cpu_bf16

        hw["ov_bf16"] = not hw["cuda"] and ov_cpu_bf16()  # OpenVINO's CPU plugin runs bf16 here
    onnx_path, no_onnx = (None, "")
    ov_graph = False
    if opts.backend == "auto" and not opts.onnx_file and opts.dtype in ("auto", "fp32", "bf16"):
        ov_graph = ov_ready(model_dir, hw)
        if not hw["amx"] or hw["cuda"] or ov_graph:
            onnx_path, no_onnx = onnx_state(model_dir, None)
        ov_graph = ov_graph and (onnx_path is not None or ov_ir(model_dir) is not None)
    cuda_ort = hw["cuda"] and "CUDAExecutionProvider" in (ort_providers() if onnx_path is not None else [])
    pairs, reason = candidates(opts, hw, onnx_path is not None and (not hw["amx"] or hw["cuda"]), cuda_ort, ov_graph)
    if no_onnx and len(pairs) == 1 and opts.backend == "auto" and pairs[0][1] == "fp32":
        reason += f" ({no_onnx})"
    runners: dict[tuple[str, str], Runner] = {}

    def build(pair: tuple[str, str], light: bool = False, **changes: Any) -> Runner:
        if pair not in runners:
            # OpenVINO at another precision: the graph of a runner already built, compiled again (no files reread)
            sibling = next((r for p, r in runners.items() if p[0] == pair[0] and hasattr(r, "at_dtype")
                            and getattr(r, "onnx_path", Path()).name != QUANTIZED_FILE), None)
            runners[pair] = (sibling.at_dtype(pair[1]) if sibling is not None else
                             make_runner(model_dir, replace(opts, backend=pair[0], dtype=pair[1], **changes), export_dir,
                                         light=light))
        return runners[pair]

    def release(*pairs: tuple[str, str]) -> None:
        for pair in pairs:
            runners.pop(pair, None)
        gc.collect()  # an ONNX Runtime session frees its memory arena only when it is collected

    chunk: Chunk | None = None
    rows: list[dict[str, Any]] | None = None

    def sample_rows() -> list[dict[str, Any]]:
        nonlocal rows
        if rows is None:
            rows = list(sample(opts.check_rows))
        return rows

    def the_sample() -> Chunk:
        nonlocal chunk
        if chunk is None:
            r = next(iter(runners.values()))
            chunk = sample_chunk(sample_rows(), r, cols, opts.max_length or r.max_length)
        return chunk

    measured: dict[str, float] = {}
    pick = pairs[0]
    if len(pairs) > 1:
        length = text_length(sample_rows(), [c for c in (cols.text, cols.text_pair) if c])
        key = cache_key(identity.get("weights_sha256", ""), hw, pairs, opts, onnx_path, length)
        cached = read_cache(key)
        if cached is not None and (cached["backend"], cached["dtype"]) in pairs:
            pick = (cached["backend"], cached["dtype"])
            measured = dict(cached.get("rows_per_s") or {})
            reason += (f": {'/'.join(pick)} (measured earlier on this machine for {length} texts, cached in "
                       f"$HF_HOME/hubtune/{cache_path().name})")
        else:
            # one candidate in memory at a time, ONNX Runtime's first (its arena is the largest; the torch models
            # load after it is freed): peak RSS is the largest path's, not their sum
            failed: dict[str, str] = {}
            for pair in sorted(pairs, key=lambda p: p[0] != "onnx"):
                try:
                    measured["/".join(pair)] = round(rows_per_second(build(pair), the_sample(), opts), 1)
                except Exception as exc:  # noqa: BLE001 - a path that fails its warm-up is left out, never picked
                    if pair == ("torch", "fp32"):
                        raise
                    failed["/".join(pair)] = f"{type(exc).__name__}: {' '.join(str(exc).split())[:120]}"
                release(pair)
            pairs = [p for p in pairs if "/".join(p) in measured]
            measured = {"/".join(p): measured["/".join(p)] for p in pairs}
            if failed:
                reason += " (left out, failed on the warm-up: " + "; ".join(f"{k}: {v}" for k, v in failed.items()) + ")"
            pick = max(pairs, key=lambda p: measured["/".join(p)])
            speeds = ", ".join(f"{k} {v:g} rows/s" for k, v in measured.items())
            reason += f": {'/'.join(pick)} ({speeds} on {len(the_sample().valid)} rows of the input)"
            write_cache(key, {"backend": pick[0], "dtype": pick[1], "rows_per_s": measured, "measured_at": time.time()})
    backend, dtype = pick
    # a reduced precision is checked against fp32: the fp32 graph for int8 (when there is one), else the weights
    # in fp32 on torch (the lighter reference: no ONNX Runtime arena beside the torch model); where it falls back,
    # it falls back to the fastest fp32 path measured
    ref_pair = ("torch", "fp32")
    if backend == "onnx":
        fp32_onnx = find_onnx(model_dir, None)
        if fp32_onnx is not None and fp32_onnx.name != QUANTIZED_FILE:
            ref_pair = ("onnx", "fp32")
    fp32_measured = [p for p in pairs if p[1] == "fp32" and "/".join(p) in measured]
    if backend == "openvino":
        ref_pair = ("openvino", "fp32")  # the same graph at fp32
    fallback = max(fp32_measured, key=lambda p: measured["/".join(p)]) if backend != "onnx" and fp32_measured else ref_pair
    if dtype in REDUCED_DTYPES and opts.dtype == "auto" and backend != "onnx" and len(sample_rows()) < opts.check_rows:
        # the check would run the whole input in fp32 anyway: its fp32 answer costs less than checking bf16
        reason += (f"; but the input has only {len(sample_rows())} rows, fewer than the {opts.check_rows} the {dtype} "
                   f"check compares with fp32: {'/'.join(fallback)} (checking would cost more than it saves)")
        pick = fallback
        backend, dtype = pick
    release(*[p for p in runners if p not in (pick, ref_pair if dtype in REDUCED_DTYPES else pick)])
    runner = build(pick)
    agree = None
    if dtype in REDUCED_DTYPES:
        auto_dtype = opts.dtype == "auto"
        ref = build(ref_pair, light=True, onnx_file=None)  # the check's reference: an ONNX session without an arena
        s = the_sample()
        agree = {
            "value": round(agreement(run_chunk(runner, s, opts.batch_size, opts.max_batch_tokens),
                                     run_chunk(ref, s, opts.batch_size, opts.max_batch_tokens),
                                     getattr(runner, "task", ""), logit_of(opts.threshold)), 6),
            "rows": int(len(s.valid)), "against": "/".join(ref_pair), "min": opts.min_agreement,
        }
        pct = f"{100 * agree['value']:.2f}% of {agree['rows']} rows"
        if getattr(runner, "task", "") and get_task(runner.task).embeds:
            pct += f" ({get_task(runner.task).agrees})"
        if auto_dtype and agree["value"] < opts.min_agreement:
            reason += (f"; but {dtype} agreed with fp32 on only {pct} (below --min-agreement "
                       f"{100 * opts.min_agreement:g}%): {'/'.join(fallback)} instead")
            agree["fallback"] = True
            release(pick, *([ref_pair] if fallback != ref_pair else []))
            runner, (backend, dtype) = build(fallback, onnx_file=None), fallback
        else:
            reason += f"; {dtype} agrees with fp32 on {pct}" + ("" if auto_dtype else " (asked for: used whatever the agreement)")
            release(ref_pair)
    choice = {"asked": asked, "backend": backend, "dtype": dtype, "device": runner.device, "reason": reason,
              "agreement": agree}
    if measured:
        choice["rows_per_s"] = measured
    return runner, choice
