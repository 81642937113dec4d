"""What every train recipe shares: the run directory, distributed-run state, precision, TrainingArguments,
running the Trainer, swapping in ``model/``, the run summary and :class:`TrainResult`; and the two ends of
a text-classifier run (load and tokenize; save, evaluate and write the run files), which the classifier
recipe (:mod:`hubtune.train.classifier`) and the Accelerate recipe (:mod:`hubtune.train.accel`) share.

The run directory is described in :mod:`hubtune.core.layout`. All input is validated (data loaded, model and
tokenizer loaded) before anything is written, so bad input leaves no partial output.

Under ``torchrun`` / ``accelerate launch`` every process trains; only the main process writes the run
directory (the others wait at a barrier and return a result marked ``main_process: False``).

Imports no recipe; of the train package only the pieces module :mod:`hubtune.train.adapters` and
:mod:`hubtune.train.saved_eval` (:func:`evaluate_saved`, the reload check that ends a classifier run).
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from hubtune import __version__
from hubtune.core.compat import installed_version, quiet_libraries, trainer_loss_over_resumed_steps, training_arguments
from hubtune.core.config import ADAPTER_MODES, TrainConfig, dump_yaml, load_yaml, resume_changes
from hubtune.data.dataset import TrainEvalData, load_train_eval
from hubtune.core.errors import (
    ConfigError, DiskFullError, ModelLoadError, OutputExistsError, OutputNotWritableError, TrainingError, disk_full,
)
from hubtune.core.layout import RunLayout, last_complete_checkpoint
from hubtune.core.metrics import summary
from hubtune.core.security import check_checkpoint, check_model_config
from hubtune.core.modeling import (
    check_tokenizer_fits,
    tokenizer_pad_kwargs,
    model_load_error,
    public_model_ref,
    resolve_model_source,
    write_json,
)
from hubtune.train.adapters import adapter_targets, apply_adapter, head_modules
from hubtune.train.saved_eval import evaluate_saved


@dataclass
class TrainResult:
    output_dir: Path
    model_dir: Path
    mode: str
    label_names: list[str]
    eval_metrics: dict[str, Any]
    train_metrics: dict[str, Any]
    sizes: dict[str, int]
    seconds: float
    resumed_from: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    test_metrics: dict[str, Any] | None = None  # data.test_dataset, on the reloaded files


# --------------------------------------------------------------------------------------------------
def check_output_dir(path: Path, overwrite: bool, resume: bool) -> None:
    if path.exists() and not path.is_dir():
        raise OutputExistsError(f"output path {path} is a file; expected a directory (pick another --output-dir)")
    if path.is_dir() and any(path.iterdir()) and not (overwrite or resume):
        raise OutputExistsError(
            f"output directory {path} is not empty; expected a new or empty directory "
            "(pass --overwrite to replace it or --resume to continue its last checkpoint)"
        )
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise OutputNotWritableError(
            f"cannot write the output directory {path}: {existing} is read-only; expected a writable "
            "place: choose another --output-dir"
        )


@dataclass(frozen=True)
class PrecisionChoice:
    """The training precision a config resolves to on this machine (``fp32``, ``bf16`` or ``fp16``) and why."""

    name: str
    reason: str

    @property
    def flags(self) -> dict[str, bool]:
        """The TrainingArguments keywords (``{"bf16": True}``, ``{"fp16": True}`` or none for fp32)."""
        return {self.name: True} if self.name in ("fp16", "bf16") else {}


def resolve_precision(precision: str) -> PrecisionChoice:
    """``auto``: bf16 autocast where the hardware runs it fast (CUDA compute >= 8.0, a CPU with AMX, or with AVX-512
    BF16 and a measured bf16 matmul >= 1.5x fp32: ``envinfo.fast_bf16``), fp32
    elsewhere. An explicit ``fp32``/``bf16`` is honoured anywhere; ``fp16`` needs a CUDA GPU."""
    import torch

    from hubtune.core.envinfo import fast_bf16

    if precision == "auto":
        fast, why = fast_bf16()
        return PrecisionChoice("bf16" if fast else "fp32", f"auto: {why}")
    if precision == "fp16" and not torch.cuda.is_available():
        raise ConfigError("precision fp16 needs a CUDA GPU and none is available; use --precision fp32, bf16 or auto")
    if precision not in ("fp32", "fp16", "bf16"):
        raise ConfigError(f"precision {precision!r} is not supported; expected auto, fp32, bf16 or fp16")
    return PrecisionChoice(precision, "set in the config")


def precision_flags(precision: str) -> dict[str, bool]:
    return resolve_precision(precision).flags


def start_accelerator(cfg: TrainConfig, *, overwrite: bool, resume: bool) -> tuple[RunLayout, dict[str, bool], Any]:
    """What the plain Accelerate loops do first: refuse ``--resume``, check the output directory, resolve the
    precision and build the seeded ``Accelerator``. Returns the run layout, the precision flags and the Accelerator."""
    import torch
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    if resume:
        raise ConfigError("--resume needs the Trainer engine; drop --resume or use --engine trainer")
    layout = RunLayout.of(cfg.output_dir)
    check_output_dir(layout.root, overwrite, resume)
    precision = precision_flags(cfg.precision)
    accelerator = Accelerator(
        cpu=not torch.cuda.is_available(),
        mixed_precision=next(iter(precision), "no"),
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
    )
    set_seed(cfg.seed)
    return layout, precision, accelerator


# --------------------------------------------------------------------------------------------------
# Every recipe: the run directory (under torchrun / accelerate launch one process writes), the Trainer,
# the model folder, the run summary
# --------------------------------------------------------------------------------------------------
class _Single:
    """Stands in for accelerate's PartialState in a single-process run."""

    is_main_process = True
    num_processes = 1

    def wait_for_everyone(self) -> None:
        pass

    def main_process_first(self) -> Any:
        import contextlib

        return contextlib.nullcontext()


