"""The collector keeps whole traces that matter: for each slice-minute the traces of its bad-event and
slowest-event exemplars, and of readiness probes, with every span of them and the log lines written
inside them, under a size bound and a retention.

    keeper = TraceKeeper(engine, max_bytes=256 * 2**20)
    keeper.on_spans(request, batch)              # after commit_batch chose the exemplars
    rejected, reason = keeper.on_logs(request, limits)

A trace's spans and log lines arrive in several exports, before and after the span that makes it
worth keeping: until then they wait in a bounded buffer (oldest traces dropped first); once a trace
is kept, later spans and lines of it are written as they come. A collector keeps what it saw: with
several collectors, a trace is as whole as the share of its exports each received.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import OrderedDict
from datetime import timedelta
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from sqlalchemy import Connection, Engine

from collectors.ingest import Batch, ItemLimits, minute_of
from controlplane.clock import utcnow
from controlplane.slices import SPAN_KINDS
from controlplane.traces.store import Keep, keep, keep_in, prune

MAX_LOG_BODY_BYTES = 16 * 1024
MAX_ATTRIBUTE_BYTES = 8 * 1024
MAX_ATTRIBUTE_DEPTH = 4
PRUNE_EVERY_SECONDS = 30.0
SECRET_KEYS = re.compile(r"password|passwd|token|secret|authorization|username|account_id|api_key", re.I)
REDACTED = "[redacted]"
REASONS = ("bad", "probe", "slow", "linked")


def _value(value: AnyValue, depth: int = 0) -> Any:
    """An attribute value as JSON, or ValueError when nested deeper than MAX_ATTRIBUTE_DEPTH."""
    if depth > MAX_ATTRIBUTE_DEPTH:
        raise ValueError(f"nests attributes deeper than {MAX_ATTRIBUTE_DEPTH} levels")
    which = value.WhichOneof("value")
    if which == "array_value":
        return [_value(v, depth + 1) for v in value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _value(kv.value, depth + 1) for kv in value.kvlist_value.values}
    if which == "bytes_value":
        return value.bytes_value.hex()
    if which == "double_value":
        number = value.double_value
        return number if number == number and abs(number) != float("inf") else str(number)
    return getattr(value, which) if which else None


def _attributes_json(attrs: Any) -> str:
    out = {kv.key: REDACTED if SECRET_KEYS.search(kv.key) else _value(kv.value) for kv in attrs}
    encoded = json.dumps(out, ensure_ascii=False, default=str)
    if len(encoded) > MAX_ATTRIBUTE_BYTES:
        raise ValueError(f"has attributes over {MAX_ATTRIBUTE_BYTES} bytes")
    return encoded


def span_record(span: Any, service: str) -> dict[str, Any]:
    try:
        attributes = _attributes_json(span.attributes)
    except ValueError as exc:
        attributes = json.dumps({"collector.dropped_attributes": str(exc)})
    events = [
        {"name": e.name, "time_unix_nano": e.time_unix_nano, "attributes": _safe_attributes(e.attributes)}
        for e in span.events[:32]
    ]
    links = [
        {
            "trace_id": link.trace_id.hex(),
            "span_id": link.span_id.hex(),
            "attributes": _safe_attributes(link.attributes),
        }
        for link in span.links[:128]
        if len(link.trace_id) == 16 and len(link.span_id) == 8
    ]
    kind = SPAN_KINDS[span.kind] if 0 <= span.kind < len(SPAN_KINDS) else "unspecified"
    return {
        "trace_id": span.trace_id.hex(),
        "span_id": span.span_id.hex(),
        "parent_span_id": span.parent_span_id.hex() if len(span.parent_span_id) == 8 else "",
        "name": span.name[:200],
        "service": service[:100],
        "kind": kind,
        "start_unix_nano": min(span.start_time_unix_nano, 2**63 - 1),
        "end_unix_nano": min(span.end_time_unix_nano, 2**63 - 1),
        "status_code": span.status.code if 0 <= span.status.code <= 2 else 0,
        "status_message": span.status.message[:1000],
        "attributes": attributes,
        "events": json.dumps(events, ensure_ascii=False, default=str),
        "links": json.dumps(links),
    }


def _safe_attributes(attrs: Any) -> dict[str, Any]:
    try:
        return dict(json.loads(_attributes_json(attrs)))
    except ValueError as exc:
        return {"collector.dropped_attributes": str(exc)}


def log_record(record: Any, service: str, limits: ItemLimits) -> dict[str, Any]:
    """A log record as a `kept_logs` row; ValueError names why it is refused."""
    if len(record.trace_id) not in (0, 16) or len(record.span_id) not in (0, 8):
        raise ValueError("has a trace_id that is not 16 bytes or a span_id that is not 8 bytes")
    when = record.time_unix_nano or record.observed_time_unix_nano
    problem = limits.time_problem(when)
    if problem is not None:
        raise ValueError(problem)
    body = _value(record.body)
    text = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False, default=str)
    if len(text.encode()) > MAX_LOG_BODY_BYTES:
        raise ValueError(f"has a body over {MAX_LOG_BODY_BYTES} bytes")
    severity = record.severity_text[:16] or (str(record.severity_number) if record.severity_number else "")
    return {
        "trace_id": record.trace_id.hex(),
        "span_id": record.span_id.hex(),
        "time_unix_nano": when,
        "severity": severity,
        "service": service[:100],
        "body": text,
        "attributes": _attributes_json(record.attributes),
    }


def _service(resource: Any) -> str:
    for kv in resource.attributes:
        if kv.key == "service.name":
            return str(kv.value.string_value)
    return ""


def _span_at(request: ExportTraceServiceRequest, where: int) -> Any:
    """The span at `where` = resource << 64 | scope << 32 | index in `request`."""
    r, c, k = where >> 64, (where >> 32) & 0xFFFFFFFF, where & 0xFFFFFFFF
    return request.resource_spans[r].scope_spans[c].spans[k]


class TraceKeeper:
    def __init__(
        self,
        engine: Engine,
        *,
        max_bytes: int,
        retention: timedelta = timedelta(days=7),
        buffer_items: int = 50_000,
        remember: int = 20_000,
        prune_every: float = PRUNE_EVERY_SECONDS,
    ) -> None:
        self.engine = engine
        self.max_bytes = max_bytes
        self.retention = retention
        self.buffer_items = buffer_items
        self.remember = remember
        self.prune_every = prune_every
        self._lock = threading.Lock()
        # trace -> [item, where, service, ...], flat: a span as its request and its place in it (`where`), a
        # log line as a dict (where -1). Buffering a span allocates nothing the garbage collector tracks.
        self._waiting: OrderedDict[bytes, list[Any]] = OrderedDict()
        self._waiting_items = 0
        self._kept: OrderedDict[bytes, str] = OrderedDict()  # recently kept trace ids -> their slice
        self._last_prune = time.monotonic()

    def on_spans(self, request: ExportTraceServiceRequest, batch: Batch, conn: Connection | None = None) -> None:
        """Buffer this request's spans and keep the traces its batch chose. With `conn`, written in that
        transaction (the one counting the request, `commit_batch(then=...)`), and the caller prunes
        (`prune_if_due`) once it has committed; without, in a transaction of its own, then pruned."""
        # A trace chosen twice is kept for its worst reason: bad, then probe, then slow.
        ranked = sorted((*batch.kept, *batch.probes), key=lambda k: REASONS.index(k.reason), reverse=True)
        chosen = {bytes.fromhex(k.trace_id): k for k in ranked}
        now_kept: list[tuple[Any, str]] = []
        with self._lock:
            kept, waiting, added = self._kept, self._waiting, 0
            for r, resource_spans in enumerate(request.resource_spans):
                service = _service(resource_spans.resource)
                for c, scope_spans in enumerate(resource_spans.scope_spans):
                    base = (r << 64) | (c << 32)
                    for k, span in enumerate(scope_spans.spans):  # the hot loop: every span of every request
                        trace_id = span.trace_id
                        if trace_id in kept:
                            now_kept.append((span, service))
                        elif len(trace_id) == 16:  # a span's own id is checked when it is written
                            # The request and the span's place in it, not the span's own wrapper: a
                            # buffer of wrappers is what the garbage collector would walk again and again.
                            found = waiting.get(trace_id)
                            if found is None:
                                waiting[trace_id] = [request, base | k, service]
                            else:
                                found += (request, base | k, service)
                            added += 1
                            if span.links and trace_id not in chosen:
                                self._linking(span, chosen)
            self._waiting_items += added
            logs = self._choose(chosen, now_kept)
            self._trim()  # after choosing: what this request chose is not evicted by its own spans
        self._write(list(chosen.values()), now_kept, logs, displaced=batch.displaced, conn=conn)

    def on_logs(self, request: ExportLogsServiceRequest, limits: ItemLimits) -> tuple[int, str]:
        rejected, reason = 0, ""
        now_kept: list[dict[str, Any]] = []
        with self._lock:
            for resource_logs in request.resource_logs:
                service = _service(resource_logs.resource)
                for scope_logs in resource_logs.scope_logs:
                    for record in scope_logs.log_records:
                        try:
                            row = log_record(record, service, limits)
                        except (ValueError, RecursionError) as exc:
                            rejected += 1
                            reason = reason or f"a log record {exc}"
                            continue
                        if not row["trace_id"]:
                            continue  # a line outside any trace: counted, not kept
                        trace_id = record.trace_id
                        if trace_id in self._kept:
                            now_kept.append(row)
                        else:
                            self._wait(trace_id, row, service)
        if now_kept:
            keep(self.engine, (), logs=now_kept)
        return rejected, reason

    def _linking(self, span: Any, chosen: dict[bytes, Keep]) -> None:
        """A trace that links to a kept one (a relay's publish, a settlement batch) is kept with it."""
        for link in span.links:
            slice_name = self._kept.get(link.trace_id) or (
                chosen[link.trace_id].slice if link.trace_id in chosen else None
            )
            if slice_name is not None:
                seconds = (span.end_time_unix_nano - span.start_time_unix_nano) / 1e9
                when = minute_of(max(span.end_time_unix_nano, 1))
                chosen[span.trace_id] = Keep(span.trace_id.hex(), slice_name, when, "linked", seconds)
                return

    def _wait(self, trace_id: bytes, row: dict[str, Any], service: str) -> None:
        found = self._waiting.get(trace_id)
        if found is None:
            found = self._waiting[trace_id] = []
        found += (row, -1, service)
        self._waiting_items += 1
        self._trim()

    def _trim(self) -> None:
        while self._waiting_items > self.buffer_items and self._waiting:
            _, dropped = self._waiting.popitem(last=False)
            self._waiting_items -= len(dropped) // 3

    def _choose(self, chosen: dict[bytes, Keep], spans: list[tuple[Any, str]]) -> list[dict[str, Any]]:
        """Mark `chosen` kept and move what waited for them into `spans` (returned: their log lines)."""
        logs: list[dict[str, Any]] = []
        for trace_id, why in chosen.items():
            self._kept[trace_id] = why.slice
            self._kept.move_to_end(trace_id)
            waited = self._waiting.pop(trace_id, [])
            self._waiting_items -= len(waited) // 3
            for item, where, service in zip(waited[::3], waited[1::3], waited[2::3], strict=True):
                if where < 0:
                    logs.append(item)
                else:
                    spans.append((_span_at(item, where), service))
        while len(self._kept) > self.remember:
            self._kept.popitem(last=False)
        return logs

    def _write(
        self,
        traces: list[Keep],
        spans: list[tuple[Any, str]],
        logs: list[dict[str, Any]],
        *,
        displaced: list[str],
        conn: Connection | None = None,
    ) -> None:
        if traces or spans or logs or displaced:
            rows = [span_record(s, service) for s, service in spans if len(s.span_id) == 8]
            if conn is not None:
                keep_in(conn, traces, spans=rows, logs=logs, unkeep_slow=displaced)
                return
            keep(self.engine, traces, spans=rows, logs=logs, unkeep_slow=displaced)
        if conn is None:
            self.prune_if_due()

    def prune_if_due(self) -> None:
        if time.monotonic() - self._last_prune >= self.prune_every:
            self.prune()

    def prune(self) -> dict[str, int]:
        self._last_prune = time.monotonic()
        return prune(self.engine, max_bytes=self.max_bytes, older_than=utcnow() - self.retention)
