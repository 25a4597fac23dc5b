"""The documentation's structure: the README's and bench/README's relative links resolve,
and every page under docs/ is in mkdocs.yml's nav (``mkdocs build --strict`` in .ci/run
checks the site's own links)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.mark.parametrize("page", ["README.md", "bench/README.md"])
def test_relative_links_resolve(page: str) -> None:
    source = ROOT / page
    targets = [t.split("#")[0] for t in LINK.findall(source.read_text(encoding="utf-8"))
               if not re.match(r"[a-z]+:", t)]
    missing = [t for t in targets if t and not (source.parent / t).exists()]
    assert not missing, f"{page} links to missing files: {missing}"


def test_every_docs_page_is_in_the_nav() -> None:
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    pages = sorted(p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md"))
    missing = [p for p in pages if not re.search(rf":\s*{re.escape(p)}\s*$", nav, re.M)]
    assert not missing, f"docs pages missing from mkdocs.yml's nav: {missing}"


def test_readme_is_a_front_page() -> None:
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 300


def test_changelog_has_the_current_version_and_unreleased_first() -> None:
    """Keep a Changelog: ``[Unreleased]`` on top, then a dated section for the version
    ``dreamprune --version`` prints, newest first."""
    from dreamprune_cli import __version__

    headings = re.findall(r"^## \[([^\]]+)\](?: - (\d{4}-\d{2}-\d{2}))?$",
                          (ROOT / "CHANGELOG.md").read_text(encoding="utf-8"), re.M)
    assert headings[0] == ("Unreleased", "")
    versions = [name for name, _ in headings[1:]]
    assert versions[0] == __version__, f"newest CHANGELOG section {versions[0]}, package {__version__}"
    assert all(date for _, date in headings[1:])
    numbers = [tuple(int(part) for part in v.split(".")) for v in versions]
    assert numbers == sorted(numbers, reverse=True)


def _command_options() -> dict[str, set[str]]:
    """Every subcommand's flags, read from the Typer app (``--cache/--no-cache`` gives both)."""
    import typer

    from dreamprune_cli.cli import app

    group = typer.main.get_command(app)
    found: dict[str, set[str]] = {}
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        if hasattr(command, "commands"):  # a group of its own (config)
            continue
        found[name] = {opt for param in command.params
                       for opt in [*param.opts, *getattr(param, "secondary_opts", [])]
                       if opt.startswith("--")}
    return found


def test_usage_synopses_name_only_real_flags() -> None:
    """Each ``## `dreamprune CMD` `` section's synopsis (its first bash block) names flags the
    command has, so the manual cannot drift from ``--help`` unseen."""
    text = (ROOT / "docs" / "usage.md").read_text(encoding="utf-8")
    options = _command_options()
    checked, stale = 0, []
    for match in re.finditer(r"^## `dreamprune ([a-z]+)`\n```bash\n(.*?)```", text, re.M | re.S):
        command, synopsis = match.groups()
        if command not in options:
            continue
        checked += 1
        flags = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", synopsis))
        stale += [f"{command} {flag}" for flag in sorted(flags - options[command])]
    assert checked >= 6, f"only {checked} synopses found"
    assert not stale, f"docs/usage.md names flags the command lacks: {stale}"
