"""The package's layers, as its docstring lists them: imports point down, never in a circle.

Every ``import`` and ``from ... import`` in the package is read with
:mod:`ast` (those inside functions and ``if TYPE_CHECKING:`` blocks too,
since they say what a module needs), resolved to a module of the package,
and checked against the numbered list of layers in
``netkeepalive/__init__.py``'s docstring.  Nothing is imported or run.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Dict, List, Set, Tuple

import netkeepalive

PACKAGE = Path(netkeepalive.__file__).resolve().parent
ROOT = "netkeepalive"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> Dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def layers() -> List[List[str]]:
    """The docstring's numbered layers, bottom first, as module name prefixes."""
    doc = netkeepalive.__doc__ or ""
    found: List[List[str]] = []
    for item in re.split(r"\n(?=\d+\. )", doc.split("Layers, bottom up", 1)[1])[1:]:
        number, text = item.split(". ", 1)
        assert int(number) == len(found) + 1, f"layer {number} out of order"
        names = [ROOT + name for name in re.findall(r":mod:`(\.[\w.]+)`", text)]
        if "this module" in text:
            names.append(ROOT)
        assert names, f"layer {number} names no module"
        found.append(names)
    return found


def layer_of(name: str, table: List[List[str]]) -> int:
    """The layer of module *name*: the layer listing it or its closest package."""
    best: Tuple[int, int] = (-1, -1)
    for number, names in enumerate(table, 1):
        for prefix in names:
            if name == prefix or (prefix != ROOT and name.startswith(prefix + ".")):
                best = max(best, (len(prefix), number))
    assert best[1] > 0, f"{name} is on no layer of netkeepalive/__init__.py's docstring"
    return best[1]


def imports(name: str, path: Path, known: Set[str]) -> Set[str]:
    """The package modules *name* imports (a package's own ``__init__`` counts as itself)."""
    is_package = path.name == "__init__.py"
    found: Set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            # "from . import _backends" imports a module; "from .x import y" a name of x.
            targets = [
                f"{origin}.{alias.name}" if f"{origin}.{alias.name}" in known else origin
                for alias in node.names
            ]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target.startswith(ROOT) and target != name:
                found.add(target)
    return found


def graph() -> Dict[str, Set[str]]:
    found = modules()
    return {name: imports(name, path, set(found)) for name, path in found.items()}


def circles(edges: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    groups: List[List[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                group.append(top)
                if top == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return groups


def test_every_module_is_on_a_layer() -> None:
    table = layers()
    assert len(table) >= 10
    for name in modules():
        layer_of(name, table)


def test_no_import_points_up() -> None:
    table = layers()
    upward = [
        f"{name} (layer {layer_of(name, table)}) imports {target} (layer {layer_of(target, table)})"
        for name, targets in graph().items()
        for target in sorted(targets)
        if layer_of(target, table) > layer_of(name, table)
    ]
    assert not upward, "\n".join(upward)


def test_no_modules_import_each_other_in_a_circle() -> None:
    assert circles(graph()) == []


def test_the_checks_see_what_they_check() -> None:
    """The reader finds relative, lazy and type-checking imports, and the checks can fail."""
    edges = graph()
    assert "netkeepalive._backends" in edges["netkeepalive._fd"]  # inside a function
    assert "netkeepalive.cgroup" in edges["netkeepalive.cli._report"]  # under TYPE_CHECKING
    assert "netkeepalive._linux._procfs" in edges["netkeepalive._linux._pidfd"]  # from . import
    assert "netkeepalive" in edges["netkeepalive.cli"]  # from .. import __version__
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    table = layers()
    assert layer_of("netkeepalive._linux._bpf", table) == layer_of("netkeepalive._linux", table)
    assert layer_of("netkeepalive.errors", table) < layer_of("netkeepalive._api", table)
    assert layer_of("netkeepalive.cli._retrofit", table) > layer_of("netkeepalive.cgroup", table)
