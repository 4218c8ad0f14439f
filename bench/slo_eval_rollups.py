"""The rollup side of `bench.slo_eval`: building the rollups, evaluating through them, the hourly
budget curve, and the store's size on disk by table (minute buckets beside rollups).

Usage (from bench.slo_eval, on a filled store):

    built = build(engine, base, at)
    row |= measure_rolled(engine, specs, boundaries, at, repeats, minute_report)
"""

from __future__ import annotations

import gc
import os
import statistics
import time
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, text

from bench.support import Clock
from controlplane.slo.curves import hourly_budget_curve
from controlplane.slo.rolled import evaluate_all_from_rollups
from controlplane.slo.rollups import refresh_rollups
from controlplane.slo.spec import SloSpec

MINUTE_TABLES = ("sli_buckets", "sli_latency_buckets", "sli_minute_blocks")
ROLLUP_TABLES = ("sli_rollups", "sli_latency_rollups", "sli_timeslice_rollups", "sli_rollup_changes")


def build(engine: Engine, base: list[SloSpec], at: datetime) -> dict[str, Any]:
    """The first refresh over the whole fill (every hour marked by the fill), then ANALYZE the rollups."""
    t0 = time.perf_counter()
    stats = refresh_rollups(engine, until=at, specs=base)
    build_s = time.perf_counter() - t0
    if engine.dialect.name == "sqlite":
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    else:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            for name in ROLLUP_TABLES:
                conn.exec_driver_sql(f"VACUUM ANALYZE {name}")
    return {"build_s": round(build_s, 2), "hours": stats.hours, "days": stats.days, "series": stats.series_built}


def measure_rolled(
    engine: Engine,
    specs: list[SloSpec],
    boundaries: tuple[float, ...],
    at: datetime,
    repeats: int,
    minute_report: Any,
    minute_s: float,
) -> dict[str, Any]:
    """evaluate_all_from_rollups at `at`: checked equal to the minute-level report, then timed."""
    report = evaluate_all_from_rollups(engine, specs, events={}, boundaries=boundaries, at=at)  # warm-up
    if report != minute_report:
        raise AssertionError("evaluation through rollups differs from the minute-level evaluation")
    runs = []
    for _ in range(repeats):
        gc.collect()
        clock = Clock()
        with clock.measure():
            evaluate_all_from_rollups(engine, specs, events={}, boundaries=boundaries, at=at)
        runs.append(clock)
    rolled_s = statistics.median(c.wall for c in runs)
    return {
        "rollups_s": round(rolled_s, 4),
        "rollups_cpu_s": round(statistics.median(c.cpu for c in runs), 4),
        "rollups_runs_s": [round(c.wall, 4) for c in runs],
        "minutes_over_rollups": round(minute_s / rolled_s, 1) if rolled_s else None,
    }


def measure_curves(
    engine: Engine, specs: list[SloSpec], boundaries: tuple[float, ...], at: datetime, days: int, repeats: int
) -> dict[str, Any]:
    """Each SLO's budget at every whole hour of the last `days` days and at a "now" 23 minutes before
    `at` (mid-hour, as a live page asks), its window `days` long too."""
    now = at - timedelta(minutes=23)
    rows = []
    for spec in specs:
        spec = SloSpec.model_validate({**spec.model_dump(), "window": {"rolling_days": days}})
        curve = hourly_budget_curve(engine, spec, events={}, boundaries=boundaries, at=now, days=days)  # warm-up
        for point in (curve[0], curve[-1]):
            status = evaluate_all_from_rollups(engine, [spec], events={}, boundaries=boundaries, at=point.at).slos[0]
            if (point.events, point.bad_events) != (status.events, status.bad_events):
                raise AssertionError(f"{spec.name}: the budget curve at {point.at} differs from evaluating there")
        walls = []
        for _ in range(repeats):
            gc.collect()
            clock = Clock()
            with clock.measure():
                hourly_budget_curve(engine, spec, events={}, boundaries=boundaries, at=now, days=days)
            walls.append(clock.wall)
        rows.append(
            {
                "slo": spec.name,
                "sli": spec.sli.kind,
                "points": len(curve),
                "curve_s": round(statistics.median(walls), 4),
            }
        )
    return {"days": days, "step": "1h", "slos": rows}


def store_sizes(engine: Engine, sqlite_path: str | None) -> dict[str, Any]:
    """Bytes on disk: the minute tables, the rollup tables (with their indexes), and the SQLite file."""
    tables = MINUTE_TABLES + ROLLUP_TABLES
    with engine.connect() as conn:
        if sqlite_path is not None:
            rows = conn.execute(text("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name")).all()
            by_name = {str(name): int(size) for name, size in rows}
            # A table's indexes are named sqlite_autoindex_<table>_N (primary keys) or ix_<table>_...
            sizes = {
                t: sum(v for n, v in by_name.items() if n == t or n.startswith((f"sqlite_autoindex_{t}_", f"ix_{t}_")))
                for t in tables
            }
            file_bytes = sum(os.path.getsize(p) for p in (sqlite_path, f"{sqlite_path}-wal") if os.path.exists(p))
        else:
            sizes = {
                t: int(conn.execute(text("SELECT pg_total_relation_size(:t)"), {"t": t}).scalar_one()) for t in tables
            }
            file_bytes = int(conn.execute(text("SELECT pg_database_size(current_database())")).scalar_one())
    return {
        "minute_tables_bytes": sum(sizes[t] for t in MINUTE_TABLES),
        "rollup_tables_bytes": sum(sizes[t] for t in ROLLUP_TABLES),
        "tables": sizes,
        "whole_store_bytes" if sqlite_path else "whole_database_bytes": file_bytes,
    }


def render(db: dict[str, Any]) -> list[str]:
    """The rollup lines of a database's section of the text report."""
    b, s, c = db["rollups"], db["sizes"], db["curves"]
    whole = s.get("whole_store_bytes", s.get("whole_database_bytes", 0))
    mb = 1024 * 1024
    lines = [
        f"  rollups built in {b['build_s']:.1f} s ({b['hours']:,} slice-hours, {b['days']:,} slice-days, "
        f"{b['series']} timeslice series); on disk: minute tables {s['minute_tables_bytes'] / mb:.1f} MB, "
        f"rollup tables {s['rollup_tables_bytes'] / mb:.1f} MB, "
        f"{'store file' if 'whole_store_bytes' in s else 'whole database'} {whole / mb:.1f} MB",
        f"  budget curve, {c['days']} days at 1 h steps, window {c['days']} days (median, ms): "
        + ", ".join(f"{r['slo']} ({r['sli']}, {r['points']} points) {1000 * r['curve_s']:.1f}" for r in c["slos"]),
    ]
    return lines
