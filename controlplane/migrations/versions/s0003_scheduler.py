"""store: scheduler (SLO snapshots, alert transitions and deliveries, leader lease, scheduled runs)

Revision ID: s0003
Revises: s0002
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "s0003"
down_revision: str | None = "s0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _utc(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "slo_snapshots",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("slo", sa.String(length=64), nullable=False),
        sa.Column("slice", sa.String(length=64), nullable=False),
        _utc("at"),
        sa.Column("sli", sa.Float(), nullable=False),
        sa.Column("events", sa.BigInteger(), nullable=False),
        sa.Column("bad_events", sa.BigInteger(), nullable=False),
        sa.Column("budget_remaining", sa.Float(), nullable=False),
        sa.Column("page", sa.Boolean(), nullable=False),
        sa.Column("ticket", sa.Boolean(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
    )
    op.create_index("ix_slo_snapshots_slo_at", "slo_snapshots", ["slo", "at"], unique=True)
    op.create_table(
        "alert_transitions",
        sa.Column("id", sa.String(length=32), primary_key=True),
        sa.Column("slo", sa.String(length=64), nullable=False),
        sa.Column("slice", sa.String(length=64), nullable=False),
        sa.Column("severity", sa.String(length=8), nullable=False),
        sa.Column("state", sa.String(length=8), nullable=False),
        _utc("at"),
        _utc("started_at"),
        sa.Column("detail", sa.Text(), nullable=False),
    )
    op.create_index("ix_alert_transitions_slo", "alert_transitions", ["slo"])
    op.create_index("ix_alert_transitions_at", "alert_transitions", ["at"])
    op.create_table(
        "alert_deliveries",
        sa.Column("transition_id", sa.String(length=32), primary_key=True),
        sa.Column("receiver", sa.String(length=64), primary_key=True),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        _utc("next_attempt_at"),
        _utc("delivered_at", nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
    )
    op.create_index("ix_alert_deliveries_pending", "alert_deliveries", ["delivered_at", "next_attempt_at"])
    op.create_table(
        "scheduler_lease",
        sa.Column("name", sa.String(length=64), primary_key=True),
        sa.Column("holder", sa.String(length=200), nullable=False),
        _utc("acquired_at"),
        _utc("expires_at"),
    )
    op.create_table(
        "scheduled_runs",
        sa.Column("key", sa.String(length=200), primary_key=True),
        sa.Column("job", sa.String(length=64), nullable=False),
        _utc("due_at"),
        _utc("ran_at"),
        sa.Column("outcome", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    for name in ("scheduled_runs", "scheduler_lease", "alert_deliveries", "alert_transitions", "slo_snapshots"):
        op.drop_table(name)
