"""trace context: the W3C traceparent of the request behind each outbox event and each bet

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05

Nullable: rows written before, or while tracing is off, have none. The outbox relay's span links to
each event's request, and settlement's spans link to each bet's placement.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (("outbox_events", "traceparent"), ("bets", "placement_traceparent"))


def upgrade() -> None:
    for table, column in COLUMNS:
        with op.batch_alter_table(table) as batch_op:
            batch_op.add_column(sa.Column(column, sa.String(length=55), nullable=True))


def downgrade() -> None:
    for table, column in COLUMNS:
        with op.batch_alter_table(table) as batch_op:
            batch_op.drop_column(column)
