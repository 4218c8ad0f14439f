"""The one engine factory, and Alembic upgrades, for SQLite and PostgreSQL.

engine = make_engine("sqlite:///./var/platform.db")
with engine.begin() as conn: ...   # SQLite: BEGIN IMMEDIATE, so writers never deadlock on upgrade
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError


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


def make_engine(url: str, *, busy_timeout_ms: int = 5000, pool_size: int = 20) -> Engine:
    """Create an engine with the product's connection rules.

    SQLite: WAL, `busy_timeout`, foreign keys on, every transaction opened with `BEGIN IMMEDIATE`
    (take the write lock up front, so two writers never both read then fail to upgrade). Read-only
    work may use `reader(engine)` to open plain deferred transactions that run beside the writer.
    PostgreSQL: psycopg 3 with a connection pool sized for the platform's thread pool.
    """
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url, busy_timeout_ms=busy_timeout_ms, pool_size=pool_size)
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_timeout=30,
    )


def reader(engine: Engine) -> Engine:
    """An engine view for read-only transactions (plain BEGIN on SQLite, so readers do not queue)."""
    return engine.execution_options(sqlite_begin="BEGIN")


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def _sqlite_engine(url: str, *, busy_timeout_ms: int, pool_size: int) -> Engine:
    database = make_url(url).database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": busy_timeout_ms / 1000},
        pool_size=pool_size,
        max_overflow=pool_size,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        # Let SQLAlchemy's "begin" event below issue BEGIN itself instead of pysqlite's implicit one.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):  # type: ignore[no-untyped-def]
        conn.exec_driver_sql(conn.get_execution_options().get("sqlite_begin", "BEGIN IMMEDIATE"))

    return engine
