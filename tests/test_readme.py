"""The README stays true: it starts with the two commands and documents every setting of both systems."""

from __future__ import annotations

from pathlib import Path

import pytest

from controlplane.settings import Settings
from sample_platform.settings import PlatformSettings

README = (Path(__file__).parents[1] / "README.md").read_text()


def test_readme_starts_with_the_two_commands() -> None:
    head = README[:600]
    assert "make demo" in head and "make test" in head


@pytest.mark.parametrize(("model", "prefix"), [(Settings, "CONTROLPLANE_"), (PlatformSettings, "PLATFORM_")])
def test_readme_documents_every_setting(model: type, prefix: str) -> None:
    missing = [name for name in model.model_fields if f"`{prefix}{name.upper()}`" not in README]
    assert missing == []
