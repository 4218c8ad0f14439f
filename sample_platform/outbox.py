"""Transactional outbox: money changes write an event in their own transaction; a relay delivers them.

    write_event(conn, aggregate_type="bet", aggregate_id="42", event_type="bet.placed", payload={...})
    OutboxRelay(engine, JsonlSink(Path("var/outbox.jsonl"))).relay_once()

Commit order: each event's `commit_seq` is assigned by the database as its transaction commits
(migration 0003), so the relay, reading by `commit_seq`, delivers in commit order and can never pass
a row that commits later.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from opentelemetry import trace
from sqlalchemy import Connection, Engine, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import OperationalError

from sample_platform.clock import as_utc, utcnow
from sample_platform.db import reader
from sample_platform.models import OutboxCursor, OutboxEvent, table
from sample_platform.tracecontext import MAX_LINKS, current_traceparent, span_context_of

log = logging.getLogger(__name__)
tracer = trace.get_tracer("sample_platform.outbox")
MAX_BACKOFF_SECONDS = 5.0
events_t = table(OutboxEvent)
cursors_t = table(OutboxCursor)


def canonical_json(payload: Any) -> str:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class PendingEvent:
    aggregate_type: str
    aggregate_id: str | int
    event_type: str
    payload: dict[str, Any]


def synthetic_mark(synthetic: bool) -> dict[str, bool]:
    """What a money event of a probe's account or market adds to its payload: `"synthetic": true`, and
    nothing at all for players, whose events keep the shape they always had."""
    return {"synthetic": True} if synthetic else {}


def write_event(
    conn: Connection, *, aggregate_type: str, aggregate_id: str | int, event_type: str, payload: dict[str, Any]
) -> str:
    """Add an event to the caller's open transaction; it is delivered only if that transaction commits."""
    return write_events(conn, [PendingEvent(aggregate_type, aggregate_id, event_type, payload)])[0]


def write_events(conn: Connection, events: list[PendingEvent]) -> list[str]:
    if not events:
        return []
    now = utcnow()
    traceparent = current_traceparent()
    rows = [
        {
            "event_id": str(uuid.uuid4()),
            "aggregate_type": e.aggregate_type,
            "aggregate_id": str(e.aggregate_id),
            "event_type": e.event_type,
            "payload": canonical_json(e.payload),
            "created_at": now,
            "traceparent": traceparent,
        }
        for e in events
    ]
    conn.execute(events_t.insert(), rows)
    return [str(row["event_id"]) for row in rows]


@dataclass(frozen=True)
class OutboxMessage:
    seq: int
    event_id: str
    aggregate_type: str
    aggregate_id: str
    event_type: str
    payload: dict[str, Any]
    created_at: str
    traceparent: str | None = None  # the request that wrote it (W3C Trace Context), while tracing

    def to_json(self) -> str:
        return canonical_json(self.__dict__)


class SinkUnavailable(Exception):
    """A sink that could not take a batch (a broker away): the relay keeps its cursor and backs off."""


class OutboxSink(Protocol):
    """Where the relay delivers. Must tolerate re-delivery: deduplicate by `event_id`."""

    def deliver(self, messages: list[OutboxMessage]) -> None: ...


