"""The one engine factory, and Alembic upgrades, for SQLite and PostgreSQL.

Its twin is `sample_platform/db.py` (the platform stands alone, so it keeps its own copy); the two
are the same code but for the error's name, and tests/controlplane/test_storage.py fails when they drift.

Usage:

    engine = make_engine("sqlite:///./var/platform.db")
    with engine.begin() as conn: ...   # SQLite: BEGIN IMMEDIATE, so writers never deadlock on upgrade
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError


class StorageConfigError(ValueError):
    """A database URL or option the product cannot use; the message says how to fix it."""


def normalise_url(url: str) -> str:
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StorageConfigError(
            f"database URL {url!r} is not a URL; use sqlite:///path/to/file.db or "
            "postgresql+psycopg://user@host:5432/dbname"
        ) from exc
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        if parsed.drivername in ("postgresql", "postgres"):
            parsed = parsed.set(drivername="postgresql+psycopg")
        elif parsed.drivername != "postgresql+psycopg":
            raise StorageConfigError(
                f"database URL driver {parsed.drivername!r} is not supported; use postgresql+psycopg://"
            )
    elif backend != "sqlite":
        raise StorageConfigError(
            f"database backend {backend!r} is not supported; use sqlite:/// or postgresql+psycopg://"
        )
    return parsed.render_as_string(hide_password=False)


def make_engine(
    url: str, *, lock_timeout_ms: int = 2000, statement_timeout_ms: int = 5000, pool_size: int = 20
) -> Engine:
    """Create an engine with the product's connection rules.

    SQLite: WAL, foreign keys on, every transaction opened with `BEGIN IMMEDIATE` (take the write
    lock up front, so two writers never both read then fail to upgrade). Read-only work may use
    `reader(engine)` to open plain deferred transactions that run beside the writer.
    PostgreSQL: psycopg 3 with a connection pool sized for the platform's thread pool.
    Both: a lock wait longer than `lock_timeout_ms` (SQLite busy_timeout, PostgreSQL lock_timeout)
    and a statement longer than `statement_timeout_ms` fail with an error instead of hanging.
    """
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(
            url, lock_timeout_ms=lock_timeout_ms, statement_timeout_ms=statement_timeout_ms, pool_size=pool_size
        )
    engine = create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True, pool_timeout=30)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        with dbapi_connection.cursor() as cursor:
            cursor.execute(f"SET statement_timeout = {int(statement_timeout_ms)}")
            cursor.execute(f"SET lock_timeout = {int(lock_timeout_ms)}")
        dbapi_connection.commit()

    return engine


def reader(engine: Engine) -> Engine:
    """An engine view for read-only transactions (plain BEGIN on SQLite, so readers do not queue)."""
    return engine.execution_options(sqlite_begin="BEGIN")


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


class _StatementDeadline:
    """SQLite has no statement timeout; as its progress handler, installed for one statement from `start`
    to its end, this aborts the statement past its deadline."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.deadline = 0.0

    def start(self) -> None:
        self.deadline = time.monotonic() + self.timeout_s

    def __call__(self) -> int:
        return 1 if time.monotonic() > self.deadline else 0


def _sqlite_engine(url: str, *, lock_timeout_ms: int, statement_timeout_ms: int, pool_size: int) -> Engine:
    database = make_url(url).database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": lock_timeout_ms / 1000},
        pool_size=pool_size,
        max_overflow=pool_size,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, record):
        # Let SQLAlchemy's "begin" event below issue BEGIN itself instead of pysqlite's implicit one.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(lock_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()
        # Installed around each statement SQLAlchemy runs (below), not for good: a handler is Python, and
        # a statement a thread runs on the driver's own cursor would stop for the interpreter's lock.
        record.info["statement_deadline"] = _StatementDeadline(statement_timeout_ms / 1000)

    # SQLite's busy handler polls with growing sleeps, so under steady contention one writer can
    # starve past its timeout while others keep winning. Writers of this process therefore queue on
    # one lock first (the process's single writer); busy_timeout still arbitrates between processes.
    writer = threading.Lock()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        begin = conn.get_execution_options().get("sqlite_begin", "BEGIN IMMEDIATE")
        if begin != "BEGIN IMMEDIATE":
            conn.exec_driver_sql(begin)
            return
        if not writer.acquire(timeout=lock_timeout_ms / 1000):
            raise OperationalError(begin, None, sqlite3.OperationalError("database is locked (writer queue)"))
        try:
            conn.exec_driver_sql(begin)
        except BaseException:
            writer.release()
            raise
        conn.info["holds_writer"] = True

    @event.listens_for(engine, "commit")
    @event.listens_for(engine, "rollback")
    def _on_end(conn):
        if conn.info.pop("holds_writer", False):
            writer.release()

    # A connection an interrupt cut short mid-transaction is invalidated, without a rollback event: its
    # place in the writer queue is given back all the same, or no writer of this process would pass again.
    @event.listens_for(engine, "invalidate")
    def _on_invalidate(_dbapi_connection, record, _exception):
        if record.info.pop("holds_writer", False):
            writer.release()

    @event.listens_for(engine, "before_cursor_execute")
    def _before(conn, cursor, *_args):
        deadline = conn.info.get("statement_deadline")
        if deadline is not None:
            deadline.start()
            cursor.connection.set_progress_handler(deadline, 10_000)

    @event.listens_for(engine, "after_cursor_execute")
    def _after(_conn, cursor, *_args):
        cursor.connection.set_progress_handler(None, 0)

    @event.listens_for(engine, "handle_error")
    def _failed(context):
        cursor = getattr(context.execution_context, "cursor", None)
        if cursor is not None:
            cursor.connection.set_progress_handler(None, 0)

    return engine


def alembic_config(engine: Engine, script_location: Path):
    # local: Alembic adds 0.2-0.4 s to every process's start (measured); only migrating needs it
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(script_location))
    return config


def upgrade(engine: Engine, script_location: Path, revision: str = "head") -> None:
    """Run the Alembic migrations in `script_location` up to `revision` on `engine`."""
    from alembic import command  # local: as in alembic_config

    config = alembic_config(engine, script_location)
    with engine.connect() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
        connection.commit()
