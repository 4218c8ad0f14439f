"""audit: per-subject HMAC keys, kept outside the append-only log (deleting one crypto-shreds it)

Revision ID: a0002
Revises: a0001
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a0002"
down_revision: str | None = "a0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_subject_keys",
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("hmac_key", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("subject"),
    )


def downgrade() -> None:
    op.drop_table("audit_subject_keys")