def dist_state() -> Any:
    """accelerate's PartialState when launched with several processes (WORLD_SIZE > 1), else a stand-in."""
    if int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1:
        return _Single()
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def prepare_output_dir(layout: RunLayout, state: Any, *, overwrite: bool, resume: bool,
                       cfg: TrainConfig | None = None) -> str | None:
    """After validation: the last checkpoint to resume from; (main process) clear/create the run dir and record
    ``cfg`` beside the checkpoints, so a --resume that would train something else is refused."""
    state.wait_for_everyone()  # every process has checked the output dir before it changes
    last_ckpt = None
    started = layout.started_config
    if resume and layout.checkpoints.is_dir():
        if cfg is not None and started.is_file():
            changed = resume_changes(load_yaml(started), cfg)
            if changed:
                raise ConfigError(
                    f"--resume continues the run in {layout.root}, started with other settings ({'; '.join(changed)}); "
                    "expected the settings it started with: drop the changed flags, or train anew with --overwrite "
                    "or another --output-dir"
                )
        for ckpt in sorted(layout.checkpoints.glob("checkpoint-*")):  # every one, before any is taken or dropped
            check_checkpoint(str(ckpt))
        last_ckpt = last_complete_checkpoint(layout.checkpoints, drop_incomplete=state.is_main_process)
    if state.is_main_process:
        if overwrite and not resume and layout.root.exists():
            shutil.rmtree(layout.root)
        try:
            layout.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputNotWritableError(
                f"cannot create the output directory {layout.root} ({exc.strerror or type(exc).__name__}); "
                "expected a writable place: choose another --output-dir"
            ) from None
        if cfg is not None and not (resume and started.is_file()):
            started.parent.mkdir(exist_ok=True)
            started.write_text(dump_yaml(cfg), encoding="utf-8")
    state.wait_for_everyone()
    return last_ckpt


