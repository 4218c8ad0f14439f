"""An SLO over time for charts: events, bad events and the error ratio step by step (a minute for ranges
up to a day, an hour beyond), and the burn rate over each alerting window at the end of every step.

Read through the rollups (`controlplane.slo.rolled`): whole hours come from the hour rollups, minutes from
the minute buckets, so a 30-day range at hourly steps reads about 800 rows and a day at minute steps
about 1,500 plus the longest burn window's look-back.

At a whole-minute `end`, the last point's burn rates equal what `evaluate_all(..., at=end)` reports.

Usage:

    series = slo_series(store, spec, start=at - timedelta(hours=1), end=at, boundaries=b)
    [p.error_ratio for p in series.points]        # one per minute
    series.burn["1h"]                             # the burn rate over the hour before each step's end
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine

from controlplane.clock import as_utc
from controlplane.slo.engine import BURN_WINDOWS, PAGE_RULES, TICKET_RULES
from controlplane.slo.periods import HOUR, ONE_MINUTE, floor_minute
from controlplane.slo.rolled import load_rolled_counts, rolled_series, snapshot
from controlplane.slo.spec import SloSpec

MINUTE_STEPS_UP_TO = timedelta(hours=24)
RULE_WINDOWS = tuple(dict.fromkeys(long for long, _short, _burn in PAGE_RULES + TICKET_RULES))


@dataclass(frozen=True)
class StepCounts:
    """(events, bad) in [start, end): one step of a series."""

    start: datetime
    end: datetime
    events: int
    bad: int

    @property
    def error_ratio(self) -> float | None:
        return self.bad / self.events if self.events else None

    @property
    def sli(self) -> float | None:
        return (self.events - self.bad) / self.events if self.events else None


@dataclass(frozen=True)
class SloSeries:
    slo: str
    objective: float
    step: timedelta
    points: tuple[StepCounts, ...]
    burn: Mapping[str, tuple[float | None, ...]]  # window name -> burn rate at each point's end (None: no events)


def step_for(span: timedelta) -> timedelta:
    """The resolution a chart of `span` is drawn at: per minute up to a day, per hour beyond."""
    return ONE_MINUTE if span <= MINUTE_STEPS_UP_TO else HOUR


def _floor(moment: datetime, step: timedelta) -> datetime:
    moment = floor_minute(as_utc(moment))
    return moment.replace(minute=0) if step == HOUR else moment


def slo_series(
    engine: Engine,
    spec: SloSpec,
    *,
    start: datetime,
    end: datetime,
    boundaries: tuple[float, ...],
    step: timedelta | None = None,
    windows: Sequence[str] = RULE_WINDOWS,
) -> SloSeries:
    """The SLO's counts at each step of [start, end) and the burn rate over each of `windows` (names of
    `BURN_WINDOWS`; those shorter than the step are left out) at each step's end."""
    end = floor_minute(as_utc(end))
    step = step or step_for(end - as_utc(start))
    if step not in (ONE_MINUTE, HOUR):
        raise ValueError(f"a series steps by a minute or an hour, not {step}")
    unknown = [w for w in windows if w not in BURN_WINDOWS]
    if unknown:
        raise ValueError(f"unknown burn window(s) {', '.join(unknown)}; use {', '.join(BURN_WINDOWS)}")
    shown = [w for w in windows if BURN_WINDOWS[w] >= step]
    first = _floor(start, step)
    look_back = max((BURN_WINDOWS[w] for w in shown), default=timedelta(0))
    steps: list[tuple[datetime, datetime]] = []
    moment = _floor(first - look_back, step)
    while moment < end:
        steps.append((moment, min(moment + step, end)))
        moment += step
    if not steps:
        return SloSeries(spec.name, spec.objective, step, (), {w: () for w in shown})
    with snapshot(engine) as conn:
        counts = load_rolled_counts(
            conn, spec, earliest=steps[0][0], at=end, windows=steps, boundaries=boundaries, series=rolled_series(conn)
        )
    values = [counts.window(a, b) for a, b in steps]
    prefix_events, prefix_bad = [0], [0]
    for events, bad in values:
        prefix_events.append(prefix_events[-1] + events)
        prefix_bad.append(prefix_bad[-1] + bad)
    budget = 1.0 - spec.objective
    in_range = [i for i, (a, _b) in enumerate(steps) if a >= first]
    burn: dict[str, tuple[float | None, ...]] = {}
    for name in shown:
        n = BURN_WINDOWS[name] // step
        rates: list[float | None] = []
        for i in in_range:
            lo = max(i + 1 - n, 0)
            events = prefix_events[i + 1] - prefix_events[lo]
            bad = prefix_bad[i + 1] - prefix_bad[lo]
            rates.append(bad / events / budget if events else None)
        burn[name] = tuple(rates)
    points = tuple(StepCounts(steps[i][0], steps[i][1], *values[i]) for i in in_range)
    return SloSeries(spec.name, spec.objective, step, points, burn)
