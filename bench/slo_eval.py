"""Benchmark: evaluating every SLO over D days of per-minute buckets, beside only reading those buckets.

    .venv/bin/python -m bench.slo_eval                         # SQLite + PostgreSQL, D = 7, 30, 90
    .venv/bin/python -m bench.slo_eval --quick                 # D = 3, 7 (about 15 s)
    .venv/bin/python -m bench.slo_eval --days 7,30 --skip-postgres --repeats 5
    .venv/bin/python -m bench.slo_eval --profile                # + cProfile of one evaluation at the largest D
    .venv/bin/python -m bench.slo_eval --skip-prometheus        # no promtool backfill to compare sizes with
    .venv/bin/python -m bench.slo_eval --format json > result.json

Store: a fresh, migrated store per database: a SQLite file in a tempdir, and a fresh schema of
$CONTROLPLANE_TEST_POSTGRES_URL (default postgresql+psycopg://postgres@127.0.0.1:5432/test) reached
through `?options=-csearch_path=<schema>` and dropped at the end; PostgreSQL is skipped with a note
when it does not answer. Each is filled, with bulk core inserts and before any timing, with the
largest D days (default 90) of per-minute rows ending at a fixed instant (AT): one `sli_buckets`
row per minute for each of the 4 slices of config/slices.yaml (bet-placement, settlement, login,
odds-feed; hundreds of events a minute with a daily swing, a few bad, now and then a short
incident), and 4 `sli_latency_buckets` rows per slice-minute ("0.1", "0.5", "1.0", "+Inf"; per-bucket
counts adding up to the minute's events). Both databases get the same rows (seeded generator), then
ANALYZE (as PostgreSQL's autovacuum would after a bulk load).

SLOs: the shipped config/slos.yaml's SLOs of those 4 slices (stream-lag, whose slice is fed only
through the event stream, is left out so figures stay comparable across runs), with every SLO's
window replaced by {rolling_days: D}, so the runs differ only in how much data there is (3 ratio SLOs
read sli_buckets: one row per minute; the latency and the freshness SLO read sli_latency_buckets: four
rows per minute).

Measured for each D, on a store engine made by `make_engine` with the product's defaults:

  read      the baseline: for each SLO, the same SELECT that `load_counts` issues (its slice's rows
            in [AT - max(D days, 3 days), AT), 3 days being the longest burn-rate window), run on a
            `reader(engine)` connection and fetched with `.all()`. Only execute + fetch is timed:
            statements are built and connections taken from the pool outside the clock.
  evaluate  `evaluate_all(engine, specs, events={}, boundaries=..., at=AT)`: the same queries, plus
            turning rows into per-minute counts, prefix sums, every window, burn rate and alert tier.

Each is run once to warm caches, then `--repeats` (default 3) times, alternating; the median wall
time is shown (client CPU time is in the JSON). A consistency check compares the evaluation's event
counts with the rows read.

How to read it: "eval/read" is evaluate's median over read's median measured in the same run on the
same database. 1.0x would mean evaluating costs nothing beyond fetching the rows; 3.0x means two
thirds of an evaluation is our own Python work on rows already fetched. The "x Dmin" columns are
growth against the smallest D (rows read grow linearly with D; a time growing faster than the rows
means something beyond linear in the window's length). "us/row" is evaluate's wall time per row read.
"alerts" counts SLOs paging / ticketing at AT (a sanity check that the evaluation did its work; the
thresholds scale with D / 30 days, so shorter windows fire more on the same data).
`--profile` adds cProfile's top functions (by own time) of one evaluation at the largest D.

Rollups (bench/slo_eval_rollups.py): after the fill, one `refresh_rollups(until=AT)` folds every
hour and day (timed: "built in"). For each D, `evaluate_all_from_rollups` at AT is checked equal to
the minute-level report, then timed the same way ("rollups s"; "min/rollup" is evaluate's median
over it, same run, same database; "rollup x Dmin" its growth, which should follow hours, not
minutes). The budget curve (`hourly_budget_curve`) is one SLO's budget at each whole hour of the
last 30 days and at a mid-hour "now" 23 minutes before AT (window 30 days; half the largest D when
the fill is shorter than 60 days), per SLO. Sizes: bytes on disk of the
minute tables and the rollup tables with their indexes (SQLite: dbstat; PostgreSQL:
pg_total_relation_size), and the SQLite file or the PostgreSQL database.

Packing: after the rollups, `compact_minutes(before=AT)` packs every past hour's minute rows into one
`sli_minute_blocks` row per slice-hour (as the scheduler's rollup job does an hour after each hour
ends), then the space of the rows is given back (SQLite VACUUM, PostgreSQL VACUUM FULL), as in a store
that packs hour by hour. `--rows` leaves the minutes as rows (the layout before packing): its sizes and
times are the ones to compare with. Every read of minutes, the "read" baseline included, reads the
rows and the packed hours in one statement and decodes the hours it needs.

Prometheus (bench/slo_eval_prometheus.py): the same counts of the largest D, as the 24 counter series a
Prometheus-instrumented service would export for them, backfilled with `promtool tsdb create-blocks-from
openmetrics` (Debian's prometheus; skipped with a note without it, or with --skip-prometheus); its
blocks' bytes beside the store's ("x TSDB": the store's minute and rollup tables over the TSDB).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import os
import platform
import pstats
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy
from sqlalchemy import Connection, Engine, text

from bench import slo_eval_prometheus as prometheus
from bench import slo_eval_rollups as rollups
from bench.postgres import ScratchSchema, postgres_skip_reason
from bench.slo_eval_report import render_text
from bench.support import REPO, BenchmarkParser, Clock, emit, log, setup_logging
from controlplane.slices import load_slices
from controlplane.slo.engine import BURN_WINDOWS, evaluate_all, slo_window
from controlplane.slo.minute_store import compact_minutes, minute_latency, minute_totals
from controlplane.slo.periods import minute_start
from controlplane.slo.spec import SloSpec, load_events, load_slos
from controlplane.storage import make_engine, reader
from controlplane.store import SliBucket, SliLatencyBucket, migrate_store, table

AT = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)  # the fixed "now" of every evaluation; data ends here
LE_LABELS = ("0.1", "0.5", "1.0", "+Inf")  # labels of boundaries of config/slices.yaml, per-bucket counts
FILL_STATEMENT_TIMEOUT_MS = 600_000  # for the bulk load and ANALYZE only; measurements use the defaults
# D = 3 reads as many rows as any shorter window (the longest burn-rate window is 3 days); 7 shows the growth.
QUICK = {"days": "3,7", "repeats": 2}


# ---------------------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Traffic:
    """A slice's events per minute (mean, before the daily swing), bad share, and latency split."""

    slice: str
    per_minute: int
    bad_share: float  # of events, outside incidents
    latency_share: tuple[float, float, float]  # share at/under 0.1 s, in (0.1, 0.5], in (0.5, 1.0]; rest +Inf


