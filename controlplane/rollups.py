"""Hourly and daily rollups of the per-minute SLI buckets, and SLO evaluation through them.

Usage:

    refresh_rollups(store_engine, until=utcnow(), specs=specs)   # the scheduler's `rollups` job, every minute
    report = evaluate_all_from_rollups(store_engine, specs, events=events, boundaries=b, at=utcnow())

What changed, and why this way: every write of a minute row (`sli_buckets`, `sli_latency_buckets`)
marks its slice-hour in `sli_rollup_changes`, by a database trigger in the same transaction, so no
writer (the collector, the demo, a user's backfill) can forget to; each mark carries a version the
trigger bumps. `refresh_rollups` recomputes each marked hour that is complete by `until` from its
minutes (never by adding to the old value, so running it twice changes nothing), then deletes the
mark only if its version is still the one it read: a minute written meanwhile keeps the hour marked
for the next run. A rolled hour marks its UTC day, and a day complete by `until` is recomputed from
its hours. Refreshes take a lock (SQLite's single writer; a PostgreSQL advisory lock), so two
running at once cannot write an older recount over a newer one; on PostgreSQL a refresh also locks
the marks it takes when it reads them, skipping those a writer's open transaction holds, so it never
waits for a writer and the two cannot deadlock. Marking beats recomputing the last
N hours: data arriving days late (a collector catching up) is picked up, and quiet hours cost nothing.

Evaluation is exact, not eventually so: it uses a day only when no mark lies inside it, an hour only
when it is not marked, and minutes for marked hours and for the ragged ends of windows that start or
end mid-hour, so it equals `controlplane.slo.evaluate_all` on the same store at any moment.
Freshness SLIs count minutes whose percentile is under a threshold: no sum of buckets gives that,
so a freshness SLO gets its own series of rolled-up timeslice counts, keyed by (slice, threshold,
percentile), built the first time `refresh_rollups` is handed its spec; until then it reads minutes.
Deleting minute rows (retention) does not mark anything: rollups keep what the minutes held.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    DateTime,
    Engine,
    Float,
    and_,
    bindparam,
    delete,
    or_,
    select,
    text,
)
from sqlmodel import Field

from controlplane.clock import as_utc
from controlplane.slo import (
    is_over,
    minute_index,
    timeslice_bad,
)
from controlplane.slo_spec import SloSpec
from controlplane.storage import is_sqlite
from controlplane.store import SliBucket, SliLatencyBucket, StoreModel, table

HOUR, DAY = "hour", "day"
ADVISORY_LOCK = 0x534C4F52  # "SLOR": PostgreSQL advisory lock key of refresh_rollups
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
NAIVE_EPOCH = EPOCH.replace(tzinfo=None)
ONE_MINUTE = timedelta(minutes=1)


def _utc(*, primary_key: bool = False) -> Column:
    return Column(DateTime(timezone=True), nullable=False, primary_key=primary_key)


def _count() -> Column:
    return Column(BigInteger(), nullable=False)


class SliRollup(StoreModel, table=True):
    """A slice's events and bad events over one hour or one UTC day (`period`), from its minutes."""

    __tablename__ = "sli_rollups"

    slice: str = Field(primary_key=True, max_length=64)
    period: str = Field(primary_key=True, max_length=4)  # hour | day
    start: datetime = Field(sa_column=_utc(primary_key=True))
    total: int = Field(sa_column=_count())
    bad: int = Field(sa_column=_count())


class SliLatencyRollup(StoreModel, table=True):
    """Per-bucket latency counts of a slice over one hour or day (not cumulative, as the minutes)."""

    __tablename__ = "sli_latency_rollups"

    slice: str = Field(primary_key=True, max_length=64)
    period: str = Field(primary_key=True, max_length=4)
    start: datetime = Field(sa_column=_utc(primary_key=True))
    le: str = Field(primary_key=True, max_length=16)
    count: int = Field(sa_column=_count())


class SliTimesliceSeries(StoreModel, table=True):
    """A freshness SLI whose timeslices are rolled up: built once, then kept with the other rollups."""

    __tablename__ = "sli_timeslice_series"

    slice: str = Field(primary_key=True, max_length=64)
    threshold_seconds: float = Field(sa_column=Column(Float(), primary_key=True))
    percentile: float = Field(sa_column=Column(Float(), primary_key=True))
    built_at: datetime = Field(sa_column=_utc())


