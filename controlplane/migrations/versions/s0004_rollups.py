"""store: hourly and daily rollups of the SLI buckets, and the marks of what changed since

Revision ID: s0004
Revises: s0003
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "s0004"
down_revision: str | None = "s0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MINUTE_TABLES = ("sli_buckets", "sli_latency_buckets")
# The hour a minute row belongs to, as each database stores it (SQLite: SQLAlchemy's text form).
SQLITE_HOUR = "substr({minute}, 1, 13) || ':00:00.000000'"
POSTGRES_HOUR = "date_trunc('hour', {minute} AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"


def _key(*series: sa.Column, last: tuple[sa.Column, ...] = ()) -> list[sa.Column]:
    """Primary key columns in the order reads filter them: slice, series, period, then a range of starts."""
    return [
        sa.Column("slice", sa.String(length=64), primary_key=True),
        *series,
        sa.Column("period", sa.String(length=4), primary_key=True),
        sa.Column("start", sa.DateTime(timezone=True), primary_key=True),
        *last,
    ]


def upgrade() -> None:
    op.create_table(
        "sli_rollups",
        *_key(),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.Column("bad", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "sli_latency_rollups",
        *_key(last=(sa.Column("le", sa.String(length=16), primary_key=True),)),
        sa.Column("count", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "sli_timeslice_series",
        sa.Column("slice", sa.String(length=64), primary_key=True),
        sa.Column("threshold_seconds", sa.Float(), primary_key=True),
        sa.Column("percentile", sa.Float(), primary_key=True),
        sa.Column("built_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "sli_timeslice_rollups",
        *_key(
            sa.Column("threshold_seconds", sa.Float(), primary_key=True),
            sa.Column("percentile", sa.Float(), primary_key=True),
        ),
        sa.Column("minutes", sa.BigInteger(), nullable=False),
        sa.Column("bad_minutes", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "sli_rollup_changes",
        *_key(),
        sa.Column("version", sa.BigInteger(), nullable=False),
    )
    # Every write of a minute row marks its hour, whoever the writer, in the writer's transaction.
    if op.get_bind().dialect.name == "sqlite":
        hour = SQLITE_HOUR.format(minute="NEW.minute")
        for name in MINUTE_TABLES:
            for event in ("INSERT", "UPDATE"):
                op.execute(
                    f"CREATE TRIGGER {name}_mark_{event.lower()} AFTER {event} ON {name} BEGIN "
                    # Not INSERT OR IGNORE: an upsert's own conflict handling overrides a trigger's.
                    "INSERT INTO sli_rollup_changes (slice, period, start, version) "
                    f"SELECT NEW.slice, 'hour', {hour}, 0 WHERE NOT EXISTS (SELECT 1 FROM sli_rollup_changes "
                    f"WHERE slice = NEW.slice AND period = 'hour' AND start = {hour}); "
                    "UPDATE sli_rollup_changes SET version = version + 1 "
                    f"WHERE slice = NEW.slice AND period = 'hour' AND start = {hour}; END"
                )
            op.execute(
                "INSERT OR IGNORE INTO sli_rollup_changes (slice, period, start, version) "
                f"SELECT DISTINCT slice, 'hour', {SQLITE_HOUR.format(minute='minute')}, 1 FROM {name}"
            )
        return
    op.execute(
        "CREATE FUNCTION sli_rollup_mark() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "INSERT INTO sli_rollup_changes (slice, period, start, version) "
        f"VALUES (NEW.slice, 'hour', {POSTGRES_HOUR.format(minute='NEW.minute')}, 1) "
        "ON CONFLICT (slice, period, start) DO UPDATE SET version = sli_rollup_changes.version + 1; "
        "RETURN NULL; END $$"
    )
    for name in MINUTE_TABLES:
        op.execute(
            f"CREATE TRIGGER {name}_mark AFTER INSERT OR UPDATE ON {name} "
            "FOR EACH ROW EXECUTE FUNCTION sli_rollup_mark()"
        )
        op.execute(
            "INSERT INTO sli_rollup_changes (slice, period, start, version) "
            f"SELECT DISTINCT slice, 'hour', {POSTGRES_HOUR.format(minute='minute')}, 1 FROM {name} "
            "ON CONFLICT DO NOTHING"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in MINUTE_TABLES:
            for event in ("insert", "update"):
                op.execute(f"DROP TRIGGER IF EXISTS {name}_mark_{event}")
    else:
        for name in MINUTE_TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS {name}_mark ON {name}")
        op.execute("DROP FUNCTION IF EXISTS sli_rollup_mark()")
    for name in (
        "sli_rollup_changes",
        "sli_timeslice_rollups",
        "sli_timeslice_series",
        "sli_latency_rollups",
        "sli_rollups",
    ):
        op.drop_table(name)
