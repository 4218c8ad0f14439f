"""SLO evaluation through the rollups that `controlplane.slo.rollups` keeps: whole UTC days,
then whole hours, then minutes for the ragged ends of windows and for hours not rolled up yet. The
results equal the minute-level `controlplane.slo.evaluate_all` on the same store, float for float.

Usage:

    report = evaluate_all_from_rollups(store_engine, specs, events=events, boundaries=b, at=utcnow())

Budget curves over the same rollups: `controlplane.slo.curves`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime

from sqlalchemy import Connection, Engine, case, func, select

from controlplane.clock import as_utc
from controlplane.slo.engine import BURN_WINDOWS, check_threshold, evaluate, is_over, slo_window, timeslice_bad
from controlplane.slo.minute_store import minute_latency, minute_totals
from controlplane.slo.periods import (
    DAILY,
    HOURLY,
    MINUTES_PER_DAY,
    MINUTES_PER_HOUR,
    floor_minute,
    in_runs,
    minute_index,
    minute_start,
    runs_of,
)
from controlplane.slo.results import SloReport
from controlplane.slo.spec import EventSpec, SloSpec
from controlplane.slo.tables import (
    Series,
    changes_t,
    latency_t,
    rollups_t,
    series_t,
    slices_t,
)
from controlplane.storage import is_sqlite, reader

Piece = tuple[str, int, int]  # ("m", first minute, end minute) | ("h", hour, 0) | ("d", day, 0)


class RolledCounts:
    """An SLI's (events, bad) over windows inside [first, last) minutes, summed from days, hours and minutes.

    Marked hours (minutes changed since they were rolled up) are read as minutes, and days holding a
    mark as hours; with `minutes_only` (a freshness SLI without a timeslice series) everything is."""

    def __init__(
        self, first: int, last: int, *, dirty_hours: set[int], dirty_days: set[int], minutes_only: bool
    ) -> None:
        self.first, self.last = first, last
        self.dirty_hours, self.dirty_days, self.minutes_only = dirty_hours, dirty_days, minutes_only
        self.days: dict[int, list[int]] = {}
        self.hours: dict[int, list[int]] = {}
        self.minutes: dict[int, list[int]] = {}

    def bounds(self, start: datetime, end: datetime) -> tuple[int, int]:
        """The minutes of [start, end) inside the loaded range, as `MinuteCounts.window` clamps them."""
        lo = min(max(minute_index(start), self.first), self.last)
        hi = min(max(minute_index(end), self.first), self.last)
        return lo, hi

    def pieces(self, lo: int, hi: int) -> Iterator[Piece]:
        if hi <= lo:
            return
        h_lo, h_hi = -(-lo // MINUTES_PER_HOUR), hi // MINUTES_PER_HOUR
        if self.minutes_only or h_lo >= h_hi:
            yield ("m", lo, hi)
            return
        if lo < h_lo * MINUTES_PER_HOUR:
            yield ("m", lo, h_lo * MINUTES_PER_HOUR)
        d_lo, d_hi = -(-h_lo // 24), h_hi // 24
        if d_lo >= d_hi:
            yield from self._hours(h_lo, h_hi)
        else:
            yield from self._hours(h_lo, d_lo * 24)
            for d in range(d_lo, d_hi):
                if d in self.dirty_days:
                    yield from self._hours(d * 24, d * 24 + 24)
                else:
                    yield ("d", d, 0)
            yield from self._hours(d_hi * 24, h_hi)
        if h_hi * MINUTES_PER_HOUR < hi:
            yield ("m", h_hi * MINUTES_PER_HOUR, hi)

    def _hours(self, a: int, b: int) -> Iterator[Piece]:
        for h in range(a, b):
            yield (
                ("m", h * MINUTES_PER_HOUR, h * MINUTES_PER_HOUR + MINUTES_PER_HOUR)
                if h in self.dirty_hours
                else ("h", h, 0)
            )

    def window(self, start: datetime, end: datetime) -> tuple[int, int]:
        """(events, bad) in the complete minutes of [start, end); a window not loaded raises KeyError."""
        events = bad = 0
        for kind, a, b in self.pieces(*self.bounds(start, end)):
            if kind == "m":
                for m in range(a, b):
                    e, x = self.minutes[m]
                    events += e
                    bad += x
                continue
            e, x = (self.days if kind == "d" else self.hours)[a]
            events += e
            bad += x
        return events, bad


@contextmanager
def snapshot(engine: Engine) -> Iterator[Connection]:
    """One read transaction for a whole evaluation: rollups, marks and minutes as of one moment."""
    view = reader(engine)
    if not is_sqlite(engine):
        view = view.execution_options(isolation_level="REPEATABLE READ")
    with view.connect() as conn, conn.begin():
        yield conn


def rolled_series(conn: Connection) -> set[Series]:
    return {
        tuple(row)
        for row in conn.execute(select(series_t.c.slice, series_t.c.threshold_seconds, series_t.c.percentile))
    }


def load_rolled_counts(
    conn: Connection,
    spec: SloSpec,
    *,
    earliest: datetime,
    at: datetime,
    windows: Sequence[tuple[datetime, datetime]],
    boundaries: tuple[float, ...],
    series: set[Series],
) -> RolledCounts:
    """The counts of `spec`'s SLI that `windows` (all inside [earliest, at)) need, read from the store."""
    counts = marked_counts(conn, spec, earliest=earliest, at=at, boundaries=boundaries, series=series)
    for start, end in windows:
        for piece, a, b in counts.pieces(*counts.bounds(start, end)):
            if piece == "m":
                counts.minutes.update((m, [0, 0]) for m in range(a, b) if m not in counts.minutes)
            else:
                (counts.days if piece == "d" else counts.hours).setdefault(a, [0, 0])
    for period, unit, into in ((DAILY, MINUTES_PER_DAY, counts.days), (HOURLY, MINUTES_PER_HOUR, counts.hours)):
        if into:
            load_periods(conn, spec, period, unit, into)
    if counts.minutes:
        load_minutes(conn, spec, counts.minutes)
    return counts


