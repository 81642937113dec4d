"""``hubtune card``: imports only typer and the stdlib at import time."""

from __future__ import annotations

from typing import List, Optional

import typer

from hubtune.cli._common import progress_option, token_option


def card(
    run_dir: str = typer.Argument(..., help="The run directory written by hubtune train (or its model/ or merged/ folder)."),
    template: Optional[str] = typer.Option(None, "--template", help="Jinja template [default: the packaged model_cards/default.md]."),
    repo_id: Optional[str] = typer.Option(None, "--repo-id", help="ORG/NAME the model will be published as."),
    license: str = typer.Option("apache-2.0", "--license", help="License id for the metadata."),
    language: List[str] = typer.Option(["en"], "--language", help="Language code(s); repeat for several."),
    tag: List[str] = typer.Option([], "--tag", help="Extra tag(s); repeat for several."),
    eval_dataset: Optional[str] = typer.Option(None, "--eval-dataset", help="Labeled examples [default: the run's held-out examples]."),
    dataset_id: Optional[str] = typer.Option(None, "--dataset-id", help="Hub dataset id to record for a local dataset."),
    base_model_id: Optional[str] = typer.Option(None, "--base-model-id", help="Hub id of a local base model."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Card path [default: <published folder>/README.md]."),
    progress: Optional[bool] = progress_option(),
    token: Optional[str] = token_option(),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Write README.md (metadata, model-index, evaluation of the published files) into the folder to publish."""
    from hubtune.publish.card import CardOptions, card as run_card
    from hubtune.cli._common import apply_token, print_json, resolve_progress, stderr

    show = resolve_progress(progress, json_out)
    apply_token(token)
    from hubtune.publish.lm_publish import is_lm_run, lm_card, run_task

    if is_lm_run(run_dir):
        task = run_task(run_dir)  # a fill-mask / text-generation run: its own card (perplexity before and after)
        from pathlib import Path

        metrics = lm_card(run_dir, repo_id=repo_id or f"YOUR_ORG/{Path(run_dir).resolve().name}", license=license,
                          language=list(language), tags=list(tag), dataset_id=dataset_id, base_model_id=base_model_id)
        if json_out:
            print_json({"path": str(Path(run_dir) / "model" / "README.md"), "task": task, "metrics": metrics})
            return
        typer.echo(f"{task} model card written to {Path(run_dir) / 'model' / 'README.md'}")
        for k, v in metrics.items():
            typer.echo(f"  {k:<18} {v:.4f}")
        return
    res = run_card(
        CardOptions(
            run_dir=run_dir,
            template=template,
            repo_id=repo_id,
            license=license,
            language=list(language),
            tags=list(tag),
            eval_dataset=eval_dataset,
            dataset_id=dataset_id,
            base_model_id=base_model_id,
            output=output,
        ),
        progress=(lambda m: stderr(f"[card] {m}")) if show else None,
    )
    if json_out:
        print_json(res)
        return
    typer.echo(f"model card written to {res.path} ({len(res.eval_results)} model-index results; variants: {', '.join(res.variants)})")
    for k, v in res.metrics.items():
        typer.echo(f"  {k:<16} {v:.4f}")
