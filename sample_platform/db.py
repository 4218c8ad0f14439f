"""The platform's database schema: its Alembic migrations, applied through the one engine factory's engines."""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config
from sqlalchemy import Engine

from controlplane import storage

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(engine: Engine) -> Config:
    return storage.alembic_config(engine, MIGRATIONS)


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to `revision` (default: the newest). Safe to run on every start."""
    storage.upgrade(engine, MIGRATIONS, revision)
