"""The layout docs/architecture.md describes, checked from the source (nothing imported): no import cycle
between hubtune's modules (imports inside functions count), no private name taken across a module boundary,
no module above 600 lines, and every module named in the map."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "hubtune"
MAX_LINES = 600


def _modules() -> dict[str, Path]:
    mods = {}
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


def _resolve(name: str, mods: dict[str, Path]) -> str | None:
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def _imports(mod: str, path: Path, mods: dict[str, Path]) -> list[tuple[str, list[str], int]]:
    """(target module, imported names, line) for every import of a hubtune module, lazy ones included."""
    out = []
    is_pkg = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "hubtune" and (t := _resolve(a.name, mods)):
                    out.append((t, [], node.lineno))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = mod.split(".") if is_pkg else mod.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if name.split(".")[0] != "hubtune":
                continue
            for a in node.names:
                sub = f"{name}.{a.name}"
                if sub in mods:  # `from hubtune.predict import local` imports a module
                    out.append((sub, [], node.lineno))
                elif (t := _resolve(name, mods)):
                    out.append((t, [a.name], node.lineno))
    return out


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, p in mods.items():
        for target, _names, _line in _imports(m, p, mods):
            # a package's __init__ importing its own submodules, or a module its parent package, is not a cycle edge
            if target != m and not m.startswith(target + "."):
                graph[m].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on, stack, out, counter = set(), [], [], [0]
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            nxt = next(it, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter[0]
                    counter[0] += 1
                    stack.append(nxt)
                    on.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                elif nxt in on:
                    low[v] = min(low[v], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_in_hubtune():
    cycles = _cycles(_graph())
    assert not cycles, "import cycles (lazy imports count): " + "; ".join(" <-> ".join(c) for c in cycles)


def test_no_private_names_across_module_boundaries():
    mods = _modules()
    bad = []
    for m, p in mods.items():
        for target, names, line in _imports(m, p, mods):
            for n in names:
                if n.startswith("_") and not n.startswith("__") and target != m:
                    bad.append(f"{p.relative_to(PKG.parent)}:{line} imports {n} from {target}")
    assert not bad, "private names taken across modules: " + "; ".join(bad)


def test_no_module_far_above_600_lines():
    big = {m: n for m, p in _modules().items() if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not big, f"modules above {MAX_LINES} lines: {big}"


def test_architecture_map_names_every_module():
    doc = (PKG.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    missing = [m for m, p in _modules().items()
               if p.name != "__init__.py" and p.name != "__main__.py" and f"{p.stem}" not in doc]
    assert not missing, f"modules missing from docs/architecture.md: {missing}"


def test_no_step_branches_on_a_task_name():
    """Everything that differs by task lives in hubtune/tasks/: ../shared/tools/task_branches.py's count (==, !=,
    in, match on a task's name or a TASK constant) is 0 everywhere else. The same walk, here, so CI needs no tool."""
    names = {"text-classification", "multi-label-classification", "regression", "token-classification",
             "feature-extraction", "fill-mask", "text-generation", "text2text-generation", "question-answering",
             "zero-shot-classification", "sentence-similarity", "summarization", "translation", "causal-lm",
             "masked-lm", "mlm", "clm", "single_label_classification", "multi_label_classification"}
    words = ("TASK", "CLASSIFICATION", "REGRESSION", "EXTRACTION", "MULTI_LABEL", "GENERATION")

    def names_task(node: ast.AST) -> bool:
        for n in ast.walk(node):
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value in names:
                return True
            ident = n.id if isinstance(n, ast.Name) else n.attr if isinstance(n, ast.Attribute) else None
            if ident and ident.isupper() and any(w in ident for w in words):
                return True
        return False

    hits = []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG).as_posix()
        if rel.startswith("tasks/"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Compare) and any(isinstance(o, (ast.Eq, ast.NotEq, ast.In, ast.NotIn)) for o in node.ops):
                if names_task(node):
                    hits.append(f"hubtune/{rel}:{node.lineno}")
            elif isinstance(node, ast.match_case) and names_task(node.pattern):
                hits.append(f"hubtune/{rel}:{node.pattern.lineno}")
    assert not hits, "steps branching on a task's name (ask the task object, hubtune.tasks.registry): " + ", ".join(hits)


def test_the_top_level_shows_the_flow():
    """``ls hubtune`` reads as the pipeline: at most 12 entries (packages and the few top-level steps)."""
    entries = sorted(p.name for p in PKG.iterdir() if p.name != "__pycache__" and not p.name.endswith((".pyc", ".typed")))
    assert len(entries) <= 12, entries
    assert {"cli", "core", "data", "tasks", "train", "publish", "predict", "hub_server"} <= set(entries), entries
