"""The one engine factory and the one settings object."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from controlplane.settings import Settings
from controlplane.storage import StorageConfigError, make_engine, normalise_url, reader


def test_sqlite_engine_sets_wal_busy_timeout_and_foreign_keys(tmp_path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'sub' / 'x.db'}", lock_timeout_ms=1234)
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 1234
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
    assert (tmp_path / "sub" / "x.db").exists()


def test_sqlite_writes_take_the_write_lock_at_begin(tmp_path) -> None:
    path = tmp_path / "lock.db"
    engine = make_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
    with engine.begin() as conn:
        conn.execute(text("SELECT 1"))  # a read only, yet BEGIN IMMEDIATE already holds the write lock
        other = sqlite3.connect(path, timeout=0, isolation_level=None)
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")
        other.close()
        # Readers are not blocked.
        with reader(engine).begin() as read_conn:
            assert read_conn.execute(text("SELECT count(*) FROM t")).scalar() == 0


def test_sqlite_readers_run_beside_a_writer(tmp_path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'r.db'}", lock_timeout_ms=100)
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
    with reader(engine).begin() as conn:
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
def test_normalise_url(url: str, expected: str) -> None:
    assert normalise_url(url) == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "is not a URL"),
        ("mysql://u@h/db", "not supported"),
        ("postgresql+asyncpg://u@h/db", r"use postgresql\+psycopg"),
    ],
)
def test_bad_urls_name_the_fix(url: str, message: str) -> None:
    with pytest.raises(StorageConfigError, match=message):
        make_engine(url)


def test_settings_read_environment(monkeypatch) -> None:
    monkeypatch.setenv("CONTROLPLANE_MAX_STAKE_MINOR", "4200")
    monkeypatch.setenv("CONTROLPLANE_IDEMPOTENCY_TTL_SECONDS", "3600")
    settings = Settings()
    assert settings.max_stake_minor == 4200
    assert settings.idempotency_ttl_seconds == 3600
    assert settings.database_url.startswith("sqlite:///")


def test_production_refuses_the_development_admin_token(monkeypatch) -> None:
    monkeypatch.setenv("CONTROLPLANE_ENVIRONMENT", "production")
    with pytest.raises(ValidationError, match="CONTROLPLANE_ADMIN_TOKEN"):
        Settings()
    monkeypatch.setenv("CONTROLPLANE_ADMIN_TOKEN", "a-long-random-production-token")
    assert Settings().environment == "production"


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_long_statements_are_cancelled(database_url: str) -> None:
    engine = make_engine(database_url, statement_timeout_ms=200)
    slow = (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000000) SELECT count(*) FROM c"
        if engine.dialect.name == "sqlite"
        else "SELECT pg_sleep(2)"
    )
    started = time.monotonic()
    with pytest.raises(OperationalError), reader(engine).connect() as conn:
        conn.execute(text(slow))
    assert time.monotonic() - started < 1.5
    with engine.connect() as conn:  # the connection is usable again afterwards
        assert conn.execute(text("SELECT 1")).scalar() == 1
    engine.dispose()
