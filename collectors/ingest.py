"""From decoded OTLP requests to per-slice, per-minute SLI buckets in the store.

    batch = aggregate_spans(request, config)
    commit_batch(engine, digest=content_digest(request), signal="traces", batch=batch, config=config)

A bucket is keyed by the event's own time (a span's end, a data point's time), never by arrival.
Each request is folded in memory into (slice, minute) deltas first, so the store sees one upsert
per bucket, not one write per span; memory grows with slices x minutes, not with spans.
Exactly-once: a request's content digest is recorded in the same transaction as its counts, so an
exporter retry, or the same export in the other encoding, adds nothing. Cumulative metric points
are turned into deltas against the last point stored for their series, so re-exported cumulative
values add nothing either. Upserts add to counts atomically, so several collectors may share one
PostgreSQL store. Spans and points marked synthetic (`user_agent.synthetic.type`, any value: probes,
readiness checks) describe no player, so they are left out of the buckets and only counted.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache

from google.protobuf.message import Message
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from sqlalchemy import Connection, Engine, Insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from collectors.exemplars import Exemplar, ExemplarLimits, add_exemplars, keep_slowest
from controlplane.clock import utcnow
from controlplane.slices import SPAN_KINDS, SliceConfig
from controlplane.store import IngestedBatch, MetricSeriesState, SliBucket, SliLatencyBucket, table
from controlplane.traces.store import Keep

STATUS_ERROR = 2  # opentelemetry.proto.trace.v1.Status.STATUS_CODE_ERROR
TEMPORALITY_DELTA = 1
PROBES_KEPT_PER_REQUEST = 20
NANOS_PER_MINUTE = 60 * 10**9
MAX_UNIX_NANO = 2**63 - 1  # what the store's BIGINT columns hold
MAX_EVENTS_PER_POINT = 10**12  # a million a second for eleven days: more in one point is not a measurement
SYNTHETIC_ATTRIBUTE = "user_agent.synthetic.type"  # OpenTelemetry semantic conventions
STATUS_ATTRIBUTE = "http.response.status_code"
BAD_STATUS = -1  # an http.response.status_code that is no HTTP status code: the item is refused
BAD_STATUS_REASON = f"{STATUS_ATTRIBUTE} must be an HTTP status code: a whole number from 0 to 999"


@dataclass(frozen=True)
class ItemLimits:
    """What one span or point may claim: a time after 1970 and not ahead of the collector's clock by more
    than the allowed skew, and a plausible count. Items beyond are refused one by one (partial success)."""

    now_unix_nano: int
    max_skew_nanos: int = 300 * 10**9

    @classmethod
    def now(cls, *, max_skew_seconds: float = 300.0) -> ItemLimits:
        return cls(time.time_ns(), int(max_skew_seconds * 10**9))

    def time_problem(self, unix_nano: int) -> str | None:
        if unix_nano <= 0:
            return "has no time, or one before 1970"
        if unix_nano > min(MAX_UNIX_NANO, self.now_unix_nano + self.max_skew_nanos):
            return f"is timed more than {self.max_skew_nanos // 10**9} s ahead of the collector's clock"
        return None

    @staticmethod
    def count_problem(*counts: int) -> str | None:
        if any(count > MAX_EVENTS_PER_POINT for count in counts):
            return f"claims more than {MAX_EVENTS_PER_POINT} events"
        return None


def content_digest(message: Message) -> str:
    """The same export gives the same digest whatever its wire encoding (JSON or protobuf)."""
    return hashlib.sha256(message.SerializeToString(deterministic=True)).hexdigest()


def minute_of(unix_nano: int) -> datetime:
    return datetime.fromtimestamp(unix_nano // NANOS_PER_MINUTE * 60, tz=UTC)


def _attributes(attrs) -> dict[str, object]:
    out: dict[str, object] = {}
    for kv in attrs:
        which = kv.value.WhichOneof("value")
        if which in ("string_value", "int_value", "bool_value", "double_value"):
            out[kv.key] = getattr(kv.value, which)
    return out


def _synthetic(attrs) -> bool:
    """Marked synthetic, whatever the attribute's value (even one of a type we do not read)."""
    return any(kv.key == SYNTHETIC_ATTRIBUTE for kv in attrs)


