"""Benchmark: OTLP trace ingest on ONE core, beside the cost of only parsing the same protobuf bytes.

    .venv/bin/python -m bench.otlp_ingest                      # rates + 1,000,000-span memory run
    .venv/bin/python -m bench.otlp_ingest --quick              # fewer spans (about 20 s)
    .venv/bin/python -m bench.otlp_ingest --rate-spans 100000 --spans 200000 --skip-postgres
    .venv/bin/python -m bench.otlp_ingest --format json > result.json

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
  ..., keeping traces   the same with `collectors.keeper.TraceKeeper` on (the receiver's default):
                        every span waits in the keeper's buffer, each slice-minute's bad and slowest
                        exemplars' traces are written whole (stage "keep").

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
import math
import os
import platform
import resource
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import google.protobuf
from google.protobuf.internal import api_implementation
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from sqlalchemy import Connection, Engine, event, func, select

from bench.otlp_ingest_report import render_text
from bench.otlp_ingest_requests import IN_SLICES, SPANS_PER_BATCH, WINDOW_S, Bodies, PoolBody, make_pool
from bench.postgres import ScratchSchema, postgres_skip_reason
from bench.support import REPO, BenchmarkParser, emit, log, pin_one_cpu, process_cpu_seconds, setup_logging
from collectors.ingest import aggregate_spans, commit_batch, content_digest
from collectors.keeper import TraceKeeper
from collectors.otlp import PROTOBUF, TRACES, decode_request
from controlplane.settings import Settings
from controlplane.slices import SliceConfig, load_slices
from controlplane.storage import make_engine
from controlplane.store import SliBucket, migrate_store, table
from controlplane.traces.store import stored_bytes

OTEL_COLLECTOR_SPANS_PER_CORE = 15_000  # the OpenTelemetry Collector's published sizing, per core
MAX_BYTES = Settings.model_fields["collector_max_body_bytes"].default
TRACE_MAX_BYTES = Settings.model_fields["collector_trace_max_bytes"].default
WARMUP_REQUESTS = 4
SLICED_POOL = 20  # requests of the "every span in a slice" pool
QUICK = {"spans": 102_400, "rate_spans": 51_200, "pool": 20}


# ---------------------------------------------------------------------------------------- modes


STAGES = ("decode", "aggregate", "digest", "commit", "keep")


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


def full_path(
    config: SliceConfig, engine: Engine | None, keeper: TraceKeeper | None = None
) -> Callable[[bytes, Tally], None]:
    """The receiver's per-request work (collectors.receiver `ingest`), with each stage's CPU time; with a
    keeper, also keeping the traces of each slice-minute's exemplars (the receiver's default)."""

    def step(body: bytes, tally: Tally) -> None:
        t0 = time.process_time()
        message = decode_request(body, content_type=PROTOBUF, encoding=None, kind=TRACES, max_bytes=MAX_BYTES)
        assert isinstance(message, ExportTraceServiceRequest)
        t1 = time.process_time()
        batch = aggregate_spans(message, config)
        t2 = time.process_time()
        digest = content_digest(message)
        t3 = time.process_time()
        keeping = [0.0]

        def keep(conn: Connection) -> None:  # in the counting transaction, as the receiver does
            started = time.process_time()
            assert keeper is not None
            keeper.on_spans(message, batch, conn)
            keeping[0] += time.process_time() - started

        then = keep if keeper is not None else None
        if engine is not None and not commit_batch(engine, digest=digest, signal=TRACES, batch=batch, then=then):
            raise RuntimeError("commit_batch skipped a request as a duplicate: the bodies are not unique")
        if keeper is not None:
            keeper.prune_if_due()
        t4 = time.process_time()
        spent_keeping = keeping[0]
        commit = t4 - t3 - spent_keeping
        for stage, spent in zip(STAGES, (t1 - t0, t2 - t1, t3 - t2, commit, spent_keeping), strict=True):
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


class BackendCpu:
    """CPU seconds of the PostgreSQL backends an engine opens (readable when the server runs on this machine)."""

    def __init__(self, engine: Engine) -> None:
        self.pids: list[int] = []

        @event.listens_for(engine, "connect")
        def _backend_pid(dbapi_connection: Any, _record: Any) -> None:
            with dbapi_connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                self.pids.append(cursor.fetchone()[0])
            dbapi_connection.commit()

    def cpu_seconds(self) -> float | None:
        total = 0.0
        for pid in self.pids:
            spent = process_cpu_seconds(pid)
            if spent is None:
                return None
            total += spent
        return total


def bucket_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table(SliBucket))).scalar_one()


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
                log.info(f"[memory] {n * SPANS_PER_BATCH:,} spans: rss {points[-1]['rss_kib'] / 1024:.1f} MiB")
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


def rate_runs(
    pool: list[PoolBody], sliced: list[PoolBody], config: SliceConfig, args: argparse.Namespace, workdir: Path
) -> list[dict]:
    n, seed = args.rate_spans, args.seed
    rows: list[dict[str, Any]] = []

    def measure(name: str, step: Callable[[bytes, Tally], None], bodies: Bodies) -> dict[str, Any]:
        log.info(f"[rate] {name} ...")
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
    for keeping, db in ((False, "rate.db"), (True, "rate-keep.db")):
        sqlite = sqlite_store(workdir, db)
        try:
            keeper = TraceKeeper(sqlite, max_bytes=TRACE_MAX_BYTES) if keeping else None
            name = "full path, SQLite" + (", keeping traces" if keeping else "")
            row = measure(name, full_path(config, sqlite, keeper), Bodies(pool, unique=True, seed=seed + 1))
            row["store_buckets"] = bucket_count(sqlite)
            if keeping:
                row["kept_traces_bytes"] = stored_bytes(sqlite)
        finally:
            sqlite.dispose()
    why = postgres_skip_reason(args)
    if why is not None:
        rows.append({"mode": "full path, PostgreSQL", "skipped": why})
        return rows
    with ScratchSchema(args.postgres_url, "bench_otlp") as schema:
        pg = make_engine(schema.url)
        backends = BackendCpu(pg)
        try:
            migrate_store(pg)
            for keeping in (False, True):
                keeper = TraceKeeper(pg, max_bytes=TRACE_MAX_BYTES) if keeping else None
                name = "full path, PostgreSQL" + (", keeping traces" if keeping else "")
                cpu0 = backends.cpu_seconds()
                row = measure(name, full_path(config, pg, keeper), Bodies(pool, unique=True, seed=seed + 3 + keeping))
                cpu1 = backends.cpu_seconds()  # includes the warm-up requests: a slight overestimate
                if cpu0 is not None and cpu1 is not None:
                    per_request = (cpu1 - cpu0) / (row["requests"] + WARMUP_REQUESTS) * 1e6
                    row["server_cpu_us_per_request"] = round(per_request, 1)
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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = BenchmarkParser("bench.otlp_ingest", __doc__, QUICK)
    parser.add_argument("--spans", type=int, default=1_000_000, help="spans of the memory run (default 1,000,000)")
    parser.add_argument("--rate-spans", type=int, default=204_800, help="spans per rate mode (default 204,800)")
    parser.add_argument("--pool", type=int, default=200, help="distinct request bodies generated (default 200)")
    parser.add_argument("--cpu", type=int, default=None, help="the CPU to pin to (default: the last allowed one)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument("--skip-memory", action="store_true", help="rates only")
    args = parser.parse(argv)
    if args.spans < SPANS_PER_BATCH or args.rate_spans < SPANS_PER_BATCH or args.pool < 1:
        parser.error(f"--spans and --rate-spans must be at least {SPANS_PER_BATCH}, --pool at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging()
    started = time.monotonic()
    cpu = pin_one_cpu(args.cpu)
    config = load_slices(REPO / "config" / "slices.yaml")
    log.info(f"generating {args.pool} requests of {SPANS_PER_BATCH} spans ...")
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
            "warmup_requests": WARMUP_REQUESTS,
        },
        "pool": pool_summary(pool, config, time.perf_counter() - t0),
    }
    with tempfile.TemporaryDirectory(prefix="bench-otlp-") as tmp:
        workdir = Path(tmp)
        # Memory first, while ru_maxrss has not yet been raised by the other runs.
        if not args.skip_memory:
            report["memory"] = memory_run(pool, config, args.spans, workdir, args.seed)
        report["rates"] = rate_runs(pool, sliced, config, args, workdir)
    emit(report, args.format, render_text, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
