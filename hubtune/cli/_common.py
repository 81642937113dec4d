"""Shared pieces of the CLI: the one error boundary and output helpers.

Only the CLI prints or exits. Library code raises :class:`hubtune.core.errors.HubtuneError`.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from dataclasses import asdict, is_dataclass
from typing import Any, Callable

import typer

from hubtune.core.compat import quiet_warnings
from hubtune.core.errors import HubtuneError, MetricGateSpecError, OverrideSyntaxError, disk_full
from hubtune.tasks.registry import task_names


def task_choices(**facts: Any) -> str:
    """The ``--task`` choices a command's help lists: the registry's tasks with these facts
    (:func:`hubtune.tasks.registry.task_names`)."""
    return ", ".join(task_names(**facts))

INTERNAL_ERROR_EXIT = 70
INTERRUPTED_EXIT = 130


def debug_enabled() -> bool:
    return os.environ.get("HUBTUNE_DEBUG", "") not in ("", "0", "false", "False")


JSON_FLAGS = ("json_out", "as_json")  # the parameter names of the --json option in the commands


def boundary(func: Callable[..., Any]) -> Callable[..., Any]:
    """Map every error to a one-line message and a distinct exit code (traceback with HUBTUNE_DEBUG=1).

    With ``--json`` the error is also printed on stdout as ``{"error": ..., "exit_code": ..., "type": ...}``.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        as_json = any(kwargs.get(name) is True for name in JSON_FLAGS)
        quiet_warnings()
        try:
            return func(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except HubtuneError as exc:
            if debug_enabled():
                raise
            fail(f"error: {one_line(exc)}", exc.exit_code, as_json, type(exc).__name__)
        except typer.TyperException as exc:  # typer.BadParameter & co. raised while running the command
            if debug_enabled():
                raise
            message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
            fail(f"error: {one_line_text(message)}", getattr(exc, "exit_code", 2), as_json, "UsageError")
        except KeyboardInterrupt:
            if debug_enabled():
                raise
            fail("interrupted", INTERRUPTED_EXIT, as_json, "KeyboardInterrupt")
        except Exception as exc:  # noqa: BLE001 - the one boundary
            if debug_enabled():
                raise
            full = disk_full(exc)  # a write the step did not expect to fail: a full disk is no bug
            if full is not None:
                fail(f"error: {one_line(full)}", full.exit_code, as_json, type(full).__name__)
            fail(
                f"internal error: {type(exc).__name__}: {one_line(exc)} "
                "(re-run with HUBTUNE_DEBUG=1 for the traceback and report it)",
                INTERNAL_ERROR_EXIT, as_json, type(exc).__name__,
            )

    return wrapper


def fail(line: str, code: int, as_json: bool, kind: str) -> None:
    """Print the one error line on stderr (and the JSON error object on stdout with --json), then exit."""
    typer.echo(line, err=True)
    if as_json:
        message = line.split(": ", 1)[1] if line.startswith(("error: ", "internal error: ")) else line
        typer.echo(json.dumps({"error": message, "exit_code": code, "type": kind}))
    raise typer.Exit(code=code)


def one_line(exc: BaseException) -> str:
    return one_line_text(str(exc.args[0]) if len(exc.args) == 1 else str(exc))


def one_line_text(text: str) -> str:
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
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise OverrideSyntaxError(
                f"--set expects KEY=VALUE (a config key, dotted for sections), got {item!r}; "
                "e.g. --set learning_rate=1e-4 or --set lora.r=16"
            )
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


def parse_min_metrics(pairs: list[str] | None) -> dict[str, float] | None:
    """``--min-metric NAME=NUMBER`` pairs into a dict (None when none given)."""
    if not pairs:
        return None
    out: dict[str, float] = {}
    for item in pairs:
        name, sep, value = item.partition("=")
        try:
            number = float(value)
        except ValueError:
            number = None
        if not sep or not name.strip() or number is None or number != number:
            raise MetricGateSpecError(
                f"--min-metric expects NAME=NUMBER, got {item!r}; e.g. --min-metric accuracy=0.85"
            )
        out[name.strip()] = number
    return out


# --- one progress switch for every command -------------------------------------------------------------
PROGRESS_HELP = ("Progress bars [default: on; off under CI=true, with HF_HUB_DISABLE_PROGRESS_BARS=1 and with "
                 "--json].")
_TRUE = ("1", "true", "yes", "on")


def progress_option() -> Any:
    """The ``--progress/--no-progress`` option every long-running command takes (None: decided by the env)."""
    return typer.Option(None, "--progress/--no-progress", help=PROGRESS_HELP, show_default=False)


def resolve_progress(flag: bool | None, json_out: bool = False) -> bool:
    """Bars or not: --json never; else the flag; else off under CI=true or HF_HUB_DISABLE_PROGRESS_BARS=1.

    Off also turns off the bars of huggingface_hub, datasets and transformers (downloads, maps, weight
    loading), in this process and the processes it starts.
    """
    if json_out:
        on = False
    elif flag is not None:
        on = flag
    else:
        env = os.environ
        on = not (env.get("HF_HUB_DISABLE_PROGRESS_BARS", "").lower() in _TRUE or env.get("CI", "").lower() in _TRUE)
    if not on:
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
        os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "1"
        if "huggingface_hub" in sys.modules:
            from huggingface_hub.utils import disable_progress_bars

            disable_progress_bars()
        if "datasets" in sys.modules:
            sys.modules["datasets"].disable_progress_bars()
    return on


# --- a --token for every command that talks to a Hub --------------------------------------------------
def token_option() -> Any:
    return typer.Option(
        None, "--token", help="Hub token [default: HF_TOKEN, else the stored login]; never printed.", show_default=False
    )


def apply_token(token: str | None) -> None:
    """Hand --token to every Hub client of this command (and the processes it starts) as HF_TOKEN."""
    if token:
        os.environ["HF_TOKEN"] = token
