"""``hubtune push``: make a Hub repo mirror a folder, in one commit."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from hubtune.cli._common import apply_token, print_json, progress_option, resolve_progress, token_option


def push(
    folder: Path = typer.Argument(..., help="Folder to publish (a saved model, merged model, export or dataset)."),
    repo_id: str = typer.Option(..., "--repo-id", help="Target repo, ORG/NAME."),
    public: bool = typer.Option(False, "--public", help="Create the repo public (default: private)."),
    revision: Optional[str] = typer.Option(None, "--revision", help="Branch to commit to (created from main)."),
    tag: Optional[str] = typer.Option(
        None, "--tag", help="Tag the published commit: a name, or a template with {n}, {date}, {short_sha} (v{n})."
    ),
    create_pr: bool = typer.Option(False, "--create-pr", help="Open a pull request instead of committing."),
    commit_message: Optional[str] = typer.Option(None, "--commit-message", help="Commit title."),
    repo_type: str = typer.Option("model", "--repo-type", "--type", help="model or dataset (as `hf upload --repo-type`)."),
    keep_remote: Optional[List[str]] = typer.Option(
        None, "--keep-remote", help="Keep remote paths matching this pattern (fnmatch) though the folder lacks them "
        "(repeatable); every other remote file the folder lacks is deleted in the commit."
    ),
    endpoint: Optional[str] = typer.Option(None, "--endpoint", help="Hub URL (default: HF_ENDPOINT)."),
    progress: Optional[bool] = progress_option(),
    token: Optional[str] = token_option(),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Make the repo mirror FOLDER (HF_ENDPOINT) in one commit; no commit when nothing changed.

    The commit adds and updates what changed and deletes remote files that are gone from FOLDER (an old
    onnx/ or int8 variant), except .gitattributes and --keep-remote paths. The repo is created private
    unless --public. The token comes from HF_TOKEN or the stored login and is never printed. .git/,
    .cache/, __pycache__/ and trainer checkpoints (checkpoint-*/, checkpoints/) are excluded and listed
    in the --json output.
    """
    from hubtune.publish.hub import PushOptions
    from hubtune.publish.hub import push as push_folder

    resolve_progress(progress, as_json)
    result = push_folder(PushOptions(token=token, 
        folder=folder, repo_id=repo_id, repo_type=repo_type, private=not public, revision=revision, tag=tag,
        create_pr=create_pr, commit_message=commit_message, endpoint=endpoint, keep_remote=tuple(keep_remote or ()),
    ))
    if as_json:
        print_json(result)
        return
    what = "committed" if result.committed else "unchanged, no new commit"
    extra = f", pull request {result.pr_url}" if result.pr_url else ""
    extra += f", tag {result.tag}" if result.tag else ""
    typer.echo(f"pushed {len(result.files)} files to {result.url} ({what}: {result.commit_oid[:12]}{extra})")
    if result.committed:
        typer.echo(f"  {len(result.changed)} added or updated, deleted {len(result.deleted)} remote "
                   f"file{'' if len(result.deleted) == 1 else 's'} gone from the folder")
    for path in result.deleted:
        typer.echo(f"  deleted: {path}")
    for path in result.kept:
        if path != ".gitattributes":
            typer.echo(f"  kept (--keep-remote): {path}")
