"""``hubtune hub``: run and seed the local Hub-compatible server."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any, List, Optional

import typer

from hubtune.cli._common import print_json

app = typer.Typer(help="Run and seed a local Hugging Face Hub-compatible server.", no_args_is_help=True)


@app.command("serve")
def serve(
    root: Path = typer.Option(..., "--root", help="Folder holding the Hub's repos and blobs (created if missing)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (loopback unless --allow-remote)."),
    port: int = typer.Option(8765, "--port", help="Port (0 = a free one; the URL is printed)."),
    token: Optional[str] = typer.Option(
        None, "--token", envvar="HUBTUNE_HUB_TOKEN", help="Token required for writes and private repos."
    ),
    user: str = typer.Option("hubtune", "--user", help="User name whoami reports for the token."),
    org: Optional[List[str]] = typer.Option(
        None, "--org", help="Restrict writes to --user and these orgs (repeatable; default: any namespace)."
    ),
    allow_remote: bool = typer.Option(False, "--allow-remote", help="Allow a non-loopback --host (needs --token)."),
) -> None:
    """Serve a local Hub at http://HOST:PORT; point clients at it with HF_ENDPOINT."""
    from hubtune.hub_server import start_server

    server = start_server(root, host=host, port=port, token=token, user=user, orgs=org, allow_remote=allow_remote)

    def _term(*_: Any) -> None:
        server.stop()

    signal.signal(signal.SIGTERM, _term)
    auth = "token required for writes" if token else "no token: anyone on this host may write"
    typer.echo(f"hubtune hub serving {server.root} at {server.url} ({auth}); export HF_ENDPOINT={server.url}")
    try:
        server.wait()
    except KeyboardInterrupt:
        server.stop()
    typer.echo("hubtune hub stopped")


@app.command("import")
def import_(
    folder: Path = typer.Argument(..., help="Folder to import (a model dir, or a dataset with data/*.parquet)."),
    repo_id: str = typer.Argument(..., help="Repo id, ORG/NAME."),
    repo_type: str = typer.Option("model", "--type", help="model or dataset."),
    private: bool = typer.Option(False, "--private/--public", help="Visibility of a new repo (default public)."),
    root: Optional[Path] = typer.Option(
        None, "--root", help="Write straight into this server root (no server needed) instead of over HTTP."
    ),
    endpoint: Optional[str] = typer.Option(None, "--endpoint", help="Hub URL (default: HF_ENDPOINT)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Seed the local Hub with FOLDER as REPO_ID (a base model or a dataset), in one commit."""
    if root is not None:
        from hubtune.hub_server.importer import import_into_store

        result: Any = import_into_store(root, folder, repo_id, repo_type=repo_type, private=private)
        summary = f"imported {result['files']} files into {root} as {repo_type} {repo_id} ({result['commit']})"
    else:
        from hubtune.hub import PushOptions, push

        result = push(PushOptions(
            folder=folder, repo_id=repo_id, repo_type=repo_type, private=private, endpoint=endpoint,
            commit_message=f"import {folder.name}",
        ))
        summary = f"imported {len(result.files)} files to {result.url} ({result.commit_oid[:12]})"
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
