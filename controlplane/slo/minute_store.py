"""Per-minute SLI counts as stored, and read back whichever way they are stored.

Collectors add to minute rows (`sli_buckets`: events and bad events; `sli_latency_buckets`: one row per
latency bucket), which cost about 100 bytes each. Once an hour is past, `compact_minutes` moves its
rows into one row of `sli_minute_blocks` per slice-hour: the same counts, packed and compressed (about
a thirtieth of the size). A late event for a packed hour lands in a minute row again and is packed at
the next compaction. Readers see both: every read of minutes is one statement over the rows and the
blocks together, so a compaction committing meanwhile never counts a minute twice or not at all.

    for slice_name, minute, total, bad in minute_totals(conn, "bet-placement", [(start, end)]): ...
    for slice_name, minute, le, count in minute_latency(conn, None, [(start, end)]): ...
    compact_minutes(store, before=now - timedelta(hours=1))

Rows for one minute may come from both places (a late event): callers add them up. `minute` is the
minute's index (`controlplane.slo.periods.minute_index`).
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Connection,
    Engine,
    LargeBinary,
    String,
    and_,
    cast,
    delete,
    null,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from controlplane.slo.periods import MINUTES_PER_HOUR, minute_index, minute_start
from controlplane.storage import reader
from controlplane.store import SliBucket, SliLatencyBucket, SliMinuteBlock, table

buckets_t, latency_t, blocks_t = table(SliBucket), table(SliLatencyBucket), table(SliMinuteBlock)
Ranges = Sequence[tuple[datetime, datetime]]  # [start, end) each
ALL_TIME = datetime(9999, 1, 1, tzinfo=UTC)  # the end of a range holding every minute

# ------------------------------------------------------------------------------------------ codec


class Block:
    """One slice-hour's minutes: {minute index: [total, bad]} and {minute index: {le: count}}."""

    def __init__(self) -> None:
        self.totals: dict[int, list[int]] = {}
        self.latency: dict[int, dict[str, int]] = {}

    def add_total(self, minute: int, total: int, bad: int) -> None:
        entry = self.totals.setdefault(minute, [0, 0])
        entry[0] += total
        entry[1] += bad

    def add_latency(self, minute: int, le: str, count: int) -> None:
        buckets = self.latency.setdefault(minute, {})
        buckets[le] = buckets.get(le, 0) + count

    def encode(self, hour: int) -> bytes:
        """Compressed JSON: minutes as offsets in the hour, each latency bucket by its place in `le`."""
        labels = sorted({le for buckets in self.latency.values() for le in buckets})
        place = {le: i for i, le in enumerate(labels)}
        rows = []
        for m, buckets in sorted(self.latency.items()):
            counts: list[int | None] = [None] * len(labels)
            for le, n in buckets.items():
                counts[place[le]] = n
            rows.append([m - hour, *counts])
        doc = {"t": [[m - hour, t, b] for m, (t, b) in sorted(self.totals.items())], "le": labels, "l": rows}
        return zlib.compress(json.dumps(doc, separators=(",", ":")).encode(), 9)

    @classmethod
    def decode(cls, blob: bytes, hour: int) -> Block:
        doc = json.loads(zlib.decompress(blob))
        block = cls()
        block.totals = {hour + m: [t, b] for m, t, b in doc["t"]}
        labels = doc["le"]
        block.latency = {
            hour + row[0]: {le: n for le, n in zip(labels, row[1:], strict=True) if n is not None} for row in doc["l"]
        }
        return block


# ------------------------------------------------------------------------------------------ reads


