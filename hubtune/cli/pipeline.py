"""``hubtune train-and-push``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

import typer

from hubtune.cli._common import library_output, parse_overrides, print_json


def _min_metrics(pairs: Optional[List[str]]) -> Optional[dict]:
    if not pairs:
        return None
    out = {}
    for item in pairs:
        name, sep, value = item.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise typer.BadParameter(f"expected NAME=NUMBER such as accuracy=0.85, got {item!r}") from None
        if not sep:
            raise typer.BadParameter(f"expected NAME=NUMBER such as accuracy=0.85, got {item!r}")
    return out


def train_and_push(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML config (train keys + publish/export/gates)."),
    repo_id: Optional[str] = typer.Option(None, "--repo-id", help="ORG/NAME to publish to (publish.repo_id)."),
    output_dir: Optional[str] = typer.Option(None, "--output-dir", "-o", help="Run directory."),
    base_model: Optional[str] = typer.Option(None, "--base-model"),
    dataset: Optional[str] = typer.Option(None, "--dataset"),
    min_metric: Optional[List[str]] = typer.Option(None, "--min-metric", help="Gate: NAME=MIN, e.g. accuracy=0.85 (repeatable)."),
    public: Optional[bool] = typer.Option(None, "--public/--private", help="Repo visibility (private by default)."),
    tag: Optional[str] = typer.Option(None, "--tag", help="Tag the verified revision as a release."),
    revision: Optional[str] = typer.Option(None, "--revision", help="Branch to push to."),
    local_hub: Optional[Path] = typer.Option(
        None, "--local-hub", help="Run against the embedded local Hub stored in this folder (offline, no account)."
    ),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="Any config key: --set export.quantize=int8."),
    resume: bool = typer.Option(False, "--resume", help="Reuse finished steps (train, merge, export)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty run directory."),
    no_verify: bool = typer.Option(False, "--no-verify", help="Skip the fresh-process verification (no release tag)."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Train -> evaluate -> merge -> export ONNX -> card -> push -> verify, with gates before the push."""
    from hubtune.pipeline import PipelineOptions, resolve_pipeline_config, run_pipeline, step_summary_markdown

    overrides = {
        "publish.repo_id": repo_id or None,  # an empty --repo-id "" (unset CI variable) keeps the config's
        "output_dir": output_dir,
        "base_model": base_model,
        "data.dataset": dataset,
        "gates.min_metrics": _min_metrics(min_metric),
        "publish.private": None if public is None else (not public),
        "publish.tag": tag,
        "publish.revision": revision,
    }
    overrides.update(parse_overrides(set_))
    cfg = resolve_pipeline_config(str(config) if config else None, overrides)

    def say(msg: str) -> None:
        typer.echo(f"[hubtune] {msg}", err=True)

    with library_output():
        result = run_pipeline(
            PipelineOptions(config=cfg, resume=resume, overwrite=overwrite,
                            local_hub=str(local_hub) if local_hub else None, verify=not no_verify, progress=progress),
            say=say,
        )
    summary_path = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary_path:
        with open(summary_path, "a", encoding="utf-8") as fh:
            fh.write(step_summary_markdown(result))
    if json_out:
        print_json(result)
        return
    state = "verified" if result.verified else "not verified"
    typer.echo(f"published {result.repo_id} @ {(result.commit or '')[:12]} ({state}) -> {result.url}")
    for k, v in result.metrics.items():
        typer.echo(f"  {k:<16} {v:.4f}")
