"""store: the minutes of past hours packed one row per slice-hour

Revision ID: s0010
Revises: s0009
Create Date: 2026-12-06
"""

import json
import zlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

revision: str = "s0010"
down_revision: str | None = "s0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The minute rows stay where they are: `compact_minutes` (the scheduler's rollup job) moves past
    # hours here; readers see both meanwhile.
    op.create_table(
        "sli_minute_blocks",
        sa.Column("slice", sa.String(length=64), primary_key=True),
        sa.Column("hour", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("minutes", sa.LargeBinary(), nullable=False),
        sqlite_with_rowid=False,
    )


def downgrade() -> None:
    # Packed hours back into minute rows (the block format of `controlplane.slo.minute_store.Block`:
    # zlib-compressed JSON, minutes as offsets from the hour), then the table goes.
    bind = op.get_bind()
    when = sa.DateTime(timezone=True)
    blocks = sa.table("sli_minute_blocks", sa.column("slice"), sa.column("hour", when), sa.column("minutes"))
    tables = {
        "sli_buckets": sa.table(
            "sli_buckets", sa.column("slice"), sa.column("minute", when), sa.column("total"), sa.column("bad")
        ),
        "sli_latency_buckets": sa.table(
            "sli_latency_buckets", sa.column("slice"), sa.column("minute", when), sa.column("le"), sa.column("count")
        ),
    }
    for name, hour, blob in bind.execute(sa.select(blocks.c.slice, blocks.c.hour, blocks.c.minutes)).all():
        hour = hour if hour.tzinfo else hour.replace(tzinfo=UTC)
        for table, row in _unpacked(name, hour, json.loads(zlib.decompress(bytes(blob)))):
            _add(bind, tables[table], row)
    op.drop_table("sli_minute_blocks")


def _unpacked(name: str, hour: datetime, doc: dict) -> list[tuple[str, dict]]:
    rows: list[tuple[str, dict]] = []
    for offset, total, bad in doc["t"]:
        minute = hour + timedelta(minutes=offset)
        rows.append(("sli_buckets", {"slice": name, "minute": minute, "total": total, "bad": bad}))
    for offset, *counts in doc["l"]:
        minute = hour + timedelta(minutes=offset)
        for le, count in zip(doc["le"], counts, strict=True):
            if count is not None:
                rows.append(("sli_latency_buckets", {"slice": name, "minute": minute, "le": le, "count": count}))
    return rows


def _add(bind: sa.Connection, table: sa.TableClause, row: dict) -> None:
    """Add to the minute row (a late event may have written one beside the block)."""
    key = [table.c[k] == row[k] for k in ("slice", "minute", "le") if k in row]
    counts = {k: table.c[k] + row[k] for k in ("total", "bad", "count") if k in row}
    if bind.execute(sa.update(table).where(*key).values(**counts)).rowcount == 0:
        bind.execute(sa.insert(table).values(**row))
