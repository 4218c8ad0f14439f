"""store: kept traces, their spans and their log lines

Revision ID: s0009
Revises: s0008
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "s0009"
down_revision: str | None = "s0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "kept_traces",
        sa.Column("trace_id", sa.String(length=32), primary_key=True),
        sa.Column("slice", sa.String(length=64), nullable=False),
        sa.Column("minute", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.String(length=8), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("kept_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False, server_default="0"),
    )
    op.create_index("ix_kept_traces_slice_minute", "kept_traces", ["slice", "minute"])
    op.create_index("ix_kept_traces_kept_at", "kept_traces", ["kept_at"])
    op.create_table(
        "kept_spans",
        sa.Column("trace_id", sa.String(length=32), primary_key=True),
        sa.Column("span_id", sa.String(length=16), primary_key=True),
        sa.Column("parent_span_id", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("service", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("start_unix_nano", sa.BigInteger(), nullable=False),
        sa.Column("end_unix_nano", sa.BigInteger(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("status_message", sa.Text(), nullable=False),
        sa.Column("attributes", sa.Text(), nullable=False),
        sa.Column("events", sa.Text(), nullable=False),
        sa.Column("links", sa.Text(), nullable=False),
    )
    op.create_table(
        "kept_logs",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("trace_id", sa.String(length=32), nullable=False),
        sa.Column("span_id", sa.String(length=16), nullable=False),
        sa.Column("time_unix_nano", sa.BigInteger(), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("service", sa.String(length=100), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("attributes", sa.Text(), nullable=False),
    )
    op.create_index("ix_kept_logs_trace", "kept_logs", ["trace_id", "time_unix_nano"])


def downgrade() -> None:
    op.drop_table("kept_logs")
    op.drop_table("kept_spans")
    op.drop_table("kept_traces")
