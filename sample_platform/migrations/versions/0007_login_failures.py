"""login failures: consecutive failed logins and lockouts per submitted username, known or not

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06

A lockout that only known accounts could get told an attacker which usernames exist. Failures now
count per submitted name (a SHA-256 of it, folded to lower case) in their own table, whether an
account has the name or not. Locks and failure counts in force move over from `accounts`, whose two
columns are no longer written (the downgrade moves them back).
"""

import hashlib
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def name_key(username: str) -> str:  # as sample_platform.login.name_key, frozen here
    return hashlib.sha256(b"login:" + username.strip().lower().encode()).hexdigest()


def upgrade() -> None:
    op.create_table(
        "login_failures",
        sa.Column("name_key", sa.String(length=64), primary_key=True),
        sa.Column("failures", sa.Integer(), server_default="0", nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
    )
    conn = op.get_bind()
    rows = conn.execute(
        sa.text(
            "SELECT username, failed_logins, locked_until FROM accounts "
            "WHERE failed_logins > 0 OR locked_until IS NOT NULL"
        )
    ).all()
    merged: dict[str, dict] = {}
    for row in rows:  # names that differ only in case fold into one key: the larger count, the later lock
        key = name_key(row.username)
        seen = merged.setdefault(key, {"name_key": key, "failures": 0, "locked_until": None})
        seen["failures"] = max(seen["failures"], row.failed_logins or 0)
        if row.locked_until is not None and (seen["locked_until"] is None or row.locked_until > seen["locked_until"]):
            seen["locked_until"] = row.locked_until
    if merged:  # as stored (text on SQLite, timestamps on PostgreSQL), not through the column types
        conn.execute(
            sa.text(
                "INSERT INTO login_failures (name_key, failures, locked_until) VALUES (:name_key, :failures, :locked_until)"
            ),
            list(merged.values()),
        )
        conn.execute(sa.text("UPDATE accounts SET failed_logins = 0, locked_until = NULL"))


def downgrade() -> None:
    conn = op.get_bind()
    held = {
        row.name_key: row
        for row in conn.execute(sa.text("SELECT name_key, failures, locked_until FROM login_failures")).all()
    }
    for account in conn.execute(sa.text("SELECT id, username FROM accounts")).all():
        row = held.get(name_key(account.username))
        if row is not None:
            conn.execute(
                sa.text("UPDATE accounts SET failed_logins = :f, locked_until = :u WHERE id = :i"),
                {"f": row.failures, "u": row.locked_until, "i": account.id},
            )
    op.drop_table("login_failures")
