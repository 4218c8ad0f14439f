"""Error-budget curves for charts: an SLO's budget at each step of a range, every point equal to
evaluating the SLO at that instant (`controlplane.slo.evaluate_all`), read through the hour rollups.

Whole hours come from prefix sums over the hours of the range (an hour changed since it was rolled up
is read as its minutes); only the ragged ends of windows that start or end mid-hour are read minute by
minute, so a curve at hour-aligned instants reads about one row per hour of the range.

Usage:

    points = hourly_budget_curve(store_engine, spec, events=events, boundaries=b, at=utcnow(), days=30)
    points = budget_curve(store_engine, spec, events=events, boundaries=b, start=a, end=z, step=timedelta(hours=6))
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine

from controlplane.clock import as_utc
from controlplane.slo.engine import budget, slo_window
from controlplane.slo.periods import HOURLY, MINUTES_PER_HOUR, ONE_MINUTE, floor_minute, minute_index, minute_start
from controlplane.slo.rolled import RolledCounts, load_minutes, load_periods, marked_counts, rolled_series, snapshot
from controlplane.slo.spec import EventSpec, SloSpec


@dataclass(frozen=True)
class BudgetPoint:
    """An SLO's error budget as evaluated at `at` (what `evaluate_all(..., at=at)` reports for it)."""

    at: datetime
    events: int
    bad_events: int
    sli: float
    budget_consumed: float
    budget_remaining: float


def budget_curve(
    engine: Engine,
    spec: SloSpec,
    *,
    events: dict[str, EventSpec],
    boundaries: tuple[float, ...],
    start: datetime,
    end: datetime,
    step: timedelta = timedelta(hours=1),
) -> list[BudgetPoint]:
    """The SLO's error budget at start, start + step, ... up to end (each instant taken to its minute, as
    `evaluate_all` does)."""
    if step < ONE_MINUTE:
        raise ValueError(f"budget curve step {step} is shorter than a minute; use timedelta(hours=1) or longer")
    instants = []
    moment, end = as_utc(start), as_utc(end)
    while moment <= end:
        instants.append(floor_minute(moment))
        moment += step
    return budget_points(engine, spec, events=events, boundaries=boundaries, instants=instants)


def hourly_budget_curve(
    engine: Engine,
    spec: SloSpec,
    *,
    events: dict[str, EventSpec],
    boundaries: tuple[float, ...],
    at: datetime,
    days: int = 30,
) -> list[BudgetPoint]:
    """The budget at every whole hour of the `days` before `at`, then at `at` itself: the chart of a live
    page, cheap because only the last point's window has ragged ends."""
    at = floor_minute(as_utc(at))
    last_hour = minute_index(at) // MINUTES_PER_HOUR
    instants = [minute_start((last_hour - h) * MINUTES_PER_HOUR) for h in range(days * 24, -1, -1)]
    if instants[-1] != at:
        instants.append(at)
    return budget_points(engine, spec, events=events, boundaries=boundaries, instants=instants)


def budget_points(
    engine: Engine,
    spec: SloSpec,
    *,
    events: dict[str, EventSpec],
    boundaries: tuple[float, ...],
    instants: list[datetime],
) -> list[BudgetPoint]:
    """The budget at each of `instants` (ascending, whole minutes)."""
    if not instants:
        return []
    windows = [slo_window(spec, t, events)[1:3] for t in instants]
    earliest = min(min(s for s, _ in windows), instants[0])
    with snapshot(engine) as conn:
        counts = marked_counts(
            conn, spec, earliest=earliest, at=instants[-1], boundaries=boundaries, series=rolled_series(conn)
        )
        prefix = _HourPrefix(counts, windows)
        if counts.hours:
            load_periods(conn, spec, HOURLY, MINUTES_PER_HOUR, counts.hours)
        if counts.minutes:
            load_minutes(conn, spec, counts.minutes)
    prefix.sum_up()
    points = []
    for t, (s, e) in zip(instants, windows, strict=True):
        total, bad = prefix.window(s, e)
        _allowed, consumed = budget(spec.objective, total, bad)
        sli = (total - bad) / total if total else 1.0
        points.append(BudgetPoint(t, total, bad, sli, consumed, 1.0 - consumed))
    return points


