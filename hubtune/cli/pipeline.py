"""``hubtune train-and-push``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

import typer

from hubtune.cli._common import (
    apply_token,
    library_output,
    parse_min_metrics,
    parse_overrides,
    print_json,
    progress_option,
    resolve_progress,
    token_option,
)


def train_and_push(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML config (train keys + publish/export/gates)."),
    repo_id: Optional[str] = typer.Option(None, "--repo-id", help="ORG/NAME to publish to (publish.repo_id)."),
    output_dir: Optional[str] = typer.Option(None, "--output-dir", "-o", help="Run directory."),
    base_model: Optional[str] = typer.Option(None, "--base-model"),
    dataset: Optional[str] = typer.Option(None, "--dataset"),
    min_metric: Optional[List[str]] = typer.Option(None, "--min-metric", help="Gate: NAME=MIN, e.g. accuracy=0.85 (repeatable)."),
    public: Optional[bool] = typer.Option(None, "--public/--private", help="Repo visibility (private by default)."),
    tag: Optional[str] = typer.Option(
        None, "--tag", help="Release tag of the verified revision: a name or a template with {n}, {date}, "
        "{short_sha} (v{n}: v1, v2, ...; publish.tag)."
    ),
    revision: Optional[str] = typer.Option(None, "--revision", help="Branch to publish to (default main)."),
    require_variant: Optional[List[str]] = typer.Option(
        None, "--require-variant", help="Fail (exit 13) before the push when this ONNX variant's gate refuses it: "
        "int8, O1, O2, O3 (repeatable; export.require_variants)."
    ),
    keep_remote: Optional[List[str]] = typer.Option(
        None, "--keep-remote", help="Keep remote paths matching this pattern (fnmatch) though the published folder "
        "lacks them (repeatable; publish.keep_remote); every other such file is deleted."
    ),
    local_hub: Optional[Path] = typer.Option(
        None, "--local-hub", help="Run against the embedded local Hub stored in this folder (offline, no account)."
    ),
    metric: Optional[List[str]] = typer.Option(None, "--metric", help="An evaluate metric module beside the built-in metrics: Hub id (org/name) or local folder; args after ':' (f1:average=macro). Repeatable."),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="Any config key: --set export.quantize=int8."),
    resume: bool = typer.Option(False, "--resume", help="Reuse finished steps (train, merge, export)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty run directory."),
    no_verify: bool = typer.Option(False, "--no-verify", help="Skip the fresh-process verification (promoted unverified, no release tag)."),
    progress: Optional[bool] = progress_option(),
    token: Optional[str] = token_option(),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Train -> evaluate -> merge -> export ONNX -> card -> stage -> verify -> promote -> tag, gates before the push.

    The commit (the repo mirrors the published folder) is staged on a pull request; the target branch moves
    to it only once a fresh process has pulled it and reproduced the local predictions, then the release is
    tagged. Nothing changed: no commit, no new tag, exit 0.
    """
    from hubtune.pipeline import PipelineOptions, resolve_pipeline_config, run_pipeline, step_summary_markdown

    apply_token(token)
    overrides = {
        "publish.repo_id": repo_id or None,  # an empty --repo-id "" (unset CI variable) keeps the config's
        "output_dir": output_dir,
        "base_model": base_model,
        "data.dataset": dataset,
        "gates.min_metrics": parse_min_metrics(min_metric),
        "publish.private": None if public is None else (not public),
        "publish.tag": tag,
        "publish.revision": revision,
        "export.require_variants": list(require_variant) if require_variant else None,
        "publish.keep_remote": list(keep_remote) if keep_remote else None,
        "metrics": list(metric) if metric else None,
    }
    overrides.update(parse_overrides(set_))
    cfg = resolve_pipeline_config(str(config) if config else None, overrides)

    show = resolve_progress(progress, json_out)  # step lines off under CI=true and --json, like every progress line

    def say(msg: str) -> None:
        typer.echo(f"[hubtune] {msg}", err=True)

    with library_output():
        result = run_pipeline(
            PipelineOptions(config=cfg, resume=resume, overwrite=overwrite,
                            local_hub=str(local_hub) if local_hub else None, verify=not no_verify,
                            progress=show),
            say=say if show else None,
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
    if local_hub:  # the embedded Hub stopped with this command: say how to reach what it published
        typer.echo(f"  the local Hub has stopped; to pull it: hubtune hub serve --root {local_hub} --port 0")
    if result.message:
        typer.echo(f"  {result.message}")
    for path in result.deleted:
        typer.echo(f"  deleted from the repo (gone from the folder): {path}")
    for name, why in result.refused.items():
        typer.echo(f"  refused variant {name}, not published: {why} (--require-variant {name.removeprefix('onnx-')} "
                   "makes this an error)")
    for k, v in result.metrics.items():
        typer.echo(f"  {k:<16} {v:.4f}")
