"""Reading an SLI back for a page: its value hour by hour (through the rollups), and its worst minutes
with the trace ids of their bad and slow events.

Usage:

    points = hourly_sli(store, spec, start=now - timedelta(days=7), end=now, boundaries=b)   # [SliPoint]
    worst = worst_minutes(store, "bet-placement", start, end, limit=5)                       # [WorstMinute]
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, select

from controlplane.clock import as_utc
from controlplane.slo.minute_store import minute_totals
from controlplane.slo.periods import HOUR, minute_start
from controlplane.slo.rolled import load_rolled_counts, rolled_series, snapshot
from controlplane.slo.spec import SloSpec
from controlplane.storage import reader
from controlplane.store import SliExemplar, table


@dataclass(frozen=True)
class SliPoint:
    start: datetime
    events: int
    bad: int

    @property
    def sli(self) -> float | None:
        return (self.events - self.bad) / self.events if self.events else None


@dataclass(frozen=True)
class WorstMinute:
    minute: datetime
    events: int
    bad: int
    trace_ids: tuple[str, ...]


def hourly_sli(
    store: Engine, spec: SloSpec, *, start: datetime, end: datetime, boundaries: tuple[float, ...]
) -> list[SliPoint]:
    """The SLI over each whole UTC hour from `start`'s hour up to `end` (the last one partial)."""
    first = as_utc(start).replace(minute=0, second=0, microsecond=0)
    end = as_utc(end)
    windows = []
    moment = first
    while moment < end:
        windows.append((moment, min(moment + HOUR, end)))
        moment += HOUR
    if not windows:
        return []
    with snapshot(store) as conn:
        counts = load_rolled_counts(
            conn, spec, earliest=first, at=end, windows=windows, boundaries=boundaries, series=rolled_series(conn)
        )
    return [SliPoint(a, *counts.window(a, b)) for a, b in windows]


def worst_minutes(
    store: Engine, slice_name: str, start: datetime, end: datetime, *, limit: int = 5
) -> list[WorstMinute]:
    """The minutes of [start, end) with the most bad events, worst first, with their exemplar trace ids."""
    exemplars = table(SliExemplar)
    with reader(store).connect() as conn:
        per_minute: dict[int, list[int]] = {}
        for _, m, total, bad in minute_totals(conn, slice_name, [(as_utc(start), as_utc(end))]):
            entry = per_minute.setdefault(m, [0, 0])
            entry[0] += total
            entry[1] += bad
        ranked = sorted(((m, t, b) for m, (t, b) in per_minute.items() if b > 0), key=lambda r: (-r[2], -r[0]))
        worst = []
        for index, total, bad in ranked[:limit]:
            minute = minute_start(index)
            traces = conn.execute(
                select(exemplars.c.trace_id)
                .where(exemplars.c.slice == slice_name, exemplars.c.minute == minute)
                .order_by(exemplars.c.kind, exemplars.c.value_seconds.desc())
                .limit(5)
            ).scalars()
            worst.append(WorstMinute(minute, int(total), int(bad), tuple(dict.fromkeys(traces))))
    return worst
