"""Hourly and daily rollups of the per-minute SLI buckets: what `refresh_rollups` keeps current.

Usage:

    refresh_rollups(store_engine, until=utcnow(), specs=specs)   # the scheduler's `rollups` job
    report = evaluate_all_from_rollups(...)   # controlplane.slo.rolled: evaluation through them

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
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, and_, bindparam, delete, select, text

from controlplane.clock import as_utc
from controlplane.slo.engine import is_over, timeslice_bad
from controlplane.slo.minute_store import ALL_TIME, minute_latency, minute_totals
from controlplane.slo.periods import (
    DAILY,
    HOURLY,
    MINUTES_PER_DAY,
    MINUTES_PER_HOUR,
    PERIOD_MINUTES,
    in_runs,
    minute_index,
    minute_start,
    runs_of,
)
from controlplane.slo.spec import SloSpec
from controlplane.slo.tables import (
    Series,
    changes_t,
    latency_t,
    rollups_t,
    series_t,
    slices_t,
)
from controlplane.storage import is_sqlite

ADVISORY_LOCK = 0x534C4F52  # "SLOR": PostgreSQL advisory lock key of refresh_rollups


@dataclass(frozen=True)
class RollupStats:
    """What one `refresh_rollups` did: hours and days recomputed, timeslice series built, hours still marked."""

    hours: int
    days: int
    series_built: int
    pending_hours: int


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
    cut_hour = minute_index(until) // MINUTES_PER_HOUR
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
            .where(changes_t.c.period == HOURLY, changes_t.c.start < minute_start(cut_hour * MINUTES_PER_HOUR))
            # PostgreSQL: lock the marks now and skip those a writer holds (its minutes are not committed
            # yet; the next run takes them). Waiting for a writer's mark here, while the writer waits for
            # one of ours, would be a deadlock.
            .with_for_update(skip_locked=True)
        ).all()
        by_slice: dict[str, list[int]] = defaultdict(list)
        for slice_name, start, _version in marks:
            by_slice[slice_name].append(minute_index(start) // MINUTES_PER_HOUR)
        for slice_name, hours in by_slice.items():
            for run in runs_of(hours):
                _roll_hours(conn, slice_name, run, series[slice_name])
        if marks:
            conn.execute(
                delete(changes_t).where(
                    changes_t.c.slice == bindparam("s"),
                    changes_t.c.period == HOURLY,
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
                changes_t.c.period == DAILY, changes_t.c.start < minute_start(cut_day * MINUTES_PER_DAY)
            )
        ).all()
        days_by_slice: dict[str, list[int]] = defaultdict(list)
        for slice_name, start in days:
            days_by_slice[slice_name].append(minute_index(start) // MINUTES_PER_DAY)
        for slice_name, day_list in days_by_slice.items():
            for run in runs_of(day_list):
                _roll_days(conn, slice_name, run, series[slice_name])
            conn.execute(
                delete(changes_t).where(
                    changes_t.c.slice == slice_name,
                    changes_t.c.period == DAILY,
                    in_runs(changes_t.c.start, day_list, MINUTES_PER_DAY),
                )
            )
        pending = conn.execute(select(changes_t.c.slice).where(changes_t.c.period == HOURLY)).all()
    return RollupStats(hours=len(marks), days=len(days), series_built=len(new), pending_hours=len(pending))


def _mark_days(conn: Connection, days: set[tuple[str, int]]) -> None:
    # Only refreshes write day marks, and they hold the lock: no conflict to handle.
    existing = {
        (s, minute_index(t) // MINUTES_PER_DAY)
        for s, t in conn.execute(select(changes_t.c.slice, changes_t.c.start).where(changes_t.c.period == DAILY))
    }
    rows = [
        {"slice": s, "period": DAILY, "start": minute_start(d * MINUTES_PER_DAY), "version": 1}
        for s, d in sorted(days - existing)
    ]
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


def _latency_minutes(conn: Connection, slice_name: str, lo: datetime, hi: datetime) -> dict[int, dict[str, int]]:
    per_minute: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for _, minute, le, count in minute_latency(conn, slice_name, [(lo, hi)]):
        per_minute[minute][le] += count
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
                {"slice": slice_name, "period": period, "start": minute_start(i * unit), "total": t, "bad": b}
                for i, (t, b) in sorted(totals.items())
            ],
        ),
        (
            latency_t,
            [
                {"slice": slice_name, "period": period, "start": minute_start(i * unit), "le": le, "count": n}
                for (i, le), n in sorted(les.items())
            ],
        ),
    ):
        own = and_(tbl.c.slice == slice_name, tbl.c.period == period, tbl.c.start >= lo, tbl.c.start < hi)
        _replace(conn, tbl, own, rows)


def _roll_hours(conn: Connection, slice_name: str, run: tuple[int, int], series: list[Series]) -> None:
    """Recompute the hours of `run` from their minutes: totals, latency buckets, timeslices of each series."""
    lo, hi = minute_start(run[0] * MINUTES_PER_HOUR), minute_start(run[1] * MINUTES_PER_HOUR)
    totals: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for _, minute, total, bad in minute_totals(conn, slice_name, [(lo, hi)]):
        entry = totals[minute // MINUTES_PER_HOUR]
        entry[0] += total
        entry[1] += bad
    per_minute = _latency_minutes(conn, slice_name, lo, hi)
    les: dict[tuple[int, str], int] = defaultdict(int)
    for minute, buckets in per_minute.items():
        for le, count in buckets.items():
            les[(minute // MINUTES_PER_HOUR, le)] += count
    _write_period(conn, slice_name, HOURLY, MINUTES_PER_HOUR, (lo, hi), totals, les)
    for key in series:
        _write_timeslices(conn, key, HOURLY, (lo, hi), _timeslices(per_minute, key, MINUTES_PER_HOUR))


def _write_timeslices(
    conn: Connection, key: Series, period: str, span: tuple[datetime, datetime] | None, values: dict[int, list[int]]
) -> None:
    slice_name, threshold, percentile = key
    unit = PERIOD_MINUTES[period]
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
                "start": minute_start(i * unit),
                "minutes": m,
                "bad_minutes": b,
            }
            for i, (m, b) in sorted(values.items())
        ],
    )


def _build_series(conn: Connection, key: Series) -> None:
    """A new freshness series: its timeslices for every hour and day the minutes hold."""
    per_minute = _latency_minutes(conn, key[0], minute_start(0), ALL_TIME)
    _write_timeslices(conn, key, HOURLY, None, _timeslices(per_minute, key, MINUTES_PER_HOUR))
    _write_timeslices(conn, key, DAILY, None, _timeslices(per_minute, key, MINUTES_PER_DAY))
    conn.execute(
        series_t.insert().values(slice=key[0], threshold_seconds=key[1], percentile=key[2], built_at=datetime.now(UTC))
    )


def _roll_days(conn: Connection, slice_name: str, run: tuple[int, int], series: list[Series]) -> None:
    """Recompute the days of `run` from their hour rollups."""
    lo, hi = minute_start(run[0] * MINUTES_PER_DAY), minute_start(run[1] * MINUTES_PER_DAY)

    def hours(tbl: Any, *columns: Any, extra: Any = True) -> list[Any]:
        return list(
            conn.execute(
                select(tbl.c.start, *columns).where(
                    tbl.c.slice == slice_name, tbl.c.period == HOURLY, tbl.c.start >= lo, tbl.c.start < hi, extra
                )
            )
        )

    totals: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for start, total, bad in hours(rollups_t, rollups_t.c.total, rollups_t.c.bad):
        entry = totals[minute_index(start) // MINUTES_PER_DAY]
        entry[0] += total
        entry[1] += bad
    les: dict[tuple[int, str], int] = defaultdict(int)
    for start, le, count in hours(latency_t, latency_t.c.le, latency_t.c.count):
        les[(minute_index(start) // MINUTES_PER_DAY, le)] += count
    _write_period(conn, slice_name, DAILY, MINUTES_PER_DAY, (lo, hi), totals, les)
    for key in series:
        _slice, threshold, percentile = key
        values: dict[int, list[int]] = defaultdict(lambda: [0, 0])
        for start, m, b in hours(
            slices_t,
            slices_t.c.minutes,
            slices_t.c.bad_minutes,
            extra=and_(slices_t.c.threshold_seconds == threshold, slices_t.c.percentile == percentile),
        ):
            entry = values[minute_index(start) // MINUTES_PER_DAY]
            entry[0] += m
            entry[1] += b
        _write_timeslices(conn, key, DAILY, (lo, hi), values)