TRAFFIC = (
    Traffic("bet-placement", 600, 0.0004, (0.93, 0.065, 0.004)),
    Traffic("settlement", 120, 0.0002, (0.55, 0.42, 0.027)),
    Traffic("login", 250, 0.0008, (0.80, 0.19, 0.008)),
    Traffic("odds-feed", 300, 0.0, (0.97, 0.027, 0.0025)),  # metrics slice: publish lag, never "bad"
)
INCIDENT_PER_DAY = 0.3  # chance per slice-day of a 5-40 minute incident (bad share 2-20%, slow tail)


def day_chunks(days: int, seed: int) -> Iterator[tuple[list[dict], list[dict]]]:
    """One day at a time, oldest first: (sli_buckets rows, sli_latency_buckets rows) for all slices."""
    rng = random.Random(seed)
    first = AT - timedelta(days=days)
    for day in range(days):
        incidents: dict[str, tuple[int, int, float]] = {}
        for t in TRAFFIC:
            if rng.random() < INCIDENT_PER_DAY:
                start = rng.randrange(1440)
                incidents[t.slice] = (start, start + rng.randrange(5, 41), rng.uniform(0.02, 0.2))
        buckets: list[dict] = []
        latency: list[dict] = []
        for m in range(1440):
            minute = first + timedelta(days=day, minutes=m)
            swing = 0.55 + 0.45 * abs(((m + 600) % 1440) / 720 - 1)  # low at night, peak in the evening
            for t in TRAFFIC:
                total = max(1, int(t.per_minute * swing * rng.uniform(0.85, 1.15)))
                bad_share, slow = t.bad_share, 1.0
                incident = incidents.get(t.slice)
                if incident and incident[0] <= m < incident[1]:
                    bad_share, slow = (incident[2] if t.bad_share else 0.0), 6.0
                bad = int(total * bad_share + rng.random())
                fast, mid, tail = t.latency_share
                c3 = min(total, int(total * tail * slow + rng.random()))
                c4 = min(total - c3, int(total * (1 - fast - mid - tail) * slow + rng.random()))
                c2 = min(total - c3 - c4, int(total * mid * rng.uniform(0.9, 1.1)))
                c1 = total - c2 - c3 - c4
                buckets.append({"slice": t.slice, "minute": minute, "total": total, "bad": bad})
                for le, count in zip(LE_LABELS, (c1, c2, c3, c4), strict=True):
                    latency.append({"slice": t.slice, "minute": minute, "le": le, "count": count})
        yield buckets, latency