def training_args(cfg: TrainConfig, layout: RunLayout, precision: dict[str, bool], progress: bool, **kw: Any) -> Any:
    """The TrainingArguments every Trainer-based recipe shares, with the config's ``trainer:`` settings; ``kw`` (the
    recipe's own) overrides the shared ones, and a ``trainer:`` setting it would change is a ConfigError."""
    import torch

    base: dict[str, Any] = dict(
        output_dir=str(layout.checkpoints),
        num_train_epochs=cfg.num_epochs,
        max_steps=cfg.max_steps,
        learning_rate=cfg.learning_rate,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.eval_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        weight_decay=cfg.weight_decay,
        warmup_ratio=cfg.warmup_ratio,
        group_by_length=cfg.group_by_length,
        eval_strategy="epoch",
        save_strategy="epoch",
        save_total_limit=2,
        load_best_model_at_end=True,
        greater_is_better=True,
        logging_steps=cfg.logging_steps,
        report_to=[r for r in cfg.report_to if r != "none"] or "none",
        seed=cfg.seed,
        data_seed=cfg.seed,
        disable_tqdm=not progress,
        dataloader_num_workers=cfg.dataloader_num_workers,
        save_safetensors=True,
        use_cpu=not torch.cuda.is_available(),
        **precision,
    )
    clash = {k: v for k, v in cfg.trainer.items() if k in kw and kw[k] != v}
    if clash:
        k = next(iter(clash))
        raise ConfigError(f"trainer.{k} is {clash[k]!r}, but this run needs {k}={kw[k]!r} (task {cfg.task}, its options); "
                          f"expected trainer.{k} left out")
    base.update(cfg.trainer)
    base.update(kw)
    try:
        return training_arguments(**base)
    except (ValueError, TypeError, ImportError) as exc:
        if not cfg.trainer:
            raise
        raise ConfigError(f"TrainingArguments refused the trainer settings {sorted(cfg.trainer)} "
                          f"({' '.join(str(exc).split())[:300]}); fix the trainer: section or --set trainer.KEY=VALUE") from None


def run_trainer(trainer: Any, last_ckpt: str | None) -> tuple[dict[str, Any], float]:
    """Train (resuming from ``last_ckpt``); returns the Trainer's train metrics and the seconds it took."""
    t0 = time.perf_counter()
    try:
        out = trainer.train(resume_from_checkpoint=last_ckpt)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - safetensors' SafetensorError is none of the builtins
        full = disk_full(exc, trainer.args.output_dir)
        if full is not None:
            raise DiskFullError(
                f"no space left on the device writing the checkpoints in {trainer.args.output_dir} "
                f"({type(exc).__name__}); expected room for a checkpoint: free space there and run the same command "
                "with --resume (it continues from the last complete checkpoint), or choose another --output-dir"
            ) from None
        if not isinstance(exc, (RuntimeError, ValueError)):
            raise
        raise TrainingError(
            f"training failed ({type(exc).__name__}: {' '.join(str(exc).split())[:300]}); "
            "check batch_size/max_length for memory, or re-run with HUBTUNE_DEBUG=1"
        ) from exc
    metrics = dict(out.metrics)
    metrics["global_step"] = out.global_step
    # train_loss is the mean over the steps this call trained (after a resume: the resumed steps only)
    start = _checkpoint_step(last_ckpt)
    metrics["train_loss_steps"] = steps = out.global_step - start
    if start and steps > 0 and "train_loss" in metrics and not trainer_loss_over_resumed_steps():
        metrics["train_loss"] = metrics["train_loss"] * out.global_step / steps
    metrics["best_checkpoint_metric"] = trainer.state.best_metric
    return metrics, time.perf_counter() - t0


def _checkpoint_step(checkpoint: str | None) -> int:
    """The global step a Trainer checkpoint was saved at (0 for none)."""
    import json

    if not checkpoint:
        return 0
    try:
        return int(json.loads((Path(checkpoint) / "trainer_state.json").read_text(encoding="utf-8"))["global_step"])
    except (OSError, ValueError, KeyError, TypeError):
        return int(Path(checkpoint).name.rsplit("-", 1)[-1]) if Path(checkpoint).name.rsplit("-", 1)[-1].isdigit() else 0


