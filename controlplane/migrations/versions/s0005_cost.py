"""store: imported FOCUS billing rows, the record of each import, and hourly cost rollups

Revision ID: s0005
Revises: s0004
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "s0005"
down_revision: str | None = "s0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _utc(name: str) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    op.create_table(
        "cost_billing_rows",
        sa.Column("row_hash", sa.String(length=64), primary_key=True),
        sa.Column("file_sha256", sa.String(length=64), nullable=False),
        _utc("charge_period_start"),
        _utc("charge_period_end"),
        sa.Column("billed_cost", sa.String(length=64), nullable=False),
        sa.Column("effective_cost", sa.String(length=64), nullable=False),
        sa.Column("billing_currency", sa.String(length=3), nullable=False),
        sa.Column("service_name", sa.String(length=200), nullable=False),
        sa.Column("resource_id", sa.String(length=500), nullable=False),
        sa.Column("tags", sa.Text(), nullable=False),
        sa.Column("charge_category", sa.String(length=32), nullable=False),
    )
    op.create_index("ix_cost_billing_rows_file_sha256", "cost_billing_rows", ["file_sha256"])
    op.create_index("ix_cost_billing_rows_period", "cost_billing_rows", ["charge_period_start", "charge_period_end"])
    op.create_table(
        "cost_imports",
        sa.Column("file_sha256", sa.String(length=64), primary_key=True),
        sa.Column("file_name", sa.String(length=500), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("new_rows", sa.Integer(), nullable=False),
        _utc("imported_at"),
        sa.Column("imported_by", sa.String(length=200), nullable=False),
    )
    op.create_table(
        "cost_hours",
        sa.Column("hour", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("component", sa.String(length=64), primary_key=True),
        sa.Column("cost", sa.String(length=64), nullable=False),
        sa.Column("allocated", sa.String(length=64), nullable=False),
        sa.Column("settled_bets", sa.Integer(), nullable=False),
        sa.Column("voided_bets", sa.Integer(), nullable=False),
        _utc("computed_at"),
    )


def downgrade() -> None:
    op.drop_table("cost_hours")
    op.drop_table("cost_imports")
    op.drop_index("ix_cost_billing_rows_period", table_name="cost_billing_rows")
    op.drop_index("ix_cost_billing_rows_file_sha256", table_name="cost_billing_rows")
    op.drop_table("cost_billing_rows")