def fill(engine: Engine, days: int, seed: int) -> dict[str, Any]:
    """Bulk-load `days` days of buckets (one transaction per day), then ANALYZE."""
    b, lat = table(SliBucket), table(SliLatencyBucket)
    t0 = time.perf_counter()
    n_buckets = n_latency = 0
    for day, (buckets, latency) in enumerate(day_chunks(days, seed), 1):
        with engine.begin() as conn:
            conn.execute(b.insert(), buckets)
            for i in range(0, len(latency), 10_000):
                conn.execute(lat.insert(), latency[i : i + 10_000])
        n_buckets += len(buckets)
        n_latency += len(latency)
        if day % 30 == 0:
            log.info(f"  filled {day}/{days} days ({time.perf_counter() - t0:.1f} s)")
    if engine.dialect.name == "sqlite":
        with engine.begin() as conn:  # the WAL is checkpointed when the loader's connections close
            conn.exec_driver_sql("ANALYZE")
    else:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE sli_buckets")
            conn.exec_driver_sql("VACUUM ANALYZE sli_latency_buckets")
    return {
        "days": days,
        "sli_buckets_rows": n_buckets,
        "sli_latency_buckets_rows": n_latency,
        "fill_s": round(time.perf_counter() - t0, 2),
    }


def reclaim(engine: Engine) -> None:
    """Give back the space of the rows packed at once, as a store packing hour by hour never needed:
    its minute rows are only the last hour or two's, and their pages are reused."""
    if engine.dialect.name == "sqlite":  # outside any transaction: on the driver's own connection
        raw = engine.raw_connection()
        try:
            raw.driver_connection.execute("VACUUM")  # type: ignore[union-attr]
        finally:
            raw.close()
        return
    tables = (*rollups.MINUTE_TABLES, *rollups.ROLLUP_TABLES)  # the bulk's dead rows, marks included
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql(f"VACUUM FULL ANALYZE {', '.join(tables)}")


# ---------------------------------------------------------------------------------------- specs


def specs_for(base: list[SloSpec], days: int) -> list[SloSpec]:
    return [SloSpec.model_validate({**s.model_dump(), "window": {"rolling_days": days}}) for s in base]


