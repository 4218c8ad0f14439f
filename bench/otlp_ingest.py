"""Benchmark: OTLP trace ingest on ONE core, beside the cost of only parsing the same protobuf bytes.

    .venv/bin/python bench/otlp_ingest.py                      # rates + 1,000,000-span memory run
    .venv/bin/python bench/otlp_ingest.py --rate-spans 100000 --spans 200000 --skip-postgres
    .venv/bin/python bench/otlp_ingest.py --format json > result.json

Input: realistic protobuf `ExportTraceServiceRequest` bodies, generated before any timing: batches
of 512 spans from one `sample-platform` SDK instance (resource with service.name and a few more
attributes; three instrumentation scopes). HTTP server spans carry 13 attributes (the HTTP semantic
conventions plus custom `platform.*` ones); their names are "{method} {route}", some of them in a
slice of config/slices.yaml (POST /v1/bets, POST /v1/login, the settlement route) and most not (GET
/v1/markets/{market_id}, ...); internal and database client spans fill the rest. About 2% of server
spans have status Error with a 5xx code. Trace and span ids are random; each batch's spans end
within a few seconds of each other, and the pool of batches covers a few minutes of event time.

Modes, each run single-threaded (the receiver handles a request in one worker thread), with the
process pinned to one CPU where the OS allows it:

  parse-only            `ExportTraceServiceRequest.FromString(body)`: the baseline. protobuf's upb
                        backend parses into C structures without creating Python objects.
  decode_request        `collectors.otlp.decode_request` (media type, size limit, parse).
  decode (gzip)         the same with `Content-Encoding: gzip` bodies: the extra is inflate.
  parse + touch spans   parse, then read every span's name, kind and end time from Python: the floor
                        of any per-span Python loop (reference only; not product code).
  decode+aggregate      decode_request + `aggregate_spans` + `content_digest`, no store.
    every span in a slice   the same over requests whose spans all belong to a slice (bets, login,
                        settlement server spans): the per-span cost when nothing is skipped early.
  full path, SQLite     the above + `commit_batch` into a fresh, migrated SQLite store file.
  full path, PostgreSQL the same into a fresh schema of $CONTROLPLANE_TEST_POSTGRES_URL (dropped at
                        the end); skipped with a note if PostgreSQL does not answer.

How to read it: "spans/s (cpu)" is spans over this process's CPU time (`time.process_time()`),
which is the honest one-core figure; "wall" also counts waiting (for PostgreSQL: on the server,
whose backend CPU is shown separately when /proc lets us read it). "x parse-only" is a mode's
cpu rate over the parse-only rate measured in the same run: 0.05x means the mode costs 20 times
what protobuf alone costs to parse the same bytes, i.e. 95% of the time is ours. The OpenTelemetry
Collector's published sizing, about 15,000 spans/s per core, is printed as a reference.
Only the ingest call is timed: making each store-bound body unique (fresh trace ids, times moved
forward by the pool's span of event time each pass, so every request has its own content digest
and is not skipped as a re-sent duplicate) happens between the timed calls.

Memory: `--spans` (default 1,000,000) spans through the full path into SQLite, cycling the pool
with fresh ids and advancing time, so the generator never holds more than the pool. Printed: the
process RSS (current, /proc) and peak RSS (`ru_maxrss`) before, after 10%, 50% and 100% of the
spans, and tracemalloc's current and peak for the ingest loop (Python allocations only: upb's and
SQLite's C memory show in RSS only). Memory should follow slices x minutes (the store's bucket
count is printed beside it), not spans. tracemalloc slows that loop; its rate is not a figure.
"""

from __future__ import annotations

import argparse
import gc
import gzip
import json
import math
import os
import platform
import random
import resource
import secrets
import struct
import sys
import tempfile
import time
import tracemalloc
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import google.protobuf  # noqa: E402
from google.protobuf.internal import api_implementation  # noqa: E402
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest  # noqa: E402
from opentelemetry.proto.trace.v1 import trace_pb2  # noqa: E402
from sqlalchemy import Engine, event, func, select  # noqa: E402