class SliTimesliceRollup(StoreModel, table=True):
    """Of one series, over one hour or day: minutes with data, and how many of them were bad."""

    __tablename__ = "sli_timeslice_rollups"

    slice: str = Field(primary_key=True, max_length=64)
    threshold_seconds: float = Field(sa_column=Column(Float(), primary_key=True))
    percentile: float = Field(sa_column=Column(Float(), primary_key=True))
    period: str = Field(primary_key=True, max_length=4)
    start: datetime = Field(sa_column=_utc(primary_key=True))
    minutes: int = Field(sa_column=_count())
    bad_minutes: int = Field(sa_column=_count())


class SliRollupChange(StoreModel, table=True):
    """An hour whose minutes changed, or a day whose hours did, since they were last rolled up."""

    __tablename__ = "sli_rollup_changes"

    slice: str = Field(primary_key=True, max_length=64)
    period: str = Field(primary_key=True, max_length=4)
    start: datetime = Field(sa_column=_utc(primary_key=True))
    version: int = Field(sa_column=_count())


rollups_t, latency_t, series_t = table(SliRollup), table(SliLatencyRollup), table(SliTimesliceSeries)
slices_t, changes_t = table(SliTimesliceRollup), table(SliRollupChange)
buckets_t, minutes_lat_t = table(SliBucket), table(SliLatencyBucket)
Series = tuple[str, float, float]  # slice, threshold_seconds, percentile


@dataclass(frozen=True)
class RollupStats:
    """What one `refresh_rollups` did: hours and days recomputed, timeslice series built, hours still marked."""

    hours: int
    days: int
    series_built: int
    pending_hours: int


def minute_of(value: datetime) -> int:
    """Minutes since the epoch of a stored time (SQLite hands back naive UTC, PostgreSQL aware times)."""
    return (value - (NAIVE_EPOCH if value.tzinfo is None else EPOCH)) // ONE_MINUTE


def at_minute(index: int) -> datetime:
    return EPOCH + index * ONE_MINUTE