class _HourPrefix:
    """(events, bad) over windows inside the loaded range: prefix sums over its whole hours plus the
    minutes of each window's ragged ends. Registers in `counts` what must be read before `sum_up`."""

    def __init__(self, counts: RolledCounts, windows: list[tuple[datetime, datetime]]) -> None:
        self.counts = counts
        self.h_first, self.h_last = -(-counts.first // MINUTES_PER_HOUR), counts.last // MINUTES_PER_HOUR
        self.as_minutes = {
            h for h in range(self.h_first, self.h_last) if counts.minutes_only or h in counts.dirty_hours
        }
        for h in range(self.h_first, self.h_last):
            if h in self.as_minutes:
                self._need_minutes(h * MINUTES_PER_HOUR, h * MINUTES_PER_HOUR + MINUTES_PER_HOUR)
            else:
                counts.hours[h] = [0, 0]
        for start, end in windows:
            lo, hi = counts.bounds(start, end)
            h_lo, h_hi = -(-lo // MINUTES_PER_HOUR), hi // MINUTES_PER_HOUR
            if h_lo >= h_hi:
                self._need_minutes(lo, hi)
            else:
                self._need_minutes(lo, h_lo * MINUTES_PER_HOUR)
                self._need_minutes(h_hi * MINUTES_PER_HOUR, hi)
        self.events = [0]
        self.bad = [0]

    def _need_minutes(self, a: int, b: int) -> None:
        minutes = self.counts.minutes
        for m in range(a, b):
            if m not in minutes:
                minutes[m] = [0, 0]

    def sum_up(self) -> None:
        events, bad = 0, 0
        for h in range(self.h_first, self.h_last):
            if h in self.as_minutes:
                e, x = self._minutes(h * MINUTES_PER_HOUR, h * MINUTES_PER_HOUR + MINUTES_PER_HOUR)
            else:
                e, x = self.counts.hours[h]
            events += e
            bad += x
            self.events.append(events)
            self.bad.append(bad)

    def _minutes(self, a: int, b: int) -> tuple[int, int]:
        events = bad = 0
        minutes = self.counts.minutes
        for m in range(a, b):
            e, x = minutes[m]
            events += e
            bad += x
        return events, bad

    def window(self, start: datetime, end: datetime) -> tuple[int, int]:
        lo, hi = self.counts.bounds(start, end)
        h_lo, h_hi = -(-lo // MINUTES_PER_HOUR), hi // MINUTES_PER_HOUR
        if h_lo >= h_hi:
            return self._minutes(lo, hi)
        head, tail = self._minutes(lo, h_lo * MINUTES_PER_HOUR), self._minutes(h_hi * MINUTES_PER_HOUR, hi)
        i, j = h_lo - self.h_first, h_hi - self.h_first
        return (
            head[0] + self.events[j] - self.events[i] + tail[0],
            head[1] + self.bad[j] - self.bad[i] + tail[1],
        )


def ran_out_at(
    engine: Engine,
    spec: SloSpec,
    *,
    events: dict[str, EventSpec],
    boundaries: tuple[float, ...],
    at: datetime,
    days: int = 7,
) -> datetime | None:
    """The minute the SLO's error budget ran out, if it is spent as of `at` and was not at some instant of
    the `days` before (found by the hour, then by the minute inside that hour); None otherwise."""
    hourly = hourly_budget_curve(engine, spec, events=events, boundaries=boundaries, at=at, days=days)
    if not hourly or hourly[-1].budget_remaining > 0 or not hourly[-1].events:
        return None
    left = [i for i, p in enumerate(hourly) if p.budget_remaining > 0]
    if not left:
        return None  # spent for longer than the look-back
    i = left[-1]
    minutes = budget_curve(
        engine, spec, events=events, boundaries=boundaries, start=hourly[i].at, end=hourly[i + 1].at, step=ONE_MINUTE
    )
    return next((p.at for p in minutes if p.budget_remaining <= 0), hourly[i + 1].at)
