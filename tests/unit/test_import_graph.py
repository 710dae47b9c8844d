"""No import cycles inside ``lama_cleaner``, read from the source with ``ast`` (nothing is imported).

Why: a cycle means two modules cannot be understood, tested or moved apart, and the layout of
``plugins/distributed/`` by role (wire, journal, scheduler, node, producer) only shows the
architecture if the dependencies between those folders run one way.

Every import counts, wherever it is written: at the top, inside a function (a lazy import), under
``if TYPE_CHECKING:`` or in a ``try``. A lazy import that closes a cycle only hides it from the
interpreter; the two modules still depend on each other. The few edges that must stay are listed in
:data:`ALLOWED`, each with its reason, must be lazy, and must still close a cycle (a stale exception
fails too, so the list only shrinks).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.server_process import REPO_ROOT

PACKAGE = "lama_cleaner"

ALLOWED: dict[tuple[str, str], str] = {
    ("lama_cleaner", "lama_cleaner.cli"): (
        "``lama_cleaner.entry_point`` is upstream's console-script name and must forward to the CLI, "
        "which reads ``__version__`` from the package; the import is inside the function, so it runs "
        "only once both modules are loaded."
    ),
}
"""(importer, imported) edges left out of the cycle check, each lazy, each with the reason it stays."""


@dataclass(frozen=True)
class Edge:
    """One import statement from ``source`` of ``target`` (both dotted module names)."""

    source: str
    target: str
    path: Path
    line: int
    lazy: bool
    """Inside a function body (runs when called, not when the module is imported)."""

    def where(self, root: Path) -> str:
        return f"{self.path.relative_to(root)}:{self.line}"


def module_files(root: Path, package: str) -> dict[str, tuple[Path, bool]]:
    """Dotted name -> (file, is a package ``__init__``) for every ``.py`` under ``root/package``."""
    modules = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        modules[".".join(parts)] = (path, is_package)
    return modules


def _nearest(name: str, modules: dict[str, tuple[Path, bool]]) -> str | None:
    """``name`` or its closest enclosing module we have a file for (``pkg.mod.attr`` -> ``pkg.mod``)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _function_lines(tree: ast.AST) -> set[int]:
    """Line numbers of the import statements written inside a function body."""
    lines = set()
    for func in ast.walk(tree):
        if isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            for node in ast.walk(func):
                if isinstance(node, ast.Import | ast.ImportFrom):
                    lines.add(node.lineno)
    return lines


def import_edges(root: Path, package: str) -> list[Edge]:
    """Every import of a module of ``package`` by a module of ``package``, at any level of nesting.

    ``from pkg import name`` depends on ``pkg.name`` when that is a module, else on ``pkg`` itself
    (its ``__init__``); ``import pkg.mod`` on ``pkg.mod``. Imports of other packages are ignored."""
    modules = module_files(root, package)
    edges = []
    for source, (path, is_package) in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        lazy_lines = _function_lines(tree)
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = source.split(".") if is_package else source.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    origin = ".".join([*base, node.module] if node.module else base)
                else:
                    origin = node.module or ""
                targets = [f"{origin}.{a.name}" if f"{origin}.{a.name}" in modules else origin for a in node.names]
            for name in targets:
                if name != package and not name.startswith(package + "."):
                    continue
                target = _nearest(name, modules)
                if target is not None and target != source:
                    edges.append(Edge(source, target, path, node.lineno, node.lineno in lazy_lines))
    return edges


def find_cycles(edges: list[Edge]) -> list[list[Edge]]:
    """One shortest cycle, as its edges, per strongly connected group of modules (Tarjan's algorithm)."""
    graph: dict[str, dict[str, Edge]] = {}
    for edge in edges:
        graph.setdefault(edge.source, {}).setdefault(edge.target, edge)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in graph.get(node, {}):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_shortest_cycle(min(group), group, graph) for group in groups]


def _shortest_cycle(start: str, group: set[str], graph: dict[str, dict[str, Edge]]) -> list[Edge]:
    """Breadth-first from ``start`` back to itself, staying inside its group."""
    paths: dict[str, list[Edge]] = {start: []}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for succ, edge in sorted(graph.get(node, {}).items()):
                if succ == start:
                    return [*paths[node], edge]
                if succ in group and succ not in paths:
                    paths[succ] = [*paths[node], edge]
                    following.append(succ)
        frontier = following
    raise AssertionError(f"{start} is in a cycle group but no cycle was found")  # pragma: no cover


