"""The README stays true: it documents every setting and starts with the two commands."""

from __future__ import annotations

from pathlib import Path

from controlplane.settings import Settings

README = (Path(__file__).parents[1] / "README.md").read_text()


def test_readme_starts_with_the_two_commands() -> None:
    head = README[:600]
    assert "make demo" in head and "make test" in head


def test_readme_documents_every_setting() -> None:
    missing = [name for name in Settings.model_fields if f"`CONTROLPLANE_{name.upper()}`" not in README]
    assert missing == []
