"""Settings for a whole control plane on the test database: the store and the audit log in it, audit
keys in the test's directory, and the shipped SLO, slice, event and checklist files."""

from __future__ import annotations

from pathlib import Path

import pytest

from controlplane.settings import Settings
from tests.conftest import SLICES_PATH

CONFIG = Path(__file__).parents[2] / "config"


@pytest.fixture
def controlplane_settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        environment="test",
        store_url=database_url,
        audit_url=database_url,
        audit_key_dir=tmp_path / "keys",
        change_log_path=tmp_path / "changes.jsonl",
        slices_path=SLICES_PATH,
        slos_path=CONFIG / "slos.yaml",
        events_path=CONFIG / "events.yaml",
        checklist_path=CONFIG / "checklist.yaml",
    )
