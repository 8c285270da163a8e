"""Imports among the ``exporter`` modules go one way: no module reaches back, directly or through others, to one
that imports it. Read from the source with :mod:`ast`, so an import inside a function (the lazy kind that hides a
cycle until the function runs) counts like one at the top of a module."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import exporter

PACKAGE = Path(exporter.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(module: str) -> Iterator[str]:
    """The ``exporter`` modules ``module`` imports when it runs (a submodule named in ``from package import x``
    counts as that submodule); imports under ``if TYPE_CHECKING:`` are never executed and are left out."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    skipped = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and _type_checking_only(node)
        for n in ast.walk(node)
    }
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name in MODULES)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            for alias in node.names:
                if f"{base}.{alias.name}" in MODULES:
                    yield f"{base}.{alias.name}"
                elif base in MODULES:
                    yield base


GRAPH = {module: sorted(set(_imports(module)) - {module}) for module in MODULES}


def _cycle_from(start: str) -> list[str] | None:
    """A shortest import path from ``start`` back to itself, or None."""
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for module in frontier:
            for imported in GRAPH[module]:
                if imported == start:
                    return [*paths[module], start]
                if imported not in paths:
                    paths[imported] = [*paths[module], imported]
                    following.append(imported)
        frontier = following
    return None


def test_the_graph_sees_lazy_imports_and_submodules() -> None:
    assert "exporter.app" in GRAPH["exporter.cli"]  # imported inside serve()
    assert "exporter.metrics.checkpoints" in GRAPH["exporter.landing"]  # from exporter.metrics import checkpoints


def test_no_module_imports_itself_through_others() -> None:
    cycles = {" -> ".join(cycle) for module in GRAPH if (cycle := _cycle_from(module)) is not None}
    assert not cycles, "import cycles:\n" + "\n".join(sorted(cycles))
