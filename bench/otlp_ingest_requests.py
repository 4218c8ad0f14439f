"""Realistic OTLP trace export requests for the ingest benchmark, generated before any timing.

Batches of 512 spans from one `sample-platform` SDK instance (HTTP server, internal and database client
spans), and `Bodies`: the pool served as it is, or as unique variants (fresh trace ids, later times).
"""

from __future__ import annotations

import gzip
import math
import random
import struct
import time
from array import array
from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1 import trace_pb2

SPANS_PER_BATCH = 512
WINDOW_S = 180  # event time covered by one pass over the pool
BATCH_SPREAD_S = 5.0  # a batch's spans end within this many seconds (BatchSpanProcessor: 5 s delay)
SERVER, INTERNAL, CLIENT = (
    trace_pb2.Span.SPAN_KIND_SERVER,
    trace_pb2.Span.SPAN_KIND_INTERNAL,
    trace_pb2.Span.SPAN_KIND_CLIENT,
)
STATUS_ERROR = trace_pb2.Status.STATUS_CODE_ERROR


@dataclass(frozen=True)
class Shape:
    """A kind of span: its name, kind, share of all spans, median latency, and HTTP details."""

    name: str
    kind: int
    weight: float
    median_s: float
    ok: int = 200
    client_errors: tuple[int, ...] = ()  # 4xx answers (status left unset, per the HTTP conventions)

    @property
    def http(self) -> bool:
        return self.kind == SERVER


SHAPES = (
    Shape("POST /v1/bets", SERVER, 14, 0.035, 201, (409, 422)),
    Shape("POST /v1/login", SERVER, 3, 0.090, 200, (401,)),
    Shape("POST /v1/admin/markets/{market_id}/result", SERVER, 0.3, 0.250),
    Shape("GET /v1/markets/{market_id}", SERVER, 12, 0.008, 200, (404,)),
    Shape("GET /v1/markets", SERVER, 4, 0.012),
    Shape("GET /v1/wallet", SERVER, 4, 0.006),
    Shape("GET /v1/bets", SERVER, 2, 0.015),
    Shape("GET /v1/health", SERVER, 1, 0.001),
    Shape("POST /v1/bets http send", INTERNAL, 8, 0.0002),  # FastAPI instrumentation's own internal spans
    Shape("bets.place", INTERNAL, 8, 0.025),
    Shape("wallet.debit", INTERNAL, 6, 0.006),
    Shape("auth.verify_password", INTERNAL, 2, 0.080),
    Shape("INSERT bets", CLIENT, 12, 0.003),
    Shape("SELECT markets", CLIENT, 14, 0.002),
    Shape("UPDATE wallets", CLIENT, 6, 0.003),
)
IN_SLICES = tuple(s for s in SHAPES if s.name in ("POST /v1/bets", "POST /v1/login") or "/result" in s.name)
SCOPES = {
    SERVER: ("opentelemetry.instrumentation.fastapi", "0.48b0"),
    INTERNAL: ("sample_platform", "1.4.2"),
    CLIENT: ("opentelemetry.instrumentation.sqlalchemy", "0.48b0"),
}
USER_AGENTS = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Mobile Safari/537.36",
    "sample-platform-app/3.12.0 (Android 14)",
)


def _set(attrs: Any, key: str, value: object) -> None:
    kv = attrs.add()
    kv.key = key
    if isinstance(value, bool):
        kv.value.bool_value = value
    elif isinstance(value, int):
        kv.value.int_value = value
    elif isinstance(value, float):
        kv.value.double_value = value
    else:
        kv.value.string_value = str(value)


def _http_attributes(attrs: Any, shape: Shape, status: int, rng: random.Random) -> None:
    method, route = shape.name.split(" ", 1)
    market = str(rng.randrange(1, 5000))
    _set(attrs, "http.request.method", method)
    _set(attrs, "http.route", route)
    _set(attrs, "http.response.status_code", status)
    _set(attrs, "url.scheme", "https")
    _set(attrs, "url.path", route.replace("{market_id}", market))
    _set(attrs, "server.address", "api.sample-platform.example")
    _set(attrs, "server.port", 443)
    _set(attrs, "network.protocol.version", rng.choice(("1.1", "2")))
    _set(attrs, "user_agent.original", rng.choice(USER_AGENTS))
    _set(attrs, "client.address", f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}")
    _set(attrs, "platform.region", rng.choice(("eu-west-1", "eu-central-1")))
    _set(attrs, "platform.player.tier", rng.choice(("bronze", "silver", "gold")))
    if route == "/v1/bets" and method == "POST":
        _set(attrs, "platform.bet.stake_minor", rng.randrange(100, 50_000))
    else:
        _set(attrs, "platform.cache.hit", rng.random() < 0.7)


def _other_attributes(attrs: Any, shape: Shape, rng: random.Random) -> None:
    if shape.kind == CLIENT:
        operation, table = shape.name.split(" ", 1)
        _set(attrs, "db.system", "postgresql")
        _set(attrs, "db.operation.name", operation)
        _set(attrs, "db.collection.name", table)
        _set(attrs, "server.address", "db.internal")
        _set(attrs, "server.port", 5432)
    else:
        _set(attrs, "code.function", shape.name)
        _set(attrs, "platform.worker", rng.randrange(8))


