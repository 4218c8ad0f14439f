"""Writing, bounding and reading kept traces.

    keep(engine, [Keep(trace_id, slice, minute, "bad", 0.8)], spans=[...], logs=[...])
    prune(engine, max_bytes=256 * 2**20, older_than=now - timedelta(days=7))
    view = read_trace(engine, "4bf92f3577b34da6a3ce929d0e0e4736")

Spans and log lines are plain dicts with the columns of `kept_spans` and `kept_logs` (JSON members
already encoded). A span or trace written twice (an exporter's retry) is stored once.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import BindParameter, Connection, Engine, Insert, bindparam, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from controlplane.clock import as_utc, utcnow
from controlplane.traces.tables import kept_logs_t, kept_spans_t, kept_traces_t

SPAN_OVERHEAD_BYTES = 160  # ids, times, name and the row's own bookkeeping
LOG_OVERHEAD_BYTES = 96


@dataclass(frozen=True)
class Keep:
    """Why a trace is kept: the slice-minute and duration of the span that chose it."""

    trace_id: str
    slice: str
    minute: datetime
    reason: str  # bad | slow | probe
    seconds: float


def span_size(span: dict[str, Any]) -> int:
    return SPAN_OVERHEAD_BYTES + sum(len(span[k]) for k in ("name", "attributes", "events", "links", "status_message"))


def log_size(line: dict[str, Any]) -> int:
    return LOG_OVERHEAD_BYTES + len(line["body"]) + len(line["attributes"])


# Built once, each list of trace ids bound as one expanding parameter; sizes grow by an executemany.
IDS: BindParameter[list[str]] = bindparam("ids", expanding=True)
KNOWN = select(kept_traces_t.c.trace_id).where(kept_traces_t.c.trace_id.in_(IDS))
SLOW = select(kept_traces_t.c.trace_id).where(kept_traces_t.c.trace_id.in_(IDS), kept_traces_t.c.reason == "slow")
DROP_LOGS = delete(kept_logs_t).where(kept_logs_t.c.trace_id.in_(IDS))
DROP_SPANS = delete(kept_spans_t).where(kept_spans_t.c.trace_id.in_(IDS))
DROP_TRACES = delete(kept_traces_t).where(kept_traces_t.c.trace_id.in_(IDS))
GROW = (
    update(kept_traces_t)
    .where(kept_traces_t.c.trace_id == bindparam("id"))
    .values(size_bytes=kept_traces_t.c.size_bytes + bindparam("size"))
)


@cache
def _inserts(dialect: str) -> tuple[Insert, Insert]:
    """A kept trace, and kept spans saying which were new; each stored once, whoever sends it again."""
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    spans = insert(kept_spans_t).on_conflict_do_nothing()
    return insert(kept_traces_t).on_conflict_do_nothing(), spans.returning(
        kept_spans_t.c.trace_id, kept_spans_t.c.span_id
    )


def keep(
    engine: Engine,
    traces: Iterable[Keep],
    *,
    spans: Iterable[dict[str, Any]] = (),
    logs: Iterable[dict[str, Any]] = (),
    unkeep_slow: Iterable[str] = (),
) -> int:
    """Record kept traces and add spans and log lines to traces kept (now or before); first drop the
    traces in `unkeep_slow` that were kept only for being slow. Spans and log lines of a trace that is
    not kept are dropped. Returns the bytes added. One transaction."""
    with engine.begin() as conn:
        return keep_in(conn, traces, spans=spans, logs=logs, unkeep_slow=unkeep_slow)


def keep_in(
    conn: Connection,
    traces: Iterable[Keep],
    *,
    spans: Iterable[dict[str, Any]] = (),
    logs: Iterable[dict[str, Any]] = (),
    unkeep_slow: Iterable[str] = (),
) -> int:
    """`keep` inside the caller's transaction (the collector's: with the counts of the same request)."""
    traces, spans, logs, unkeep = list(traces), list(spans), list(logs), sorted(set(unkeep_slow))
    if not (traces or spans or logs or unkeep):
        return 0
    now = utcnow()
    if unkeep:
        drop(conn, list(conn.execute(SLOW, {"ids": unkeep}).scalars()))
    if traces:
        conn.execute(
            _inserts(conn.dialect.name)[0],
            [
                {
                    "trace_id": k.trace_id,
                    "slice": k.slice,
                    "minute": k.minute,
                    "reason": k.reason,
                    "seconds": k.seconds,
                    "kept_at": now,
                    "size_bytes": 0,
                }
                for k in traces
            ],
        )
    wanted = {s["trace_id"] for s in spans} | {line["trace_id"] for line in logs}
    known = set(conn.execute(KNOWN, {"ids": sorted(wanted)}).scalars()) if wanted else set()
    added: dict[str, int] = {}
    fresh_spans = [s for s in spans if s["trace_id"] in known]
    if fresh_spans:
        inserted = conn.execute(_inserts(conn.dialect.name)[1], fresh_spans).all()
        by_id = {(s["trace_id"], s["span_id"]): s for s in fresh_spans}
        for trace_id, span_id in inserted:
            added[trace_id] = added.get(trace_id, 0) + span_size(by_id[(trace_id, span_id)])
    fresh_logs = [line for line in logs if line["trace_id"] in known]
    if fresh_logs:
        conn.execute(kept_logs_t.insert(), fresh_logs)
        for line in fresh_logs:
            added[line["trace_id"]] = added.get(line["trace_id"], 0) + log_size(line)
    if added:
        conn.execute(GROW, [{"id": trace_id, "size": size} for trace_id, size in sorted(added.items())])
    return sum(added.values())


def drop(conn: Connection, trace_ids: Iterable[str]) -> int:
    ids = sorted(set(trace_ids))
    if not ids:
        return 0
    conn.execute(DROP_LOGS, {"ids": ids})
    conn.execute(DROP_SPANS, {"ids": ids})
    return conn.execute(DROP_TRACES, {"ids": ids}).rowcount or 0


def stored_bytes(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.coalesce(func.sum(kept_traces_t.c.size_bytes), 0))).scalar_one())


def prune(engine: Engine, *, max_bytes: int, older_than: datetime | None = None) -> dict[str, int]:
    """Delete kept traces kept before `older_than`, then the oldest until the rest fit in `max_bytes`."""
    expired = evicted = 0
    with engine.begin() as conn:
        if older_than is not None:
            old = conn.execute(select(kept_traces_t.c.trace_id).where(kept_traces_t.c.kept_at < older_than)).scalars()
            expired = drop(conn, list(old))
        total = int(conn.execute(select(func.coalesce(func.sum(kept_traces_t.c.size_bytes), 0))).scalar_one())
        if total > max_bytes:
            victims: list[str] = []
            rows = conn.execute(
                select(kept_traces_t.c.trace_id, kept_traces_t.c.size_bytes).order_by(
                    kept_traces_t.c.kept_at, kept_traces_t.c.trace_id
                )
            )
            for trace_id, size in rows:
                if total <= max_bytes:
                    break
                victims.append(trace_id)
                total -= size
            evicted = drop(conn, victims)
    return {"kept_traces_expired": expired, "kept_traces_evicted": evicted}


@dataclass
class TraceView:
    """A kept trace: why it was kept, its spans (start order), its log lines, and its links both ways."""

    trace_id: str
    slice: str
    minute: datetime
    reason: str
    spans: list[dict[str, Any]] = field(default_factory=list)
    logs: list[dict[str, Any]] = field(default_factory=list)
    links_out: list[dict[str, Any]] = field(default_factory=list)  # {span_id, trace_id, linked_span_id, kept}
    links_in: list[dict[str, Any]] = field(default_factory=list)  # {trace_id, span_id, name, linked_span_id}

    def to_dict(self) -> dict[str, Any]:
        return {
            "trace_id": self.trace_id,
            "slice": self.slice,
            "minute": self.minute.isoformat().replace("+00:00", "Z"),
            "reason": self.reason,
            "spans": self.spans,
            "logs": self.logs,
            "links_out": self.links_out,
            "links_in": self.links_in,
        }


def _span_row(row: Any) -> dict[str, Any]:
    out = dict(row._mapping)
    for key in ("attributes", "events", "links"):
        out[key] = json.loads(out[key])
    out["duration_ms"] = round((out["end_unix_nano"] - out["start_unix_nano"]) / 1e6, 3)
    return out


def read_trace(engine: Engine, trace_id: str) -> TraceView | None:
    trace_id = trace_id.strip().lower()
    with engine.connect() as conn:
        head = conn.execute(select(kept_traces_t).where(kept_traces_t.c.trace_id == trace_id)).one_or_none()
        if head is None:
            return None
        spans = [
            _span_row(r)
            for r in conn.execute(
                select(kept_spans_t).where(kept_spans_t.c.trace_id == trace_id).order_by(kept_spans_t.c.start_unix_nano)
            )
        ]
        logs = []
        for r in conn.execute(
            select(kept_logs_t).where(kept_logs_t.c.trace_id == trace_id).order_by(kept_logs_t.c.time_unix_nano)
        ):
            line = dict(r._mapping)
            line.pop("id", None)
            line["attributes"] = json.loads(line["attributes"])
            logs.append(line)
        targets = {link["trace_id"] for s in spans for link in s["links"]}
        kept_targets = (
            set(conn.execute(select(kept_traces_t.c.trace_id).where(kept_traces_t.c.trace_id.in_(targets))).scalars())
            if targets
            else set()
        )
        links_in = []
        for r in conn.execute(
            select(kept_spans_t.c.trace_id, kept_spans_t.c.span_id, kept_spans_t.c.name, kept_spans_t.c.links).where(
                kept_spans_t.c.links.contains(trace_id), kept_spans_t.c.trace_id != trace_id
            )
        ):
            for link in json.loads(r.links):
                if link["trace_id"] == trace_id:
                    links_in.append(
                        {
                            "trace_id": r.trace_id,
                            "span_id": r.span_id,
                            "name": r.name,
                            "linked_span_id": link["span_id"],
                        }
                    )
    links_out = [
        {
            "span_id": s["span_id"],
            "trace_id": link["trace_id"],
            "linked_span_id": link["span_id"],
            "kept": link["trace_id"] in kept_targets,
        }
        for s in spans
        for link in s["links"]
    ]
    return TraceView(trace_id, head.slice, as_utc(head.minute), head.reason, spans, logs, links_out, links_in)


@dataclass(frozen=True)
class KeptRef:
    trace_id: str
    slice: str
    minute: datetime
    reason: str
    seconds: float


def kept_between(
    engine: Engine,
    slice_name: str,
    start: datetime,
    end: datetime,
    *,
    reasons: tuple[str, ...] = ("bad",),
    limit: int = 5,
) -> list[KeptRef]:
    """Kept traces of a slice chosen in minutes [start, end), newest first."""
    t = kept_traces_t
    with engine.connect() as conn:
        rows = conn.execute(
            select(t.c.trace_id, t.c.slice, t.c.minute, t.c.reason, t.c.seconds)
            .where(t.c.slice == slice_name, t.c.minute >= start, t.c.minute < end, t.c.reason.in_(reasons))
            .order_by(t.c.minute.desc(), t.c.seconds.desc())
            .limit(limit)
        ).all()
    return [KeptRef(r.trace_id, r.slice, as_utc(r.minute), r.reason, r.seconds) for r in rows]
