"""The shape of the code: the public API's edge, no import cycles, pyiceberg internals in one
module, and an ``import cascade`` that costs nothing until a run needs dlt or pyiceberg."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import cascade

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "cascade-core" / "src" / "cascade"
ADAPTERS = [
    ROOT / "cascade-cli" / "src",
    ROOT / "cascade-dagster" / "src",
    *sorted((ROOT / "plugins").glob("*/src")),
]
PUBLIC_SUBMODULES = {"testing", "hookspecs"}
HEAVY = ("dlt", "pyiceberg", "pandera", "pyarrow", "pandas", "structlog", "requests")


def python_files(*roots: Path) -> Iterator[Path]:
    for root in roots:
        yield from sorted(root.rglob("*.py"))


def module_name(path: Path) -> str:
    parts = list(path.relative_to(CORE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def runtime_imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement, at any depth, except those under ``if TYPE_CHECKING:``."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                yield from runtime_imports(ast.Module(body=[child], type_ignores=[]))
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        yield from runtime_imports(node)


def imported_cascade_modules(node: ast.Import | ast.ImportFrom, modules: set[str]) -> set[str]:
    """The ``cascade`` modules an import statement loads (a package's ``__init__`` included)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    elif node.level == 0 and node.module is not None:
        names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
    else:
        names = []
    found = set()
    for name in names:
        parts = name.split(".")
        found |= {".".join(parts[:end]) for end in range(2, len(parts) + 1)}
    return found & modules


def test_the_public_api_lists_every_export() -> None:
    exported = set(cascade._EXPORTS) | PUBLIC_SUBMODULES | {"__version__"}
    assert set(cascade.__all__) == exported
    for name in cascade.__all__:
        assert getattr(cascade, name) is not None, name


def test_no_public_name_is_shadowed_by_a_submodule() -> None:
    """Importing ``cascade.x`` sets the package's attribute ``x`` to the module, hiding a public ``x``."""
    shadowed = [name for name in cascade._EXPORTS if (CORE / f"{name}.py").exists() or (CORE / name).is_dir()]
    assert shadowed == []


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'merge_internals'"):
        cascade.merge_internals  # noqa: B018


def test_adapters_and_plugins_use_only_the_public_api() -> None:
    public = set(cascade.__all__)
    offences = []
    for path in python_files(*ADAPTERS):
        tree = ast.parse(path.read_text())
        where = path.relative_to(ROOT)
        shadowed = {  # a parameter named ``cascade`` (Dagster's resource key) is not the package
            id(inner)
            for function in ast.walk(tree)
            if isinstance(function, ast.FunctionDef) and "cascade" in {a.arg for a in function.args.args}
            for inner in ast.walk(function)
        }
        for node in ast.walk(tree):
            if id(node) in shadowed:
                continue
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                if node.module == "cascade":
                    offences += [f"{where}: cascade.{a.name}" for a in node.names if a.name not in public]
                elif node.module.startswith("cascade.") and node.module.split(".")[1] not in PUBLIC_SUBMODULES:
                    offences.append(f"{where}: from {node.module} import ...")
            elif isinstance(node, ast.Import):
                offences += [
                    f"{where}: import {a.name}"
                    for a in node.names
                    if a.name.startswith("cascade.") and a.name.split(".")[1] not in PUBLIC_SUBMODULES
                ]
            elif (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "cascade"
                and node.attr not in public
            ):
                offences.append(f"{where}:{node.lineno}: cascade.{node.attr}")
    assert offences == []


def test_the_import_graph_of_cascade_has_no_cycles() -> None:
    modules = {module_name(path) for path in python_files(CORE)}
    graph = {
        module_name(path): {
            imported
            for node in runtime_imports(ast.parse(path.read_text()))
            for imported in imported_cascade_modules(node, modules)
        }
        - ancestors(module_name(path))  # a package's own modules are loaded while it loads
        for path in python_files(CORE)
    }
    graph.pop("cascade")
    cycles = [cycle for cycle in strongly_connected(graph) if len(cycle) > 1]
    assert cycles == []


def ancestors(module: str) -> set[str]:
    parts = module.split(".")
    return {".".join(parts[:end]) for end in range(1, len(parts) + 1)}


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm: the graph's strongly connected components."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


PYICEBERG_PRIVATE_ATTRIBUTES = {"_do_commit", "_updates", "_requirements", "_stage", "_set_ref_snapshot", "_table"}


def test_pyiceberg_internals_are_used_in_the_compatibility_module_only() -> None:
    offences = []
    for path in python_files(CORE):
        if path.name == "pyiceberg_compat.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pyiceberg"):
                offences += [f"{path.name}: {node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
            elif isinstance(node, ast.Attribute) and node.attr in PYICEBERG_PRIVATE_ATTRIBUTES:
                offences.append(f"{path.name}:{node.lineno}: .{node.attr}")
    assert offences == []


def test_import_cascade_loads_no_heavy_dependency() -> None:
    code = f"import sys, cascade; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