def _fill_span(span: Any, shape: Shape, end_ns: int, rng: random.Random) -> None:
    span.trace_id = rng.randbytes(16)
    span.span_id = rng.randbytes(8)
    if shape.kind != SERVER or rng.random() < 0.3:
        span.parent_span_id = rng.randbytes(8)
    span.name = shape.name
    span.kind = shape.kind
    seconds = min(rng.lognormvariate(math.log(shape.median_s), 0.7), 30.0)
    span.start_time_unix_nano = end_ns - max(int(seconds * 1e9), 1000)
    span.end_time_unix_nano = end_ns
    if not shape.http:
        _other_attributes(span.attributes, shape, rng)
        return
    roll = rng.random()
    if roll < 0.02:
        status = rng.choice((500, 502, 503, 504))
        span.status.code = STATUS_ERROR
        span.status.message = f"HTTP {status}"
    elif shape.client_errors and roll < 0.06:
        status = rng.choice(shape.client_errors)
    else:
        status = shape.ok
    _http_attributes(span.attributes, shape, status, rng)


def _resource(request: ExportTraceServiceRequest, instance: int) -> Any:
    resource_spans = request.resource_spans.add()
    resource_spans.schema_url = "https://opentelemetry.io/schemas/1.26.0"
    for key, value in (
        ("service.name", "sample-platform"),
        ("service.version", "1.4.2"),
        ("service.instance.id", f"sample-platform-{instance}"),
        ("deployment.environment.name", "production"),
        ("host.name", f"ip-10-0-1-{20 + instance}"),
        ("telemetry.sdk.name", "opentelemetry"),
        ("telemetry.sdk.language", "python"),
        ("telemetry.sdk.version", "1.27.0"),
    ):
        _set(resource_spans.resource.attributes, key, value)
    return resource_spans


@dataclass
class PoolBody:
    """One request body, and where its trace ids and start/end times sit, to make variants of it."""

    body: bytes
    gzipped: bytes
    spans: int
    trace_offsets: array
    time_offsets: array

    def variant(self, shift_ns: int, rng: random.Random) -> bytes:
        """The same request with fresh trace ids, its times moved by `shift_ns`: new content, new digest."""
        out = bytearray(self.body)
        ids = rng.randbytes(16 * len(self.trace_offsets))
        for i, offset in enumerate(self.trace_offsets):
            out[offset : offset + 16] = ids[16 * i : 16 * i + 16]
        if shift_ns:
            for offset in self.time_offsets:
                struct.pack_into("<Q", out, offset, struct.unpack_from("<Q", out, offset)[0] + shift_ns)
        return bytes(out)


def _locate(body: bytes, request: ExportTraceServiceRequest) -> tuple[array, array]:
    """Byte offsets of every span's trace_id and of its start/end fixed64s, checked against their tags."""
    traces, times, at = array("I"), array("I"), 0
    for resource_spans in request.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                at = body.index(b"\x0a\x10" + span.trace_id, at) + 2
                start = body.index(b"\x39" + struct.pack("<Q", span.start_time_unix_nano), at) + 1
                end = body.index(b"\x41" + struct.pack("<Q", span.end_time_unix_nano), start) + 1
                traces.append(at)
                times.extend((start, end))
    return traces, times


def make_batch(
    index: int, pool_size: int, base_ns: int, rng: random.Random, shapes: tuple[Shape, ...] = SHAPES
) -> PoolBody:
    request = ExportTraceServiceRequest()
    resource_spans = _resource(request, instance=index % 4)
    scopes: dict[int, Any] = {}
    for kind, (name, version) in SCOPES.items():
        scope_spans = resource_spans.scope_spans.add()
        scope_spans.scope.name, scope_spans.scope.version = name, version
        scopes[kind] = scope_spans
    first_end = base_ns + int(index * WINDOW_S / pool_size * 1e9)
    for shape in rng.choices(shapes, weights=[s.weight for s in shapes], k=SPANS_PER_BATCH):
        end_ns = first_end + int(rng.uniform(0, BATCH_SPREAD_S) * 1e9)
        _fill_span(scopes[shape.kind].spans.add(), shape, end_ns, rng)
    body = request.SerializeToString()
    traces, times = _locate(body, request)
    return PoolBody(body, gzip.compress(body, 6), SPANS_PER_BATCH, traces, times)


def make_pool(size: int, seed: int, shapes: tuple[Shape, ...] = SHAPES) -> list[PoolBody]:
    rng = random.Random(seed)
    base_ns = (int(time.time()) // 60 * 60 - 6 * 3600) * 10**9  # a few hours ago, on a minute boundary
    pool = [make_batch(i, size, base_ns, rng, shapes) for i in range(size)]
    _check_variant(pool[0], rng)
    return pool


def _check_variant(item: PoolBody, rng: random.Random) -> None:
    original = ExportTraceServiceRequest.FromString(item.body)
    changed = ExportTraceServiceRequest.FromString(item.variant(10**9, rng))
    pairs = zip(_spans(original), _spans(changed), strict=True)
    for a, b in pairs:
        same = (a.span_id, a.name, list(a.attributes)) == (b.span_id, b.name, list(b.attributes))
        moved = b.end_time_unix_nano - a.end_time_unix_nano == b.start_time_unix_nano - a.start_time_unix_nano == 10**9
        if not (same and moved and a.trace_id != b.trace_id):
            raise AssertionError("variant() did not patch the body as intended; the offsets are wrong")


def _spans(request: ExportTraceServiceRequest) -> list[Any]:
    return [s for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]


class Bodies:
    """Endless request bodies: the pool as-is, or unique variants (fresh ids, time moving forward)."""

    def __init__(self, pool: list[PoolBody], *, unique: bool, gzipped: bool = False, seed: int = 0) -> None:
        self.pool, self.unique, self.gzipped = pool, unique, gzipped
        self.rng = random.Random(seed)
        self.served = 0

    def next(self) -> bytes:
        cycle, index = divmod(self.served, len(self.pool))
        self.served += 1
        item = self.pool[index]
        if self.unique:
            return item.variant(cycle * WINDOW_S * 10**9, self.rng)
        return item.gzipped if self.gzipped else item.body