class JsonlSink:
    """Appends events as JSON lines and fsyncs; skips event ids it has already written.

    A crash between the write and the relay's cursor update re-delivers a batch; ids already in
    the file are skipped, and `read_jsonl_events` deduplicates again on read.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._seen = {m.event_id for m in read_jsonl_events(self.path, dedupe=False)}
        self._lock = threading.Lock()

    def deliver(self, messages: list[OutboxMessage]) -> None:
        with self._lock:
            fresh = [m for m in messages if m.event_id not in self._seen]
            if not fresh:
                return
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write("".join(m.to_json() + "\n" for m in fresh))
                fh.flush()
                os.fsync(fh.fileno())
            self._seen.update(m.event_id for m in fresh)


def read_jsonl_events(path: Path, *, dedupe: bool = True) -> list[OutboxMessage]:
    """Events in a JSON-lines sink file, in delivery order; a torn last line (crash mid-write) is ignored."""
    if not Path(path).exists():
        return []
    out: list[OutboxMessage] = []
    seen: set[str] = set()
    with Path(path).open(encoding="utf-8") as fh:
        for line in fh:
            try:
                message = OutboxMessage(**json.loads(line))
            except (ValueError, TypeError):
                continue
            if dedupe and message.event_id in seen:
                continue
            seen.add(message.event_id)
            out.append(message)
    return out


class OutboxRelay:
    """Delivers outbox events in commit order (`commit_seq`), at least once, to one sink.

    Its position is a row in `outbox_cursors`, advanced only after the sink accepted a batch.
    """

    def __init__(
        self,
        engine: Engine,
        sink: OutboxSink,
        *,
        name: str = "default",
        batch_size: int = 500,
        delay: Callable[[], float] = lambda: 0.0,
    ) -> None:
        self.engine = engine
        self.sink = sink
        self.name = name
        self.batch_size = batch_size
        # A slow broker (game-day fault): each delivery takes this long, one event at a time.
        self.delay = delay
        self._ensure_cursor()

    def _ensure_cursor(self) -> None:
        dialect_insert = pg_insert if self.engine.dialect.name == "postgresql" else sqlite_insert
        with self.engine.begin() as conn:
            conn.execute(dialect_insert(cursors_t).values(name=self.name, last_seq=0).on_conflict_do_nothing())

    def position(self) -> int:
        with reader(self.engine).connect() as conn:
            return conn.execute(select(cursors_t.c.last_seq).where(cursors_t.c.name == self.name)).scalar_one()

    def pending(self) -> int:
        """Events committed but not yet delivered."""
        with reader(self.engine).connect() as conn:
            last = select(cursors_t.c.last_seq).where(cursors_t.c.name == self.name).scalar_subquery()
            return conn.execute(
                select(func.count()).select_from(events_t).where(events_t.c.commit_seq > last)
            ).scalar_one()

    def backlog(self) -> tuple[int, float]:
        """(events waiting, age in seconds of the oldest waiting event): the relay's lag."""
        with reader(self.engine).connect() as conn:
            last = select(cursors_t.c.last_seq).where(cursors_t.c.name == self.name).scalar_subquery()
            depth, oldest = conn.execute(
                select(func.count(), func.min(events_t.c.created_at)).where(events_t.c.commit_seq > last)
            ).one()
        if not depth or oldest is None:
            return 0, 0.0
        return depth, max(0.0, (utcnow() - as_utc(oldest)).total_seconds())

    def relay_once(self) -> int:
        """Deliver one batch; returns how many events it delivered. Its span links to the request spans
        that wrote the events (their trace context is kept with each event)."""
        with tracer.start_as_current_span("outbox relay") as span:
            delivered = self._relay_batch(span)
            span.set_attribute("platform.outbox.delivered", delivered)
            return delivered

    def _relay_batch(self, span: trace.Span | None = None) -> int:
        delay = self.delay()
        with reader(self.engine).connect() as conn:
            last = conn.execute(select(cursors_t.c.last_seq).where(cursors_t.c.name == self.name)).scalar_one()
            rows = conn.execute(
                select(events_t)
                .where(events_t.c.commit_seq > last)
                .order_by(events_t.c.commit_seq)
                .limit(1 if delay else self.batch_size)
            ).all()
        if not rows:
            return 0
        if delay:
            time.sleep(delay)
        messages = [
            OutboxMessage(
                seq=row.commit_seq,
                event_id=row.event_id,
                aggregate_type=row.aggregate_type,
                aggregate_id=row.aggregate_id,
                event_type=row.event_type,
                payload=json.loads(row.payload),
                created_at=as_utc(row.created_at).isoformat(),
                traceparent=row.traceparent,
            )
            for row in rows
        ]
        if span is not None:
            for message in messages[:MAX_LINKS]:
                linked = span_context_of(message.traceparent)
                if linked is not None:
                    span.add_link(linked, {"event.id": message.event_id, "event.type": message.event_type})
        self.sink.deliver(messages)
        with self.engine.begin() as conn:
            conn.execute(
                update(cursors_t)
                .where(cursors_t.c.name == self.name, cursors_t.c.last_seq < messages[-1].seq)
                .values(last_seq=messages[-1].seq)
            )
        return len(messages)

    def drain(self) -> int:
        total = 0
        while delivered := self.relay_once():
            total += delivered
        return total

    def run(self, stop: threading.Event, interval: float) -> None:
        """Relay until `stop` is set; a failing sink or database is retried, never fatal. While the sink is
        unavailable the wait doubles, up to MAX_BACKOFF_SECONDS (the sink says so itself, once)."""
        wait = interval
        while not stop.is_set():
            try:
                delivered = self.relay_once()
                wait = interval
            except SinkUnavailable:
                delivered, wait = 0, min(wait * 2, MAX_BACKOFF_SECONDS)
            except OperationalError as exc:  # lock or statement timeout: the database is busy, not broken
                log.warning("outbox relay waiting for the database: %s", type(exc.orig).__name__)
                delivered = 0
            except Exception:
                log.exception("outbox relay round failed; retrying")
                delivered = 0
            if delivered == 0:
                stop.wait(wait)


def all_event_ids(engine: Engine) -> Iterable[str]:
    with reader(engine).connect() as conn:
        return [row[0] for row in conn.execute(select(events_t.c.event_id).order_by(events_t.c.commit_seq))]
