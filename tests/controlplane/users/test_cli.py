"""`controlplane users` as a user runs it (a subprocess), on SQLite and PostgreSQL: the password on stdin,
JSON listing without hashes, audited changes, and bad input as `error: ...` with exit 3, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import Engine

from controlplane.users import add_user, find_user, list_users
from tests.controlplane.users.conftest import PASSWORD
from tests.support import CONTROLPLANE


@pytest.fixture
def run(database_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    env = os.environ | {
        "CONTROLPLANE_STORE_URL": database_url,
        "CONTROLPLANE_AUDIT_URL": database_url,
        "CONTROLPLANE_AUDIT_KEY_DIR": str(tmp_path / "keys"),
    }

    def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [CONTROLPLANE, "users", *args], input=stdin, capture_output=True, text=True, env=env, timeout=120
        )

    return run


def test_add_reads_the_password_from_stdin_and_list_shows_no_hash(run, audit_entries) -> None:  # type: ignore[no-untyped-def]
    added = run("add", "Ana", "--role", "oncall", "--by", "bo", stdin=PASSWORD + "\n")
    assert added.returncode == 0, added.stderr
    assert added.stdout.strip() == "added ana (oncall)"
    run("add", "zoe", "--role", "compliance", "--by", "bo", stdin=PASSWORD + "\r\n")
    listed = run("list", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    users = json.loads(listed.stdout)
    assert [(u["username"], u["role"], u["disabled"]) for u in users] == [
        ("ana", "oncall", False),
        ("zoe", "compliance", False),
    ]
    assert "scrypt" not in listed.stdout and "hash" not in listed.stdout
    table = run("list")
    assert table.returncode == 0 and "ana" in table.stdout and "scrypt" not in table.stdout
    assert [(e["kind"], e["actor"], e["subject"]) for e in audit_entries()] == [
        ("change", "bo", "user:ana"),
        ("change", "bo", "user:zoe"),
    ]


def test_disable_enable_and_password_are_audited(run, audit_entries, store: Engine) -> None:  # type: ignore[no-untyped-def]
    assert run("add", "ana", "--role", "admin", "--by", "bo", stdin=PASSWORD + "\n").returncode == 0
    assert run("disable", "ana", "--by", "zoe").stdout.strip() == "disabled ana"
    assert run("disable", "ana", "--by", "zoe").stdout.strip() == "ana was already disabled"
    assert find_user(store, "ana").disabled  # type: ignore[union-attr]
    assert run("enable", "ana", "--by", "zoe").returncode == 0
    changed = run("password", "ana", "--by", "bo", stdin="a brand new passphrase\n")
    assert changed.returncode == 0, changed.stderr
    logged = audit_entries()
    assert [(e["actor"], e["payload"]["action"]) for e in logged] == [
        ("bo", "add"),
        ("zoe", "disable"),
        ("zoe", "enable"),
        ("bo", "password"),
    ]
    assert all(PASSWORD not in e["_text"] and "a brand new passphrase" not in e["_text"] for e in logged)


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (("add", "bo", "--role", "oncall"), "short\n", "the password has 5 characters; use at least 12"),
        (("add", "bo", "--role", "oncall"), "", "no password on stdin"),
        (("add", "bo", "--role", "boss"), PASSWORD + "\n", "role 'boss' is not one of oncall, compliance, admin"),
        (("add", "bo smith", "--role", "oncall"), PASSWORD + "\n", "username 'bo smith' is not allowed"),
        (("add", "ana", "--role", "admin"), PASSWORD + "\n", "a dashboard user named 'ana' already exists"),
        (("disable", "nobody"), "", "no dashboard user is named 'nobody'"),
        (("password", "nobody"), PASSWORD + "\n", "no dashboard user is named 'nobody'"),
        (("list", "--store-url", "postgresql+psycopg://nobody@127.0.0.1:1/none"), "", "cannot open the store"),
    ],
    ids=["short-password", "no-password", "role", "name", "duplicate", "unknown-user", "unknown-password", "store"],
)
def test_bad_input_is_a_message_and_exit_3(
    run,  # type: ignore[no-untyped-def]
    store: Engine,
    args: tuple[str, ...],
    stdin: str,
    message: str,
) -> None:
    add_user(store, "ana", role="oncall", password=PASSWORD, by="bo")
    result = run(*args, stdin=stdin)
    assert result.returncode == 3, result.stdout + result.stderr
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert [(u.username, u.role) for u in list_users(store)] == [("ana", "oncall")]
