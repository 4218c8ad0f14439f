"""ids: BIGINT on PostgreSQL for every id and every column that refers to one

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28

Accounts, ledger accounts, markets, selections and bets had `integer` ids on PostgreSQL (32 bits), so
any id from 2^31 in a request reached the database and failed there. Every id is now 64 bits on both
databases (SQLite's INTEGER already is), and the API checks ids against that range before any query.
"""

from typing import Sequence, Union

from alembic import op

revision: str = "0004"
down_revision: Union[str, None] = "0003"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

COLUMNS = {
    "accounts": ("id",),
    "ledger_accounts": ("id", "owner_account_id"),
    "markets": ("id", "winner_selection_id"),
    "selections": ("id", "market_id"),
    "bets": ("id", "account_id", "market_id", "selection_id"),
    "ledger_transactions": ("bet_id",),
    "postings": ("ledger_account_id",),
    "price_changes": ("market_id", "selection_id"),
    "idempotency_keys": ("account_id",),
    "login_sessions": ("account_id",),
}
SEQUENCES = ("accounts_id_seq", "ledger_accounts_id_seq", "markets_id_seq", "selections_id_seq", "bets_id_seq")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite's INTEGER is 64 bits already
    for table, columns in COLUMNS.items():
        changes = ", ".join(f"ALTER COLUMN {column} TYPE BIGINT" for column in columns)
        op.execute(f"ALTER TABLE {table} {changes}")
    for sequence in SEQUENCES:
        op.execute(f"ALTER SEQUENCE {sequence} AS BIGINT")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for sequence in SEQUENCES:
        op.execute(f"ALTER SEQUENCE {sequence} AS INTEGER")
    for table, columns in COLUMNS.items():
        changes = ", ".join(f"ALTER COLUMN {column} TYPE INTEGER" for column in columns)
        op.execute(f"ALTER TABLE {table} {changes}")