from bench.postgres import postgres_reachable  # noqa: E402
from bench.postgres import redact as _redact  # noqa: E402
from collectors.ingest import aggregate_spans, commit_batch, content_digest  # noqa: E402
from collectors.otlp import PROTOBUF, TRACES, decode_request  # noqa: E402
from controlplane.slices import SliceConfig, load_slices  # noqa: E402
from controlplane.settings import Settings  # noqa: E402
from controlplane.storage import make_engine  # noqa: E402
from controlplane.store import SliBucket, migrate_store  # noqa: E402

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
SPANS_PER_BATCH = 512
OTEL_COLLECTOR_SPANS_PER_CORE = 15_000  # the OpenTelemetry Collector's published sizing, per core
MAX_BYTES = Settings.model_fields["collector_max_body_bytes"].default
WINDOW_S = 180  # event time covered by one pass over the pool
BATCH_SPREAD_S = 5.0  # a batch's spans end within this many seconds (BatchSpanProcessor: 5 s delay)
WARMUP_REQUESTS = 4
SLICED_POOL = 20  # requests of the "every span in a slice" pool
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
SERVER, INTERNAL, CLIENT = (
    trace_pb2.Span.SPAN_KIND_SERVER,
    trace_pb2.Span.SPAN_KIND_INTERNAL,
    trace_pb2.Span.SPAN_KIND_CLIENT,
)
STATUS_ERROR = trace_pb2.Status.STATUS_CODE_ERROR


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------- data


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


# ---------------------------------------------------------------------------------------- modes


STAGES = ("decode", "aggregate", "digest", "commit")


@dataclass
class Tally:
    requests: int = 0
    spans: int = 0
    events: int = 0
    cpu: float = 0.0
    wall: float = 0.0
    stages: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))


def parse_only(body: bytes, tally: Tally) -> None:
    ExportTraceServiceRequest.FromString(body)


def decode_only(encoding: str | None) -> Callable[[bytes, Tally], None]:
    def step(body: bytes, tally: Tally) -> None:
        decode_request(body, content_type=PROTOBUF, encoding=encoding, kind=TRACES, max_bytes=MAX_BYTES)

    return step


def touch_spans(body: bytes, tally: Tally) -> None:
    request = ExportTraceServiceRequest.FromString(body)
    for resource_spans in request.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                _ = (span.name, span.kind, span.end_time_unix_nano)


