"""The package's shape, as ARCHITECTURE.md draws it: imports go down the floors (or sideways inside one
folder), no two modules import each other round a circle, the top holds the front door only, and no
module grows past 500 lines."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.helpers import REPO

PACKAGE = REPO / "chatspace"
#: Floors from the ground up; a folder imports only folders on lower floors.
FLOORS = {
    "errors": 0,
    "logs": 0,
    "redact": 0,
    "stats": 0,
    "config": 1,
    "hardware": 1,
    "data": 2,
    "store": 3,
    "encoders": 3,
    "pool": 4,
    "maps": 4,
    "query": 4,
    "cli": 5,
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[str]:
    """Every chatspace module this file imports, at module level or inside a function."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [node.module] + [f"{node.module}.{a.name}" for a in node.names]
    return [name for name in found if name.split(".")[0] == "chatspace"]


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {
        name: {target for target in _imports(path) if target in modules and target != name}
        for name, path in modules.items()
    }


def _floor_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None  # None: the package's own __init__ (the Python API)


def test_imports_only_go_down():
    upward = []
    for source, targets in _graph().items():
        for target in targets:
            a, b = _floor_of(source), _floor_of(target)
            if a is None or b is None or a == b:
                continue  # the lazy public API, or sideways inside one folder
            assert a in FLOORS and b in FLOORS, f"{source} or {target} is on no floor: add it to FLOORS"
            if FLOORS[b] >= FLOORS[a] and not (FLOORS[a] == FLOORS[b] == 0):
                upward.append(f"{source} -> {target}")
    assert upward == []


def test_no_import_circles():
    graph = _graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    circles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                circles.append(" -> ".join([*path[path.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert circles == []


def test_the_top_is_the_front_door_only():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= 6, top


def test_no_module_over_500_lines():
    files = [*PACKAGE.rglob("*.py"), *(REPO / "benchmarks").rglob("*.py"), *(REPO / "tests").rglob("*.py")]
    long = {str(p.relative_to(REPO)): n for p in files if (n := len(p.read_text().splitlines())) > 500}
    assert long == {}
