"""The model behind one small interface (:class:`Runner`): a PyTorch model (:class:`TorchRunner`) or an ONNX
Runtime session (:class:`OnnxRunner`, exporting ``onnx/model.onnx`` on the fly when the model has none) or the
same graph compiled by OpenVINO (:class:`OpenVinoRunner`).
:func:`make_runner` picks one from ``--backend``. torch, onnxruntime and openvino are imported when a runner is built."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

from hubtune.core.errors import ConfigError, ModelLoadError
from hubtune.predict.heads import predict_tasks
from hubtune.predict.options import PredictOptions
from hubtune.tasks.base import TEXT_CLASSIFICATION
from hubtune.tasks.registry import get_task


class Runner(Protocol):
    """What the engines use of a model: its tokenizer and labels, and logits for padded int64 feeds
    (``input_ids``, ``attention_mask``, ``token_type_ids``: arrays of shape [rows, tokens])."""

    tokenizer: Any
    label_names: list[str]
    max_length: int
    device: str
    task: str  # hubtune.tasks.base: what the logits mean (a row's classes or value, a logit per token, an embedding)
    notices: list[str]  # what the user should know (e.g. an ONNX file exported on the fly)
    padding_side: str  # where a batch's padding goes (:func:`padding_side`): a row answers what it answers alone

    def __call__(self, feeds: dict[str, np.ndarray]) -> np.ndarray: ...


def padding_side(config: Any, task: str) -> str:
    """The side a batch of ``task`` is padded on (:func:`hubtune.core.modeling.batch_padding_side`)."""
    from hubtune.core.modeling import batch_padding_side

    return batch_padding_side(config, get_task(task).one_sequence)


class TorchRunner:
    def __init__(self, model_dir: Path, opts: PredictOptions) -> None:
        import torch

        from hubtune.core.modeling import pick_device
        from hubtune.tasks.loading import load_classifier
        from hubtune.core.onnx_tools import encoder_of

        self.device = pick_device(opts.device)
        if opts.num_threads:
            torch.set_num_threads(opts.num_threads)
        dtype = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[opts.dtype]
        if opts.dtype == "fp16" and not self.device.startswith("cuda"):
            raise ConfigError("--dtype fp16 needs a CUDA GPU (--device cuda); on CPU use --dtype fp32 or bf16")
        # embeddings in a half precision: fp32 weights under torch.autocast (half-precision matmuls, fp32 layer
        # norms, softmax and pooling), cosine >= 0.9999 with fp32 where bf16 weights reach ~0.9999 only on average
        self.autocast = dtype if dtype is not None and checkpoint_is_encoder(model_dir, opts) else None
        if self.autocast is not None:
            dtype = None
        loaded = load_classifier(
            str(model_dir), device=self.device, torch_dtype=dtype, trust_remote_code=opts.trust_remote_code,
            task=opts.task, served=predict_tasks(), display=opts.model,
        )
        self.loaded = loaded
        self.task = loaded.task
        self.tokenizer = loaded.tokenizer
        self.label_names = loaded.label_names
        self.max_length = loaded.max_length
        self.torch = torch
        self.notices: list[str] = []
        # only the inputs the tokenizer makes: zeros as token_type_ids are not "none" to every model (GPT-2 adds
        # the embedding of token 0 to every position when it is given token_type_ids)
        self.input_names = set(getattr(self.tokenizer, "model_input_names", None) or feeds_all())
        # and only those the model takes (a BERT tokenizer beside a BART or llama model makes token_type_ids)
        self.pooling = embedding_setup(self, model_dir, opts, loaded.model.config)
        # feature-extraction of an encoder-decoder (T5): its encoder answers last_hidden_state
        self.model = loaded.model if self.pooling is None else encoder_of(loaded.model)
        self.input_names &= forward_inputs(self.model) or self.input_names
        self.padding_side = padding_side(loaded.model.config, self.task)

    def __call__(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        torch = self.torch
        with torch.inference_mode():
            batch = {k: torch.from_numpy(v).to(self.device, non_blocking=True) for k, v in feeds.items()
                     if k in self.input_names}
            with torch.autocast(self.device.split(":")[0], dtype=self.autocast or torch.bfloat16,
                                enabled=self.autocast is not None):
                out = self.model(**batch)
            if self.pooling is not None:  # feature-extraction: the pooled last_hidden_state
                from hubtune.tasks.feature_extraction import pool

                return pool(out.last_hidden_state, batch["attention_mask"], self.pooling).cpu().numpy()
            return out.logits.float().cpu().numpy()


def forward_inputs(model: Any) -> set[str]:
    """The named inputs the model's forward takes (of a peft model: its base model's), empty when it takes
    ``**kwargs`` only."""
    import inspect

    base = model.get_base_model() if callable(getattr(model, "get_base_model", None)) else model
    params = inspect.signature(base.forward).parameters
    return {n for n, p in params.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}


def checkpoint_is_encoder(model_dir: Path, opts: PredictOptions) -> bool:
    """Whether the run is feature-extraction (``--task``, else the checkpoint's files), read before the load."""
    if opts.task:
        return get_task(opts.task).embeds
    import json

    from hubtune.tasks.base import checkpoint_task

    try:
        cfg = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    found = checkpoint_task(cfg, model_dir).task
    return found in predict_tasks() and get_task(found).embeds


def embedding_setup(runner: Any, model_dir: Path, opts: PredictOptions, config: Any) -> Any:
    """For a feature-extraction runner: its :class:`~hubtune.tasks.feature_extraction.Pooling` (the model's sentence-transformers
    config, ``--normalize``), the vector size and sentence-transformers' ``max_seq_length``; None otherwise (a
    ``--normalize`` for another task is refused)."""
    if not get_task(runner.task).embeds:
        if opts.normalize is not None:
            raise ConfigError(
                f"--normalize/--no-normalize is for feature-extraction (embeddings), and this model's task is "
                f"{runner.task}: drop it, or pass --task feature-extraction"
            )
        return None
    from hubtune.tasks.feature_extraction import model_pooling

    pooling = model_pooling(model_dir, opts.normalize)
    if pooling.max_length:
        runner.max_length = min(runner.max_length, pooling.max_length)
    runner.embedding_dim = int(getattr(config, "hidden_size", 0) or 0) * len(pooling.mode.split("+"))
    return pooling


def feeds_all() -> list[str]:
    """The feeds :func:`hubtune.predict.batching.run_chunk` makes."""
    return ["input_ids", "attention_mask", "token_type_ids"]


def find_onnx(model_dir: Path, onnx_file: str | None) -> Path | None:
    """The ONNX file to run: ``--onnx-file`` (a path, or a name in onnx/ or the folder), else onnx/model.onnx or
    model.onnx; None when the model has no ONNX file (and none was asked for)."""
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


def export_missing_onnx(model_dir: Path, export_dir: Path, task: str = TEXT_CLASSIFICATION) -> tuple[Path, str]:
    """Export ``model_dir`` to ``export_dir/model.onnx`` through the gate of `hubtune export` (the graph's
    outputs against PyTorch's on real texts: the run's held-out examples where the model belongs to a run, else
    the reference texts; max |diff| within the scaled tolerance and 100% agreement): (the file, a notice).
    A graph an earlier run exported there is used only when its ``export_info.json`` says it passed that gate
    and it comes from these weights. A graph that fails the gate is not used: ExportParityError (exit 13) with
    the gate's figures and ``--backend torch``; a family the exporter cannot trace: ExportUnsupportedError."""
    from hubtune.core.errors import ExportParityError, ExportUnsupportedError, HubtuneError, StaleOnnxError
    from hubtune.publish.export import ExportOptions, export, gated
    from hubtune.core.onnx_tools import FP32_FILE, check_matches_weights, read_info

    target = export_dir / FP32_FILE
    if target.is_file() and gated(read_info(export_dir)):
        try:
            if not check_matches_weights(target, model_dir):
                return target, f"{model_dir} has no onnx/model.onnx: using the one an earlier run exported and checked"
        except StaleOnnxError:
            pass
    try:
        res = export(ExportOptions(source=str(model_dir), output=str(export_dir), task=task, overwrite=True,
                                   measure_speed=False, record=False))
    except HubtuneError as exc:
        if not isinstance(exc, ExportParityError):
            raise  # ExportUnsupportedError (a family the exporter cannot trace) names --backend torch itself
        figures = getattr(exc, "figures", None) or str(exc)
        expected = getattr(exc, "expected", None) or "the outputs of PyTorch"
        raise ExportParityError(
            f"{model_dir} has no onnx/model.onnx, and the graph --backend onnx exported on the fly does not match "
            f"PyTorch: {figures}; expected {expected} (the gate of `hubtune export`), so it is not used: predict "
            f"with --backend torch (or run `hubtune export {model_dir}` with a --tolerance that fits, then "
            "--backend onnx runs its onnx/)"
        ) from None
    except Exception as exc:  # noqa: BLE001 - an exporter's own failure: this model is not for --backend onnx
        from hubtune.core.onnx_tools import plain

        raise ExportUnsupportedError(
            f"exporting {model_dir} to ONNX on the fly failed ({type(exc).__name__}: {plain(exc)[:200]}); expected "
            "a graph `hubtune export` can write and check: predict with --backend torch"
        ) from exc
    base = res.variants["onnx"].parity
    checked = (f"; checked against PyTorch as `hubtune export` checks it: max |diff| {base.max_abs_diff:.3g} on "
               f"{base.num_examples} examples from {base.texts_source}") if base is not None else ""
    notice = (f"{model_dir} has no onnx/model.onnx: exported one on the fly ({res.exporter}{checked}; run "
              "`hubtune export` to skip this)")
    return target, notice


class OnnxRunner:
    """``--backend onnx``: the model's ONNX graph (``onnx/model.onnx``, int8: ``onnx/model_quantized.onnx``; exported
    on the fly through `hubtune export`'s gate when the model has none) in an onnxruntime session."""

    backend = "onnx"
    dtypes = ("fp32", "int8")

    def __init__(self, model_dir: Path, opts: PredictOptions, export_dir: Path, *, arena: bool = True) -> None:
        from transformers import AutoConfig, AutoTokenizer

        from hubtune.core.modeling import check_tokenizer_fits, effective_max_length, ensure_pad_token, label_names_from_config
        from hubtune.tasks.loading import resolve_task

        if opts.dtype not in self.dtypes:
            raise ConfigError(self.dtype_refusal(opts.dtype))
        if (model_dir / "adapter_config.json").is_file():
            raise ModelLoadError(
                f"model {model_dir} is a LoRA adapter; the {self.backend} backend needs a full model: run `hubtune "
                "merge` first or use --backend torch"
            )
        cfg = AutoConfig.from_pretrained(model_dir, trust_remote_code=opts.trust_remote_code)
        # the graph answers the head the weights have: a checkpoint without it is refused before any export
        self.task, self.checkpoint = resolve_task(cfg, opts.task, source=opts.model, model_dir=model_dir, served=predict_tasks())
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=opts.trust_remote_code)
        check_tokenizer_fits(self.tokenizer, cfg, opts.model)  # before any export: ids past the embeddings are wrong
        self.notices: list[str] = []
        onnx_path = self.graph_file(model_dir, opts)
        if onnx_path is None:
            onnx_path, notice = export_missing_onnx(model_dir, export_dir, self.task)
            self.notices.append(notice)
        else:
            from hubtune.core.onnx_tools import check_matches_weights

            note = check_matches_weights(onnx_path, model_dir)
            if note:
                self.notices.append(note)
        self.onnx_path = onnx_path
        self.session = self.open(onnx_path, opts, arena)
        from hubtune.core.onnx_tools import check_dynamic, family_of, run_graph

        self.run_graph = run_graph
        check_dynamic(onnx_path, family_of(model_dir), sess=self.session)  # one fixed shape: refused before any work
        self.input_names = [i.name for i in self.session.get_inputs()]
        outputs = [o.name for o in self.session.get_outputs()]
        self.output_name = outputs[0]
        ensure_pad_token(self.tokenizer, cfg, str(model_dir))
        self.label_names = [] if get_task(self.task).embeds else label_names_from_config(cfg)
        self.max_length = effective_max_length(self.tokenizer, cfg)
        self.pooling = embedding_setup(self, model_dir, opts, cfg)
        self.padding_side = padding_side(cfg, self.task)
        if self.pooling is not None:
            from hubtune.core.onnx_tools import HIDDEN_OUTPUT

            if HIDDEN_OUTPUT not in outputs:
                raise ModelLoadError(
                    f"ONNX file {onnx_path} answers {', '.join(outputs)}, and feature-extraction pools the encoder's "
                    f"{HIDDEN_OUTPUT}; expected an encoder's graph: run `hubtune export` on the embedding model (its "
                    "onnx/model.onnx then has last_hidden_state), or use --backend torch"
                )
            self.output_name = HIDDEN_OUTPUT

    def dtype_refusal(self, dtype: str) -> str:
        return (f"--dtype {dtype} is for --backend torch or openvino; the onnx backend runs the ONNX file as "
                "exported: fp32 (onnx/model.onnx) or int8 (onnx/model_quantized.onnx)")

    def graph_file(self, model_dir: Path, opts: PredictOptions) -> Path | None:
        """The graph to run (None: export one on the fly)."""
        from hubtune.core.onnx_tools import QUANTIZED_FILE

        if opts.dtype == "int8" and not opts.onnx_file and not (model_dir / "onnx" / QUANTIZED_FILE).is_file():
            raise ModelLoadError(
                f"--dtype int8 runs onnx/{QUANTIZED_FILE}, which {model_dir} does not have; run "
                f"`hubtune export {model_dir} --quantize int8`, or use --dtype fp32 (or --backend openvino --dtype "
                "int8: weights compressed on load)"
            )
        return find_onnx(model_dir, opts.onnx_file or (QUANTIZED_FILE if opts.dtype == "int8" else None))

    def open(self, path: Path, opts: PredictOptions, arena: bool) -> Any:
        """An onnxruntime session of ``path`` (CUDA's provider where asked for or available); sets ``device``."""
        import onnxruntime as ort

        from hubtune.core.onnx_tools import session as ort_session

        providers = ["CPUExecutionProvider"]
        want_cuda = opts.device in (None, "", "auto") or str(opts.device).startswith("cuda")
        if want_cuda and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        elif opts.device and str(opts.device).startswith("cuda"):
            raise ModelLoadError(
                "--device cuda was asked for but onnxruntime has no CUDAExecutionProvider "
                "(install onnxruntime-gpu); use --device cpu"
            )
        sess = ort_session(path, threads=opts.num_threads, providers=providers, arena=arena)
        self.device = "cuda" if sess.get_providers()[0] == "CUDAExecutionProvider" else "cpu"
        return sess

    def __call__(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        inputs = {k: feeds[k] for k in self.input_names if k in feeds}
        if "token_type_ids" in self.input_names and "token_type_ids" not in inputs:
            inputs["token_type_ids"] = np.zeros_like(feeds["input_ids"])
        out = np.asarray(self.run_graph(self.session, [self.output_name], inputs)[0], dtype=np.float32)
        if self.pooling is not None:
            from hubtune.tasks.feature_extraction import pool_numpy

            return pool_numpy(out, feeds["attention_mask"], self.pooling)
        return out


class OpenVinoRunner(OnnxRunner):
    """``--backend openvino``: the model's OpenVINO IR (``openvino/openvino_model.xml``, from `hubtune export
    --openvino`), else its ONNX graph (exported on the fly through the gate when it has none), compiled by OpenVINO
    for the CPU at ``--dtype`` (fp32; bf16 on a CPU with bf16 units; int8: weights compressed by NNCF on load)."""

    backend = "openvino"
    dtypes = ("fp32", "bf16", "int8")

    def dtype_refusal(self, dtype: str) -> str:
        return f"--dtype {dtype} with --backend openvino; expected fp32, bf16 or int8 (fp16 runs on --backend torch, CUDA)"

    def graph_file(self, model_dir: Path, opts: PredictOptions) -> Path | None:
        from hubtune.core.ov_session import OV_DIR, OV_XML

        if opts.onnx_file:
            return find_onnx(model_dir, opts.onnx_file)
        ir = model_dir / OV_DIR / OV_XML
        return ir if ir.is_file() else find_onnx(model_dir, None)

    def open(self, path: Path, opts: PredictOptions, arena: bool) -> Any:
        from hubtune.core.ov_session import OvSession

        if opts.device and not str(opts.device).startswith("cpu") and opts.device != "auto":
            raise ConfigError(f"--backend openvino runs on the CPU, and --device {opts.device} was asked for; pass "
                              "--device cpu, or --backend torch/onnx for a GPU")
        self.device = "cpu"
        self.threads = opts.num_threads
        return OvSession(path, precision=opts.dtype, threads=opts.num_threads)

    def at_dtype(self, dtype: str) -> "OpenVinoRunner":
        """The same graph, tokenizer and settings compiled at another precision (a reduced precision's fp32
        reference without loading the model's files again)."""
        import copy

        from hubtune.core.ov_session import OvSession

        other = copy.copy(self)
        other.session = OvSession(self.onnx_path, precision=dtype, threads=self.threads)
        return other


def make_runner(model_dir: Path, opts: PredictOptions, export_dir: Path, *, light: bool = False) -> Runner:
    """The backend runner (shared by the local and the Ray engine): tokenizer, label_names, max_length, __call__.
    ``opts.backend``/``opts.dtype`` are resolved ones (not ``auto``: :mod:`hubtune.predict.choose` resolves them).
    ``light``: a runner for a few batches (a check's reference): an ONNX session without a memory arena."""
    if "auto" in (opts.backend, opts.dtype):
        raise ConfigError(f"backend {opts.backend!r} / dtype {opts.dtype!r}: resolve 'auto' first (hubtune.predict.choose)")
    if opts.backend == "onnx":
        return OnnxRunner(model_dir, opts, export_dir, arena=not light)
    if opts.backend == "openvino":
        return OpenVinoRunner(model_dir, opts, export_dir)
    return TorchRunner(model_dir, opts)