def minutes_read(spec: SloSpec, at: datetime) -> Callable[[Connection], list[tuple]]:
    """What `load_counts` reads for this spec in `evaluate_all(..., at=at)`: the slice's minutes in the
    window (rows and packed hours, in one statement), as (slice, minute, ...) tuples."""
    _kind, start, _end, _days = slo_window(spec, at, {})
    earliest = min(start, at - max(BURN_WINDOWS.values()))
    if spec.sli.kind == "ratio":
        return lambda conn: list(minute_totals(conn, spec.slice, [(earliest, at)]))
    return lambda conn: list(minute_latency(conn, spec.slice, [(earliest, at)]))


# ---------------------------------------------------------------------------------------- timing


def read_only(engine: Engine, reads: list[Callable[[Connection], list[tuple]]]) -> tuple[Clock, list[list[Any]]]:
    """(time spent, minutes per read): the reads alone, one pooled reader connection each."""
    clock = Clock()
    results = []
    for read in reads:
        with reader(engine).connect() as conn, clock.measure():
            rows = read(conn)
        results.append(rows)
    return clock, results


def evaluate_once(engine: Engine, specs: list[SloSpec], boundaries: tuple[float, ...]) -> tuple[Clock, Any]:
    clock = Clock()
    with clock.measure():
        report = evaluate_all(engine, specs, events={}, boundaries=boundaries, at=AT)
    return clock, report


def check(specs: list[SloSpec], rows: list[list[Any]], report: Any) -> None:
    """The evaluation counted what the store holds: events of ratio and latency SLOs match the rows read."""
    for spec, spec_rows, result in zip(specs, rows, report.slos, strict=True):
        start = AT - timedelta(days=spec.window.rolling_days or 0)
        in_window = [r for r in spec_rows if minute_start(r[1]) >= start]
        if spec.sli.kind == "ratio":
            expected = sum(r[2] for r in in_window)
        elif spec.sli.kind == "latency":
            expected = sum(r[3] for r in in_window)
        else:
            expected = len({r[1] for r in in_window})  # freshness: one timeslice per minute with data
        if result.events != expected or result.no_data:
            raise AssertionError(f"{spec.name}: evaluate counted {result.events} events, the rows hold {expected}")


def measure_days(
    engine: Engine, base: list[SloSpec], days: int, boundaries: tuple[float, ...], repeats: int
) -> dict[str, Any]:
    specs = specs_for(base, days)
    statements = [minutes_read(s, AT) for s in specs]
    _clock, rows = read_only(engine, statements)  # warm-up
    _clock, report = evaluate_once(engine, specs, boundaries)  # warm-up
    check(specs, rows, report)
    rows_read = sum(len(r) for r in rows)
    del rows
    reads: list[Clock] = []
    evals: list[Clock] = []
    for _ in range(repeats):
        gc.collect()
        clock, _rows = read_only(engine, statements)
        reads.append(clock)
        del _rows
        gc.collect()
        clock, _report = evaluate_once(engine, specs, boundaries)
        evals.append(clock)
    read_s = statistics.median(c.wall for c in reads)
    eval_s = statistics.median(c.wall for c in evals)
    rolled = rollups.measure_rolled(engine, specs, boundaries, AT, repeats, report, eval_s)
    return rolled | {
        "days": days,
        "rows_read": rows_read,
        "read_s": round(read_s, 4),
        "read_cpu_s": round(statistics.median(c.cpu for c in reads), 4),
        "evaluate_s": round(eval_s, 4),
        "evaluate_cpu_s": round(statistics.median(c.cpu for c in evals), 4),
        "eval_over_read": round(eval_s / read_s, 3) if read_s else None,
        "evaluate_us_per_row": round(eval_s / rows_read * 1e6, 3) if rows_read else None,
        "read_runs_s": [round(c.wall, 4) for c in reads],
        "evaluate_runs_s": [round(c.wall, 4) for c in evals],
        "alerts": {
            "page": sorted(s.name for s in report.slos if s.alerts.page),
            "ticket": sorted(s.name for s in report.slos if s.alerts.ticket),
        },
    }