def _span_marks(attrs) -> tuple[bool, int]:
    """In one pass over a span's attributes: whether it is marked synthetic, and its HTTP status code."""
    synthetic, status = False, 0
    for kv in attrs:
        key = kv.key
        if key == SYNTHETIC_ATTRIBUTE:
            synthetic = True
        elif key == STATUS_ATTRIBUTE:
            which = kv.value.WhichOneof("value")
            if which in ("string_value", "int_value", "bool_value", "double_value"):
                status = _status_code({key: getattr(kv.value, which)})
    return synthetic, status


def _status_code(attrs: dict[str, object]) -> int:
    """The HTTP status code an item carries, 0 without one (or with text that is no number), or
    BAD_STATUS for a number no HTTP status can be: not finite, fractional, or beyond 0-999."""
    value = attrs.get(STATUS_ATTRIBUTE)
    if not isinstance(value, int | float | str):
        return 0
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        return BAD_STATUS
    try:
        code = int(value)
    except ValueError:
        return 0
    return code if 0 <= code <= 999 else BAD_STATUS


@dataclass
class BucketDelta:
    total: int = 0
    bad: int = 0
    latency: Counter = field(default_factory=Counter)
    bad_exemplars: list[Exemplar] = field(default_factory=list)
    slow_exemplars: list[Exemplar] = field(default_factory=list)


@dataclass
class Batch:
    buckets: dict[tuple[str, datetime], BucketDelta] = field(default_factory=dict)
    rejected: int = 0
    rejected_reason: str = ""
    events: int = 0
    synthetic: int = 0  # spans or points of a slice left out because they are marked synthetic
    # spans or points of a slice left out because the client caused their refusal (401, 408, 413, 429), by slice
    client_refused: dict[str, int] = field(default_factory=dict)
    exemplar_limits: ExemplarLimits = field(default_factory=ExemplarLimits)
    probes: list[Keep] = field(default_factory=list)  # synthetic slice spans: their traces are kept
    kept: list[Keep] = field(default_factory=list)  # set by commit_batch: traces chosen as exemplars
    displaced: list[str] = field(default_factory=list)  # set by commit_batch: traces no longer slow exemplars

    def bucket(self, slice_name: str, minute: datetime) -> BucketDelta:
        key = (slice_name, minute)
        found = self.buckets.get(key)
        if found is None:
            found = self.buckets[key] = BucketDelta()
        return found

    def reject(self, reason: str) -> None:
        self.rejected += 1
        self.rejected_reason = self.rejected_reason or reason

    def refused_by_client(self, slice_name: str, count: int = 1) -> None:
        self.client_refused[slice_name] = self.client_refused.get(slice_name, 0) + count


def aggregate_spans(
    request: ExportTraceServiceRequest,
    config: SliceConfig,
    limits: ItemLimits | None = None,
    exemplars: ExemplarLimits | None = None,
) -> Batch:
    limits = limits or ItemLimits.now()
    batch = Batch(exemplar_limits=exemplars or ExemplarLimits())
    most_bad, most_slow = batch.exemplar_limits.bad, batch.exemplar_limits.slow
    minutes: dict[int, datetime] = {}  # each minute's datetime made once per request
    span_names = config.span_names
    for resource_spans in request.resource_spans:
        service = _attributes(resource_spans.resource.attributes).get("service.name")
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                if span.name not in span_names:  # most spans: in no slice, whatever their kind
                    continue
                kind = SPAN_KINDS[span.kind] if 0 <= span.kind < len(SPAN_KINDS) else "unspecified"
                spec = config.for_span(service=service, name=span.name, kind=kind)  # type: ignore[arg-type]
                if spec is None:
                    continue
                start, end = span.start_time_unix_nano, span.end_time_unix_nano
                if end == 0 or end < start or len(span.trace_id) != 16 or len(span.span_id) != 8:
                    batch.reject("spans need trace_id (16 bytes), span_id (8 bytes) and end >= start > 0")
                    continue
                problem = limits.time_problem(end)
                if problem is not None:
                    batch.reject(f"a span {problem}")
                    continue
                synthetic, status = _span_marks(span.attributes)
                if status == BAD_STATUS:
                    batch.reject(f"a span's {BAD_STATUS_REASON}")
                    continue
                minute = minutes.get(end // NANOS_PER_MINUTE) or minutes.setdefault(
                    end // NANOS_PER_MINUTE, minute_of(end)
                )
                seconds = (end - start) / 1e9
                if synthetic:
                    batch.synthetic += 1
                    if len(batch.probes) < PROBES_KEPT_PER_REQUEST:
                        batch.probes.append(Keep(span.trace_id.hex(), spec.name, minute, "probe", seconds))
                    continue
                if 400 <= status < 500 and status in spec.bad.excluded_statuses:
                    batch.refused_by_client(spec.name)
                    continue
                bad = (spec.bad.span_status_error and span.status.code == STATUS_ERROR) or (
                    spec.bad.http_status_min > 0 and status >= spec.bad.http_status_min
                )
                delta = batch.bucket(spec.name, minute)
                delta.total += 1
                delta.bad += bool(bad)
                delta.latency[config.latency_label(seconds)] += 1
                slow = delta.slow_exemplars
                if bad or len(slow) < most_slow or (slow and seconds > min(slow)[0]):
                    exemplar = (seconds, span.trace_id.hex(), span.span_id.hex())
                    if bad and len(delta.bad_exemplars) < most_bad:
                        delta.bad_exemplars.append(exemplar)
                    keep_slowest(slow, exemplar, most_slow)
                batch.events += 1
    return batch


