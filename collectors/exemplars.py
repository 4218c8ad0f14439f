"""Exemplars: per slice-minute, the first bad events and the slowest events, by trace id; the traces
they name are the ones the collector keeps whole (`collectors.keeper`).

A request adds its candidates to what the minute already holds: bad exemplars fill up to their limit
(first come), slow exemplars keep the slowest (a slower span displaces the fastest kept, whose trace
is then no longer kept for being slow).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, delete, select

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


def add_exemplars(
    conn: Connection,
    slice_name: str,
    minute: datetime,
    *,
    bad: list[Exemplar],
    slow: list[Exemplar],
    limits: ExemplarLimits,
) -> tuple[list[Keep], list[str]]:
    """Store this request's exemplars of one slice-minute; returns the newly kept traces and the trace
    ids that stopped being slow exemplars."""
    ex = table(SliExemplar)
    kept: list[Keep] = []
    displaced: list[str] = []
    where = (ex.c.slice == slice_name, ex.c.minute == minute)
    if bad:
        have = conn.execute(select(ex.c.trace_id).where(*where, ex.c.kind == "bad")).scalars().all()
        seen = set(have)
        rows = [e for e in bad if e[1] not in seen][: max(0, limits.bad - len(have))]
        _insert(conn, slice_name, minute, "bad", rows)
        kept += [Keep(t, slice_name, minute, "bad", v) for v, t, _ in rows]
    if slow:
        held = conn.execute(select(ex.c.id, ex.c.value_seconds, ex.c.trace_id).where(*where, ex.c.kind == "slow")).all()
        seen = {row.trace_id for row in held}
        pool = [(row.value_seconds, row.trace_id, row.id) for row in held]
        pool += [(v, t, None) for v, t, _ in slow if t not in seen]
        top = sorted(pool, key=lambda p: (p[0], p[1]), reverse=True)[: limits.slow]
        winners = {p[1] for p in top}
        losers = [row for row in held if row.trace_id not in winners]
        if losers:
            conn.execute(delete(ex).where(ex.c.id.in_([row.id for row in losers])))
            displaced += [row.trace_id for row in losers]
        fresh = [e for e in slow if e[1] in winners and e[1] not in seen]
        _insert(conn, slice_name, minute, "slow", fresh)
        kept += [Keep(t, slice_name, minute, "slow", v) for v, t, _ in fresh]
    return kept, displaced


def _insert(conn: Connection, slice_name: str, minute: datetime, kind: str, rows: list[Exemplar]) -> None:
    if rows:
        conn.execute(
            table(SliExemplar).insert(),
            [
                {"slice": slice_name, "minute": minute, "kind": kind, "trace_id": t, "span_id": s, "value_seconds": v}
                for v, t, s in rows
            ],
        )