def add_growth(rows: list[dict[str, Any]]) -> None:
    base = rows[0]
    for row in rows:
        row["growth_vs_days"] = base["days"]
        row["rows_growth"] = round(row["rows_read"] / base["rows_read"], 3)
        row["read_growth"] = round(row["read_s"] / base["read_s"], 3)
        row["evaluate_growth"] = round(row["evaluate_s"] / base["evaluate_s"], 3)
        row["rollups_growth"] = round(row["rollups_s"] / base["rollups_s"], 3)


def profile_evaluation(
    engine: Engine, base: list[SloSpec], days: int, boundaries: tuple[float, ...], top: int
) -> dict[str, Any]:
    specs = specs_for(base, days)
    evaluate_all(engine, specs, events={}, boundaries=boundaries, at=AT)  # warm
    profiler = cProfile.Profile()
    gc.collect()
    profiler.enable()
    evaluate_all(engine, specs, events={}, boundaries=boundaries, at=AT)
    profiler.disable()
    stats = pstats.Stats(profiler, stream=io.StringIO())
    total = stats.total_tt  # type: ignore[attr-defined]
    entries = []
    for (filename, line, name), (_cc, ncalls, tottime, cumtime, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        entries.append(
            {
                "function": f"{_short(filename)}:{line}({name})",
                "ncalls": ncalls,
                "tottime_s": round(tottime, 4),
                "cumtime_s": round(cumtime, 4),
                "share": round(tottime / total, 3) if total else 0.0,
            }
        )
    entries.sort(key=lambda e: e["tottime_s"], reverse=True)
    return {"days": days, "profiled_total_s": round(total, 3), "top": entries[:top]}


def _short(filename: str) -> str:
    for marker in ("site-packages/", str(REPO) + "/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


def query_plan(engine: Engine, spec: SloSpec) -> str:
    """How the database finds a slice's packed hours (what every read of minutes past the last hour does)."""
    sql = "SELECT hour, minutes FROM sli_minute_blocks WHERE slice = :slice AND hour >= :start AND hour < :end"
    params = {"slice": spec.slice, "start": "2026-01-01 00:00:00", "end": "2026-03-01 00:00:00"}
    with reader(engine).connect() as conn:
        if engine.dialect.name == "sqlite":
            plan = conn.execute(text(f"EXPLAIN QUERY PLAN {sql}"), params).all()
            return "; ".join(str(r[-1]) for r in plan)
        steps = [str(r[0]) for r in conn.execute(text(f"EXPLAIN {sql}"), params).all()]
        return " <- ".join(line.split("  (cost=")[0].strip(" ->") for line in steps if "Scan" in line)


# ---------------------------------------------------------------------------------------- databases


def run_database(
    name: str, url: str, base: list[SloSpec], boundaries: tuple[float, ...], args: argparse.Namespace
) -> dict[str, Any]:
    loader = make_engine(url, statement_timeout_ms=FILL_STATEMENT_TIMEOUT_MS)
    try:
        migrate_store(loader)
        log.info(f"[{name}] filling {max(args.days)} days ...")
        filled = fill(loader, max(args.days), args.seed)
        log.info(f"[{name}] building rollups ...")
        built = rollups.build(loader, base, AT)
        if not args.rows:
            log.info(f"[{name}] packing the minutes of past hours ...")
            packed_at = time.perf_counter()
            built["packed"] = compact_minutes(loader, before=AT) | {"s": round(time.perf_counter() - packed_at, 1)}
            reclaim(loader)
    finally:
        loader.dispose()
    engine = make_engine(url)  # the product's defaults, fresh connections
    try:
        latency_spec = next(s for s in base if s.sli.kind != "ratio")
        result: dict[str, Any] = {"database": name, "fill": filled, "plan": query_plan(engine, latency_spec)}
        sqlite_path = engine.url.database if engine.dialect.name == "sqlite" else None
        result |= {"rollups": built, "sizes": rollups.store_sizes(engine, sqlite_path)}
        result["vs_prometheus"] = prometheus.compare(args.prometheus, result["sizes"])
        curve_days = 30 if max(args.days) >= 60 else max(1, max(args.days) // 2)
        result["curves"] = rollups.measure_curves(engine, base, boundaries, AT, curve_days, args.repeats)
        rows = []
        for days in args.days:
            log.info(f"[{name}] D = {days} days: warm-up + {args.repeats} x (read, evaluate) ...")
            rows.append(measure_days(engine, base, days, boundaries, args.repeats))
        add_growth(rows)
        result["runs"] = rows
        if args.profile:
            log.info(f"[{name}] profiling one evaluation at D = {max(args.days)} ...")
            result["profile"] = profile_evaluation(engine, base, max(args.days), boundaries, args.profile_top)
        return result
    finally:
        engine.dispose()


# ---------------------------------------------------------------------------------------- output


def parse_days(value: str) -> list[int]:
    try:
        days = sorted({int(part) for part in value.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--days takes comma-separated whole days, e.g. 7,30,90; got {value!r}"
        ) from None
    if not days or days[0] < 1 or days[-1] > 366:
        raise argparse.ArgumentTypeError("--days: each D must be between 1 and 366 (rolling_days' range)")
    return days


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = BenchmarkParser("bench.slo_eval", __doc__, QUICK)
    parser.add_argument("--days", type=parse_days, default=[7, 30, 90], help="window lengths D (default 7,30,90)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each mode per D (default 3)")
    parser.add_argument("--seed", type=int, default=1, help="random seed of the data (default 1)")
    parser.add_argument("--profile", action="store_true", help="cProfile one evaluation at the largest D")
    parser.add_argument("--profile-top", type=int, default=15, help="functions shown by --profile (default 15)")
    parser.add_argument("--rows", action="store_true", help="leave the minutes as rows (do not pack them)")
    parser.add_argument("--skip-prometheus", action="store_true", help="no Prometheus TSDB to compare sizes with")
    args = parser.parse(argv)
    if args.repeats < 1 or args.profile_top < 1:
        parser.error("--repeats and --profile-top must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging()
    started = time.monotonic()
    shipped = load_slos(REPO / "config" / "slos.yaml", events=load_events(REPO / "config" / "events.yaml"))
    base = [spec for spec in shipped if spec.slice in {t.slice for t in TRAFFIC}]
    slices = load_slices(REPO / "config" / "slices.yaml")
    missing = {t.slice for t in TRAFFIC} - {s.name for s in slices.slices}
    if missing:
        raise SystemExit(f"config/slices.yaml no longer has slices {sorted(missing)}; update TRAFFIC")
    report: dict[str, Any] = {
        "config": {
            "at": AT.isoformat().replace("+00:00", "Z"),
            "days": args.days,
            "repeats": args.repeats,
            "slos": len(base),
            "slices": len(TRAFFIC),
            "le_labels": list(LE_LABELS),
            "python": platform.python_version(),
            "sqlalchemy": sqlalchemy.__version__,
            "cpus": os.cpu_count(),
        },
        "databases": [],
    }
    if args.skip_prometheus:
        report["prometheus"] = {"skipped": "--skip-prometheus"}
    else:
        log.info(f"Prometheus TSDB of the same {max(args.days)} days (promtool tsdb create-blocks-from) ...")
        report["prometheus"] = prometheus.backfill(max(args.days), args.seed)
    with tempfile.TemporaryDirectory(prefix="bench-slo-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'store.db'}"
        args.prometheus = report["prometheus"]
        report["databases"].append(run_database("SQLite", url, base, slices.boundaries, args))
    if (why := postgres_skip_reason(args)) is not None:
        report["databases"].append({"database": "PostgreSQL", "skipped": why})
    else:
        with ScratchSchema(args.postgres_url, "bench_slo") as schema:
            report["databases"].append(run_database("PostgreSQL", schema.url, base, slices.boundaries, args))
    emit(report, args.format, render_text, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