def parameter_counts(model: Any) -> dict[str, Any]:
    """Total and trainable parameters of ``model`` and the trainable share (0..1)."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"total": total, "trainable": trainable, "trainable_share": trainable / total if total else 0.0}


def announce_start(on_start: Callable[[dict[str, Any]], None] | None, cfg: TrainConfig, model: Any, state: Any,
                   warnings: list[str] | None = None) -> None:
    """Before training (main process): hand ``on_start`` the run's trainable parameters and their share, and the
    run's warnings known so far, for the CLI to print; the library prints nothing."""
    if on_start is None or not state.is_main_process:
        return
    counts = parameter_counts(model)
    on_start({"trainable": counts["trainable"], "total": counts["total"], "share": counts["trainable_share"],
              "task": cfg.task, "mode": cfg.mode, "engine": cfg.engine, "num_processes": state.num_processes,
              "adapter_targets": adapter_targets(model) if cfg.mode in ADAPTER_MODES else [],
              "warnings": list(warnings or [])})


def replace_model_dir(layout: RunLayout, save: Any) -> None:
    """``save(staging_dir)`` then swap it in as ``model/`` (never a half-written model folder)."""
    staging = layout.root / ".model.staging"
    if staging.exists():
        shutil.rmtree(staging)
    save(staging)
    (staging / "README.md").unlink(missing_ok=True)  # peft's stub card names local paths; `hubtune card` writes ours
    if layout.model_dir.exists():
        shutil.rmtree(layout.model_dir)
    os.replace(staging, layout.model_dir)


def base_summary(cfg: TrainConfig, model: Any, precision: dict[str, bool], state: Any) -> dict[str, Any]:
    """The run_summary.json fields every recipe writes."""
    import torch

    return {
        "hubtune_version": __version__,
        "versions": _versions(),
        "git_sha": _git_sha(),
        "task": cfg.task,
        "engine": cfg.engine,
        "mode": cfg.mode,
        "base_model": public_model_ref(cfg.base_model),
        "dataset": cfg.data.dataset,
        "eval_dataset": cfg.data.eval_dataset,
        "parameters": parameter_counts(model),
        **({"adapter_targets": adapter_targets(model)} if cfg.mode in ADAPTER_MODES else {}),
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "precision": next(iter(precision), "fp32"),
        "precision_reason": resolve_precision(cfg.precision).reason,
        "num_processes": state.num_processes,
    }


def worker_result(cfg: TrainConfig, layout: RunLayout, sizes: dict[str, int], label_names: list[str], t_start: float) -> TrainResult:
    """What a non-main process of a distributed run returns: it wrote nothing."""
    return TrainResult(
        output_dir=layout.root,
        model_dir=layout.model_dir,
        mode=cfg.mode,
        label_names=label_names,
        eval_metrics={},
        train_metrics={},
        sizes=sizes,
        seconds=round(time.perf_counter() - t_start, 3),
        extra={"task": cfg.task, "engine": cfg.engine, "main_process": False},
    )


def _git_sha() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def _versions() -> dict[str, str]:
    found = {pkg: installed_version(pkg) for pkg in ("torch", "transformers", "datasets", "peft", "accelerate",
                                                     "huggingface_hub")}
    return {"hubtune": __version__, "python": platform.python_version(), **{k: v for k, v in found.items() if v}}


# --------------------------------------------------------------------------------------------------
# A text-classifier run: both ends (shared by the Trainer and the Accelerate recipes)
# --------------------------------------------------------------------------------------------------
def check_metric(metric: str) -> None:
    if metric not in ("accuracy", "f1_macro", "f1_micro", "precision_macro", "recall_macro", "roc_auc"):
        raise ConfigError(
            f"metric_for_best_model is {metric!r}; expected one of accuracy, f1_macro, f1_micro, "
            "precision_macro, recall_macro, roc_auc (binary only)"
        )