@dataclass(frozen=True)
class HistogramPoint:
    slice: str
    series_key: str
    cumulative: bool
    start_time_unix_nano: int
    time_unix_nano: int
    count: int
    bucket_counts: tuple[int, ...]
    labels: tuple[str, ...]  # our `le` label of each of the point's buckets
    bad: bool


def metric_points(
    request: ExportMetricsServiceRequest, config: SliceConfig, limits: ItemLimits | None = None
) -> tuple[list[HistogramPoint], Batch]:
    """The histogram points that belong to a slice; the Batch carries rejections and synthetic skips only."""
    limits = limits or ItemLimits.now()
    points: list[HistogramPoint] = []
    rejections = Batch()
    for resource_metrics in request.resource_metrics:
        resource = _attributes(resource_metrics.resource.attributes)
        service = resource.get("service.name")
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                if metric.WhichOneof("data") != "histogram":
                    continue
                cumulative = metric.histogram.aggregation_temporality != TEMPORALITY_DELTA
                for point in metric.histogram.data_points:
                    attrs = _attributes(point.attributes)
                    method, route = attrs.get("http.request.method"), attrs.get("http.route")
                    route_key = f"{method} {route}" if method and route else None
                    spec = config.for_metric(service=service, metric=metric.name, route=route_key)  # type: ignore[arg-type]
                    if spec is None:
                        continue
                    counts = tuple(point.bucket_counts)
                    bounds = tuple(point.explicit_bounds)
                    if (
                        point.time_unix_nano == 0
                        or (counts and len(counts) != len(bounds) + 1)
                        or (counts and sum(counts) != point.count)
                        or not all(map(math.isfinite, bounds))
                    ):
                        rejections.reject(
                            "histogram points need a time, finite explicit_bounds and bucket_counts matching them"
                        )
                        continue
                    status = _status_code(attrs)
                    if status == BAD_STATUS:
                        rejections.reject(f"a histogram point's {BAD_STATUS_REASON}")
                        continue
                    problem = (
                        limits.time_problem(point.time_unix_nano)
                        or ("starts after its own time" if point.start_time_unix_nano > point.time_unix_nano else None)
                        or limits.count_problem(point.count, *counts)
                    )
                    if problem is not None:
                        rejections.reject(f"a histogram point {problem}")
                        continue
                    if _synthetic(point.attributes):
                        rejections.synthetic += 1
                        continue
                    if 400 <= status < 500 and status in spec.bad.excluded_statuses:
                        rejections.refused_by_client(spec.name, point.count)
                        continue
                    labels = (*(config.latency_label(b) for b in bounds), "+Inf")
                    identity = json.dumps(
                        [sorted(resource.items(), key=str), metric.name, sorted(attrs.items(), key=str)], default=str
                    )
                    points.append(
                        HistogramPoint(
                            slice=spec.name,
                            series_key=hashlib.sha256(identity.encode()).hexdigest(),
                            cumulative=cumulative,
                            start_time_unix_nano=point.start_time_unix_nano,
                            time_unix_nano=point.time_unix_nano,
                            count=point.count,
                            bucket_counts=counts or (point.count,),
                            labels=labels if counts else ("+Inf",),
                            bad=spec.bad.http_status_min > 0 and status >= spec.bad.http_status_min,
                        )
                    )
    return points, rejections


def _dialect_insert(conn: Connection):
    return pg_insert if conn.dialect.name == "postgresql" else sqlite_insert


