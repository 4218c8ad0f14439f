"""Reading SLI buckets back: per-minute totals, bad counts and latency histograms per slice.

Usage:

    rows = sli_rows(engine, since=utcnow() - timedelta(hours=2), slice_name="bet-placement")
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine, select

from controlplane.clock import as_utc
from controlplane.storage import reader
from controlplane.store import SliBucket, SliExemplar, SliLatencyBucket, table


def sli_rows(
    engine: Engine, *, since: datetime, until: datetime | None = None, slice_name: str | None = None
) -> list[dict]:
    """One dict per slice-minute: slice, minute (ISO 8601 UTC), total, bad, latency {le: count}, exemplars."""
    b, lat, ex = table(SliBucket), table(SliLatencyBucket), table(SliExemplar)
    where = [b.c.minute >= since]
    if until is not None:
        where.append(b.c.minute <= until)
    if slice_name:
        where.append(b.c.slice == slice_name)
    with reader(engine).connect() as conn:
        buckets = conn.execute(select(b).where(*where).order_by(b.c.slice, b.c.minute)).all()
        lat_where = (
            [lat.c.minute >= since]
            + ([lat.c.minute <= until] if until else [])
            + ([lat.c.slice == slice_name] if slice_name else [])
        )
        latency = conn.execute(select(lat).where(*lat_where)).all()
        ex_where = (
            [ex.c.minute >= since]
            + ([ex.c.minute <= until] if until else [])
            + ([ex.c.slice == slice_name] if slice_name else [])
        )
        exemplars = conn.execute(select(ex).where(*ex_where).order_by(ex.c.id)).all()
    by_key: dict[tuple[str, datetime], dict] = {}
    for row in buckets:
        minute = as_utc(row.minute)
        by_key[(row.slice, minute)] = {
            "slice": row.slice,
            "minute": minute.isoformat().replace("+00:00", "Z"),
            "total": row.total,
            "bad": row.bad,
            "latency": {},
            "exemplars": {"bad": [], "slow": []},
        }
    for row in latency:
        entry = by_key.get((row.slice, as_utc(row.minute)))
        if entry is not None:
            entry["latency"][row.le] = row.count
    for row in exemplars:
        entry = by_key.get((row.slice, as_utc(row.minute)))
        if entry is not None:
            entry["exemplars"][row.kind].append(row.trace_id)
    return list(by_key.values())


def render_sli_table(rows: list[dict], *, since: datetime, slice_name: str | None = None) -> str:
    """The rows of `sli_rows` as a table for people, one line per slice-minute."""
    if not rows:
        return f"no SLI data since {since.isoformat()}" + (f" for slice {slice_name}" if slice_name else "")
    lines = [f"{'slice':<16} {'minute (UTC)':<20} {'total':>8} {'bad':>6} {'bad %':>7}  exemplar (bad)"]
    for row in rows:
        ratio = f"{100 * row['bad'] / row['total']:.2f}" if row["total"] else "-"
        exemplar = row["exemplars"]["bad"][0] if row["exemplars"]["bad"] else ""
        lines.append(
            f"{row['slice']:<16} {row['minute'][:16]:<20} {row['total']:>8} {row['bad']:>6} {ratio:>7}  {exemplar}"
        )
    return "\n".join(lines)
