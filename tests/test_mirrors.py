"""Every module of the package has a test file of its own name, mirroring the package's tree.

    dreamprune_cli/A.py      -> tests/test_A.py
    dreamprune_cli/P/A.py    -> tests/P/test_A.py
    dreamprune_cli/P/Q/A.py  -> tests/P/test_Q_A.py   (prune/channel/allocate.py ->
                                                      tests/prune/test_channel_allocate.py)

``__init__.py`` and ``__main__.py`` are not modules of their own here. The modules in
:data:`ELSEWHERE` (none today) would be tested in a file of another name, named beside each;
the list may only shrink: a module in it that gains its own file must leave it.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "dreamprune_cli"
TESTS = ROOT / "tests"
SKIPPED = {"__init__.py", "__main__.py"}

ELSEWHERE: dict[str, str] = {}
"""Module (path under ``dreamprune_cli/``, no suffix) -> the test file that covers it now."""


def modules(root: Path = PACKAGE) -> list[str]:
    """``data/noise``, ``prune/channel/allocate``, ...: every module under ``root``."""
    return sorted(path.relative_to(root).with_suffix("").as_posix()
                  for path in root.rglob("*.py")
                  if path.name not in SKIPPED and "__pycache__" not in path.parts)


def mirror(module: str) -> str:
    """The test file of ``module`` by the naming rule (module docstring)."""
    first, *rest = module.split("/")
    if not rest:
        return f"tests/test_{first}.py"
    return f"tests/{first}/test_{'_'.join(rest)}.py"


def unmirrored(root: Path = ROOT) -> list[str]:
    """Modules under ``root/dreamprune_cli`` without their test file under ``root``."""
    return [m for m in modules(root / "dreamprune_cli") if not (root / mirror(m)).is_file()]


def test_every_module_has_its_test_file() -> None:
    missing = [m for m in unmirrored() if m not in ELSEWHERE]
    assert not missing, "modules without a test file of their own name:\n" + "\n".join(
        f"  dreamprune_cli/{m}.py -> {mirror(m)}" for m in missing)


def test_the_exceptions_are_current() -> None:
    """Each module of :data:`ELSEWHERE` exists, still lacks its file, and its tests are where
    the list says."""
    known = set(modules())
    stale = [m for m in ELSEWHERE if m not in known or (ROOT / mirror(m)).is_file()]
    assert not stale, f"remove from ELSEWHERE (gone, or mirrored now): {stale}"
    lost = [f for f in ELSEWHERE.values() if not (ROOT / f).is_file()]
    assert not lost, f"ELSEWHERE names test files that do not exist: {lost}"


def test_the_rule_by_example(tmp_path: Path) -> None:
    assert mirror("errors") == "tests/test_errors.py"
    assert mirror("data/noise") == "tests/data/test_noise.py"
    assert mirror("prune/channel/allocate") == "tests/prune/test_channel_allocate.py"
    for relative in ("dreamprune_cli/__init__.py", "dreamprune_cli/__main__.py",
                     "dreamprune_cli/a.py", "dreamprune_cli/p/b.py", "dreamprune_cli/p/q/c.py",
                     "dreamprune_cli/p/d.py", "tests/test_a.py", "tests/p/test_q_c.py"):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text("")
    assert modules(tmp_path / "dreamprune_cli") == ["a", "p/b", "p/d", "p/q/c"]
    assert unmirrored(tmp_path) == ["p/b", "p/d"]
