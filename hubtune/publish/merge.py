"""The merge step: fold a LoRA adapter into a standalone transformers model, guarded by a parity gate.

The merged model (safetensors, tokenizer, config with the label names, the trained classification head) is
written to a temporary folder beside the output, reloaded from disk, and its logits compared with the
adapter's on held-out texts. Only when the logits match within ``tolerance`` and every label agrees is the
folder renamed into place; otherwise :class:`MergeParityError` is raised and no output folder exists.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from hubtune.core.errors import (
    ConfigError, DiskFullError, MergeParityError, ModelLoadError, OutputExistsError, OutputNotWritableError, disk_full,
)
from hubtune.tasks.loading import load_classifier
from hubtune.core.modeling import check_model_files, follow_umask, is_adapter_dir
from hubtune.core.parity import REFERENCE_TEXTS, ParityReport, compare_logits, size_mb, weight_files
from hubtune.core.rundir import RunInfo, eval_data, find_run_dir, load_run, task_eval_examples, update_summary
from hubtune.tasks.registry import get_task


@dataclass
class MergeOptions:
    source: str  # a run dir (uses RUN_DIR/model) or a LoRA adapter dir
    output: str | None = None  # default RUN_DIR/merged, or ADAPTER_DIR-merged beside a bare adapter
    tolerance: float = 1e-4  # max |logit diff| allowed between merged and adapter
    eval_dataset: str | None = None  # parity texts; default: the run's held-out examples
    max_examples: int = 256  # parity examples
    batch_size: int = 32
    overwrite: bool = False
    device: str | None = "cpu"


@dataclass
class MergeResult:
    adapter_dir: str
    output_dir: str
    run_dir: str | None
    base_model: str | None
    label_names: list[str]
    parity: ParityReport
    size_mb: float
    seconds: float
    files: list[str] = field(default_factory=list)


def _parity_examples(run: RunInfo | None, spec: Any, label_names: list[str], opts: MergeOptions) -> tuple[Any, str]:
    """The examples the merge gate runs (normalised as the task reads them): ``--eval-dataset``, else the run's
    held-out examples, else the built-in reference texts."""
    if spec.recipe == "head":  # a task that normalises its own data (multi-label, regression, token classification)
        if run is not None and run.data_config.get("dataset"):
            data, role, source = task_eval_examples(run, spec.name, label_names, opts.eval_dataset)
            ds = data.dataset
            return ds.select(range(min(len(ds), opts.max_examples))), str(source or role)
        if opts.eval_dataset:
            from hubtune.core.config import DataConfig
            from hubtune.data.examples import load_task_labeled

            data = load_task_labeled(opts.eval_dataset, DataConfig(dataset=opts.eval_dataset), spec, label_names,
                                     max_samples=opts.max_examples)
            return data.dataset, opts.eval_dataset
        return spec.unlabeled(list(REFERENCE_TEXTS)), "built-in reference texts"
    ev = eval_data(run, label_names, override=opts.eval_dataset, max_samples=opts.max_examples)
    if ev is not None and len(ev.data):
        ds = ev.data.dataset
        n = min(len(ds), opts.max_examples)
        return ds.select_columns([c for c in ("text", "text_pair") if c in ds.column_names]).select(range(n)), ev.spec
    return spec.unlabeled(list(REFERENCE_TEXTS)), "built-in reference texts"


def _merge_model(peft_model: Any) -> Any:
    """peft ``merge_and_unload``: LoRA deltas folded into the base weights, modules_to_save (the head) kept."""
    return peft_model.merge_and_unload()


def _save(model: Any, tokenizer: Any, out: Path) -> None:
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def merge(opts: MergeOptions, progress: Callable[[str], None] | None = None) -> MergeResult:
    say = progress or (lambda _m: None)
    t0 = time.perf_counter()
    if not opts.tolerance >= 0:
        raise ConfigError(f"--tolerance is {opts.tolerance}, expected a non-negative number such as 1e-4")
    src = Path(opts.source)
    if not src.exists():
        raise ModelLoadError(f"{src} does not exist; pass a run directory or a LoRA adapter directory to hubtune merge")
    run_root = find_run_dir(src)
    run = load_run(run_root) if run_root else None
    adapter_dir = run.layout.model_dir if (run and src == run_root) else src
    if not is_adapter_dir(adapter_dir):
        raise ConfigError(
            f"{adapter_dir} holds no adapter_config.json (a full model, not a LoRA adapter); "
            "merge only applies to runs trained with --mode lora: export or publish the full model directly"
        )
    from peft import PeftConfig

    check_model_files(adapter_dir, str(adapter_dir), "RUN_DIR of hubtune merge")  # JSON, weights, tokenizer
    peft_type = PeftConfig.from_pretrained(str(adapter_dir))
    if peft_type.is_prompt_learning:
        raise ConfigError(
            f"{adapter_dir} is a {peft_type.peft_type} adapter (virtual tokens), which has no weights to merge; "
            "merge applies to --mode lora or ia3: publish the adapter folder as is with hubtune push"
        )
    if opts.output:
        out = Path(opts.output)
    elif run is not None:
        out = run.layout.merged_dir
    else:
        out = adapter_dir.with_name(adapter_dir.name + "-merged")
    if out.exists() and not opts.overwrite:
        raise OutputExistsError(f"output folder {out} already exists; pass --overwrite to replace it or --output DIR")

    say(f"loading adapter {adapter_dir}")
    loaded = load_classifier(str(adapter_dir), device=opts.device)
    spec = get_task(loaded.task)  # the gate compares the outputs as the task reads them
    examples, texts_source = _parity_examples(run, spec, loaded.label_names, opts)
    max_len = loaded.max_length

    def outputs(model: Any, tokenizer: Any) -> Any:
        return spec.flat(spec.outputs(model, tokenizer, examples, max_len, batch_size=opts.batch_size))

    say(f"adapter logits on {len(examples)} examples from {texts_source}")
    ref = outputs(loaded.model, loaded.tokenizer)

    say("merging LoRA weights into the base model")
    merged = _merge_model(loaded.model)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
        follow_umask(tmp)  # mkdtemp makes 0700; the output renamed from it follows the umask like any folder
    except OSError as exc:
        raise OutputNotWritableError(f"cannot write beside {out} ({exc.strerror}); pass a writable --output DIR") from None
    try:
        try:
            _save(merged, loaded.tokenizer, tmp)
        except Exception as exc:  # safetensors' error on a full disk carries no errno
            full = disk_full(exc, str(tmp))
            if full is None:
                raise
            raise DiskFullError(f"no space left on the device writing the merged model to {out}; expected room for "
                                "it: free space there or pass another --output DIR, then merge again") from None
        del merged
        say("reloading the merged files and checking parity")
        reloaded = load_classifier(str(tmp), device=opts.device)
        if reloaded.label_names != loaded.label_names:
            raise MergeParityError(
                f"merged config has labels {reloaded.label_names}, the adapter has {loaded.label_names}; "
                "the adapter's config.json must carry id2label (re-run hubtune train)"
            )
        new = outputs(reloaded.model, reloaded.tokenizer)
        report = compare_logits(ref, new, tolerance=opts.tolerance, min_label_agreement=1.0, texts_source=texts_source)
        if not report.passed:
            raise MergeParityError(
                f"merged model does not match the adapter: {report.describe()}; expected max diff <= {opts.tolerance:g} "
                "and 100% label agreement. Nothing was written; check the adapter (peft version, modules_to_save) "
                "or loosen --tolerance if the difference is float noise"
            )
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    files = sorted(p.name for p in out.iterdir())
    result = MergeResult(
        adapter_dir=str(adapter_dir),
        output_dir=str(out),
        run_dir=str(run_root) if run_root else None,
        base_model=loaded.base_model,
        label_names=loaded.label_names,
        parity=report,
        size_mb=size_mb(weight_files(out)),
        seconds=round(time.perf_counter() - t0, 2),
        files=files,
    )
    if run_root is not None:
        try:
            rel = str(out.resolve().relative_to(run_root.resolve()))
        except ValueError:
            rel = out.name
        update_summary(
            run_root,
            "merge",
            {
                "output": rel,
                "parity": asdict(report),
                "size_mb": result.size_mb,
                "seconds": result.seconds,
                "tolerance": opts.tolerance,
            },
        )
    return result