def _load_base(cfg: TrainConfig, label_names: list[str]) -> tuple[Any, Any]:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, set_seed

    set_seed(cfg.seed)  # the new classification head's initialisation is reproducible from the seed
    source = resolve_model_source(cfg.base_model)
    check_model_config(source, revision=cfg.revision)
    id2label = dict(enumerate(label_names))
    label2id = {n: i for i, n in enumerate(label_names)}
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            source, revision=cfg.revision, trust_remote_code=cfg.trust_remote_code
        )
        model = AutoModelForSequenceClassification.from_pretrained(
            source,
            **tokenizer_pad_kwargs(tokenizer),  # built with the tokenizer's pad id: trained == reloaded
            revision=cfg.revision,
            num_labels=len(label_names),
            id2label=id2label,
            label2id=label2id,
            ignore_mismatched_sizes=True,
            trust_remote_code=cfg.trust_remote_code,
            use_safetensors=True,
            output_loading_info=True,
        )
        model, info = model
    except Exception as exc:  # noqa: BLE001
        raise model_load_error(cfg.base_model, exc, what="base model", flag="--base-model") from exc
    check_tokenizer_fits(tokenizer, model, cfg.base_model, "--base-model")
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ModelLoadError(f"tokenizer of {cfg.base_model} has no pad or eos token; expected a pad token")
        tokenizer.pad_token = tokenizer.eos_token
        model.config.pad_token_id = tokenizer.pad_token_id
    # weights the checkpoint lacks besides the new head (e.g. the pooler of a fill-mask checkpoint): freshly
    # initialised, so an adapter run must train and save them, or every reload would predict differently
    heads = head_modules(model)
    missing = sorted({k.rsplit(".", 1)[0] for k in (info.get("missing_keys") or [])
                      if not any(k == h or k.startswith(h + ".") or f".{h}." in f".{k}" for h in heads)})
    model.hubtune_missing_modules = missing
    return model, tokenizer


def _tokenize(data: TrainEvalData, tokenizer: Any, max_length: int) -> tuple[Any, Any]:
    def fn(batch: dict[str, list[Any]]) -> Any:
        pair = batch.get("text_pair")
        return tokenizer(batch["text"], pair, truncation=True, max_length=max_length)

    cols = [c for c in data.train.dataset.column_names if c != "label"]
    train_ds = data.train.dataset.map(fn, batched=True, remove_columns=cols, desc="tokenize train")
    eval_ds = data.eval.dataset.map(fn, batched=True, remove_columns=cols, desc="tokenize eval")
    # evaluation order does not change metrics: longest first, so each eval batch pads to similar lengths
    eval_ds = (
        eval_ds.map(lambda b: {"_len": [len(x) for x in b["input_ids"]]}, batched=True, desc="sort eval")
        .sort("_len", reverse=True)
        .remove_columns("_len")
    )
    return train_ds, eval_ds


def prepare_classifier(cfg: TrainConfig, progress: bool) -> tuple[TrainEvalData, Any, Any, int, Any, Any]:
    """Validate and load: data, model (adapter applied), tokenizer, max_length, tokenized train/eval."""
    quiet_libraries(progress)
    data = load_train_eval(cfg.data)
    model, tokenizer = _load_base(cfg, data.label_names)
    max_length = min(cfg.max_length, max(getattr(model.config, "max_position_embeddings", 0) or 0, 0) or cfg.max_length)  # XLNet: -1, no limit
    train_ds, eval_ds = _tokenize(data, tokenizer, max_length)
    missing = list(getattr(model, "hubtune_missing_modules", []))
    if cfg.mode in ADAPTER_MODES:
        model = apply_adapter(model, cfg, extra_modules=missing)
    elif cfg.mode == "adapter":  # a bottleneck adapter (AdapterHub's adapters library)
        from hubtune.core.adapterhub import apply_bottleneck

        model = apply_bottleneck(model, config=cfg.bottleneck.config, reduction_factor=cfg.bottleneck.reduction_factor,
                                 extra_modules=missing)
    model.hubtune_missing_modules = missing  # recorded in the run summary
    return data, model, tokenizer, max_length, train_ds, eval_ds