def marked_counts(
    conn: Connection,
    spec: SloSpec,
    *,
    earliest: datetime,
    at: datetime,
    boundaries: tuple[float, ...],
    series: set[Series],
) -> RolledCounts:
    """Empty counts of `spec`'s SLI over [earliest, at), knowing which hours and days must be read as
    minutes (changed since they were rolled up); the threshold checked against the boundaries."""
    kind, name = spec.sli.kind, spec.slice
    threshold = spec.sli.threshold_seconds or 0.0
    if kind != "ratio":
        check_threshold(threshold, boundaries, spec)
    first, last = minute_index(earliest), minute_index(at)
    marks = conn.execute(
        select(changes_t.c.period, changes_t.c.start).where(
            changes_t.c.slice == name,
            changes_t.c.start >= minute_start(first // MINUTES_PER_DAY * MINUTES_PER_DAY),
            changes_t.c.start < minute_start(last),
        )
    ).all()
    dirty_hours = {minute_index(start) // MINUTES_PER_HOUR for period, start in marks if period == HOURLY}
    dirty_days = {h // 24 for h in dirty_hours} | {
        minute_index(start) // MINUTES_PER_DAY for period, start in marks if period == DAILY
    }
    return RolledCounts(
        first,
        last,
        dirty_hours=dirty_hours,
        dirty_days=dirty_days,
        minutes_only=kind == "freshness" and (name, threshold, spec.sli.percentile) not in series,
    )


def load_periods(conn: Connection, spec: SloSpec, period: str, unit: int, into: dict[int, list[int]]) -> None:
    """Fill (events, bad) of the SLI's rolled-up periods (`unit` minutes long) numbered by `into`'s keys."""
    name, threshold = spec.slice, spec.sli.threshold_seconds or 0.0
    if spec.sli.kind == "ratio":
        query = select(rollups_t.c.start, rollups_t.c.total, rollups_t.c.bad).where(
            rollups_t.c.slice == name, rollups_t.c.period == period, in_runs(rollups_t.c.start, set(into), unit)
        )
    elif spec.sli.kind == "latency":
        # Summed in the database, a row per period: which labels count as over is decided here, in
        # Python, by the same `is_over` the minute-level evaluation uses.
        where = (latency_t.c.slice == name, latency_t.c.period == period, in_runs(latency_t.c.start, set(into), unit))
        labels = conn.execute(select(latency_t.c.le).where(*where).distinct()).scalars().all()
        over = [le for le in labels if is_over(le, threshold)]
        query = (
            select(
                latency_t.c.start,
                func.sum(latency_t.c.count),
                func.sum(case((latency_t.c.le.in_(over), latency_t.c.count), else_=0)),
            )
            .where(*where)
            .group_by(latency_t.c.start)
        )
    else:
        query = select(slices_t.c.start, slices_t.c.minutes, slices_t.c.bad_minutes).where(
            slices_t.c.slice == name,
            slices_t.c.threshold_seconds == threshold,
            slices_t.c.percentile == spec.sli.percentile,
            slices_t.c.period == period,
            in_runs(slices_t.c.start, set(into), unit),
        )
    for start, events, bad in conn.execute(query):
        into[minute_index(start) // unit] = [int(events), int(bad)]


def load_minutes(conn: Connection, spec: SloSpec, into: dict[int, list[int]]) -> None:
    """Fill per-minute (events, bad) of the SLI, as `controlplane.slo.load_counts` derives them."""
    threshold = spec.sli.threshold_seconds or 0.0
    ranges = [(minute_start(a), minute_start(b)) for a, b in runs_of(into)]
    if spec.sli.kind == "ratio":
        for _, minute, total, bad in minute_totals(conn, spec.slice, ranges):
            entry = into[minute]
            entry[0] += total
            entry[1] += bad
        return
    split: dict[int, list[int]] = {}  # [events, events over the threshold]
    for _, minute, le, count in minute_latency(conn, spec.slice, ranges):
        entry = split.setdefault(minute, [0, 0])
        entry[0] += count
        if is_over(le, threshold):
            entry[1] += count
    for m, (count, over) in split.items():
        if spec.sli.kind == "latency":
            into[m] = [count, over]
        elif count:
            into[m] = [1, timeslice_bad(count, over, spec.sli.percentile)]


def evaluate_all_from_rollups(
    engine: Engine,
    specs: list[SloSpec],
    *,
    events: dict[str, EventSpec],
    boundaries: tuple[float, ...],
    at: datetime,
) -> SloReport:
    """`controlplane.slo.evaluate_all`, read through the rollups: the same report, in time that grows with
    the hours of the windows, not their minutes."""
    at = as_utc(at)
    at = floor_minute(at) if at.second or at.microsecond else at
    results = []
    with snapshot(engine) as conn:
        series = rolled_series(conn)
        for spec in specs:
            _kind, start, end, _days = slo_window(spec, at, events)
            earliest = min(start, at - max(BURN_WINDOWS.values()))
            windows = [(start, end), *((at - length, at) for length in BURN_WINDOWS.values())]
            counts = load_rolled_counts(
                conn, spec, earliest=earliest, at=at, windows=windows, boundaries=boundaries, series=series
            )
            results.append(evaluate(spec, counts, at=at, events=events))
    return SloReport(at=at, slos=results)
