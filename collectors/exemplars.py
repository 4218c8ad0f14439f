"""Exemplars: per slice-minute, the first bad events and the slowest events, by trace id; the traces
they name are the ones the collector keeps whole (`collectors.keeper`).

A request adds its candidates to what the minute already holds: bad exemplars fill up to their limit
(first come), slow exemplars keep the slowest (a slower span displaces the fastest kept, whose trace
is then no longer kept for being slow).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, bindparam, delete, select

from controlplane.clock import as_utc
from controlplane.store import SliExemplar, table
from controlplane.traces.store import Keep

Exemplar = tuple[float, str, str]  # seconds, trace id, span id (hex)


@dataclass(frozen=True)
class ExemplarLimits:
    bad: int = 5
    slow: int = 3


def keep_slowest(kept: list[Exemplar], exemplar: Exemplar, limit: int) -> None:
    if len(kept) < limit:
        kept.append(exemplar)
    elif kept and exemplar[0] > min(kept)[0]:
        kept.remove(min(kept))
        kept.append(exemplar)


_ex = table(SliExemplar)
# Built once. What the minutes hold: slices and minutes each as an IN list (the (slice, minute) index
# serves both; pairs not asked for are dropped after).
HELD = select(_ex.c.id, _ex.c.slice, _ex.c.minute, _ex.c.kind, _ex.c.value_seconds, _ex.c.trace_id).where(
    _ex.c.slice.in_(bindparam("slices", expanding=True)), _ex.c.minute.in_(bindparam("minutes", expanding=True))
)
DISPLACE = delete(_ex).where(_ex.c.id.in_(bindparam("ids", expanding=True)))
INSERT = _ex.insert()


def add_exemplars(
    conn: Connection,
    candidates: dict[tuple[str, datetime], tuple[list[Exemplar], list[Exemplar]]],
    limits: ExemplarLimits,
) -> tuple[list[Keep], list[str]]:
    """Store one request's exemplars, (bad, slow) per slice-minute, reading what those minutes already
    hold in one statement and writing in one insert and one delete; returns the newly kept traces and the
    trace ids that stopped being slow exemplars."""
    wanted = {key: pair for key, pair in candidates.items() if pair[0] or pair[1]}
    if not wanted:
        return [], []
    held: dict[tuple[str, datetime], list] = {}
    slices, minutes = sorted({k[0] for k in wanted}), sorted({k[1] for k in wanted})
    rows = conn.execute(HELD, {"slices": slices, "minutes": minutes}).all()
    for row in rows:
        key = (row.slice, as_utc(row.minute))
        if key in wanted:
            held.setdefault(key, []).append(row)
    kept: list[Keep] = []
    displaced: list[str] = []
    inserts: list[dict] = []
    losers: list[int] = []
    for (slice_name, minute), (bad, slow) in sorted(wanted.items()):
        have = held.get((slice_name, minute), [])
        if bad:
            seen = {row.trace_id for row in have if row.kind == "bad"}
            room = max(0, limits.bad - sum(1 for row in have if row.kind == "bad"))
            fresh_bad = [e for e in bad if e[1] not in seen][:room]
            inserts += _rows(slice_name, minute, "bad", fresh_bad)
            kept += [Keep(t, slice_name, minute, "bad", v) for v, t, _ in fresh_bad]
        if slow:
            slow_held = [row for row in have if row.kind == "slow"]
            seen = {row.trace_id for row in slow_held}
            pool = [(row.value_seconds, row.trace_id) for row in slow_held]
            pool += [(v, t) for v, t, _ in slow if t not in seen]
            winners = {p[1] for p in sorted(pool, reverse=True)[: limits.slow]}
            gone = [row for row in slow_held if row.trace_id not in winners]
            losers += [row.id for row in gone]
            displaced += [row.trace_id for row in gone]
            fresh_slow = [e for e in slow if e[1] in winners and e[1] not in seen]
            inserts += _rows(slice_name, minute, "slow", fresh_slow)
            kept += [Keep(t, slice_name, minute, "slow", v) for v, t, _ in fresh_slow]
    if losers:
        conn.execute(DISPLACE, {"ids": losers})
    if inserts:
        conn.execute(INSERT, inserts)
    return kept, displaced


def _rows(slice_name: str, minute: datetime, kind: str, rows: list[Exemplar]) -> list[dict]:
    return [
        {"slice": slice_name, "minute": minute, "kind": kind, "trace_id": t, "span_id": s, "value_seconds": v}
        for v, t, s in rows
    ]
