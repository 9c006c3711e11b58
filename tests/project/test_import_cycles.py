"""No import cycle between the project's modules, hidden or not: every import counts, at module level, inside a
function (a lazy import) or under `if TYPE_CHECKING:`. A cycle hidden behind a lazy import still ties two
modules into one unit of change; the layering it breaks is registry -> runners -> reports' data flow."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.helpers import PROJECT_ROOT

ROOT = PROJECT_ROOT
PACKAGES = ("registry", "runners", "reports")


def project_modules() -> dict[str, Path]:
    """Dotted module name -> file, a package by its __init__.py."""
    out = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules `name` imports anywhere in its file. `from a.b import c` is an edge to a.b.c when that
    is a module, else to a.b; relative imports are resolved against the package."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] in PACKAGES}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            if base.split(".")[0] not in PACKAGES:
                continue
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return {m for m in found if m in modules and m != name}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_cycle_finder_finds_a_cycle_through_a_lazy_import():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_between_project_modules():
    modules = project_modules()
    graph = {}
    for name, path in modules.items():
        # a package's __init__ re-exports its modules: an edge from a module to its own package's __init__ is
        # Python importing the parent first, not a dependency of the module on its siblings
        graph[name] = {m for m in imports_of(name, path, modules) if not name.startswith(m + ".")}
    assert cycles(graph) == []
