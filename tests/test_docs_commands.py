"""Issue 16.5: every ``hubtune`` command in the docs parses against the real CLI.

Each fenced shell block of README.md and docs/*.md is read line by line (``\\`` continuations joined,
comments dropped, ``&&`` / ``|`` / ``;`` split); every command that runs ``hubtune`` (or ``-m hubtune``
under python, torchrun or ``accelerate launch``) is handed to click's ``make_context`` on the typer app
(``typer.main.get_command``; typer 0.29 carries its own click, reached through typer's public names),
sub-command by sub-command, with resilient parsing off: an unknown flag,
a missing value, a bad choice or a stray positional fails the test, naming the file and line. Nothing
is executed (no command callback runs); ``...`` stands for "more arguments" and is dropped.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer
import typer.core
import typer.main

from hubtune.cli.main import app

from .conftest import REPO

SHELL_LANGS = {"", "bash", "sh", "shell", "console", "zsh"}
OPERATORS = {"&&", "||", ";", "|", "&"}
REDIRECTS = {">", ">>", "<", ">&", "2>", "2>&1", "&>"}


def _fenced_blocks(text: str) -> list[tuple[int, str, list[str]]]:
    """(first line number, language, lines) of every fenced code block."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        m = re.match(r"^\s*(`{3,}|~{3,})\s*([\w+-]*)", lines[i])
        if not m:
            i += 1
            continue
        fence, lang, start, body = m.group(1), m.group(2).lower(), i + 1, []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i])
            i += 1
        blocks.append((start + 1, lang, body))
        i += 1
    return blocks


def _logical_lines(first: int, body: list[str]) -> list[tuple[int, str]]:
    out, buf, at = [], "", first
    for n, line in enumerate(body, start=first):
        if not buf:
            at = n
        stripped = re.sub(r"^\s*\$\s+", "", line)  # a "$ " prompt
        if stripped.rstrip().endswith("\\"):
            buf += stripped.rstrip()[:-1] + " "
            continue
        out.append((at, buf + stripped))
        buf = ""
    if buf:
        out.append((at, buf))
    return out


def _hubtune_args(tokens: list[str]) -> list[str] | None:
    """The arguments after ``hubtune`` (or ``-m hubtune``) in one simple command, else None."""
    # environment assignments before the command (HF_TOKEN=x hubtune ..., env A=1 python -m hubtune ...) are dropped;
    # after hubtune, NAME=VALUE is an argument (--set report_to=tensorboard)
    cut = next((i for i, t in enumerate(tokens) if t == "hubtune"), len(tokens))
    words = [t for t in tokens[:cut] if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", t)] + list(tokens[cut:])
    while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):
        words.pop(0)
    if words and words[0] == "hubtune":
        args = words[1:]
    elif "-m" in words and words.index("-m") + 1 < len(words) and words[words.index("-m") + 1] == "hubtune":
        args = words[words.index("-m") + 2 :]
    else:
        return None
    return [a for a in args if a != "..."]


def doc_commands() -> list[tuple[str, list[str]]]:
    """(``file:line``, argv after ``hubtune``) for every hubtune command in a shell block of the docs."""
    found = []
    for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for first, lang, body in _fenced_blocks(path.read_text(encoding="utf-8")):
            if lang not in SHELL_LANGS:
                continue
            for line_no, line in _logical_lines(first, body):
                line = re.sub(r"<([A-Za-z_][\w.-]*)>", r"\1", line)  # a <placeholder>, not a redirect
                lex = shlex.shlex(line, posix=True, punctuation_chars=True)
                lex.whitespace_split = True
                try:
                    tokens = list(lex)
                except ValueError:
                    continue  # not shell (e.g. a command's output)
                command: list[str] = []
                for tok in [*tokens, ";"]:
                    if tok in OPERATORS:
                        args = _hubtune_args(command)
                        if args is not None:
                            found.append((f"{path.relative_to(REPO)}:{line_no}", args))
                        command = []
                    elif tok in REDIRECTS:
                        command.append("\0redirect")
                    elif command and command[-1] == "\0redirect":
                        command.pop()  # the redirect's target
                    else:
                        command.append(tok)
    return found


def parse_cli(argv: list[str]) -> list[str]:
    """Parse ``hubtune ARGV`` the way click does before it runs anything; returns the command path."""
    cmd = typer.main.get_command(app)
    ctx = cmd.make_context("hubtune", list(argv), resilient_parsing=False)
    path, rest = ["hubtune"], list(argv)
    while isinstance(cmd, typer.core.TyperGroup):
        remaining = ctx.args  # after the sub-command's name
        name = rest[len(rest) - len(remaining) - 1]
        sub = cmd.get_command(ctx, name)
        if sub is None:
            raise typer.BadParameter(f"no such command {name!r}", ctx=ctx)
        cmd, rest, path = sub, list(remaining), [*path, name]
        ctx = cmd.make_context(name, list(remaining), parent=ctx, resilient_parsing=False)
    return path


COMMANDS = doc_commands()


def test_the_docs_have_commands_to_check():
    files = {where.split(":")[0] for where, _ in COMMANDS}
    assert {"README.md", "docs/recipes.md"} <= files, files
    assert len(COMMANDS) >= 20


@pytest.mark.parametrize("where,argv", COMMANDS, ids=[w for w, _ in COMMANDS])
def test_doc_command_parses(where, argv):
    try:
        path = parse_cli(argv)
    except typer.Exit as exc:  # --help / --version: parsed, then exits 0
        assert exc.exit_code == 0, f"{where}: hubtune {' '.join(argv)}"
        return
    except typer.TyperException as exc:
        pytest.fail(f"{where}: `hubtune {shlex.join(argv)}` does not parse: {exc.format_message()}")
    assert len(path) >= 2, f"{where}: `hubtune {shlex.join(argv)}` names no command"


@pytest.mark.parametrize("argv,message", [
    (["evaluate", "runs/mrpc/model", "--dataset", "d.csv"], "missing option '--model'"),  # docs/recipes.md had it
    (["evaluate", "--model", "m", "--dataset", "d.csv", "runs/mrpc/model"], "unexpected extra argument"),
    (["train", "--no-such-flag"], "no such option"),
    (["nope"], "no such command"),
    (["train", "--epochs", "many"], "invalid value for '--epochs'"),
    (["train", "--lr"], "requires an argument"),
])
def test_a_wrong_command_fails_to_parse(argv, message):
    with pytest.raises(typer.TyperException) as info:
        parse_cli(argv)
    assert message in info.value.format_message().lower()


def test_extraction_handles_continuations_launchers_and_operators(tmp_path):
    text = (
        "```bash\n"
        "torchrun --nproc_per_node 2 -m hubtune train --config c.yaml   # any engine\n"
        "HF_TOKEN=x hubtune push RUN/model --repo-id me/m \\\n"
        "  --private && hubtune env > env.txt\n"
        "pip install hubtune\n"
        "```\n"
    )
    blocks = _fenced_blocks(text)
    got = []
    for first, _, body in blocks:
        for _, line in _logical_lines(first, body):
            lex = shlex.shlex(line, posix=True, punctuation_chars=True)
            lex.whitespace_split = True
            got.append(list(lex))
    assert _hubtune_args(got[0]) == ["train", "--config", "c.yaml"]
    assert got[1][:6] == ["HF_TOKEN=x", "hubtune", "push", "RUN/model", "--repo-id", "me/m"]
    assert _hubtune_args(got[2]) is None
