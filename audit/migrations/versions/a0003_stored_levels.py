"""audit: subtree hashes kept every 4 levels; leaf hashes only beside their entries

Before, `audit_nodes` held the hash of every complete subtree, the leaves included (a copy of
`audit_entries.leaf_hash`): two node rows per entry. Now it holds those at levels 4, 8, 12, ...;
the others are hashed from at most 16 stored ones when a proof needs them. The rows removed are
derived data, recomputable from the entries: nothing the log attests is lost, and `audit verify`
still checks every stored hash. The append-only guard is lifted for this one statement by the
migration (run as the tables' owner) and put back in the same transaction.

Revision ID: a0003
Revises: a0002
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a0003"
down_revision: str | None = "a0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STRIDE = 4  # audit.stored_tree.STRIDE when this revision was written
GUARD = "the audit log is append-only: DELETE on audit_nodes refused"


def _without_delete_guard(statement: str) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE audit_nodes DISABLE TRIGGER audit_nodes_append_only")
        op.execute(statement)
        op.execute("ALTER TABLE audit_nodes ENABLE TRIGGER audit_nodes_append_only")
    else:
        op.execute("DROP TRIGGER audit_nodes_no_delete")
        op.execute(statement)
        op.execute(
            "CREATE TRIGGER audit_nodes_no_delete BEFORE DELETE ON audit_nodes "
            f"BEGIN SELECT RAISE(ABORT, '{GUARD}'); END"
        )


def upgrade() -> None:
    _without_delete_guard(f"DELETE FROM audit_nodes WHERE level = 0 OR level % {STRIDE} <> 0")


def downgrade() -> None:
    """Every complete subtree's hash again, the leaves included, computed from the entries."""
    from hashlib import sha256

    bind = op.get_bind()
    level = [bytes.fromhex(h) for (h,) in bind.execute(sa.text("SELECT leaf_hash FROM audit_entries ORDER BY seq"))]
    rows = []
    depth = 0
    while level:
        if depth % STRIDE or depth == 0:
            rows += [{"level": depth, "idx": i, "hash": h.hex()} for i, h in enumerate(level)]
        level = [sha256(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)]
        depth += 1
    if rows:
        bind.execute(sa.text("INSERT INTO audit_nodes (level, idx, hash) VALUES (:level, :idx, :hash)"), rows)