def _within(column: Any, ranges: Ranges, *, hours: bool = False) -> Any:
    """`column` in any of the ranges; for a block's hour, any hour overlapping one (as few ranges of
    whole hours as cover them)."""
    if hours:
        spans = sorted((minute_index(a) // MINUTES_PER_HOUR, math.ceil(b.timestamp() / 3600)) for a, b in ranges)
        merged: list[list[int]] = []
        for a, b in spans:
            if merged and a <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        ranges = [(minute_start(a * MINUTES_PER_HOUR), minute_start(b * MINUTES_PER_HOUR)) for a, b in merged]
    return or_(*(and_(column >= a, column < b) for a, b in ranges))


def _index_ranges(ranges: Ranges) -> list[tuple[int, int]]:
    """The ranges as minute indexes, a minute counted when it starts inside (as a row's `minute >= a`)."""
    return [(math.ceil(a.timestamp() / 60), math.ceil(b.timestamp() / 60)) for a, b in ranges]


def _inside(minute: int, spans: list[tuple[int, int]]) -> bool:
    return any(a <= minute < b for a, b in spans)


def _slice_is(column: Any, slice_name: str | None) -> Any:
    return column == slice_name if slice_name is not None else column.is_not(None)


def minute_totals(conn: Connection, slice_name: str | None, ranges: Ranges) -> Iterator[tuple[str, int, int, int]]:
    """(slice, minute, events, bad) of the minutes in `ranges`, of one slice or (None) of every slice."""
    if not ranges:
        return
    rows = select(
        buckets_t.c.slice, buckets_t.c.minute, buckets_t.c.total, buckets_t.c.bad, cast(null(), LargeBinary)
    ).where(_slice_is(buckets_t.c.slice, slice_name), _within(buckets_t.c.minute, ranges))
    packed = select(
        blocks_t.c.slice, blocks_t.c.hour, cast(null(), BigInteger), cast(null(), BigInteger), blocks_t.c.minutes
    ).where(_slice_is(blocks_t.c.slice, slice_name), _within(blocks_t.c.hour, ranges, hours=True))
    spans = _index_ranges(ranges)
    for name, moment, total, bad, blob in conn.execute(union_all(rows, packed)):
        if blob is None:
            yield name, minute_index(moment), total, bad
            continue
        for minute, (t, b) in Block.decode(bytes(blob), minute_index(moment)).totals.items():
            if _inside(minute, spans):
                yield name, minute, t, b


def minute_latency(conn: Connection, slice_name: str | None, ranges: Ranges) -> Iterator[tuple[str, int, str, int]]:
    """(slice, minute, le, count) of the minutes in `ranges`, per latency bucket (not cumulative)."""
    if not ranges:
        return
    rows = select(
        latency_t.c.slice, latency_t.c.minute, latency_t.c.le, latency_t.c.count, cast(null(), LargeBinary)
    ).where(_slice_is(latency_t.c.slice, slice_name), _within(latency_t.c.minute, ranges))
    packed = select(
        blocks_t.c.slice, blocks_t.c.hour, cast(null(), String), cast(null(), BigInteger), blocks_t.c.minutes
    ).where(_slice_is(blocks_t.c.slice, slice_name), _within(blocks_t.c.hour, ranges, hours=True))
    spans = _index_ranges(ranges)
    for name, moment, le, count, blob in conn.execute(union_all(rows, packed)):
        if blob is None:
            yield name, minute_index(moment), le, count
            continue
        for minute, buckets in Block.decode(bytes(blob), minute_index(moment)).latency.items():
            if _inside(minute, spans):
                for bucket, n in buckets.items():
                    yield name, minute, bucket, n


# ------------------------------------------------------------------------------------ compaction


def _hours_before(conn: Connection, cutoff: datetime) -> list[tuple[str, int]]:
    keys: set[tuple[str, int]] = set()
    for t in (buckets_t, latency_t):
        for name, moment in conn.execute(select(t.c.slice, t.c.minute).where(t.c.minute < cutoff).distinct()):
            keys.add((name, minute_index(moment) // MINUTES_PER_HOUR))
    return sorted(keys)


def compact_hour(conn: Connection, slice_name: str, hour: int) -> int:
    """Move one slice-hour's minute rows into its block (adding to what the block holds). Returns the
    rows moved. The rows are taken by deleting them, so two compactions never move a row twice."""
    first = hour * MINUTES_PER_HOUR
    lo, hi = minute_start(first), minute_start(first + MINUTES_PER_HOUR)
    moved_totals = conn.execute(
        delete(buckets_t)
        .where(buckets_t.c.slice == slice_name, buckets_t.c.minute >= lo, buckets_t.c.minute < hi)
        .returning(buckets_t.c.minute, buckets_t.c.total, buckets_t.c.bad)
    ).all()
    moved_latency = conn.execute(
        delete(latency_t)
        .where(latency_t.c.slice == slice_name, latency_t.c.minute >= lo, latency_t.c.minute < hi)
        .returning(latency_t.c.minute, latency_t.c.le, latency_t.c.count)
    ).all()
    if not moved_totals and not moved_latency:
        return 0
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    key = (blocks_t.c.slice == slice_name, blocks_t.c.hour == lo)
    conn.execute(
        insert(blocks_t).values(slice=slice_name, hour=lo, minutes=Block().encode(first)).on_conflict_do_nothing()
    )
    held = conn.execute(select(blocks_t.c.minutes).where(*key).with_for_update()).scalar_one()
    block = Block.decode(bytes(held), first)
    for moment, total, bad in moved_totals:
        block.add_total(minute_index(moment), total, bad)
    for moment, le, count in moved_latency:
        block.add_latency(minute_index(moment), le, count)
    conn.execute(update(blocks_t).where(*key).values(minutes=block.encode(first)))
    return len(moved_totals) + len(moved_latency)


def compact_minutes(engine: Engine, *, before: datetime, hours_per_transaction: int = 100) -> dict[str, int]:
    """Pack the minute rows of every slice-hour that ended by `before` into their blocks."""
    cutoff = minute_start(minute_index(before) // MINUTES_PER_HOUR * MINUTES_PER_HOUR)
    with reader(engine).connect() as conn:
        keys = _hours_before(conn, cutoff)
    moved = 0
    for i in range(0, len(keys), hours_per_transaction):
        with engine.begin() as conn:
            moved += sum(compact_hour(conn, name, hour) for name, hour in keys[i : i + hours_per_transaction])
    return {"slice_hours": len(keys), "rows_moved": moved}
