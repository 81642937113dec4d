"""``hubtune hub``: run and seed the local Hub-compatible server."""

from __future__ import annotations

import os
import shlex
import signal
from pathlib import Path
from typing import Any, List, Optional

import typer

from hubtune.cli._common import print_json

app = typer.Typer(help="Run and seed a local Hugging Face Hub-compatible server.", no_args_is_help=True)

TOKEN_ENV = "HUBTUNE_HUB_TOKEN"


def consume_lines(url: str, token_line: str | None, repo_id: str | None, task: str) -> list[str]:
    """The shell lines that point Hugging Face clients at ``url`` and pull ``repo_id`` with ``pipeline()``."""
    lines = [f"export HF_ENDPOINT={url}"]
    lines.append(token_line or "unset HF_TOKEN  # this Hub takes no token (started without --token)")
    model = repo_id or "ORG/NAME"
    code = f"from transformers import pipeline; print(pipeline({task!r}, model={model!r})('I love this'))"
    # ids and tasks hold no shell metacharacters: double quotes keep the line readable
    lines.append(f'python -c "{code}"' if '"' not in code and "$" not in code else f"python -c {shlex.quote(code)}")
    return lines


@app.command("serve")
def serve(
    root: Path = typer.Option(..., "--root", help="Folder holding the Hub's repos and blobs (created if missing)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (loopback unless --allow-remote)."),
    port: int = typer.Option(8765, "--port", help="Port; 0 picks a free one (the URL is printed)."),
    token: Optional[str] = typer.Option(
        None, "--token", envvar=TOKEN_ENV, help="Token required for writes and private repos (never printed)."
    ),
    user: str = typer.Option("hubtune", "--user", help="User name whoami reports for the token."),
    org: Optional[List[str]] = typer.Option(
        None, "--org", help="Restrict writes to --user and these orgs (repeatable; default: any namespace)."
    ),
    allow_remote: bool = typer.Option(False, "--allow-remote", help="Allow a non-loopback --host (needs --token)."),
    repo_id: Optional[str] = typer.Option(
        None, "--repo-id", help="Model repo the printed pipeline() line loads (default: the last one changed)."
    ),
    task: str = typer.Option("text-classification", "--task", help="Task of the printed pipeline() line."),
) -> None:
    """Serve a local Hub at http://HOST:PORT and print the lines that reach it.

    Prints the exact `export HF_ENDPOINT=...` and HF_TOKEN lines and a `pipeline()` line for another shell, e.g.
    to pull what `train-and-push --local-hub ROOT` published: `hubtune hub serve --root ROOT --port 0`.
    """
    from hubtune.hub_server import start_server
    from hubtune.hub_server.importer import list_repos

    server = start_server(root, host=host, port=port, token=token, user=user, orgs=org, allow_remote=allow_remote)

    def _term(*_: Any) -> None:
        server.stop()

    signal.signal(signal.SIGTERM, _term)
    token_line = None
    if token and token.strip():  # an empty token is no token; tokens are never printed: name their source
        if os.environ.get(TOKEN_ENV) == token:
            token_line = f'export HF_TOKEN="${TOKEN_ENV}"'
        else:
            token_line = f"export HF_TOKEN=...  # the value of --token (set {TOKEN_ENV} instead and this line is exact)"
    models = [r for r in list_repos(server.root, "model")]
    shown = repo_id or (models[0] if models else None)
    auth = ("token required for writes and private repos" if token
            else "no token: anyone on this host may read and write")
    typer.echo(f"hubtune hub serving {server.root} at {server.url} ({auth})")
    typer.echo(f"model repos: {', '.join(models) if models else '(none yet)'}")
    typer.echo("in another shell:")
    for line in consume_lines(server.url, token_line, shown, task):
        typer.echo(line)
    typer.echo("Ctrl-C stops the server")
    try:
        server.wait()
    except KeyboardInterrupt:
        server.stop()
    typer.echo("hubtune hub stopped")


@app.command("import")
def import_(
    folder: Path = typer.Argument(..., help="Folder to import (a model dir, or a dataset with data/*.parquet)."),
    repo_id: str = typer.Argument(
        ..., help="Repo id: ORG/NAME, or a canonical NAME such as imdb (stored as canonical/NAME, served as NAME)."
    ),
    repo_type: str = typer.Option(
        "model", "--repo-type", "--type", help="model or dataset (or space: an evaluate metric module, NAME.py)."
    ),
    private: bool = typer.Option(False, "--private/--public", help="Visibility of a new repo (default public)."),
    root: Optional[Path] = typer.Option(
        None, "--root", help="Write straight into this server root (no server needed) instead of over HTTP."
    ),
    endpoint: Optional[str] = typer.Option(None, "--endpoint", help="Hub URL (default: HF_ENDPOINT)."),
    token: Optional[str] = typer.Option(None, "--token", help="Hub token for the upload (default: HF_TOKEN)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Seed the local Hub with FOLDER as REPO_ID (a base model or a dataset), in one commit.

    A dataset folder holds data/SPLIT-00000-of-00001.parquet files (one per split): `hubtune hub import DIR imdb
    --repo-type dataset --root ROOT` serves it as `--dataset imdb:test`.
    """
    from hubtune.hub_server.importer import check_import_folder, import_repo_id

    check_import_folder(folder, repo_type, repo_id)  # before any write or remote call
    stored_id = import_repo_id(repo_id)
    also = f" (served as {repo_id} too)" if stored_id != repo_id else ""
    if root is not None:
        from hubtune.hub_server.importer import import_into_store

        result: Any = import_into_store(root, folder, stored_id, repo_type=repo_type, private=private)
        summary = f"imported {result['files']} files into {root} as {repo_type} {stored_id}{also} ({result['commit']})"
    else:
        from hubtune.publish.hub import PushOptions, push

        result = push(PushOptions(
            folder=folder, repo_id=stored_id, repo_type=repo_type, private=private, endpoint=endpoint, token=token,
            commit_message=f"import {folder.name}",
        ))
        summary = f"imported {len(result.files)} files to {result.url}{also} ({result.commit_oid[:12]})"
    if as_json:
        print_json(result)
    else:
        typer.echo(summary)


@app.command("gc")
def gc(
    root: Path = typer.Option(..., "--root", help="The local Hub's root folder (as given to `hub serve --root`)."),
    min_age: float = typer.Option(
        3600.0, "--min-age", help="Spare unreferenced blobs and commits younger than this many seconds."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the counts as JSON."),
) -> None:
    """Remove partial uploads, unreachable commits and unreferenced blobs (also done on every `hub serve`)."""
    from hubtune.hub_server.garbage import collect_root

    report = collect_root(root, min_age_s=min_age)
    if as_json:
        print_json(report)
    else:
        typer.echo(f"hub gc {root}: removed {report['partial_files']} partial uploads, {report['blobs']} blobs, "
                   f"{report['commits']} commits, {report['leftovers']} leftovers ({report['bytes_freed']} bytes)")
