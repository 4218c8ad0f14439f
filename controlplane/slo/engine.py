"""The SLO engine: SLIs, error budgets, burn rates and multi-window multi-burn-rate alerts.

Usage:

    report = evaluate_all(store_engine, specs, events=events, boundaries=slices.boundaries, at=utcnow())
    report.exit_code   # 0 healthy, 1 ticket, 2 page

Definitions (also in the README):
- Ratios are event-weighted over a window: bad events / all events in it, never an average of
  per-minute ratios. A window is the complete minutes in [at - length, at).
- Burn rate = error ratio / (1 - objective). A window with no events burns at 0 (nothing failed).
- The SLI over the SLO window is good / all; with no events it is 1.0 and `no_data` is true.
- Budget: allowed bad events = (1 - objective) x events in the SLO window; consumed = bad / allowed
  (0 with no events). Remaining = 1 - consumed, negative once overspent. Every output is finite.
- Alerts (Google SRE Workbook): page when burn(1h) and burn(5m) exceed 14.4, or burn(6h) and
  burn(30m) exceed 6; ticket when burn(1d) and burn(2h) exceed 3, or burn(3d) and burn(6h) exceed 1.
  The thresholds assume a 30-day period and scale with the period's length for other windows.
- Freshness SLIs count minutes (timeslices): a minute with data is good when its `percentile` of
  the slice's histogram is at or under the threshold; minutes without data are not counted.
"""

from __future__ import annotations

import calendar
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import Engine

from controlplane.clock import as_utc
from controlplane.slo.minute_store import minute_latency, minute_totals
from controlplane.slo.periods import floor_minute, minute_index
from controlplane.slo.results import (
    AlertThreshold,
    AlertThresholds,
    SloAlerts,
    SloReport,
    SloStatus,
    SloWindow,
    WindowKind,
)
from controlplane.slo.spec import EventSpec, SloConfigError, SloSpec
from controlplane.storage import reader

BURN_WINDOWS = {
    "5m": timedelta(minutes=5),
    "30m": timedelta(minutes=30),
    "1h": timedelta(hours=1),
    "2h": timedelta(hours=2),
    "6h": timedelta(hours=6),
    "1d": timedelta(days=1),
    "3d": timedelta(days=3),
}
# (long window, short window, burn threshold for a 30-day period)
BurnRule = tuple[str, str, float]
PAGE_RULES: tuple[BurnRule, ...] = (("1h", "5m", 14.4), ("6h", "30m", 6.0))
TICKET_RULES: tuple[BurnRule, ...] = (("1d", "2h", 3.0), ("3d", "6h", 1.0))


class WindowCounts(Protocol):
    """What `evaluate` needs of an SLI's counts: (events, bad) in the complete minutes of [start, end)."""

    def window(self, start: datetime, end: datetime) -> tuple[int, int]: ...


def is_over(le: str, threshold: float) -> bool:
    """Whether a latency bucket's events are over a threshold (a bucket boundary)."""
    return le == "+Inf" or float(le) > threshold + 1e-12


def timeslice_bad(count: int, over: int, percentile: float) -> int:
    """A freshness minute with `count` events, `over` of them over the threshold: 1 if it is a bad timeslice."""
    return int((count - over) / count < percentile)


def budget(objective: float, total: int, bad: int) -> tuple[float, float]:
    """(allowed bad events, budget consumed) of `total` events, `bad` of them, under `objective`."""
    allowed = (1.0 - objective) * total
    return allowed, bad / allowed if allowed > 0 else 0.0


@dataclass
class MinuteCounts:
    """Per-minute (events, bad) of one SLI over [first, first + len), with prefix sums for O(1) windows."""

    first: int
    events: list[int]
    bad: list[int]
    _ev: list[int] = field(default_factory=list, repr=False)
    _bad: list[int] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self._ev, self._bad = [0], [0]
        for e, b in zip(self.events, self.bad, strict=True):
            self._ev.append(self._ev[-1] + e)
            self._bad.append(self._bad[-1] + b)

    def window(self, start: datetime, end: datetime) -> tuple[int, int]:
        """(events, bad) in complete minutes of [start, end)."""
        lo = min(max(minute_index(start) - self.first, 0), len(self.events))
        hi = min(max(minute_index(end) - self.first, 0), len(self.events))
        if hi <= lo:
            return 0, 0
        return self._ev[hi] - self._ev[lo], self._bad[hi] - self._bad[lo]


def check_threshold(threshold: float, boundaries: tuple[float, ...], spec: SloSpec) -> None:
    if not any(math.isclose(threshold, b) for b in boundaries):
        raise SloConfigError(
            f"slo '{spec.name}': latency threshold {threshold}s is not a histogram bucket boundary "
            f"(boundaries: {', '.join(str(b) for b in boundaries)}); pick one of those"
        )


