"""Every install line of the README gives a working main command (issue 15).

Nothing is installed: each ``pip install ... -e ".[extras]"`` line of the README's Install section is read, its
extras are resolved against pyproject.toml's dependencies and optional dependencies, and the distribution that
provides the main command's base model (the packaged MiniLM the embedded Hub is seeded with) must be among them.
"""

from __future__ import annotations

import re
import shlex
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from .conftest import REPO

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

README = REPO / "README.md"


def section(text: str, title: str) -> str:
    """The body of the ``## title`` section of a Markdown text."""
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert m, f"README has no '## {title}' section"
    return m.group(1)


def install_lines(readme: str) -> list[str]:
    """``pip install`` lines of the Install section's code blocks."""
    body = section(readme, "Install")
    blocks = re.findall(r"```bash\n(.*?)```", body, re.S)
    return [ln.strip() for b in blocks for ln in b.splitlines() if ln.strip().startswith("pip install")]


def extras_of(line: str) -> set[str] | None:
    """The extras a ``pip install -e TARGET`` line asks for (None: the line installs no hubtune)."""
    words = shlex.split(line)
    if "-e" not in words:
        return None
    target = words[words.index("-e") + 1]
    m = re.fullmatch(r"\.(?:\[([\w,\s-]*)\])?", target)
    assert m, f"unexpected install target {target!r} in {line!r}"
    return {e.strip() for e in (m.group(1) or "").split(",") if e.strip()}


def resolved_distributions(pyproject: dict, extras: set[str]) -> set[str]:
    """Canonical names of the direct requirements of hubtune with ``extras`` (self-referencing extras followed)."""
    project = pyproject["project"]
    optional = project.get("optional-dependencies", {})
    name = canonicalize_name(project["name"])
    out: set[str] = set()
    todo, seen = list(extras), set()
    reqs = [Requirement(r) for r in project.get("dependencies", [])]
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        assert extra in optional, f"extra {extra!r} is not defined in pyproject.toml"
        reqs += [Requirement(r) for r in optional[extra]]
    for req in reqs:
        if canonicalize_name(req.name) == name:
            todo += list(req.extras)
            out |= resolved_distributions(pyproject, set(req.extras) - seen)
        else:
            out.add(canonicalize_name(req.name))
    return out


def main_command_base_model_distribution(readme: str) -> str:
    """The distribution the README's main command needs for its base model."""
    from hubtune.core.modeling import PACKAGED_MODELS
    from hubtune.pipeline import BASE_MODEL_HUB_ID

    body = section(readme, "The main command: train → verified publish, in one command")
    cmds = [ln.strip() for ln in re.findall(r"^\s*(hubtune train-and-push .*)$", body, re.M)]
    offline = [c for c in cmds if "--local-hub" in c]
    assert offline, "the README's main command (train-and-push --local-hub) is missing"
    words = shlex.split(offline[0])
    config = yaml.safe_load((REPO / words[words.index("--config") + 1]).read_text())
    base = config["base_model"]
    # --local-hub seeds the embedded Hub with the packaged model published under this Hub id
    assert base == BASE_MODEL_HUB_ID or base.startswith("packaged:"), base
    alias = base.split(":", 1)[1] if base.startswith("packaged:") else next(
        k for k, v in PACKAGED_MODELS.items() if v[2] == base)
    module = PACKAGED_MODELS[alias][0]
    dists = packages_distributions().get(module)
    assert dists, f"{module} is not installed here: cannot name its distribution"
    return canonicalize_name(dists[0])


def test_readme_has_the_install_lines():
    lines = install_lines(README.read_text())
    targets = [extras_of(ln) for ln in lines]
    assert len([t for t in targets if t is not None]) >= 3, lines
    assert set() in targets, "the plain `pip install -e .` (GPU) line is expected"


@pytest.mark.parametrize("line", install_lines(README.read_text()))
def test_each_install_line_gives_the_main_command_its_base_model(line):
    extras = extras_of(line)
    if extras is None:
        pytest.skip(f"installs no hubtune: {line}")
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    needed = main_command_base_model_distribution(README.read_text())
    assert needed in resolved_distributions(pyproject, extras), (
        f"`{line}` does not install {needed}, which the main command's base model (packaged:minilm) needs"
    )


def test_the_check_fails_when_the_model_comes_only_with_an_extra():
    """The state issue 15 found: the packaged model only in the `test` extra; the plain line lacks it."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    needed = main_command_base_model_distribution(README.read_text())
    deps = [d for d in pyproject["project"]["dependencies"] if canonicalize_name(Requirement(d).name) != needed]
    broken = {"project": {**pyproject["project"], "dependencies": deps,
                          "optional-dependencies": {"test": ["pytest>=8", f"{needed}==0.1.0"]}}}
    assert needed not in resolved_distributions(broken, set())
    assert needed in resolved_distributions(broken, {"test"})
