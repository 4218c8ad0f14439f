"""The audit log's tables (SQLAlchemy Core, its own metadata) and their Alembic migrations.

Usage:

    migrate_audit(engine)    # creates or upgrades the log's tables and append-only triggers
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import BigInteger, Column, DateTime, Engine, Integer, MetaData, String, Table, Text

metadata = MetaData()

entries = Table(
    "audit_entries",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),  # the Merkle leaf index, from 0
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("subject", String(200), nullable=False, index=True),
    Column("event_id", String(64), nullable=True, unique=True),  # an outbox event counted once
    Column("entry", Text, nullable=False),  # canonical JSON; its UTF-8 bytes are the leaf data
    Column("leaf_hash", String(64), nullable=False),
)

# Hashes of complete subtrees: level L, index i covers leaves [i * 2**L, (i + 1) * 2**L).
nodes = Table(
    "audit_nodes",
    metadata,
    Column("level", Integer, primary_key=True, autoincrement=False),
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", String(64), nullable=False),
)

checkpoints = Table(
    "audit_checkpoints",
    metadata,
    Column("tree_size", BigInteger, primary_key=True, autoincrement=False),
    Column("root_hash", String(64), nullable=False),
    Column("note", Text, nullable=False),
    Column("key_id", String(8), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# Not append-only on purpose: deleting a subject's key makes its pseudonyms in the log unlinkable.
subject_keys = Table(
    "audit_subject_keys",
    metadata,
    Column("subject", String(200), primary_key=True),
    Column("hmac_key", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

APPEND_ONLY = ("audit_entries", "audit_nodes", "audit_checkpoints")
MIGRATIONS = Path(__file__).with_name("migrations")


def migrate_audit(engine: Engine, revision: str = "head") -> None:
    # local: Alembic adds 0.2-0.4 s to the start of every process that reads the log (measured)
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.connect() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
        connection.commit()
