"""Fixtures for dashboard users: settings whose audit log shares the test database, a fixed clock, and
a reader of the audit log's entries."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from audit.schema import entries, migrate_audit
from controlplane.settings import Settings
from controlplane.storage import make_engine

NOW = datetime(2030, 3, 1, 12, 0, tzinfo=UTC)
PASSWORD = "derby night at the ground"


@pytest.fixture
def cp_settings(store_settings: Settings, tmp_path: Path) -> Settings:
    """The store's settings, with the audit log in the same database."""
    return store_settings.model_copy(update={"audit_url": store_settings.store_url, "audit_key_dir": tmp_path / "keys"})


@pytest.fixture
def audit_entries(cp_settings: Settings) -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """Every entry of the audit log so far, as the canonical JSON documents the log keeps (plus the
    entry's text as `_text`)."""
    engine = make_engine(cp_settings.audit_url)
    migrate_audit(engine)

    def read() -> list[dict[str, Any]]:
        with engine.connect() as conn:
            texts = conn.execute(select(entries.c.entry).order_by(entries.c.seq)).scalars().all()
        return [json.loads(text) | {"_text": text} for text in texts]

    yield read
    engine.dispose()


def store_texts(store: Engine) -> str:
    """Everything in the users' and sessions' tables, as one text (to look for secrets in)."""
    from controlplane.users.tables import sessions_t, users_t

    with store.connect() as conn:
        rows = [*conn.execute(select(users_t)).all(), *conn.execute(select(sessions_t)).all()]
    return "\n".join(repr(tuple(row)) for row in rows)
