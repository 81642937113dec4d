"""``hubtune merge``: imports only typer and the stdlib at import time."""

from __future__ import annotations

from typing import Optional

import typer

from hubtune.cli._common import progress_option, token_option


def merge(
    adapter_dir: str = typer.Argument(..., help="A run directory (uses RUN_DIR/model) or a LoRA adapter directory."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Output folder [default: RUN_DIR/merged]."),
    tolerance: float = typer.Option(1e-4, "--tolerance", help="Max |logit diff| allowed between merged and adapter."),
    eval_dataset: Optional[str] = typer.Option(
        None, "--eval-dataset", help="Examples for the parity gate [default: the run's held-out examples]."
    ),
    max_examples: int = typer.Option(256, "--max-examples", help="Number of parity examples."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output folder."),
    progress: Optional[bool] = progress_option(),
    token: Optional[str] = token_option(),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Merge a LoRA adapter into a standalone model; written only if merged logits match the adapter's."""
    from hubtune.cli._common import apply_token, print_json, resolve_progress, stderr
    from hubtune.publish.merge import MergeOptions, merge as run_merge

    show = resolve_progress(progress, json_out)
    apply_token(token)
    res = run_merge(
        MergeOptions(
            source=adapter_dir,
            output=output,
            tolerance=tolerance,
            eval_dataset=eval_dataset,
            max_examples=max_examples,
            overwrite=overwrite,
        ),
        progress=(lambda m: stderr(f"[merge] {m}")) if show else None,
    )
    if json_out:
        print_json(res)
        return
    p = res.parity
    typer.echo(f"merged model written to {res.output_dir} ({res.size_mb} MB)")
    typer.echo(
        f"parity: max |logit diff| {p.max_abs_diff:.3g} <= {p.tolerance:g}, label agreement {p.label_agreement:.0%} "
        f"on {p.num_examples} examples ({p.texts_source})"
    )
