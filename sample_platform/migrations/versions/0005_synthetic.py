"""synthetic: accounts and markets that belong to probes (readiness checks), not to players

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28

Existing rows are players' and stay so (default false). Synthetic markets are left out of market
listings, and the money events of synthetic accounts and markets carry `"synthetic": true`.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("accounts", "markets")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch_op:
            batch_op.add_column(sa.Column("synthetic", sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch_op:
            batch_op.drop_column("synthetic")
