"""Import cycles among goldsmith's modules, read from the source (ast): nothing is imported.

    python scripts/import_cycles.py [--package-dir lib/goldsmith]

Two graphs: the module-level imports (what runs when a module is imported; `if TYPE_CHECKING:` blocks left out)
and all imports (the function-level ones too, which run when the function is called). Each prints its strongly
connected components of more than one module, with one cycle through each. An import names a module's
submodule when one exists (`from goldsmith.report import charts` -> `goldsmith.report.charts`), else the module
itself; the implicit import of a parent package is not an edge. Exit code 1 when the module-level graph has a
cycle.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterator
from pathlib import Path

Graph = dict[str, set[str]]


def module_names(package_dir: Path) -> dict[str, Path]:
    """Every module of the package by its dotted name (a package by its own name, from `__init__.py`)."""
    root = package_dir.parent
    found = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.Module) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement with whether it runs at module level (outside functions, outside TYPE_CHECKING)."""

    def walk(node: ast.AST, module_level: bool) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom):
                yield child, module_level
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                yield from walk(child, False)
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                for statement in child.body:  # never run; the else branch runs
                    yield from ((imp, False) for imp, _ in walk(ast.Module([statement], []), False))
                for statement in child.orelse:
                    yield from walk(ast.Module([statement], []), module_level)
            else:
                yield from walk(child, module_level)

    yield from walk(tree, True)


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The longest prefix of `name` that is one of the modules."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def import_graphs(package_dir: Path) -> tuple[Graph, Graph]:
    """(module-level graph, all-imports graph) of the package's modules."""
    modules = module_names(package_dir)
    top: Graph = {m: set() for m in modules}
    every: Graph = {m: set() for m in modules}
    for module, path in modules.items():
        is_package = path.name == "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node, module_level in _imports(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = module.split(".") if is_package else module.split(".")[:-1]
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join([*anchor, *([base] if base else [])])
                targets = [f"{base}.{alias.name}" for alias in node.names]
            for target in targets:
                resolved = _resolve(target, modules)
                if resolved is None or resolved == module:
                    continue
                every[module].add(resolved)
                if module_level:
                    top[module].add(resolved)
    return top, every


def strongly_connected(graph: Graph) -> list[list[str]]:
    """The components of more than one module (Tarjan), each sorted, largest first."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found, key=lambda c: (-len(c), c))


def one_cycle(graph: Graph, component: list[str]) -> list[str]:
    """A shortest cycle through the component's first module (breadth-first inside the component)."""
    members = set(component)
    start = component[0]
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for nxt in sorted(graph[node] & members):
            if nxt == start:
                return [*paths[node], start]
            if nxt not in paths:
                paths[nxt] = [*paths[node], nxt]
                queue.append(nxt)
    return component


def report(graph: Graph, title: str) -> list[list[str]]:
    components = strongly_connected(graph)
    print(f"{title}: {len(components)} cycle(s)")
    for component in components:
        print(f"  {len(component)} modules: {', '.join(component)}")
        print(f"    e.g. {' -> '.join(one_cycle(graph, component))}")
    return components


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package-dir", type=Path, default=Path(__file__).resolve().parents[1] / "lib" / "goldsmith")
    args = parser.parse_args(argv)
    top, every = import_graphs(args.package_dir)
    found = report(top, "module-level imports")
    report(every, "all imports (module- and function-level)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
