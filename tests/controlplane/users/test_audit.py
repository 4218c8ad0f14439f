"""Dashboard accounts in the audit log, on SQLite and PostgreSQL: account changes as `change` entries,
sign-ins as `access` entries, and never a password, hash or token in any of them."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, select

from controlplane.auditing import AuditUnavailable
from controlplane.settings import Settings
from controlplane.users import (
    add_user,
    audit_change,
    audit_sign_in,
    authenticate,
    create_session,
    disable_user,
    find_user,
    set_password,
)
from controlplane.users.tables import users_t
from tests.controlplane.users.conftest import NOW, PASSWORD


def test_account_changes_are_change_entries_without_secrets(
    store: Engine, cp_settings: Settings, audit_entries
) -> None:  # type: ignore[no-untyped-def]
    def record(change):  # type: ignore[no-untyped-def]
        return audit_change(cp_settings, change)

    add_user(store, "ana", role="oncall", password=PASSWORD, by="bo", now=NOW, record=record)
    disable_user(store, "ana", by="zoe", now=NOW, record=record)
    set_password(store, "ana", "a brand new passphrase", by="bo", now=NOW, record=record)
    with store.connect() as conn:
        stored_hash = conn.execute(select(users_t.c.password_hash)).scalar_one()
    logged = audit_entries()
    assert [(e["kind"], e["actor"], e["subject"], e["payload"]["action"]) for e in logged] == [
        ("change", "bo", "user:ana", "add"),
        ("change", "zoe", "user:ana", "disable"),
        ("change", "bo", "user:ana", "password"),
    ]
    assert logged[0]["payload"] == {
        "type": "dashboard_user",
        "action": "add",
        "role": "oncall",
        "at": "2030-03-01T12:00:00Z",
    }
    for secret in (PASSWORD, "a brand new passphrase", stored_hash, stored_hash.split("$")[-1]):
        assert all(secret not in e["_text"] for e in logged)


def test_sign_ins_are_access_entries_with_outcome_and_reason(
    store: Engine, cp_settings: Settings, audit_entries
) -> None:  # type: ignore[no-untyped-def]
    user = add_user(store, "ana", role="oncall", password=PASSWORD, by="bo", now=NOW)
    audit_sign_in(cp_settings, authenticate(store, "ana", PASSWORD, now=NOW), source="10.0.0.7")
    token = create_session(store, user, NOW)
    audit_sign_in(cp_settings, authenticate(store, "ana", "Wrong-" + PASSWORD, now=NOW))
    # A password typed into the name field must not reach the log, which keeps everything for good.
    audit_sign_in(cp_settings, authenticate(store, PASSWORD.replace(" ", "-"), PASSWORD, now=NOW))
    logged = audit_entries()
    assert [(e["kind"], e["actor"], e["subject"]) for e in logged] == [
        ("access", "ana", "user:ana"),
        ("access", "ana", "user:ana"),
        ("access", "(unknown)", "user:(unknown)"),
    ]
    assert logged[0]["payload"] == {
        "type": "dashboard_sign_in",
        "outcome": "success",
        "reason": None,
        "role": "oncall",
        "at": "2030-03-01T12:00:00Z",
        "source": "10.0.0.7",
    }
    for entry in logged[1:]:
        assert entry["payload"]["outcome"] == "failure"
        assert entry["payload"]["reason"] == "unknown user or wrong password"
    for secret in (PASSWORD, PASSWORD.replace(" ", "-"), token):
        assert all(secret not in e["_text"] for e in logged)


def test_the_failure_that_locks_the_account_says_until_when(
    store: Engine, cp_settings: Settings, audit_entries
) -> None:  # type: ignore[no-untyped-def]
    add_user(store, "ana", role="oncall", password=PASSWORD, by="bo", now=NOW)
    for _ in range(5):
        attempt = authenticate(store, "ana", "not the password", now=NOW)
    audit_sign_in(cp_settings, attempt)
    audit_sign_in(cp_settings, authenticate(store, "ana", PASSWORD, now=NOW))
    first, second = (e["payload"] for e in audit_entries())
    assert first["locked_until"] == "2030-03-01T12:15:00Z"
    assert second["reason"] == "account locked until 2030-03-01T12:15:00Z"


def test_an_unwritable_audit_log_undoes_the_change(store: Engine, cp_settings: Settings) -> None:
    broken = cp_settings.model_copy(update={"audit_url": "postgresql+psycopg://nobody@127.0.0.1:1/none"})
    with pytest.raises(AuditUnavailable, match="cannot be written"):
        add_user(
            store, "ana", role="oncall", password=PASSWORD, by="bo", now=NOW, record=lambda c: audit_change(broken, c)
        )
    assert find_user(store, "ana") is None
