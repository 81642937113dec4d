"""``hubtune evaluate``."""

from __future__ import annotations

from typing import List, Optional

import typer

from hubtune.cli._common import apply_token, library_output, print_json, progress_option, resolve_progress, token_option


def evaluate(
    model: str = typer.Option(..., "--model", "-m", help="Model folder (or LoRA adapter), run directory (hubtune train's output), Hub id ORG/NAME or packaged:minilm."),
    dataset: str = typer.Option(..., "--dataset", "-d", help="name[:config]:split or a local file."),
    text_column: Optional[str] = typer.Option(None, "--text-column"),
    text_pair_column: Optional[str] = typer.Option(None, "--text-pair-column"),
    label_column: Optional[str] = typer.Option(None, "--label-column"),
    limit: Optional[int] = typer.Option(None, "--limit", help="Evaluate on at most N rows (shuffled by --seed)."),
    batch_size: int = typer.Option(64, "--batch-size"),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda or auto."),
    revision: Optional[str] = typer.Option(None, "--revision", help="Hub revision of the model."),
    encoding: str = typer.Option("utf-8", "--encoding", help="Encoding of local csv/tsv files."),
    seed: int = typer.Option(42, "--seed"),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code"),
    metric: Optional[List[str]] = typer.Option(None, "--metric", help="An evaluate metric module beside the built-in metrics: Hub id (org/name) or local folder; args after ':' (f1:average=macro). Repeatable."),
    progress: Optional[bool] = progress_option(),
    token: Optional[str] = token_option(),
    json_out: bool = typer.Option(False, "--json", help="Print all metrics as JSON."),
) -> None:
    """Evaluate a classifier on a labeled dataset: accuracy, F1, precision, recall, per-class, confusion."""
    from hubtune.evaluate import EvalOptions
    from hubtune.evaluate import evaluate as run_evaluate
    from hubtune.core.metrics import format_table

    resolve_progress(progress, json_out)
    apply_token(token)

    with library_output():
        report = run_evaluate(
            EvalOptions(
                model=model,
                dataset=dataset,
                text_column=text_column,
                text_pair_column=text_pair_column,
                label_column=label_column,
                limit=limit,
                batch_size=batch_size,
                device=device,
                revision=revision,
                trust_remote_code=trust_remote_code,
                encoding=encoding,
                seed=seed,
                metrics=list(metric or []),
            )
        )
    if json_out:
        print_json(report)
        return
    typer.echo(f"{report.model} on {report.dataset} ({report.num_examples} rows, {report.seconds:.1f}s)")
    typer.echo(format_table(report.metrics))
