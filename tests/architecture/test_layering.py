"""The layering holds: ``firmware_export`` (the lower layer, .tflite -> C) never imports
``lenet_edge``, and no module of either package takes part in an import cycle.

Read from the source with ``ast``, so that an import inside a function counts too for the
direction rule; cycles are checked on module-level imports (those run at import time).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ROOT

PACKAGES = ("lenet_edge", "firmware_export")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _imports(path: Path, name: str, *, top_level_only: bool) -> set[str]:
    """Absolute names of the project modules imported by one file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_pkg = path.name == "__init__.py"
    nodes = _import_time_nodes(tree) if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = name.split(".") if is_pkg else name.split(".")[:-1]
                pkg = pkg[: len(pkg) - (node.level - 1)]
                base = ".".join([*pkg, base]) if base else ".".join(pkg)
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return {m for m in found if m.split(".")[0] in PACKAGES}


def _import_time_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node that runs when the module is imported: all but function bodies and the
    ``if TYPE_CHECKING:`` blocks (read by type checkers only)."""
    out: list[ast.AST] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        out.append(node)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))
    return out


def test_firmware_export_never_imports_lenet_edge() -> None:
    offenders = {
        name: sorted(m for m in _imports(path, name, top_level_only=False) if "lenet_edge" in m)
        for name, path in _modules().items()
        if name.startswith("firmware_export")
    }
    offenders = {k: v for k, v in offenders.items() if v}
    assert not offenders, f"firmware_export must not import lenet_edge: {offenders}"


def test_firmware_export_imports_alone() -> None:
    """Importing every firmware_export module loads no lenet_edge module (and no TensorFlow)."""
    names = sorted(n for n in _modules() if n.startswith("firmware_export"))
    code = (
        "import importlib, sys\n"
        f"for n in {names!r}: importlib.import_module(n)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('lenet_edge', 'tensorflow'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert out.stdout.strip() == "", out.stdout


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return [*stack[stack.index(m) :], m]
            if m not in state and (found := visit(m)):
                return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (found := visit(n)):
            return found
    return None


def test_no_import_cycles() -> None:
    mods = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        deps = {m for m in _imports(path, name, top_level_only=True) if m in mods}
        # A package's __init__ is loaded by each of its submodules: not an edge of its own.
        graph[name] = {d for d in deps if d != name and not name.startswith(d + ".")}
    cycle = _cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


@pytest.mark.parametrize(
    ("graph", "has_cycle"),
    [({"a": {"b"}, "b": {"a"}}, True), ({"a": {"b"}, "b": {"c"}, "c": set()}, False)],
)
def test_cycle_finder_finds_cycles(graph: dict[str, set[str]], has_cycle: bool) -> None:
    """The checker itself can fail."""
    assert (_cycle(graph) is not None) is has_cycle
