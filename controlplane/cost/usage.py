"""What each slice and each scrape target used in the pieces of a window: requests per slice from the
SLI store (through the rollups, so old windows still answer after minutes are purged), and CPU seconds
per target from the scraped `process_cpu_seconds_total`.

Usage:

    pieces = hour_pieces(start, end)                  # [(start, end)] cut at whole UTC hours
    minutes = minute_pieces(*pieces[0])               # a piece cut at whole UTC minutes (for minute buckets)
    requests = requests_by_piece(store_engine, ["bet-placement", "login"], pieces)   # slice -> [int]
    cpu, sampled = cpu_seconds_by_piece(store_engine, ["http://127.0.0.1:8080/metrics"], pieces)
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from itertools import pairwise

from sqlalchemy import Engine

from controlplane.clock import as_utc
from controlplane.scraped import history
from controlplane.slo.rolled import load_rolled_counts, snapshot
from controlplane.slo.spec import SloSpec

Piece = tuple[datetime, datetime]
CPU_METRIC = "process_cpu_seconds_total"
HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)
SAMPLE_MARGIN = timedelta(hours=1)


def hour_pieces(start: datetime, end: datetime) -> list[Piece]:
    """[start, end) cut at every whole UTC hour inside it."""
    return _cut(start, end, lambda moment: moment.replace(minute=0, second=0, microsecond=0) + HOUR)


def minute_pieces(start: datetime, end: datetime) -> list[Piece]:
    """[start, end) cut at every whole UTC minute inside it."""
    return _cut(start, end, lambda moment: moment.replace(second=0, microsecond=0) + MINUTE)


def _cut(start: datetime, end: datetime, next_boundary: Callable[[datetime], datetime]) -> list[Piece]:
    start, end = as_utc(start), as_utc(end)
    pieces = []
    moment = start
    while moment < end:
        boundary = next_boundary(moment)
        pieces.append((moment, min(boundary, end)))
        moment = boundary
    return pieces


def requests_by_piece(store_engine: Engine, slices: Sequence[str], pieces: Sequence[Piece]) -> dict[str, list[int]]:
    """Events of each slice's SLI in the complete minutes of each piece."""
    if not pieces:
        return {name: [] for name in slices}
    result: dict[str, list[int]] = {}
    with snapshot(store_engine) as conn:
        for name in slices:
            spec = SloSpec.model_validate(
                {"name": "cost-requests", "slice": name, "objective": 0.5, "window": {"rolling_days": 1}}
            )
            counts = load_rolled_counts(
                conn, spec, earliest=pieces[0][0], at=pieces[-1][1], windows=pieces, boundaries=(), series=set()
            )
            result[name] = [counts.window(a, b)[0] for a, b in pieces]
    return result


def cpu_seconds_by_piece(
    store_engine: Engine, targets: Sequence[str], pieces: Sequence[Piece]
) -> tuple[dict[str, list[Decimal]], set[str]]:
    """CPU seconds each target spent in each piece: every increase between two consecutive scrapes of a
    target's counter, spread over the pieces by how much of the interval each holds (a drop is a
    restart: the counter began again at zero). Also: the targets that had any sample near the window."""
    result = {target: [Decimal(0)] * len(pieces) for target in targets}
    sampled: set[str] = set()
    if not pieces:
        return result, sampled
    begin, end = pieces[0][0], pieces[-1][1]
    starts = [a for a, _b in pieces]
    for target in targets:
        # A sample on each side of the window gives the increases that cross its edges.
        samples = history(
            store_engine, CPU_METRIC, since=begin - SAMPLE_MARGIN, until=end + SAMPLE_MARGIN, target=target
        )
        by_series: dict[str, list[tuple[datetime, Decimal]]] = {}
        if samples:
            sampled.add(target)
        for sample in samples:
            value = Decimal(repr(sample.value))
            if value.is_finite():
                by_series.setdefault(repr(sorted(sample.labels.items())), []).append((sample.time, value))
        spent = result[target]
        for points in by_series.values():
            for (t0, v0), (t1, v1) in pairwise(points):
                step = v1 - v0 if v1 >= v0 else v1
                if step <= 0 or t1 <= t0 or t1 <= begin or t0 >= end:
                    continue
                span = Decimal(str((t1 - t0).total_seconds()))
                i = max(0, bisect_right(starts, t0) - 1)
                while i < len(pieces) and pieces[i][0] < t1:
                    a, b = pieces[i]
                    overlap = (min(b, t1) - max(a, t0)).total_seconds()
                    if overlap > 0:
                        spent[i] += step * Decimal(str(overlap)) / span
                    i += 1
    return result, sampled
