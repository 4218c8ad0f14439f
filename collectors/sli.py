"""Reading SLI buckets back: per-minute totals, bad counts and latency histograms per slice.

Usage:

    rows = sli_rows(engine, since=utcnow() - timedelta(hours=2), slice_name="bet-placement")
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select

from controlplane.clock import as_utc, utc_text
from controlplane.slo.minute_store import ALL_TIME, minute_latency, minute_totals
from controlplane.slo.periods import floor_minute, minute_start
from controlplane.storage import reader
from controlplane.store import SliExemplar, table


@dataclass
class SliMinute:
    """One slice's minute as stored: events, bad events, latency bucket counts and exemplar trace ids."""

    slice: str
    minute: datetime
    total: int
    bad: int
    latency: dict[str, int] = field(default_factory=dict)  # le -> count in that bucket
    exemplars: dict[str, list[str]] = field(default_factory=lambda: {"bad": [], "slow": []})

    def to_dict(self) -> dict[str, Any]:
        return {
            "slice": self.slice,
            "minute": utc_text(self.minute),
            "total": self.total,
            "bad": self.bad,
            "latency": self.latency,
            "exemplars": self.exemplars,
        }


def sli_rows(
    engine: Engine, *, since: datetime, until: datetime | None = None, slice_name: str | None = None
) -> list[SliMinute]:
    """Each slice-minute from `since` (to `until`), by slice then minute."""
    ex = table(SliExemplar)
    end = floor_minute(until) + timedelta(minutes=1) if until is not None else ALL_TIME  # `until` is inclusive
    ranges = [(since, end)]
    with reader(engine).connect() as conn:
        buckets = sorted(minute_totals(conn, slice_name, ranges))
        latency = list(minute_latency(conn, slice_name, ranges))
        ex_where = (
            [ex.c.minute >= since]
            + ([ex.c.minute <= until] if until else [])
            + ([ex.c.slice == slice_name] if slice_name else [])
        )
        exemplars = conn.execute(select(ex).where(*ex_where).order_by(ex.c.id)).all()
    by_key: dict[tuple[str, datetime], SliMinute] = {}
    for name, m, total, bad in buckets:  # a minute may come twice: packed, and a late event since
        minute = minute_start(m)
        entry = by_key.get((name, minute))
        if entry is None:
            by_key[(name, minute)] = SliMinute(name, minute, total, bad)
        else:
            entry.total += total
            entry.bad += bad
    for name, m, le, count in latency:
        entry = by_key.get((name, minute_start(m)))
        if entry is not None:
            entry.latency[le] = entry.latency.get(le, 0) + count
    for row in exemplars:
        entry = by_key.get((row.slice, as_utc(row.minute)))
        if entry is not None:
            entry.exemplars[row.kind].append(row.trace_id)
    return list(by_key.values())


def render_sli_table(rows: list[SliMinute], *, since: datetime, slice_name: str | None = None) -> str:
    """The rows of `sli_rows` as a table for people, one line per slice-minute."""
    if not rows:
        return f"no SLI data since {since.isoformat()}" + (f" for slice {slice_name}" if slice_name else "")
    lines = [f"{'slice':<16} {'minute (UTC)':<20} {'total':>8} {'bad':>6} {'bad %':>7}  exemplar (bad)"]
    for row in rows:
        ratio = f"{100 * row.bad / row.total:.2f}" if row.total else "-"
        exemplar = row.exemplars["bad"][0] if row.exemplars["bad"] else ""
        minute = utc_text(row.minute)[:16]
        lines.append(f"{row.slice:<16} {minute:<20} {row.total:>8} {row.bad:>6} {ratio:>7}  {exemplar}")
    return "\n".join(lines)
