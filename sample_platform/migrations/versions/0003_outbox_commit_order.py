"""outbox: commit_seq, assigned in commit order by the database

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27

PostgreSQL hands out sequence values when a row is inserted, not when its transaction commits, so
a relay reading by `seq` could pass a row that commits later. Here every outbox row gets its
`commit_seq` from a deferred constraint trigger, which runs inside COMMIT: it takes one
transaction-scoped advisory lock (released only after the commit is visible) and draws the next
value, so `commit_seq` order is commit order and no lower value can appear later. The lock is held
for the commit itself only, with no client round trip inside it. SQLite serialises writers with
BEGIN IMMEDIATE, so there `commit_seq` is simply `seq`, set by an ordinary trigger.
"""

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: Union[str, None] = "0002"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

OUTBOX_LOCK_KEY = 0x4F5554424F58  # 'OUTBOX'


def upgrade() -> None:
    with op.batch_alter_table("outbox_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("commit_seq", sa.BigInteger(), nullable=True))
        batch_op.create_unique_constraint("uq_outbox_events_commit_seq", ["commit_seq"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE SEQUENCE outbox_commit_seq")
        op.execute(
            f"""
            CREATE FUNCTION outbox_assign_commit_seq() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                PERFORM pg_advisory_xact_lock({OUTBOX_LOCK_KEY});
                UPDATE outbox_events SET commit_seq = nextval('outbox_commit_seq') WHERE seq = NEW.seq;
                RETURN NULL;
            END $$
            """
        )
        op.execute(
            """
            CREATE CONSTRAINT TRIGGER outbox_commit_seq AFTER INSERT ON outbox_events
            DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION outbox_assign_commit_seq()
            """
        )
        op.execute("UPDATE outbox_events SET commit_seq = nextval('outbox_commit_seq') WHERE commit_seq IS NULL")
    else:
        op.execute(
            """
            CREATE TRIGGER outbox_commit_seq AFTER INSERT ON outbox_events
            BEGIN
                UPDATE outbox_events SET commit_seq = NEW.seq WHERE seq = NEW.seq;
            END
            """
        )
        op.execute("UPDATE outbox_events SET commit_seq = seq WHERE commit_seq IS NULL")


def downgrade() -> None:
    op.execute(
        "DROP TRIGGER IF EXISTS outbox_commit_seq"
        + (" ON outbox_events" if op.get_bind().dialect.name == "postgresql" else "")
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS outbox_assign_commit_seq()")
        op.execute("DROP SEQUENCE IF EXISTS outbox_commit_seq")
    with op.batch_alter_table("outbox_events", schema=None) as batch_op:
        batch_op.drop_constraint("uq_outbox_events_commit_seq", type_="unique")
        batch_op.drop_column("commit_seq")