def full_path(config: SliceConfig, engine: Engine | None) -> Callable[[bytes, Tally], None]:
    """The receiver's per-request work (collectors.receiver `ingest`), with each stage's CPU time."""

    def step(body: bytes, tally: Tally) -> None:
        t0 = time.process_time()
        message = decode_request(body, content_type=PROTOBUF, encoding=None, kind=TRACES, max_bytes=MAX_BYTES)
        t1 = time.process_time()
        batch = aggregate_spans(message, config)
        t2 = time.process_time()
        digest = content_digest(message)
        t3 = time.process_time()
        if engine is not None and not commit_batch(engine, digest=digest, signal=TRACES, batch=batch):
            raise RuntimeError("commit_batch skipped a request as a duplicate: the bodies are not unique")
        t4 = time.process_time()
        for stage, spent in zip(STAGES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            tally.stages[stage] += spent
        tally.events += batch.events

    return step


def run(step: Callable[[bytes, Tally], None], bodies: Bodies, spans: int) -> Tally:
    """Warm up, then time `step` alone over whole batches until `spans` spans have gone through."""
    scratch = Tally()
    for _ in range(WARMUP_REQUESTS):
        step(bodies.next(), scratch)
    tally = Tally()
    while tally.spans < spans:
        body = bodies.next()
        wall0, cpu0 = time.perf_counter(), time.process_time()
        step(body, tally)
        tally.cpu += time.process_time() - cpu0
        tally.wall += time.perf_counter() - wall0
        tally.requests += 1
        tally.spans += SPANS_PER_BATCH
    return tally


def summarise(name: str, tally: Tally, baseline_cpu_rate: float | None) -> dict[str, Any]:
    cpu_rate = tally.spans / tally.cpu if tally.cpu else None
    row: dict[str, Any] = {
        "mode": name,
        "spans": tally.spans,
        "requests": tally.requests,
        "cpu_s": round(tally.cpu, 3),
        "wall_s": round(tally.wall, 3),
        "spans_per_s_cpu": round(cpu_rate) if cpu_rate else None,
        "spans_per_s_wall": round(tally.spans / tally.wall) if tally.wall else None,
        "us_cpu_per_request": round(tally.cpu / tally.requests * 1e6, 1),
        "x_parse_only": round(cpu_rate / baseline_cpu_rate, 4) if cpu_rate and baseline_cpu_rate else None,
    }
    if any(tally.stages.values()):
        row["stage_cpu_share"] = {k: round(v / tally.cpu, 3) for k, v in tally.stages.items()}
        row["stage_us_per_request"] = {k: round(v / tally.requests * 1e6, 1) for k, v in tally.stages.items()}
        row["events_in_slices"] = tally.events
    return row


# ---------------------------------------------------------------------------------------- stores


def sqlite_store(workdir: Path, name: str) -> Engine:
    engine = make_engine(f"sqlite:///{workdir / name}")
    migrate_store(engine)
    return engine


class PostgresSchema:
    """A fresh schema in the target database, dropped on exit; the engine's backend pids for CPU."""

    def __init__(self, base_url: str) -> None:
        from sqlalchemy.engine import make_url

        from controlplane.storage import normalise_url

        self.base = make_url(normalise_url(base_url))
        self.schema = f"bench_otlp_{secrets.token_hex(4)}"
        self.admin: Engine | None = None
        self.backends: list[int] = []

    def __enter__(self) -> Engine:
        from sqlalchemy import create_engine, text

        self.admin = create_engine(self.base.update_query_dict({"connect_timeout": "5"}), isolation_level="AUTOCOMMIT")
        with self.admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{self.schema}"'))
        url = self.base.update_query_dict({"options": f"-csearch_path={self.schema}"})
        engine = make_engine(url.render_as_string(hide_password=False))

        @event.listens_for(engine, "connect")
        def _backend_pid(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            with dbapi_connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                self.backends.append(cursor.fetchone()[0])
            dbapi_connection.commit()

        migrate_store(engine)
        return engine

    def __exit__(self, *exc: object) -> None:
        from sqlalchemy import text

        if self.admin is None:
            return
        try:
            with self.admin.connect() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE'))
        finally:
            self.admin.dispose()

    def server_cpu_s(self) -> float | None:
        """CPU seconds used so far by our backends, when PostgreSQL runs on this machine."""
        total = 0.0
        for pid in self.backends:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                return None
            total += (int(fields[11]) + int(fields[12])) / CLK_TCK
        return total


def bucket_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(SliBucket.__table__)).scalar_one()


# ---------------------------------------------------------------------------------------- memory


def rss_kib() -> int | None:
    """Current resident set size, KiB (Linux /proc); ru_maxrss is only the peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def max_rss_kib() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak


def memory_point(label: str, spans: int, engine: Engine | None, started: float) -> dict[str, Any]:
    traced = tracemalloc.get_traced_memory() if tracemalloc.is_tracing() else (None, None)
    return {
        "at": label,
        "spans": spans,
        "rss_kib": rss_kib(),
        "max_rss_kib": max_rss_kib(),
        "traced_current_kib": None if traced[0] is None else traced[0] // 1024,
        "traced_peak_kib": None if traced[1] is None else traced[1] // 1024,
        "store_buckets": bucket_count(engine) if engine is not None else None,
        "elapsed_s": round(time.perf_counter() - started, 1),
    }


def memory_run(pool: list[PoolBody], config: SliceConfig, spans: int, workdir: Path, seed: int) -> dict[str, Any]:
    engine = sqlite_store(workdir, "memory.db")
    step = full_path(config, engine)
    bodies = Bodies(pool, unique=True, seed=seed + 2)
    batches = math.ceil(spans / SPANS_PER_BATCH)
    marks = {math.ceil(batches * f): label for f, label in ((0.1, "10%"), (0.5, "50%"), (1.0, "100%"))}
    gc.collect()
    started = time.perf_counter()
    points = [memory_point("before", 0, engine, started)]
    tally = Tally()
    tracemalloc.start()
    try:
        for n in range(1, batches + 1):
            step(bodies.next(), tally)
            if n in marks:
                points.append(memory_point(marks[n], n * SPANS_PER_BATCH, engine, started))
                log(f"[memory] {n * SPANS_PER_BATCH:,} spans: rss {points[-1]['rss_kib'] / 1024:.1f} MiB")
    finally:
        tracemalloc.stop()
    engine.dispose()
    before, after = points[0], points[-1]
    return {
        "spans": batches * SPANS_PER_BATCH,
        "points": points,
        "rss_growth_kib": after["rss_kib"] - before["rss_kib"] if after["rss_kib"] and before["rss_kib"] else None,
        "max_rss_growth_kib": after["max_rss_kib"] - before["max_rss_kib"],
        "traced_peak_kib": after["traced_peak_kib"],
        "events_in_slices": tally.events,
    }


# ---------------------------------------------------------------------------------------- main


def pin_one_cpu(wanted: int | None) -> int | None:
    """Pin this process to one CPU (default: the last one it may use); None where the OS cannot."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    cpu = allowed[-1] if wanted is None else wanted
    os.sched_setaffinity(0, {cpu})
    return cpu


def rate_runs(
    pool: list[PoolBody], sliced: list[PoolBody], config: SliceConfig, args: argparse.Namespace, workdir: Path
) -> list[dict]:
    n, seed = args.rate_spans, args.seed
    rows: list[dict[str, Any]] = []

    def measure(name: str, step: Callable[[bytes, Tally], None], bodies: Bodies) -> dict[str, Any]:
        log(f"[rate] {name} ...")
        tally = run(step, bodies, n)
        base = rows[0]["spans_per_s_cpu"] if rows else tally.spans / tally.cpu
        row = summarise(name, tally, base)
        rows.append(row)
        return row

    measure("parse-only (FromString)", parse_only, Bodies(pool, unique=False))
    measure("decode_request", decode_only(None), Bodies(pool, unique=False))
    measure("decode_request (gzip)", decode_only("gzip"), Bodies(pool, unique=False, gzipped=True))
    measure("parse + touch spans (floor)", touch_spans, Bodies(pool, unique=False))
    measure("decode+aggregate (no store)", full_path(config, None), Bodies(pool, unique=False))
    measure("  same, every span in a slice", full_path(config, None), Bodies(sliced, unique=False))
    sqlite = sqlite_store(workdir, "rate.db")
    try:
        row = measure("full path, SQLite", full_path(config, sqlite), Bodies(pool, unique=True, seed=seed + 1))
        row["store_buckets"] = bucket_count(sqlite)
    finally:
        sqlite.dispose()
    if args.skip_postgres:
        rows.append({"mode": "full path, PostgreSQL", "skipped": "--skip-postgres"})
        return rows
    why = postgres_reachable(args.postgres_url)
    if why is not None:
        rows.append({"mode": "full path, PostgreSQL", "skipped": f"{_redact(args.postgres_url)} unreachable ({why})"})
        return rows
    schema = PostgresSchema(args.postgres_url)
    with schema as pg:
        try:
            cpu0 = schema.server_cpu_s()
            row = measure("full path, PostgreSQL", full_path(config, pg), Bodies(pool, unique=True, seed=seed + 3))
            cpu1 = schema.server_cpu_s()  # includes the warm-up requests: a slight overestimate
            if cpu0 is not None and cpu1 is not None:
                row["server_cpu_us_per_request"] = round((cpu1 - cpu0) / (row["requests"] + WARMUP_REQUESTS) * 1e6, 1)
            row["store_buckets"] = bucket_count(pg)
        finally:
            pg.dispose()
    return rows


def pool_summary(pool: list[PoolBody], config: SliceConfig, generation_s: float) -> dict[str, Any]:
    sizes = [len(p.body) for p in pool]
    gz = [len(p.gzipped) for p in pool]
    in_slices = aggregate_spans(ExportTraceServiceRequest.FromString(pool[0].body), config).events
    return {
        "requests": len(pool),
        "spans": sum(p.spans for p in pool),
        "spans_per_request": SPANS_PER_BATCH,
        "mean_body_bytes": round(sum(sizes) / len(sizes)),
        "mean_gzip_bytes": round(sum(gz) / len(gz)),
        "bytes_per_span": round(sum(sizes) / sum(p.spans for p in pool), 1),
        "in_slices_share_first_request": round(in_slices / pool[0].spans, 3),
        "event_time_per_pass_s": WINDOW_S,
        "generation_s": round(generation_s, 1),
    }


def _fmt(value: float | None, spec: str = ",.0f") -> str:
    return "-" if value is None else format(value, spec)


def render_text(report: dict[str, Any]) -> str:
    cfg, pool = report["config"], report["pool"]
    pinned = f"pinned to CPU {cfg['cpu']}" if cfg["cpu"] is not None else "NOT pinned (no sched_setaffinity)"
    lines = [
        f"OTLP trace ingest, one core ({pinned}; {cfg['cpus']} CPUs; python {cfg['python']}, "
        f"protobuf {cfg['protobuf']} [{cfg['protobuf_backend']}])",
        f"pool: {pool['requests']} distinct requests x {pool['spans_per_request']} spans, "
        f"{pool['mean_body_bytes'] / 1024:.0f} KiB each ({pool['bytes_per_span']:.0f} B/span; gzip "
        f"{pool['mean_gzip_bytes'] / 1024:.0f} KiB), {pool['in_slices_share_first_request']:.0%} of spans in a slice, "
        f"built in {pool['generation_s']:.1f} s",
        "",
        f"rates: {cfg['rate_spans']:,} spans per mode (whole requests; {WARMUP_REQUESTS} warm-up requests first)",
        f"{'mode':<30} {'spans/s cpu':>12} {'spans/s wall':>13} {'x parse-only':>13} {'us cpu/req':>11}",
    ]
    for row in report["rates"]:
        if row.get("skipped"):
            lines.append(f"{row['mode']:<30} SKIPPED: {row['skipped']}")
            continue
        lines.append(
            f"{row['mode']:<30} {_fmt(row['spans_per_s_cpu']):>12} {_fmt(row['spans_per_s_wall']):>13} "
            f"{_fmt(row['x_parse_only'], '.3f') + 'x':>13} {_fmt(row['us_cpu_per_request'], ',.0f'):>11}"
        )
    lines.append("")
    lines.extend(_ratio_lines(report["rates"]))
    lines.extend(_memory_lines(report.get("memory")))
    return "\n".join(lines)


def _ratio_lines(rows: list[dict[str, Any]]) -> list[str]:
    out = []
    by_mode = {r["mode"]: r for r in rows if not r.get("skipped")}
    gz, plain = by_mode.get("decode_request (gzip)"), by_mode.get("decode_request")
    if gz and plain:
        extra = gz["us_cpu_per_request"] - plain["us_cpu_per_request"]
        out.append(f"gzip inflate: +{extra:,.0f} us cpu per request ({extra / SPANS_PER_BATCH:.2f} us/span)")
    for row in rows:
        if row.get("skipped") or "stage_cpu_share" not in row:
            continue
        share = "  ".join(f"{k} {v:.0%}" for k, v in row["stage_cpu_share"].items() if row["stage_us_per_request"][k])
        out.append(f"{row['mode']}: {row['x_parse_only']:.3f}x of parse-only; cpu per request: {share}")
        if row.get("server_cpu_us_per_request") is not None:
            server = row["server_cpu_us_per_request"]
            both = row["spans"] / (row["cpu_s"] + server * row["requests"] / 1e6)
            out.append(
                f"  + PostgreSQL backend {server:,.0f} us cpu per request -> {both:,.0f} spans/s per core, both counted"
            )
    full = by_mode.get("full path, SQLite")
    ref = OTEL_COLLECTOR_SPANS_PER_CORE
    line = f"reference: OpenTelemetry Collector sizing ~{ref:,} spans/s per core"
    if full and full["spans_per_s_cpu"]:
        line += f"; full path, SQLite = {full['spans_per_s_cpu'] / ref:.2f}x that"
    out.append(line)
    return out


def _mib(kib: int | None) -> float | None:
    return None if kib is None else kib / 1024


def _memory_lines(memory: dict[str, Any] | None) -> list[str]:
    if memory is None:
        return []
    out = [
        "",
        f"memory: {memory['spans']:,} spans through the full path into SQLite (tracemalloc on: slower, not a rate)",
        f"{'at':>7} {'spans':>10} {'rss MiB':>8} {'max rss MiB':>12} {'traced MiB':>11} {'traced peak':>12} "
        f"{'buckets':>8} {'s':>6}",
    ]
    for p in memory["points"]:
        out.append(
            f"{p['at']:>7} {p['spans']:>10,} {_fmt(_mib(p['rss_kib']), '.1f'):>8} "
            f"{_fmt(_mib(p['max_rss_kib']), '.1f'):>12} "
            f"{_fmt(_mib(p['traced_current_kib']), '.2f'):>11} {_fmt(_mib(p['traced_peak_kib']), '.2f'):>12} "
            f"{_fmt(p['store_buckets'], 'd'):>8} {p['elapsed_s']:>6.1f}"
        )
    growth = memory["rss_growth_kib"]
    out.append(
        f"rss grew {_fmt(None if growth is None else growth / 1024, '.1f')} MiB, peak rss "
        f"{memory['max_rss_growth_kib'] / 1024:.1f} MiB, tracemalloc peak of the ingest loop "
        f"{memory['traced_peak_kib'] / 1024:.2f} MiB ({memory['events_in_slices']:,} spans counted into slices)"
    )
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--spans", type=int, default=1_000_000, help="spans of the memory run (default 1,000,000)")
    parser.add_argument("--rate-spans", type=int, default=204_800, help="spans per rate mode (default 204,800)")
    parser.add_argument("--pool", type=int, default=200, help="distinct request bodies generated (default 200)")
    parser.add_argument("--cpu", type=int, default=None, help="the CPU to pin to (default: the last allowed one)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument("--skip-postgres", action="store_true", help="do not try PostgreSQL")
    parser.add_argument("--skip-memory", action="store_true", help="rates only")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("CONTROLPLANE_TEST_POSTGRES_URL") or DEFAULT_POSTGRES_URL,
        help=f"PostgreSQL database for the scratch schema\n(default $CONTROLPLANE_TEST_POSTGRES_URL, else "
        f"{DEFAULT_POSTGRES_URL})",
    )
    parser.add_argument("--format", choices=("text", "json"), default="text")
    args = parser.parse_args(argv)
    if args.spans < SPANS_PER_BATCH or args.rate_spans < SPANS_PER_BATCH or args.pool < 1:
        parser.error(f"--spans and --rate-spans must be at least {SPANS_PER_BATCH}, --pool at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    cpu = pin_one_cpu(args.cpu)
    config = load_slices(REPO / "config" / "slices.yaml")
    log(f"generating {args.pool} requests of {SPANS_PER_BATCH} spans ...")
    t0 = time.perf_counter()
    pool = make_pool(args.pool, args.seed)
    sliced = make_pool(SLICED_POOL, args.seed + 10, IN_SLICES)  # only span shapes that a slice counts
    report: dict[str, Any] = {
        "config": {
            "cpu": cpu,
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "protobuf": google.protobuf.__version__,
            "protobuf_backend": api_implementation.Type(),
            "rate_spans": math.ceil(args.rate_spans / SPANS_PER_BATCH) * SPANS_PER_BATCH,
            "memory_spans": None if args.skip_memory else args.spans,
            "max_body_bytes": MAX_BYTES,
            "otel_collector_spans_per_core": OTEL_COLLECTOR_SPANS_PER_CORE,
        },
        "pool": pool_summary(pool, config, time.perf_counter() - t0),
    }
    with tempfile.TemporaryDirectory(prefix="bench-otlp-") as tmp:
        workdir = Path(tmp)
        # Memory first, while ru_maxrss has not yet been raised by the other runs.
        if not args.skip_memory:
            report["memory"] = memory_run(pool, config, args.spans, workdir, args.seed)
        report["rates"] = rate_runs(pool, sliced, config, args, workdir)
    report["elapsed_s"] = round(time.monotonic() - started, 1)
    if args.format == "json":
        print(json.dumps(report, indent=2))
    else:
        print(render_text(report))
        print(f"\n(total run time {report['elapsed_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
