"""store: readiness checklist runs, results, attestations, waivers

Revision ID: s0002
Revises: s0001
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "s0002"
down_revision: str | None = "s0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "checklist_runs",
        sa.Column("run_id", sa.String(length=32), primary_key=True),
        sa.Column("event", sa.String(length=64), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("spec_path", sa.Text(), nullable=False),
        sa.Column("spec_digest", sa.String(length=64), nullable=False),
        sa.Column("audit_seq", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_checklist_runs_event", "checklist_runs", ["event"])
    op.create_index("ix_checklist_runs_at", "checklist_runs", ["at"])
    op.create_table(
        "checklist_results",
        sa.Column("run_id", sa.String(length=32), primary_key=True),
        sa.Column("position", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("check_id", sa.String(length=64), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("evidence_digest", sa.String(length=64), nullable=False),
        sa.Column("result", sa.Text(), nullable=False),
    )
    for name in ("checklist_attestations", "checklist_waivers"):
        people = (
            [sa.Column("by", sa.String(length=200), nullable=False), sa.Column("note", sa.Text(), nullable=True)]
            if name == "checklist_attestations"
            else [
                sa.Column("requested_by", sa.String(length=200), nullable=False),
                sa.Column("approved_by", sa.String(length=200), nullable=False),
                sa.Column("reason", sa.Text(), nullable=False),
            ]
        )
        op.create_table(
            name,
            sa.Column("id", sa.String(length=32), primary_key=True),
            sa.Column("check_id", sa.String(length=64), nullable=False),
            sa.Column("event", sa.String(length=64), nullable=True),
            *people,
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("audit_seq", sa.BigInteger(), nullable=True),
        )
        op.create_index(f"ix_{name}_check", name, ["check_id", "expires_at"])


def downgrade() -> None:
    op.drop_table("checklist_waivers")
    op.drop_table("checklist_attestations")
    op.drop_table("checklist_results")
    op.drop_table("checklist_runs")