def load_counts(
    engine: Engine, spec: SloSpec, *, start: datetime, end: datetime, boundaries: tuple[float, ...]
) -> MinuteCounts:
    """Read the slice's buckets in [start, end) and turn them into this SLI's per-minute counts."""
    first, last = minute_index(start), minute_index(end)
    events, bad = [0] * max(last - first, 0), [0] * max(last - first, 0)

    with reader(engine).connect() as conn:
        if spec.sli.kind == "ratio":
            for _, minute, total, bad_count in minute_totals(conn, spec.slice, [(start, end)]):
                i = minute - first
                if 0 <= i < len(events):
                    events[i] += total
                    bad[i] += bad_count
            return MinuteCounts(first, events, bad)
        rows = [(m, le, count) for _, m, le, count in minute_latency(conn, spec.slice, [(start, end)])]
    threshold = spec.sli.threshold_seconds or 0.0
    check_threshold(threshold, boundaries, spec)
    per_minute: dict[int, list[int]] = {}  # [events, events over the threshold]
    for minute, le, count in rows:
        i = minute - first
        if not 0 <= i < len(events):
            continue
        entry = per_minute.setdefault(i, [0, 0])
        entry[0] += count
        if is_over(le, threshold):
            entry[1] += count
    for i, (count, over) in per_minute.items():
        if spec.sli.kind == "latency":
            events[i], bad[i] = count, over
        elif count:  # freshness: one timeslice per minute with data
            events[i] = 1
            bad[i] = timeslice_bad(count, over, spec.sli.percentile)
    return MinuteCounts(first, events, bad)


def slo_window(
    spec: SloSpec, at: datetime, events: dict[str, EventSpec]
) -> tuple[WindowKind, datetime, datetime, float]:
    """(kind, start, end, period in days) of the SLO's budgeting window as of `at`."""
    if spec.window.rolling_days is not None:
        return "rolling", at - timedelta(days=spec.window.rolling_days), at, float(spec.window.rolling_days)
    if spec.window.calendar == "month":
        start = at.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        days = calendar.monthrange(at.year, at.month)[1]
        return "calendar-month", start, at, float(days)
    event = events[spec.window.event]  # type: ignore[index]
    start, end = event.window()
    return "event", start, min(max(at, start), end), (end - start).total_seconds() / 86400


def _ratio(events: int, bad: int) -> float:
    return bad / events if events else 0.0


def _thresholds(rules: tuple[BurnRule, ...], scale: float) -> tuple[AlertThreshold, ...]:
    return tuple(AlertThreshold(long=lw, short=sw, burn=round(t * scale, 6)) for lw, sw, t in rules)


def evaluate(spec: SloSpec, counts: WindowCounts, *, at: datetime, events: dict[str, EventSpec]) -> SloStatus:
    """One SLO as of `at`, from the per-minute counts of its SLI."""
    at = as_utc(at)  # windows are reported as UTC; a naive time is taken as UTC, as the store does
    kind, start, end, period_days = slo_window(spec, at, events)
    total, bad = counts.window(start, end)
    budget_fraction = 1.0 - spec.objective
    allowed, consumed = budget(spec.objective, total, bad)
    burn: dict[str, float] = {}
    for name, length in BURN_WINDOWS.items():
        w_total, w_bad = counts.window(at - length, at)
        burn[name] = _ratio(w_total, w_bad) / budget_fraction
    scale = period_days / 30.0

    def firing(rules: tuple[BurnRule, ...]) -> bool:
        return any(burn[lw] > t * scale and burn[sw] > t * scale for lw, sw, t in rules)

    alerts = SloAlerts(
        page=spec.alerting.page and firing(PAGE_RULES),
        ticket=spec.alerting.ticket and firing(TICKET_RULES),
    )
    remaining_events = allowed - bad
    _hour_total, hour_bad = counts.window(at - timedelta(hours=1), at)
    exhaustion = None
    if total and remaining_events <= 0:
        exhaustion = 0.0
    elif hour_bad > 0:
        exhaustion = remaining_events / hour_bad * 3600.0  # at the last hour's rate of bad events
    remaining = 1.0 - consumed
    return SloStatus(
        name=spec.name,
        slice=spec.slice,
        sli_kind=spec.sli.kind,
        objective=spec.objective,
        window=SloWindow(kind=kind, start=start, end=end, period_days=round(period_days, 6)),
        sli=(total - bad) / total if total else 1.0,
        no_data=total == 0,
        events=total,
        bad_events=bad,
        budget_total_events=allowed,
        budget_remaining_events=remaining_events,
        budget_consumed=consumed,
        budget_remaining=remaining,
        burn_rates=burn,
        alerts=alerts,
        alert_thresholds=AlertThresholds(page=_thresholds(PAGE_RULES, scale), ticket=_thresholds(TICKET_RULES, scale)),
        time_to_exhaustion_seconds=exhaustion,
    )


def evaluate_all(
    engine: Engine,
    specs: list[SloSpec],
    *,
    events: dict[str, EventSpec],
    boundaries: tuple[float, ...],
    at: datetime,
) -> SloReport:
    at = as_utc(at)
    at = floor_minute(at) if at.second or at.microsecond else at
    results = []
    for spec in specs:
        _kind, start, _end, _days = slo_window(spec, at, events)
        earliest = min(start, at - max(BURN_WINDOWS.values()))
        counts = load_counts(engine, spec, start=earliest, end=at, boundaries=boundaries)
        results.append(evaluate(spec, counts, at=at, events=events))
    return SloReport(at=at, slos=results)
