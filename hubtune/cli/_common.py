"""Shared pieces of the CLI: the one error boundary and output helpers.

Only the CLI prints or exits. Library code raises :class:`hubtune.errors.HubtuneError`.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from dataclasses import asdict, is_dataclass
from typing import Any, Callable

import typer

from hubtune.errors import HubtuneError

INTERNAL_ERROR_EXIT = 70
INTERRUPTED_EXIT = 130


def debug_enabled() -> bool:
    return os.environ.get("HUBTUNE_DEBUG", "") not in ("", "0", "false", "False")


def boundary(func: Callable[..., Any]) -> Callable[..., Any]:
    """Map every error to a one-line message and a distinct exit code (traceback with HUBTUNE_DEBUG=1)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except HubtuneError as exc:
            if debug_enabled():
                raise
            typer.echo(f"error: {one_line(exc)}", err=True)
            raise typer.Exit(code=exc.exit_code) from None
        except KeyboardInterrupt:
            if debug_enabled():
                raise
            typer.echo("interrupted", err=True)
            raise typer.Exit(code=INTERRUPTED_EXIT) from None
        except Exception as exc:  # noqa: BLE001 - the one boundary
            if debug_enabled():
                raise
            typer.echo(
                f"internal error: {type(exc).__name__}: {one_line(exc)} "
                "(re-run with HUBTUNE_DEBUG=1 for the traceback and report it)",
                err=True,
            )
            raise typer.Exit(code=INTERNAL_ERROR_EXIT) from None

    return wrapper


def one_line(exc: BaseException) -> str:
    text = str(exc.args[0]) if len(exc.args) == 1 else str(exc)
    return " ".join(text.split())


def to_jsonable(obj: Any) -> Any:
    if is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(asdict(obj))
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if hasattr(obj, "__fspath__"):
        return os.fspath(obj)
    return obj


def print_json(obj: Any) -> None:
    typer.echo(json.dumps(to_jsonable(obj), indent=2, sort_keys=True))


def parse_overrides(pairs: list[str] | None) -> dict[str, Any]:
    """``--set key=value`` pairs (dotted keys allowed) into a dict; values are YAML scalars (null, 1e-4, [a,b])."""
    import yaml

    out: dict[str, Any] = {}
    for item in pairs or []:
        if "=" not in item:
            raise typer.BadParameter(f"expected KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        try:
            out[key.strip()] = yaml.safe_load(value) if value.strip() else value
        except yaml.YAMLError:
            out[key.strip()] = value
    return out


def stderr(msg: str) -> None:
    print(msg, file=sys.stderr)


def library_output():
    """Route what libraries print (Trainer logs, progress) to stderr, keeping stdout for the result."""
    import contextlib

    return contextlib.redirect_stdout(sys.stderr)