def _point_delta(conn: Connection, point: HistogramPoint) -> tuple[int, tuple[int, ...]]:
    """How much of a point is new: all of a delta point; the growth of a cumulative one."""
    if not point.cumulative:
        return point.count, point.bucket_counts
    state_t = table(MetricSeriesState)
    state = conn.execute(
        select(state_t).where(state_t.c.series_key == point.series_key).with_for_update()
    ).one_or_none()
    values = {
        "start_time_unix_nano": point.start_time_unix_nano,
        "time_unix_nano": point.time_unix_nano,
        "count": point.count,
        "bucket_counts": json.dumps(point.bucket_counts),
    }
    if state is None:
        conn.execute(state_t.insert().values(series_key=point.series_key, **values))
        return point.count, point.bucket_counts
    previous = tuple(json.loads(state.bucket_counts))
    prior_count: int = state._mapping["count"]  # `Row.count` is the tuple method, not the column
    same_life = point.start_time_unix_nano == state.start_time_unix_nano
    if (same_life and point.time_unix_nano <= state.time_unix_nano) or (
        point.start_time_unix_nano < state.start_time_unix_nano
    ):
        return 0, ()  # seen already (a re-export), or older than what we hold
    conn.execute(state_t.update().where(state_t.c.series_key == point.series_key).values(**values))
    if not same_life or len(previous) != len(point.bucket_counts) or point.count < prior_count:
        return point.count, point.bucket_counts  # the series restarted: the whole point is new
    growth = tuple(a - b for a, b in zip(point.bucket_counts, previous, strict=True))
    if min(growth) < 0:  # a cumulative bucket never shrinks: the series was reset under the same start
        return point.count, point.bucket_counts
    return point.count - prior_count, growth


def commit_batch(
    engine: Engine,
    *,
    digest: str,
    signal: str,
    batch: Batch,
    points: list[HistogramPoint] | None = None,
    then: Callable[[Connection], None] | None = None,
) -> bool:
    """Add a request's counts to the store, once. Returns False if this content was counted before.
    `then` runs in the same transaction after the counts (keeping the traces the batch chose), so a
    request is counted and its traces kept together or not at all."""
    batches_t = table(IngestedBatch)
    with engine.begin() as conn:
        insert = _dialect_insert(conn)
        fresh = conn.execute(
            insert(batches_t)
            .values(digest=digest, signal=signal, received_at=utcnow())
            .on_conflict_do_nothing()
            .returning(batches_t.c.digest)
        ).scalar_one_or_none()
        if fresh is None:
            return False
        for point in sorted(points or (), key=lambda p: p.series_key):
            count, counts = _point_delta(conn, point)
            if count <= 0:
                continue
            delta = batch.bucket(point.slice, minute_of(point.time_unix_nano))
            delta.total += count
            delta.bad += count if point.bad else 0
            for le, n in zip(point.labels, counts, strict=False):
                if n:
                    delta.latency[le] += n
            batch.events += count
        _upsert(conn, batch)
        if then is not None:
            then(conn)
    return True


@cache
def _upserts(dialect: str) -> tuple[Insert, Insert]:
    """The two upserts that add a batch's counts to its minutes, built once per dialect and run as one
    executemany each: statement construction, not the database, was most of a commit's time."""
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    buckets_t, latency_t = table(SliBucket), table(SliLatencyBucket)
    buckets = insert(buckets_t)
    buckets = buckets.on_conflict_do_update(
        index_elements=["slice", "minute"],
        set_={"total": buckets_t.c.total + buckets.excluded.total, "bad": buckets_t.c.bad + buckets.excluded.bad},
    )
    latency = insert(latency_t)
    latency = latency.on_conflict_do_update(
        index_elements=["slice", "minute", "le"], set_={"count": latency_t.c.count + latency.excluded.count}
    )
    return buckets, latency


def _upsert(conn: Connection, batch: Batch) -> None:
    # Sorted keys: concurrent collectors lock the same rows in the same order and never deadlock.
    filled = [(key, delta) for key, delta in sorted(batch.buckets.items()) if delta.total]
    if not filled:
        return
    buckets, latency = _upserts(conn.dialect.name)
    conn.execute(buckets, [{"slice": s, "minute": m, "total": d.total, "bad": d.bad} for (s, m), d in filled])
    latency_rows = [
        {"slice": s, "minute": m, "le": le, "count": count}
        for (s, m), d in filled
        for le, count in sorted(d.latency.items())
    ]
    if latency_rows:  # a batch of metric points without buckets has none
        conn.execute(latency, latency_rows)
    kept, displaced = add_exemplars(
        conn, {key: (d.bad_exemplars, d.slow_exemplars) for key, d in filled}, batch.exemplar_limits
    )
    batch.kept += kept
    batch.displaced += displaced
