"""The README stays a guide for users: it starts with the two commands and links to every page of docs/
for the rest. Its length, links and paths, and the reference in docs/, are checked by tests/test_docs.py."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text()


def test_readme_starts_with_the_two_commands() -> None:
    head = "\n".join(README.splitlines()[:8])
    assert "make demo" in head and "make test" in head


def test_readme_links_to_every_page_of_the_docs() -> None:
    pages = sorted(path.relative_to(ROOT).as_posix() for path in (ROOT / "docs").glob("*.md"))
    assert pages, "docs/ holds no pages"
    missing = [page for page in pages if f"]({page}" not in README]
    assert missing == []
