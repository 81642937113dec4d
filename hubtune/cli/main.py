"""Entry point of the ``hubtune`` command. Importing this module must not import torch."""

from __future__ import annotations

import importlib

import typer

from hubtune import __version__
from hubtune.cli._common import boundary

app = typer.Typer(
    name="hubtune",
    help="Fine-tune, evaluate, card, merge, export, publish and batch-predict Hugging Face models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help is plain text: "pip install 'hubtune[ray]'" and "[default: ...]" stay as written
)

# (command name, module, function). Each module imports only typer at import time.
COMMANDS = [
    ("train", "hubtune.cli.train", "train"),
    ("evaluate", "hubtune.cli.evaluate", "evaluate"),
    ("card", "hubtune.cli.card", "card"),
    ("merge", "hubtune.cli.merge", "merge"),
    ("export", "hubtune.cli.export", "export"),
    ("push", "hubtune.cli.push", "push"),
    ("batch-predict", "hubtune.cli.predict", "batch_predict"),
    ("merge-predictions", "hubtune.cli.predict", "merge_predictions"),
    ("train-and-push", "hubtune.cli.pipeline", "train_and_push"),
    ("env", "hubtune.cli.env", "env"),
]
# (group name, module): modules that expose a ``app`` typer.Typer of sub-commands.
GROUPS = [
    ("hub", "hubtune.cli.hub"),
]


def _version(value: bool) -> None:
    if value:
        from hubtune.core.compat import versions

        libs = ", ".join(f"{name} {ver or 'not installed'}" for name, ver in versions().items())
        typer.echo(f"hubtune {__version__} ({libs})")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and those of transformers, huggingface_hub, torch and onnxruntime."),
) -> None:
    """hubtune: pretrained model -> fine-tuned, verified, published, servable model."""


def _register() -> None:
    for name, module_name, func_name in COMMANDS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue  # command not built yet
            raise
        func = getattr(module, func_name)
        app.command(name, help=func.__doc__)(boundary(func))
    for name, module_name in GROUPS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue
            raise
        sub: typer.Typer = module.app
        for info in sub.registered_commands:
            info.callback = boundary(info.callback)
        app.add_typer(sub, name=name)


_register()


def main(argv: list[str] | None = None) -> int:
    try:
        app(args=argv, prog_name="hubtune")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0
