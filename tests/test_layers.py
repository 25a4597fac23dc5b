"""The import rule of the package, read from the source with ``ast`` (lazy imports included).

    front (cli, api, the package's lazy exports) -> runs -> runkit
        -> settings, run records, reports -> {engine, prune} -> {models, data}
        -> {metrics, flops, fileio, errors, progress, ...}

A module may import its own layer and the layers below it; ``engine`` and ``prune`` do not
import each other; nothing imports ``cli`` or ``runs`` but the front (and bench/ and tests):
``runs/`` holds the subcommands only, and what several of them share lives in ``runkit/``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "dreamprune_cli"

LAYERS: list[tuple[str, set[str]]] = [
    ("front", {"cli", "__main__", "api", "__init__", "console"}),
    ("runs", {"runs"}),
    ("run parts", {"runkit"}),
    ("shared by runs", {"settings", "run_record", "report"}),
    ("engine and prune", {"engine", "prune"}),
    ("models and data", {"models", "data"}),
    ("base", {"metrics", "flops", "fileio", "errors", "progress", "interrupts", "finite"}),
]
RANK = {unit: rank for rank, (_, units) in enumerate(LAYERS) for unit in units}
APART = [{"engine", "prune"}]  # same layer, but neither imports the other


def _unit(module: str) -> str | None:
    """``dreamprune_cli.prune.spec`` -> ``prune``; ``dreamprune_cli.cli`` -> ``cli``."""
    parts = module.split(".")
    if parts[0] != "dreamprune_cli":
        return None
    return parts[1] if len(parts) > 1 else "__init__"


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, module, names) of every import in ``path``, nested ones included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module, [alias.name for alias in node.names]))
    return found


def _own_unit(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def test_every_module_has_a_layer() -> None:
    units = {_own_unit(path) for path in _modules()}
    assert units <= set(RANK), f"modules without a layer: {sorted(units - set(RANK))}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_follow_the_layers(path: Path) -> None:
    own = _own_unit(path)
    problems = []
    for line, module, names in _imports(path):
        unit = _unit(module)
        if unit is None or unit == own:
            continue
        if unit == "__init__" and names == ["__version__"]:
            continue  # the version string, which every layer may read
        if RANK[unit] < RANK[own]:
            problems.append(f"line {line}: {own} ({LAYERS[RANK[own]][0]}) imports {module} "
                            f"({LAYERS[RANK[unit]][0]}, a layer above)")
        elif any({own, unit} == apart for apart in APART):
            problems.append(f"line {line}: {own} imports {module}; {own} and {unit} stay apart")
    assert not problems, "\n".join(problems)


def test_runs_holds_only_subcommands() -> None:
    """Each module of ``runs/`` is a subcommand: it defines ``run``. What several subcommands
    share lives in ``runkit/`` (or below), never in ``runs/``."""
    helpers = []
    for path in sorted((PACKAGE / "runs").glob("*.py")):
        if path.name == "__init__.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        if not any(isinstance(node, ast.FunctionDef) and node.name == "run"
                   for node in tree.body):
            helpers.append(path.name)
    assert not helpers, f"runs/ modules that are not subcommands (no run()): {helpers}"


def test_no_subcommand_imports_another() -> None:
    """A subcommand never serves as another's library: ``runs/`` modules import no other
    ``runs/`` module (what ``prune`` and ``pipeline`` share is ``runkit/pruning.py``)."""
    problems = []
    for path in sorted((PACKAGE / "runs").glob("*.py")):
        if path.name == "__init__.py":
            continue
        for line, module, names in _imports(path):
            imported = {module} | {f"{module}.{name}" for name in names}
            if any(m.startswith("dreamprune_cli.runs.") or m == "dreamprune_cli.runs"
                   for m in imported):
                problems.append(f"runs/{path.name} line {line}: imports {module} {names}")
    assert not problems, "\n".join(problems)


def test_the_rule_catches_a_violation(tmp_path: Path) -> None:
    """The parser sees lazy imports inside functions, the way the package writes them."""
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from dreamprune_cli.runkit.context import generator\n")
    assert _imports(source) == [(2, "dreamprune_cli.runkit.context", ["generator"])]
    assert RANK["runs"] < RANK["runkit"] < RANK["engine"]
