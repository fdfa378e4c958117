"""The package's import graph: no cycles, and the command line is the top layer.

Every ``import`` / ``from ... import`` of a ``dropout_tune`` module counts, wherever it stands: at module level,
inside a function (a lazy import is still a dependency, it only runs later) or under ``if TYPE_CHECKING:``.
An import of ``a.b.c`` is an edge to ``a.b.c`` only, not to the packages above it: a package's ``__init__``
importing its own submodules would otherwise make every package a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

import dropout_tune

PACKAGE_DIR = Path(dropout_tune.__file__).parent
PACKAGE = "dropout_tune"
COMMANDS = f"{PACKAGE}.commands"
# The only modules allowed to import the commands: the commands themselves and the entry point.
COMMAND_LAYER = (COMMANDS, f"{PACKAGE}.cli")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE_DIR.rglob("*.py"))}


def imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """The ``dropout_tune`` modules that ``name`` (the module at ``path``) imports anywhere in its body."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                # Relative: level 1 is this module's package (a package's __init__ is its own package).
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            # `from pkg import sub` imports the module pkg.sub when there is one, else a name of pkg.
            found.update(f"{source}.{alias.name}" if f"{source}.{alias.name}" in known else source
                         for alias in node.names)
    return {target for target in found if target in known and target != name}


def import_graph() -> nx.DiGraph:
    modules = package_modules()
    graph = nx.DiGraph()
    graph.add_nodes_from(modules)
    for name, path in modules.items():
        graph.add_edges_from((name, target) for target in imported_modules(name, path, set(modules)))
    return graph


def is_within(module: str, tops: tuple[str, ...]) -> bool:
    return any(module == top or module.startswith(top + ".") for top in tops)


def test_the_graph_sees_module_level_function_level_and_relative_imports():
    graph = import_graph()
    assert {PACKAGE, f"{PACKAGE}.data", f"{PACKAGE}.data.tasks", f"{PACKAGE}.cli", COMMANDS} <= set(graph)
    assert graph.has_edge(f"{PACKAGE}.data", f"{PACKAGE}.data.tasks")  # `from .tasks import ...` in __init__
    assert graph.has_edge(f"{PACKAGE}.train", f"{PACKAGE}.data")  # `from .data import load_task` in a function
    assert graph.has_edge(f"{PACKAGE}.commands.data", f"{PACKAGE}.data.tasks")  # `from ..data.tasks import`


def test_no_import_cycles():
    cycles = [sorted(component) for component in nx.strongly_connected_components(import_graph())
              if len(component) > 1]
    assert not cycles, f"import cycles (strongly connected modules): {cycles}"


def test_no_library_module_imports_the_command_layer():
    graph = import_graph()
    offenders = sorted(f"{source} -> {target}" for source, target in graph.edges
                       if is_within(target, (COMMANDS,)) and not is_within(source, COMMAND_LAYER))
    assert not offenders, f"library modules importing dropout_tune.commands: {offenders}"


def test_the_config_layer_imports_no_engine():
    """recipe.py and spec.py are read by every layer; they must not pull in training, MC, compare or tune."""
    modules = package_modules()
    known = set(modules)
    engines = ("dropout_tune.mc", "dropout_tune.tune", "dropout_tune.train", "dropout_tune.compare",
               "dropout_tune.evaluation", "dropout_tune.patching")
    for name in ("dropout_tune.recipe", "dropout_tune.spec"):
        imported = imported_modules(name, modules[name], known)
        assert not [m for m in imported if m.startswith(engines)], (name, imported)
