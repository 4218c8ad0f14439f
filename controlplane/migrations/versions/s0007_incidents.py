"""store: incidents, opened by page alerts or declared, with their record kept at close

Revision ID: s0007
Revises: s0006
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "s0007"
down_revision: str | None = "s0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _utc(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "incidents",
        sa.Column("id", sa.String(length=96), primary_key=True),
        sa.Column("slice", sa.String(length=64), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        _utc("opened_at"),
        sa.Column("opened_by", sa.String(length=64), nullable=False),
        sa.Column("opened_seq", sa.BigInteger(), nullable=True),
        _utc("closed_at", nullable=True),
        sa.Column("closed_seq", sa.BigInteger(), nullable=True),
        sa.Column("record", sa.Text(), nullable=True),
    )
    op.create_index("ix_incidents_slice_opened", "incidents", ["slice", "opened_at"])


def downgrade() -> None:
    op.drop_index("ix_incidents_slice_opened", table_name="incidents")
    op.drop_table("incidents")
