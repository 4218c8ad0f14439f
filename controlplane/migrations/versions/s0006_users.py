"""store: dashboard users and their sign-in sessions (kept by the token's SHA-256)

Revision ID: s0006
Revises: s0005
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "s0006"
down_revision: str | None = "s0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _utc(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "dashboard_users",
        sa.Column("username", sa.String(length=64), primary_key=True),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("failed_attempts", sa.Integer(), nullable=False),
        _utc("locked_until", nullable=True),
        _utc("created_at"),
        _utc("last_login_at", nullable=True),
    )
    op.create_table(
        "dashboard_sessions",
        sa.Column("token_sha256", sa.String(length=64), primary_key=True),
        sa.Column("username", sa.String(length=64), sa.ForeignKey("dashboard_users.username"), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        _utc("created_at"),
        _utc("expires_at"),
        _utc("revoked_at", nullable=True),
    )
    op.create_index("ix_dashboard_sessions_username", "dashboard_sessions", ["username"])


def downgrade() -> None:
    op.drop_index("ix_dashboard_sessions_username", table_name="dashboard_sessions")
    op.drop_table("dashboard_sessions")
    op.drop_table("dashboard_users")
