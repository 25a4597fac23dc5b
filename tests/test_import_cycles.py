"""No import circles inside the package, read from the source with ``ast`` (lazy imports included).

The graph has one node per module of ``dreamprune_cli`` (a package is its ``__init__``) and an
edge ``a -> b`` for every import in ``a`` of ``b``: top-level imports, imports inside functions
(a lazy import only hides a circle until the function runs) and imports under
``if TYPE_CHECKING:`` (a circle for type checkers and readers) alike. Two things are not edges:

* ``from dreamprune_cli import __version__``: the version string, which every layer may read
  (as in ``tests/test_layers.py``); the package's ``__init__`` imports nothing of its own at
  run time;
* the parent packages that Python initialises on the way to a submodule (``import a.b.c``
  runs ``a/__init__`` and ``a/b/__init__`` first): the edge goes to the module named, and to a
  package's ``__init__`` only when the package itself is imported (``from a.b import name``
  where ``name`` is not a submodule).

A circle is a strongly connected component with more than one module (or a module importing
itself); the test prints each one as a path ``a -> b -> ... -> a`` with the line of each import.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "dreamprune_cli"


def module_names(root: Path = PACKAGE) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package under ``root``."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        parts = [root.name, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def _import_nodes(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement, nested ones included, in line order."""
    return sorted((node for node in ast.walk(tree)
                   if isinstance(node, (ast.Import, ast.ImportFrom))),
                  key=lambda node: node.lineno)


def _resolve_relative(module: str, path: Path, node: ast.ImportFrom) -> str:
    """The absolute module of a relative ``from .x import y`` in ``module`` (file ``path``)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    parts = package.split(".")
    base = parts[:len(parts) - (node.level - 1)] if node.level > 1 else parts
    return ".".join([*base, node.module] if node.module else base)


def import_graph(root: Path = PACKAGE) -> dict[str, dict[str, int]]:
    """Module -> {imported module of the package: line of the first such import}."""
    modules = module_names(root)
    graph: dict[str, dict[str, int]] = {name: {} for name in modules}
    for name, path in modules.items():
        edges = graph[name]
        for node in _import_nodes(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = (_resolve_relative(name, path, node) if node.level
                        else node.module or "")
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules
                           else base for alias in node.names
                           if (base, alias.name) != (root.name, "__version__")]
            for target in targets:
                if target in modules:
                    edges.setdefault(target, node.lineno)
    return graph


def strongly_connected(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Tarjan's strongly connected components, iteratively; each sorted, in a stable order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    components.append(sorted(component))
    return sorted(components)


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components that are circles (more than one module, or a self
    import)."""
    return [c for c in strongly_connected(graph)
            if len(c) > 1 or c[0] in graph[c[0]]]


def describe(component: list[str], graph: dict[str, dict[str, int]]) -> str:
    """One circle through ``component``, as ``a (line n) -> b (line m) -> ... -> a``, found by a
    breadth-first search from its first module back to itself inside the component."""
    members = set(component)
    start = component[0]
    previous: dict[str, str] = {}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for child in sorted(graph[node]):
            if child not in members:
                continue
            if child == start:
                path = [node]
                while path[-1] != start:
                    path.append(previous[path[-1]])
                path.reverse()
                hops = [f"{a} (line {graph[a][b]})"
                        for a, b in zip(path, [*path[1:], start])]
                return " -> ".join([*hops, start]) + f"   [component: {', '.join(component)}]"
            if child not in previous:
                previous[child] = node
                queue.append(child)
    raise AssertionError(f"no circle found through {component}")  # pragma: no cover


def test_no_import_cycles() -> None:
    graph = import_graph()
    found = cycles(graph)
    assert not found, "import circles:\n" + "\n".join(describe(c, graph) for c in found)


def test_the_graph_sees_the_package() -> None:
    graph = import_graph()
    assert "dreamprune_cli.prune.depth.plan" in graph  # subpackages included
    assert "dreamprune_cli.models.registry" in graph["dreamprune_cli.models"]


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "pkg"
    for relative, source in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source, encoding="utf-8")
    return root


def test_the_check_catches_a_lazy_circle(tmp_path: Path) -> None:
    """A circle closed only by an import inside a function is still a circle, and is printed."""
    root = _package(tmp_path, {
        "__init__.py": "",
        "sub/__init__.py": "",
        "sub/a.py": "from pkg.sub.b import thing\n",
        "sub/b.py": "import os\n\ndef f():\n    from pkg.sub import c\n",
        "sub/c.py": "from . import a\n",
        "sub/d.py": "from pkg.sub.a import thing\n",
    })
    graph = import_graph(root)
    assert graph["pkg.sub.b"] == {"pkg.sub.c": 4}
    found = cycles(graph)
    assert found == [["pkg.sub.a", "pkg.sub.b", "pkg.sub.c"]]
    assert describe(found[0], graph).startswith(
        "pkg.sub.a (line 1) -> pkg.sub.b (line 4) -> pkg.sub.c (line 1) -> pkg.sub.a")


def test_the_check_counts_type_checking_but_not_the_version_or_parents(tmp_path: Path) -> None:
    root = _package(tmp_path, {
        "__init__.py": "__version__ = '1'\nfrom typing import TYPE_CHECKING\n"
                       "if TYPE_CHECKING:\n    from pkg.a import x\n",
        "a.py": "from pkg import __version__\nimport pkg.sub.b\n",
        "sub/__init__.py": "from pkg.sub.b import y\n",
        "sub/b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                    "    from pkg.sub.c import z\ny = 1\n",
        "sub/c.py": "from pkg.sub.b import y\nz = 2\n",
    })
    graph = import_graph(root)
    assert graph["pkg"] == {"pkg.a": 4}
    assert graph["pkg.a"] == {"pkg.sub.b": 2}
    assert cycles(graph) == [["pkg.sub.b", "pkg.sub.c"]]
