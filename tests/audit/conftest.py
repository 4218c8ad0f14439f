"""Fixtures of the audit log's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from audit.schema import migrate_audit
from controlplane.storage import make_engine


@pytest.fixture
def audit_engine(database_url: str) -> Iterator[Engine]:
    """The test's database (SQLite or PostgreSQL) with the audit log's schema."""
    engine = make_engine(database_url)
    migrate_audit(engine)
    yield engine
    engine.dispose()
