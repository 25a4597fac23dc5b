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