def describe(cycle: list[Edge], root: Path) -> str:
    steps = [f"{edge.source} -> {edge.target} ({edge.where(root)}{', lazy' if edge.lazy else ''})" for edge in cycle]
    return "\n  ".join(steps)


def _reaches(edges: list[Edge], start: str, goal: str) -> bool:
    graph: dict[str, set[str]] = {}
    for edge in edges:
        graph.setdefault(edge.source, set()).add(edge.target)
    seen, todo = {start}, [start]
    while todo:
        for succ in graph.get(todo.pop(), ()):
            if succ == goal:
                return True
            if succ not in seen:
                seen.add(succ)
                todo.append(succ)
    return False


# ----------------------------------------------------------------------------------- the package


def test_lama_cleaner_has_no_import_cycle():
    edges = [e for e in import_edges(REPO_ROOT, PACKAGE) if (e.source, e.target) not in ALLOWED]
    cycles = find_cycles(edges)
    if cycles:
        pytest.fail(
            "import cycles (break them; see the module docstring):\n  "
            + "\n\n  ".join(describe(cycle, REPO_ROOT) for cycle in cycles),
            pytrace=False,
        )


def test_the_graph_sees_the_whole_package():
    """Guards the test above against reading nothing: the layout's known edges are all found."""
    edges = {(e.source, e.target) for e in import_edges(REPO_ROOT, PACKAGE)}
    dist = "lama_cleaner.plugins.distributed"
    for expected in [
        (f"{dist}.scheduler.service", f"{dist}.journal.task_store"),  # top level
        (f"{dist}.producer.executor", f"{dist}.scheduler.service"),  # lazy: the embedded scheduler
        (f"{dist}.journal.live_tasks", f"{dist}.journal.records"),
        ("lama_cleaner.pipeline", "lama_cleaner.image_plugins.builtin"),
        ("lama_cleaner.plugins.hookspecs", "lama_cleaner.image_plugins.registry"),  # under TYPE_CHECKING
    ]:
        assert expected in edges, expected


@pytest.mark.parametrize(("source", "target"), sorted(ALLOWED))
def test_each_allowed_edge_is_lazy_and_still_needed(source, target):
    all_edges = import_edges(REPO_ROOT, PACKAGE)
    found = [e for e in all_edges if (e.source, e.target) == (source, target)]
    assert found, f"{source} no longer imports {target}: remove the exception from ALLOWED"
    eager = [e.where(REPO_ROOT) for e in found if not e.lazy]
    assert not eager, f"an allowed cycle edge must be a lazy import, found at the top level: {eager}"
    others = [e for e in all_edges if (e.source, e.target) not in ALLOWED]
    assert _reaches(others, target, source), (
        f"{source} -> {target} no longer closes a cycle: remove the exception from ALLOWED"
    )


# ------------------------------------------------------------------------- the checker itself


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_the_checker_reports_lazy_and_type_checking_cycles(tmp_path):
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "def f():\n    from .b import g\n",
            "pkg/b.py": "from . import a\n",
            "pkg/sub/__init__.py": "",
            "pkg/sub/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..d import D\n",
            "pkg/d.py": "import pkg.sub.c\nimport os\n",
            "pkg/e.py": "from .a import f\nfrom pkg import d\n",  # depends on both cycles, closes neither
        },
    )
    edges = import_edges(tmp_path, "pkg")
    cycles = sorted([sorted((e.source, e.target, e.line, e.lazy) for e in c) for c in find_cycles(edges)])
    assert cycles == [
        [("pkg.a", "pkg.b", 2, True), ("pkg.b", "pkg.a", 1, False)],
        [("pkg.d", "pkg.sub.c", 1, False), ("pkg.sub.c", "pkg.d", 3, False)],
    ]
    text = describe(find_cycles(edges)[0], tmp_path)
    assert "pkg.a -> pkg.b (pkg/a.py:2, lazy)" in text and "pkg.b -> pkg.a (pkg/b.py:1)" in text


def test_the_checker_accepts_a_graph_without_cycles(tmp_path):
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "from .a import x\n",  # a package exporting its module is not a cycle
            "pkg/a.py": "from .b import y\nx = y\n",
            "pkg/b.py": "import json\ny = 1\n",
        },
    )
    edges = import_edges(tmp_path, "pkg")
    assert {(e.source, e.target) for e in edges} == {("pkg", "pkg.a"), ("pkg.a", "pkg.b")}
    assert find_cycles(edges) == []
