"""The Alembic migrations build exactly the schema the models describe, and the database enforces it."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlmodel import SQLModel

from sample_platform.db import migrate


def test_migrations_match_the_models(engine) -> None:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, SQLModel.metadata)
    assert diff == []


def test_migrate_is_idempotent(engine) -> None:
    migrate(engine)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM ledger_accounts WHERE owner_account_id IS NULL")).scalar() == 2


def test_database_refuses_negative_wallets(engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO accounts (username, token_hash, created_at) VALUES ('x', 'h', CURRENT_TIMESTAMP)")
        )
        conn.execute(
            text("INSERT INTO ledger_accounts (owner_account_id, kind, balance_minor) VALUES (1, 'wallet', 0)")
        )
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(text("UPDATE ledger_accounts SET balance_minor = -1 WHERE kind = 'wallet'"))


def test_store_migrations_match_the_store_models(database_url) -> None:
    from controlplane.checklist import tables as checklist_tables
    from controlplane.cost import tables as cost_tables
    from controlplane.incidents import tables as incident_tables
    from controlplane.policy import tables as policy_tables
    from controlplane.scheduler import tables
    from controlplane.slo import tables as slo_tables
    from controlplane.store import StoreModel, migrate_store
    from controlplane.traces import tables as trace_tables
    from controlplane.users import tables as users_tables
    from sample_platform.db import make_engine

    engine = make_engine(database_url)
    migrate_store(engine)
    migrate_store(engine)  # idempotent
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "version_table": "alembic_version_store"}
        )
        diff = compare_metadata(context, StoreModel.metadata)
    engine.dispose()
    expected = {
        checklist_tables.runs_t.name,
        tables.snapshots_t.name,
        slo_tables.rollups_t.name,
        slo_tables.changes_t.name,
    }
    expected |= {
        users_tables.users_t.name,
        users_tables.sessions_t.name,
        incident_tables.incidents_t.name,
        policy_tables.policy_states_t.name,
        trace_tables.kept_traces_t.name,
        trace_tables.kept_spans_t.name,
        trace_tables.kept_logs_t.name,
    }
    assert expected | {cost_tables.billing_t.name, cost_tables.imports_t.name} <= set(StoreModel.metadata.tables)
    assert diff == []


def test_existing_accounts_and_markets_stay_players_after_0005(database_url) -> None:
    from sample_platform.db import make_engine

    engine = make_engine(database_url)
    migrate(engine, "0004")
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO accounts (username, token_hash, created_at) VALUES ('old', 'h', CURRENT_TIMESTAMP)")
        )
        conn.execute(
            text(
                "INSERT INTO markets (name, status, price_version, result_version, void, created_at) "
                "VALUES ('Old cup', 'open', 1, 0, false, CURRENT_TIMESTAMP)"
            )
        )
    migrate(engine)
    with engine.connect() as conn:
        flags = [conn.execute(text(f"SELECT synthetic FROM {table}")).scalar_one() for table in ("accounts", "markets")]
    engine.dispose()
    assert flags == [False, False]


def test_locks_in_force_move_to_login_failures_with_0007_and_back(database_url) -> None:
    from alembic import command

    from sample_platform.db import alembic_config, make_engine
    from sample_platform.login import name_key

    engine = make_engine(database_url)
    migrate(engine, "0006")
    until = "2099-01-01 00:00:00+00:00"
    with engine.begin() as conn:
        for name, failures, locked in (("Locked", 0, until), ("counting", 3, None), ("calm", 0, None)):
            conn.execute(
                text(
                    "INSERT INTO accounts (username, token_hash, created_at, failed_logins, locked_until) "
                    "VALUES (:n, :h, CURRENT_TIMESTAMP, :f, :u)"
                ),
                {"n": name, "h": f"h-{name}", "f": failures, "u": locked},
            )
    migrate(engine)
    with engine.connect() as conn:
        moved = {
            r.name_key: (r.failures, r.locked_until is not None)
            for r in conn.execute(text("SELECT * FROM login_failures"))
        }
        left = conn.execute(
            text("SELECT count(*) FROM accounts WHERE failed_logins > 0 OR locked_until IS NOT NULL")
        ).scalar()
    assert moved == {name_key("locked"): (0, True), name_key("COUNTING"): (3, False)} and left == 0
    config = alembic_config(engine)
    with engine.connect() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0006")
        connection.commit()
        back = {
            r.username: (r.failed_logins, r.locked_until is not None)
            for r in connection.execute(text("SELECT * FROM accounts"))
        }
    engine.dispose()
    assert back == {"Locked": (0, True), "counting": (3, False), "calm": (0, False)}