def runs_of(indexes: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted indexes as half-open runs of consecutive ones: [3, 4, 5, 9] -> [(3, 6), (9, 10)]."""
    runs: list[tuple[int, int]] = []
    for i in sorted(set(indexes)):
        if runs and runs[-1][1] == i:
            runs[-1] = (runs[-1][0], i + 1)
        else:
            runs.append((i, i + 1))
    return runs


def in_runs(column: Any, indexes: Iterable[int], unit: int) -> Any:
    """`column` within any of the periods of `unit` minutes numbered `indexes` (one range per run of them)."""
    return or_(*(and_(column >= at_minute(a * unit), column < at_minute(b * unit)) for a, b in runs_of(indexes)))


# ---------------------------------------------------------------------------------------- refresh


@contextmanager
def _refresh_transaction(engine: Engine) -> Iterator[Connection]:
    with engine.begin() as conn:  # SQLite: BEGIN IMMEDIATE, one writer at a time
        if not is_sqlite(engine):
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK})
        yield conn


def refresh_rollups(engine: Engine, *, until: datetime, specs: Sequence[SloSpec] = ()) -> RollupStats:
    """Fold the marked hours complete by `until` into hour rollups and the days complete by then into day
    rollups; build timeslice series for freshness `specs` not yet rolled up. Idempotent; safe to run
    concurrently (refreshes serialise) and beside writers of minutes."""
    until = as_utc(until)
    cut_hour = minute_index(until) // 60
    cut_day = cut_hour // 24
    with _refresh_transaction(engine) as conn:
        known = {
            (s, t, p)
            for s, t, p in conn.execute(select(series_t.c.slice, series_t.c.threshold_seconds, series_t.c.percentile))
        }
        new = sorted(
            {(s.slice, s.sli.threshold_seconds or 0.0, s.sli.percentile) for s in specs if s.sli.kind == "freshness"}
            - known
        )
        series: dict[str, list[Series]] = defaultdict(list)
        for key in sorted(known | set(new)):
            series[key[0]].append(key)
        marks = conn.execute(
            select(changes_t.c.slice, changes_t.c.start, changes_t.c.version)
            .where(changes_t.c.period == HOUR, changes_t.c.start < at_minute(cut_hour * 60))
            # PostgreSQL: lock the marks now and skip those a writer holds (its minutes are not committed
            # yet; the next run takes them). Waiting for a writer's mark here, while the writer waits for
            # one of ours, would be a deadlock.
            .with_for_update(skip_locked=True)
        ).all()
        by_slice: dict[str, list[int]] = defaultdict(list)
        for slice_name, start, _version in marks:
            by_slice[slice_name].append(minute_of(start) // 60)
        for slice_name, hours in by_slice.items():
            for run in runs_of(hours):
                _roll_hours(conn, slice_name, run, series[slice_name])
        if marks:
            conn.execute(
                delete(changes_t).where(
                    changes_t.c.slice == bindparam("s"),
                    changes_t.c.period == HOUR,
                    changes_t.c.start == bindparam("t"),
                    changes_t.c.version == bindparam("v"),
                ),
                [{"s": s, "t": t, "v": v} for s, t, v in marks],
            )
            _mark_days(conn, {(s, h // 24) for s, hours in by_slice.items() for h in hours})
        for key in new:
            _build_series(conn, key)
        days = conn.execute(
            select(changes_t.c.slice, changes_t.c.start).where(
                changes_t.c.period == DAY, changes_t.c.start < at_minute(cut_day * 1440)
            )
        ).all()
        days_by_slice: dict[str, list[int]] = defaultdict(list)
        for slice_name, start in days:
            days_by_slice[slice_name].append(minute_of(start) // 1440)
        for slice_name, day_list in days_by_slice.items():
            for run in runs_of(day_list):
                _roll_days(conn, slice_name, run, series[slice_name])
            conn.execute(
                delete(changes_t).where(
                    changes_t.c.slice == slice_name,
                    changes_t.c.period == DAY,
                    in_runs(changes_t.c.start, day_list, 1440),
                )
            )
        pending = conn.execute(select(changes_t.c.slice).where(changes_t.c.period == HOUR)).all()
    return RollupStats(hours=len(marks), days=len(days), series_built=len(new), pending_hours=len(pending))


def _mark_days(conn: Connection, days: set[tuple[str, int]]) -> None:
    # Only refreshes write day marks, and they hold the lock: no conflict to handle.
    existing = {
        (s, minute_of(t) // 1440)
        for s, t in conn.execute(select(changes_t.c.slice, changes_t.c.start).where(changes_t.c.period == DAY))
    }
    rows = [{"slice": s, "period": DAY, "start": at_minute(d * 1440), "version": 1} for s, d in sorted(days - existing)]
    if rows:
        conn.execute(changes_t.insert(), rows)


def _timeslices(per_minute: dict[int, dict[str, int]], key: Series, unit: int) -> dict[int, list[int]]:
    """Per `unit`-minute period: [minutes with data, bad minutes] of a series, from per-minute buckets."""
    _slice, threshold, percentile = key
    out: dict[int, list[int]] = {}
    for minute, buckets in per_minute.items():
        count = sum(buckets.values())
        if not count:
            continue
        over = sum(n for le, n in buckets.items() if is_over(le, threshold))
        entry = out.setdefault(minute // unit, [0, 0])
        entry[0] += 1
        entry[1] += timeslice_bad(count, over, percentile)
    return out


def _latency_minutes(conn: Connection, slice_name: str, where: Any) -> dict[int, dict[str, int]]:
    per_minute: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    rows = conn.execute(
        select(minutes_lat_t.c.minute, minutes_lat_t.c.le, minutes_lat_t.c.count).where(
            minutes_lat_t.c.slice == slice_name, where
        )
    )
    for minute, le, count in rows:
        per_minute[minute_of(minute)][le] += count
    return per_minute


def _replace(conn: Connection, tbl: Any, where: Any, rows: list[dict[str, Any]]) -> None:
    conn.execute(delete(tbl).where(where))
    if rows:
        conn.execute(tbl.insert(), rows)


def _write_period(
    conn: Connection,
    slice_name: str,
    period: str,
    unit: int,
    span: tuple[datetime, datetime],
    totals: dict[int, list[int]],
    les: dict[tuple[int, str], int],
) -> None:
    """Replace the `period` rollups of the slice in [span) by `totals` ({index: [total, bad]}) and `les`
    ({(index, le): count}), an index counting units of `unit` minutes."""
    lo, hi = span
    for tbl, rows in (
        (
            rollups_t,
            [
                {"slice": slice_name, "period": period, "start": at_minute(i * unit), "total": t, "bad": b}
                for i, (t, b) in sorted(totals.items())
            ],
        ),
        (
            latency_t,
            [
                {"slice": slice_name, "period": period, "start": at_minute(i * unit), "le": le, "count": n}
                for (i, le), n in sorted(les.items())
            ],
        ),
    ):
        own = and_(tbl.c.slice == slice_name, tbl.c.period == period, tbl.c.start >= lo, tbl.c.start < hi)
        _replace(conn, tbl, own, rows)


def _roll_hours(conn: Connection, slice_name: str, run: tuple[int, int], series: list[Series]) -> None:
    """Recompute the hours of `run` from their minutes: totals, latency buckets, timeslices of each series."""
    lo, hi = at_minute(run[0] * 60), at_minute(run[1] * 60)
    totals: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for minute, total, bad in conn.execute(
        select(buckets_t.c.minute, buckets_t.c.total, buckets_t.c.bad).where(
            buckets_t.c.slice == slice_name, buckets_t.c.minute >= lo, buckets_t.c.minute < hi
        )
    ):
        entry = totals[minute_of(minute) // 60]
        entry[0] += total
        entry[1] += bad
    per_minute = _latency_minutes(conn, slice_name, and_(minutes_lat_t.c.minute >= lo, minutes_lat_t.c.minute < hi))
    les: dict[tuple[int, str], int] = defaultdict(int)
    for minute, buckets in per_minute.items():
        for le, count in buckets.items():
            les[(minute // 60, le)] += count
    _write_period(conn, slice_name, HOUR, 60, (lo, hi), totals, les)
    for key in series:
        _write_timeslices(conn, key, HOUR, (lo, hi), _timeslices(per_minute, key, 60))


def _write_timeslices(
    conn: Connection, key: Series, period: str, span: tuple[datetime, datetime] | None, values: dict[int, list[int]]
) -> None:
    slice_name, threshold, percentile = key
    unit = 60 if period == HOUR else 1440
    own = and_(
        slices_t.c.slice == slice_name,
        slices_t.c.threshold_seconds == threshold,
        slices_t.c.percentile == percentile,
        slices_t.c.period == period,
        *((slices_t.c.start >= span[0], slices_t.c.start < span[1]) if span else ()),
    )
    _replace(
        conn,
        slices_t,
        own,
        [
            {
                "slice": slice_name,
                "threshold_seconds": threshold,
                "percentile": percentile,
                "period": period,
                "start": at_minute(i * unit),
                "minutes": m,
                "bad_minutes": b,
            }
            for i, (m, b) in sorted(values.items())
        ],
    )


def _build_series(conn: Connection, key: Series) -> None:
    """A new freshness series: its timeslices for every hour and day the minutes hold."""
    per_minute = _latency_minutes(conn, key[0], True)
    _write_timeslices(conn, key, HOUR, None, _timeslices(per_minute, key, 60))
    _write_timeslices(conn, key, DAY, None, _timeslices(per_minute, key, 1440))
    conn.execute(
        series_t.insert().values(slice=key[0], threshold_seconds=key[1], percentile=key[2], built_at=datetime.now(UTC))
    )


def _roll_days(conn: Connection, slice_name: str, run: tuple[int, int], series: list[Series]) -> None:
    """Recompute the days of `run` from their hour rollups."""
    lo, hi = at_minute(run[0] * 1440), at_minute(run[1] * 1440)

    def hours(tbl: Any, *columns: Any, extra: Any = True) -> list[Any]:
        return list(
            conn.execute(
                select(tbl.c.start, *columns).where(
                    tbl.c.slice == slice_name, tbl.c.period == HOUR, tbl.c.start >= lo, tbl.c.start < hi, extra
                )
            )
        )

    totals: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for start, total, bad in hours(rollups_t, rollups_t.c.total, rollups_t.c.bad):
        entry = totals[minute_of(start) // 1440]
        entry[0] += total
        entry[1] += bad
    les: dict[tuple[int, str], int] = defaultdict(int)
    for start, le, count in hours(latency_t, latency_t.c.le, latency_t.c.count):
        les[(minute_of(start) // 1440, le)] += count
    _write_period(conn, slice_name, DAY, 1440, (lo, hi), totals, les)
    for key in series:
        _slice, threshold, percentile = key
        values: dict[int, list[int]] = defaultdict(lambda: [0, 0])
        for start, m, b in hours(
            slices_t,
            slices_t.c.minutes,
            slices_t.c.bad_minutes,
            extra=and_(slices_t.c.threshold_seconds == threshold, slices_t.c.percentile == percentile),
        ):
            entry = values[minute_of(start) // 1440]
            entry[0] += m
            entry[1] += b
        _write_timeslices(conn, key, DAY, (lo, hi), values)
