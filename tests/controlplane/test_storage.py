"""The engine factories (the control plane's store and the sample platform's own) and the settings objects.

The two systems keep separate engine set-ups (the platform imports nothing of the control plane), so
each connection rule is checked on both."""

from __future__ import annotations

import inspect
import sqlite3
import threading
import time

import pytest
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.exc import OperationalError, PendingRollbackError

from controlplane import storage
from controlplane.settings import Settings
from sample_platform import db
from sample_platform.settings import PlatformSettings

FACTORIES = pytest.mark.parametrize("factory", [storage, db], ids=["controlplane", "platform"])
TWINS = ("normalise_url", "make_engine", "reader", "is_sqlite", "_StatementDeadline", "_sqlite_engine")


@pytest.mark.parametrize("name", TWINS)
def test_the_two_engine_factories_are_the_same_code(name: str) -> None:
    """A fix to one system's engine factory is made to the other's too: only the error's name differs."""
    ours = inspect.getsource(getattr(storage, name)).replace("StorageConfigError", "ConfigError")
    theirs = inspect.getsource(getattr(db, name)).replace("DatabaseConfigError", "ConfigError")
    assert ours == theirs, f"controlplane/storage.py and sample_platform/db.py differ in {name}"


@FACTORIES
def test_sqlite_engine_sets_wal_busy_timeout_and_foreign_keys(factory, tmp_path) -> None:
    engine = factory.make_engine(f"sqlite:///{tmp_path / 'sub' / 'x.db'}", lock_timeout_ms=1234)
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 1234
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
    assert (tmp_path / "sub" / "x.db").exists()


@FACTORIES
def test_sqlite_writes_take_the_write_lock_at_begin(factory, tmp_path) -> None:
    path = tmp_path / "lock.db"
    engine = factory.make_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
    with engine.begin() as conn:
        conn.execute(text("SELECT 1"))  # a read only, yet BEGIN IMMEDIATE already holds the write lock
        other = sqlite3.connect(path, timeout=0, isolation_level=None)
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")
        other.close()
        # Readers are not blocked.
        with factory.reader(engine).begin() as read_conn:
            assert read_conn.execute(text("SELECT count(*) FROM t")).scalar() == 0


@FACTORIES
def test_sqlite_readers_run_beside_a_writer(factory, tmp_path) -> None:
    engine = factory.make_engine(f"sqlite:///{tmp_path / 'r.db'}", lock_timeout_ms=100)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
    writing = threading.Event()
    done = threading.Event()

    def writer() -> None:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO t VALUES (1)"))
            writing.set()
            done.wait(5)

    thread = threading.Thread(target=writer)
    thread.start()
    assert writing.wait(5)
    with factory.reader(engine).begin() as conn:
        assert conn.execute(text("SELECT count(*) FROM t")).scalar() == 0  # snapshot before the commit
    done.set()
    thread.join()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
        ("sqlite:///./var/x.db", "sqlite:///./var/x.db"),
    ],
)
@FACTORIES
def test_normalise_url(factory, url: str, expected: str) -> None:
    assert factory.normalise_url(url) == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "is not a URL"),
        ("mysql://u@h/db", "not supported"),
        ("postgresql+asyncpg://u@h/db", r"use postgresql\+psycopg"),
    ],
)
@FACTORIES
def test_bad_urls_name_the_fix(factory, url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        factory.make_engine(url)


def test_settings_read_environment(monkeypatch) -> None:
    monkeypatch.setenv("PLATFORM_MAX_STAKE_MINOR", "4200")
    monkeypatch.setenv("PLATFORM_IDEMPOTENCY_TTL_SECONDS", "3600")
    monkeypatch.setenv("CONTROLPLANE_STORE_URL", "sqlite:///./var/elsewhere.db")
    platform = PlatformSettings()
    assert platform.max_stake_minor == 4200
    assert platform.idempotency_ttl_seconds == 3600
    assert platform.database_url.startswith("sqlite:///")
    # Each system reads only its own prefix.
    assert Settings().store_url == "sqlite:///./var/elsewhere.db"
    assert not hasattr(Settings(), "max_stake_minor")


@pytest.mark.parametrize("environment", ["production", "test"])
def test_only_development_accepts_the_development_admin_token(monkeypatch, environment: str) -> None:
    monkeypatch.delenv("PLATFORM_ADMIN_TOKEN", raising=False)
    monkeypatch.setenv("PLATFORM_ENVIRONMENT", environment)
    with pytest.raises(ValidationError, match="PLATFORM_ADMIN_TOKEN"):
        PlatformSettings()
    monkeypatch.setenv("PLATFORM_ADMIN_TOKEN", "a-long-random-production-token")
    assert PlatformSettings().environment == environment
    monkeypatch.delenv("PLATFORM_ADMIN_TOKEN")
    monkeypatch.setenv("PLATFORM_ENVIRONMENT", "development")
    assert PlatformSettings().admin_token.get_secret_value() == "changethis"


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
@FACTORIES
def test_long_statements_are_cancelled(factory, database_url: str) -> None:
    engine = factory.make_engine(database_url, statement_timeout_ms=200)
    slow = (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000000) SELECT count(*) FROM c"
        if engine.dialect.name == "sqlite"
        else "SELECT pg_sleep(2)"
    )
    started = time.monotonic()
    with pytest.raises(OperationalError), factory.reader(engine).connect() as conn:
        conn.execute(text(slow))
    assert time.monotonic() - started < 1.5
    with engine.connect() as conn:  # the connection is usable again afterwards
        assert conn.execute(text("SELECT 1")).scalar() == 1
    engine.dispose()


@FACTORIES
def test_the_sqlite_deadline_is_for_the_statements_sqlalchemy_runs(factory, tmp_path) -> None:
    """A statement run on the driver's own cursor (the audit log's verification reads so, from a thread)
    has no deadline and no Python callback in its way; SQLAlchemy's statements keep theirs, also after one
    was cancelled."""
    engine = factory.make_engine(f"sqlite:///{tmp_path}/deadline.db", statement_timeout_ms=1)
    long = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000) SELECT count(*) FROM c"
    with engine.connect() as conn:
        with pytest.raises(OperationalError):
            conn.execute(text(long))
        raw = conn.connection.dbapi_connection
        assert raw.execute(long).fetchone()[0] == 1_000_000
        conn.rollback()
        with pytest.raises(OperationalError):
            conn.execute(text(long))
        assert raw.execute(long).fetchone()[0] == 1_000_000
    engine.dispose()


@FACTORIES
def test_a_writer_an_interrupt_cuts_short_gives_its_place_back(factory, tmp_path) -> None:
    """SQLite's writers of a process queue on one lock; a Ctrl-C mid-transaction invalidates the connection
    without a rollback event, and must not keep the lock from every later writer."""
    engine = factory.make_engine(f"sqlite:///{tmp_path}/writer.db", lock_timeout_ms=500)
    execute = engine.dialect.do_execute

    def interrupted(cursor, statement, parameters, context=None):  # type: ignore[no-untyped-def]
        if statement.startswith("SELECT 2"):
            raise KeyboardInterrupt
        return execute(cursor, statement, parameters, context)

    engine.dialect.do_execute = interrupted
    with pytest.raises((KeyboardInterrupt, PendingRollbackError)), engine.begin() as conn:
        conn.execute(text("SELECT 1"))
        conn.execute(text("SELECT 2"))
    with engine.begin() as conn:  # before: "database is locked (writer queue)" after 0.5 s
        conn.execute(text("CREATE TABLE later (x INTEGER)"))
    engine.dispose()
