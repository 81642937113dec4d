"""``hubtune train``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from hubtune.cli._common import (
    apply_token,
    library_output,
    parse_overrides,
    print_json,
    progress_option,
    resolve_progress,
    task_choices,
    token_option,
)


def train(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML config; flags override it."),
    base_model: Optional[str] = typer.Option(None, "--base-model", help="Hub id, local directory or packaged:minilm."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="Train data: name[:config]:split or a local file."),
    eval_dataset: Optional[str] = typer.Option(
        None, "--eval-dataset", help="Eval data that chooses the checkpoint (default: carve validation_split)."
    ),
    test_dataset: Optional[str] = typer.Option(
        None, "--test-dataset", help="Test data, reported in metrics.json and the card; never used to choose."
    ),
    output_dir: Optional[str] = typer.Option(None, "--output-dir", "-o", help="Run directory to write."),
    task: Optional[str] = typer.Option(
        None, "--task", help=f"One of {task_choices(trained=True)} (default text-classification)."
    ),
    mode: Optional[str] = typer.Option(
        None, "--mode", help="full, lora, ia3, prefix or adapter (bottleneck, hubtune[adapters]); adapters: text-classification."
    ),
    adapter_config: Optional[str] = typer.Option(None, "--adapter-config", help="mode adapter: pfeiffer or houlsby."),
    reduction_factor: Optional[int] = typer.Option(None, "--reduction-factor", help="mode adapter: hidden / bottleneck size."),
    engine: Optional[str] = typer.Option(None, "--engine", help="trainer (default) or accelerate (a plain Accelerator loop)."),
    block_size: Optional[int] = typer.Option(None, "--block-size", help="LM tasks: tokens per training block."),
    mlm_probability: Optional[float] = typer.Option(None, "--mlm-probability", help="fill-mask: share of tokens masked."),
    whole_word_mask: Optional[bool] = typer.Option(
        None, "--whole-word-mask/--token-mask", help="fill-mask: mask whole words or single tokens."
    ),
    text_column: Optional[str] = typer.Option(None, "--text-column"),
    text_pair_column: Optional[str] = typer.Option(None, "--text-pair-column"),
    label_column: Optional[str] = typer.Option(None, "--label-column"),
    label_delimiter: Optional[str] = typer.Option(
        None, "--label-delimiter", help="multi-label-classification: what joins a row's labels in a string column (default ',')."
    ),
    limit: Optional[int] = typer.Option(None, "--limit", help="Use at most N training rows (max_samples)."),
    encoding: Optional[str] = typer.Option(None, "--encoding", help="Encoding of local csv/tsv files."),
    epochs: Optional[float] = typer.Option(None, "--epochs", help="num_epochs."),
    learning_rate: Optional[float] = typer.Option(None, "--learning-rate", "--lr"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size"),
    max_length: Optional[int] = typer.Option(None, "--max-length"),
    precision: Optional[str] = typer.Option(None, "--precision", help="auto, fp32, fp16 or bf16."),
    seed: Optional[int] = typer.Option(None, "--seed"),
    trust_remote_code: Optional[bool] = typer.Option(None, "--trust-remote-code", help="Run model code from the Hub."),
    metric: Optional[List[str]] = typer.Option(None, "--metric", help="An evaluate metric module beside the built-in metrics: Hub id (org/name) or local folder; args after ':' (f1:average=macro). Repeatable."),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="Any config key: --set lora.r=16 (repeatable)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty output directory."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the last checkpoint in the output directory."),
    progress: Optional[bool] = progress_option(),
    token: Optional[str] = token_option(),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Fine-tune a model (classifier, masked or causal LM; full or adapters) and write a run directory."""
    from hubtune.core.config import TrainConfig, resolve
    from hubtune.tasks.registry import find_task
    from hubtune.train import train as run_train

    overrides = {
        "base_model": base_model,
        "output_dir": output_dir,
        "task": task,
        "mode": mode,
        "engine": engine,
        "block_size": block_size,
        "mlm_probability": mlm_probability,
        "whole_word_mask": whole_word_mask,
        "data.dataset": dataset,
        "data.eval_dataset": eval_dataset,
        "data.test_dataset": test_dataset,
        "data.text_column": text_column,
        "data.text_pair_column": text_pair_column,
        "data.label_column": label_column,
        "data.label_delimiter": label_delimiter,
        "data.max_samples": limit,
        "data.encoding": encoding,
        "num_epochs": epochs,
        "learning_rate": learning_rate,
        "batch_size": batch_size,
        "max_length": max_length,
        "precision": precision,
        "seed": seed,
        "trust_remote_code": trust_remote_code,
        "metrics": list(metric) if metric else None,
        "bottleneck.config": adapter_config,
        "bottleneck.reduction_factor": reduction_factor,
    }
    overrides.update(parse_overrides(set_))
    apply_token(token)
    cfg = resolve(TrainConfig, config, overrides)
    report = sys.stdout  # library_output() sends library chatter to stderr; this line goes where the result goes

    warned: list[str] = []

    def on_start(info: dict) -> None:
        line = f"trainable parameters: {info['trainable']:,} of {info['total']:,} ({100 * info['share']:.2f}%)"
        if info.get("adapter_targets"):
            line += f"; {info['mode']} targets {', '.join(info['adapter_targets'])}"
        typer.echo(line, err=json_out, file=None if json_out else report)
        for warning in info.get("warnings") or []:
            typer.echo(f"warning: {warning}", err=True)
            warned.append(warning)

    with library_output():
        result = run_train(cfg, overwrite=overwrite, resume=resume, progress=resolve_progress(progress, json_out),
                           on_start=on_start)
    if not result.extra.get("main_process", True):
        return  # a non-main process of a distributed run: the main process reports
    for warning in result.extra.get("warnings") or []:
        if warning not in warned:  # those known at the start were printed then
            typer.echo(f"warning: {warning}", err=True)
    if json_out:
        print_json(
            {
                "output_dir": str(result.output_dir),
                "model_dir": str(result.model_dir),
                "task": result.extra.get("task", "text-classification"),
                "mode": result.mode,
                "labels": result.label_names,
                "sizes": result.sizes,
                "seconds": result.seconds,
                "eval": {k: v for k, v in result.eval_metrics.items() if isinstance(v, (int, float))},
                "test": {k: v for k, v in (result.test_metrics or {}).items() if isinstance(v, (int, float))} or None,
                "metric_modules": result.eval_metrics.get("metric_modules") or None,
                "warnings": result.extra.get("warnings") or [],
            }
        )
        return
    m = result.eval_metrics
    if "rouge_l" in m:  # SFT: the held-out metrics of the reloaded files
        before = f"{m['perplexity_before']:.2f} -> " if "perplexity_before" in m else ""
        typer.echo(
            f"trained {result.mode} {result.extra.get('task')} model (SFT) on {result.sizes['train']} examples in "
            f"{result.seconds:.1f}s -> {result.model_dir}\neval ({result.sizes['eval']} examples, reloaded files): "
            f"perplexity {before}{m['perplexity']:.2f}  exact_match {m['exact_match']:.4f}  rouge_l {m['rouge_l']:.4f}"
        )
        return
    if "perplexity_after" in m:
        for h in result.train_metrics.get("eval_history") or []:  # the Accelerate loop: perplexity after each epoch
            if "perplexity" in h:
                typer.echo(f"epoch {h['epoch']}: perplexity {h['perplexity']:.2f}")
        before = f"{m['perplexity_before']:.2f} -> " if "perplexity_before" in m else ""
        typer.echo(
            f"trained {result.extra.get('task')} model on {result.sizes['train']} blocks in {result.seconds:.1f}s "
            f"-> {result.model_dir}\neval ({result.sizes['eval']} blocks): perplexity {before}{m['perplexity_after']:.2f}"
        )
        return
    spec = find_task(result.extra.get("task"))
    if spec is not None and spec.recipe == "head":  # multi-label, regression, token classification: its own metrics
        def line(x: dict) -> str:
            return "  ".join(f"{k} {x[k]:.4f}" for k in spec.summary_keys if k in x)

        typer.echo(f"trained {result.mode} {result.extra['task']} model on {result.sizes['train']} rows in "
                   f"{result.seconds:.1f}s -> {result.model_dir}\neval ({result.sizes['eval']} rows, chose the "
                   f"checkpoint; reloaded files): {line(m)}")
        if result.test_metrics:
            typer.echo(f"test ({result.test_metrics['num_examples']} rows): {line(result.test_metrics)}")
        return

    def majority(x: dict) -> str:  # the share of the commonest class: what always answering it would score
        return f" (majority class {x['majority_rate']:.4f})" if "majority_rate" in x else ""

    typer.echo(
        f"trained {result.mode} model on {result.sizes['train']} rows in {result.seconds:.1f}s -> {result.model_dir}\n"
        f"eval ({result.sizes['eval']} rows, chose the checkpoint; reloaded files): accuracy {m['accuracy']:.4f}"
        f"{majority(m)}  f1_macro {m['f1_macro']:.4f}"
    )
    if m.get("metric_modules"):
        from hubtune.core.metric_modules import flat

        typer.echo("eval, evaluate modules: " + "  ".join(f"{k} {v:.4f}" for k, v in flat(m["metric_modules"]).items()))
    if result.test_metrics:
        t = result.test_metrics
        typer.echo(f"test ({t['num_examples']} rows): accuracy {t['accuracy']:.4f}{majority(t)}  f1_macro {t['f1_macro']:.4f}")