def save_classifier(layout: RunLayout, model: Any, tokenizer: Any, cfg: TrainConfig, max_length: int) -> None:
    def save(staging: Path) -> None:
        if cfg.mode == "adapter":  # bottleneck/ + marker, no model.safetensors (see hubtune.core.adapterhub)
            from hubtune.core.adapterhub import save_bottleneck

            save_bottleneck(model, staging, base_model=public_model_ref(cfg.base_model), local_base=cfg.base_model)
        else:
            model.save_pretrained(str(staging), safe_serialization=True)
        tokenizer.model_max_length = max_length
        tokenizer.save_pretrained(str(staging))
        if cfg.mode in ADAPTER_MODES:  # label names (and the head's architecture: the task) beside the adapter
            base = model.get_base_model()
            base.config.architectures = [type(base).__name__]
            base.config.save_pretrained(str(staging))

    replace_model_dir(layout, save)


def finish_classifier(
    cfg: TrainConfig,
    layout: RunLayout,
    *,
    model: Any,
    tokenizer: Any,
    data: TrainEvalData,
    max_length: int,
    train_metrics: dict[str, Any],
    precision: dict[str, bool],
    state: Any,
    timings: dict[str, float],
    t_start: float,
    last_ckpt: str | None,
    extra_summary: dict[str, Any] | None = None,
) -> TrainResult:
    """(main process) Save ``model/``, evaluate the saved model, write metrics/config/summary."""
    save_classifier(layout, model, tokenizer, cfg, max_length)
    t0 = time.perf_counter()
    eval_metrics, test_metrics = evaluate_saved(cfg, layout, model, data, max_length)
    t_eval = time.perf_counter() - t0

    write_json(layout.metrics, {"train": train_metrics, "eval": eval_metrics, **({"test": test_metrics} if test_metrics else {})})
    layout.config.write_text(dump_yaml(cfg), encoding="utf-8")
    total = time.perf_counter() - t_start
    summary_doc = base_summary(cfg, model, precision, state)
    summary_doc.update(
        {
            "eval_source": data.eval_source,
            "sizes": data.sizes,
            "label_names": data.label_names,
            "label2id": {n: i for i, n in enumerate(data.label_names)},
            "columns": {"text": data.train.columns.text, "text_pair": data.train.columns.text_pair, "label": data.train.columns.label},
            "max_length": max_length,
            "resumed_from": Path(last_ckpt).name if last_ckpt else None,
            "resumed_steps": train_metrics.get("train_loss_steps") if last_ckpt else None,
            "timings": {
                **{k: round(v, 3) for k, v in timings.items()},
                "eval_seconds": round(t_eval, 3),
                "total_seconds": round(total, 3),
                "train_samples_per_second": train_metrics.get("train_samples_per_second"),
            },
            "eval": summary(eval_metrics),
            "eval_majority_rate": eval_metrics.get("majority_rate"),  # beside accuracy: the commonest class's share
            **({"test": summary(test_metrics), "test_source": cfg.data.test_dataset,
                "test_majority_rate": test_metrics.get("majority_rate")} if test_metrics else {}),
            "trained_missing_weights": list(getattr(model, "hubtune_missing_modules", [])),
            **(extra_summary or {}),
        }
    )
    write_json(layout.summary, summary_doc)
    return TrainResult(
        output_dir=layout.root,
        model_dir=layout.model_dir,
        mode=cfg.mode,
        label_names=data.label_names,
        eval_metrics=eval_metrics,
        train_metrics=train_metrics,
        sizes=data.sizes,
        seconds=round(total, 3),
        resumed_from=summary_doc["resumed_from"],
        extra={"task": cfg.task, "engine": cfg.engine, "main_process": True, **(extra_summary or {})},
        test_metrics=test_metrics,
    )
