"""The import graph of ``rag``, ``ui`` and ``eval``: no module imports another that (through any
chain) imports it back, and the layers point one way: ``rag`` never imports ``ui`` or ``eval``, and
``ui`` never imports ``eval``. Imports inside functions count too, except in ``rag/cli.py``, whose
commands dispatch lazily to the chat (``ui``) and to the evaluation and benchmarks (``eval``).
Imports under ``if TYPE_CHECKING:`` are for annotations only and do not count.
"""
from __future__ import annotations

import ast
from pathlib import Path

from rag.config import REPO_ROOT

PACKAGES = ("rag", "ui", "eval")
LAYER = {"rag": 0, "ui": 1, "eval": 2}
DISPATCHER = "rag.cli"  # may import upward inside its command functions


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            parts = path.relative_to(REPO_ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(path: Path, name: str, known: dict[str, Path]) -> list[tuple[str, bool]]:
    """(imported module of ours, at module level?) for each import in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = {id(node) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
               for node in ast.walk(node)}
    top = {id(node) for node in tree.body}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if id(node) in skipped or not isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        found += [(target, id(node) in top) for target in targets if target in known]
    return found


def graph(lazy: bool) -> dict[str, set[str]]:
    known = modules()
    edges = {name: set() for name in known}
    for name, path in known.items():
        for target, at_top in imports(path, name, known):
            if target != name and (at_top or (lazy and name != DISPATCHER)):
                edges[name].add(target)
    return edges


def cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules, or None."""
    state, stack = {}, []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for target in sorted(edges[node]):
            if state.get(target) == "open":
                return stack[stack.index(target):] + [target]
            if target not in state and (found := visit(target)):
                return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_module_imports_itself_through_a_chain():
    found = cycle(graph(lazy=True))
    assert found is None, " -> ".join(found)


def test_layers_point_one_way():
    upward = [f"{name} imports {target}" for name, targets in graph(lazy=True).items() for target in targets
              if LAYER[target.split(".")[0]] > LAYER[name.split(".")[0]]]
    assert upward == []


def test_the_checks_catch_a_cycle_and_an_upward_import():
    edges = {"rag.a": {"rag.b"}, "rag.b": {"rag.c"}, "rag.c": {"rag.a"}, "eval.x": {"rag.a"}}
    assert cycle(edges) == ["rag.a", "rag.b", "rag.c", "rag.a"]
    assert cycle({"rag.a": {"rag.b"}, "rag.b": set()}) is None
    cli_imports = dict(imports(REPO_ROOT / "rag" / "cli.py", DISPATCHER, modules()))
    assert cli_imports.get("eval.run") is False  # seen, as a lazy import the dispatcher may make
