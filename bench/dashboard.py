"""Benchmark: server-side time to run each dashboard page's script, with D days x 4 slices of per-minute
data, beside the same page's data queries alone.

    .venv/bin/python -m bench.dashboard                  # SQLite + PostgreSQL, D = 30 then 90
    .venv/bin/python -m bench.dashboard --quick          # D = 7, SQLite and PostgreSQL, 2 runs
    .venv/bin/python -m bench.dashboard --days 30 --skip-postgres --format json

Store: the rows of bench.slo_eval (4 slices, one sli_buckets row and 4 latency rows per slice-minute,
seeded), shifted to end at the current minute, folded into rollups; an admin user; 2,000 settled bets
in the audit log (money entries, signed checkpoint); one checklist run (no probes). The fill grows from the
smallest D to the largest, measuring at each.

Page: Streamlit's AppTest runs streamlit_app.py signed in as admin and switches to the page (on-call
at `range=30d`, charted per hour, and at `range=24h`, charted per minute; cost over 7 days by hour);
every Streamlit cache is cleared before each run, so each is a cold page load. "queries" calls the
same control-plane functions the page reads through (SLO report, when a spent budget ran out, the SLO
series and budget curve over the range, worst minutes, changes from the audit log, alert history,
scraped gauges; cost report; checklist runs; audit entries and status; users), also cold.
"page/queries" is the ratio: what rendering adds. Median of --repeats (default 3) after one warm-up.
Target: every page under 1 s at 30 and at 90 days.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from bench import slo_eval
from bench.postgres import ScratchSchema, postgres_skip_reason
from bench.support import REPO, BenchmarkParser, emit, log, setup_logging
from controlplane.storage import make_engine
from controlplane.store import SliBucket, SliLatencyBucket, migrate_store, table

PAGES = ("oncall-30d", "oncall-24h", "readiness", "cost", "audit", "users")
ONCALL_RANGES = {"oncall-30d": ("30d", timedelta(days=30)), "oncall-24h": ("24h", timedelta(hours=24))}
PASSWORD = "bench password 1234"
QUICK = {"days": "7", "repeats": 2}
CHECKLIST = """checks:
  - {id: slo-coverage, title: An SLO per slice, severity: warning, owner: sre, runbook: r,
     evaluator: {type: slo_coverage}}
  - {id: bets-budget, title: Bet placement has budget, severity: blocking, owner: sre, runbook: r,
     evaluator: {type: error_budget, slo: bet-placement-availability, min_remaining: 0.5}}
"""


def fill(engine: Engine, first_day: int, last_day: int, end: datetime, seed: int) -> None:
    """Days [first_day, last_day) before `end` of bench.slo_eval's rows, oldest first."""
    shift = end - slo_eval.AT
    chunks = list(slo_eval.day_chunks(last_day, seed))
    b, lat = table(SliBucket), table(SliLatencyBucket)
    for buckets, latency in chunks[: last_day - first_day]:
        with engine.begin() as conn:
            conn.execute(b.insert(), [r | {"minute": r["minute"] + shift} for r in buckets])
            rows = [r | {"minute": r["minute"] + shift} for r in latency]
            for i in range(0, len(rows), 10_000):
                conn.execute(lat.insert(), rows[i : i + 10_000])


def seed_rest(url: str) -> None:
    """An admin, settled bets with a signed checkpoint, and one checklist run."""
    from audit.log import AuditLog
    from audit.schema import migrate_audit
    from controlplane.auditing import open_audit
    from controlplane.checklist.session import run_and_record
    from controlplane.settings import Settings
    from controlplane.users import add_user

    engine = make_engine(url)
    migrate_audit(engine)
    add_user(engine, "admin", role="admin", password=PASSWORD, by="bench")
    log_ = AuditLog(engine, origin="bench/dashboard")
    items = [
        {"kind": "money", "actor": "platform", "subject": f"bet:{i}", "payload": {"type": kind, "bet_id": i}}
        for i in range(2000)
        for kind in ("bet_placed", "payout" if i % 2 else "bet_lost")
    ]
    for i in range(0, len(items), 500):
        log_.append_many(items[i : i + 500])
    settings = Settings()  # from the environment run_database set
    signer, _ring = open_audit(settings)
    signer.checkpoint()
    run_and_record(settings, engine, event=None)
    engine.dispose()


def data_only(page: str) -> Callable[[], Any]:
    """The page's reads, straight through the control plane's functions (no Streamlit, no cache)."""
    from sqlalchemy import func, select

    from audit.query import find_entries
    from audit.schema import checkpoints, entries
    from controlplane.checklist.records import list_runs, load_run
    from controlplane.config import load_config
    from controlplane.cost.report import CostInputs, cost_report
    from controlplane.markers import change_markers
    from controlplane.scheduler.history import alert_history
    from controlplane.scraped import latest
    from controlplane.settings import Settings
    from controlplane.slo.curves import budget_curve, hourly_budget_curve, ran_out_at
    from controlplane.slo.minutes import worst_minutes
    from controlplane.slo.periods import HOUR, ONE_MINUTE
    from controlplane.slo.rolled import evaluate_all_from_rollups
    from controlplane.slo.series import slo_series, step_for
    from controlplane.users import list_users
    from dashboards.shell import audit_store, store

    settings = Settings()
    config = load_config(settings)
    specs, events, boundaries = config.specs, config.events, config.boundaries

    def oncall(span: timedelta) -> None:
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        report = evaluate_all_from_rollups(store(), specs, events=events, boundaries=boundaries, at=now)
        for spec, status in zip(specs, report.slos, strict=True):
            if status.budget_remaining <= 0 and not status.no_data:
                ran_out_at(store(), spec, events=events, boundaries=boundaries, at=now)
        spec, start = specs[0], now - span
        slo_series(store(), spec, start=start, end=now, boundaries=boundaries)
        if step_for(span) == HOUR:  # as the page draws it: whole hours, then now
            hourly_budget_curve(store(), spec, events=events, boundaries=boundaries, at=now, days=span.days)
        else:
            budget_curve(store(), spec, events=events, boundaries=boundaries, start=start, end=now, step=ONE_MINUTE)
        worst_minutes(store(), report.slos[0].slice, start, now)
        change_markers(audit_store(), start, now)
        alert_history(store(), since=now - timedelta(days=31), limit=5000)
        latest(store())

    def cost() -> None:
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        inputs = CostInputs.from_config(config, store=store(), audit=audit_store())
        cost_report(inputs, now - timedelta(days=7), now, by="hour", now=now)

    def readiness() -> None:
        runs = list_runs(store(), limit=20, without_event=True)
        if runs:
            load_run(store(), runs[0].run_id)

    def audit() -> None:
        with audit_store().connect() as conn:
            conn.execute(select(func.count()).select_from(entries)).scalar_one()
            conn.execute(select(checkpoints.c.tree_size).order_by(checkpoints.c.tree_size.desc()).limit(1)).first()
        find_entries(audit_store(), limit=500, newest_first=True)

    def users() -> None:
        list_users(store())

    if page in ONCALL_RANGES:
        span = ONCALL_RANGES[page][1]
        return lambda: oncall(span)
    return {"cost": cost, "readiness": readiness, "audit": audit, "users": users}[page]


def timed(action: Callable[[], Any], repeats: int) -> float:
    import streamlit as st

    runs = []
    for i in range(repeats + 1):
        st.cache_data.clear()
        t0 = time.perf_counter()
        action()
        if i:  # the first is a warm-up (imports, connections)
            runs.append(time.perf_counter() - t0)
    return statistics.median(runs)


def measure(repeats: int) -> list[dict[str, Any]]:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(REPO / "streamlit_app.py"), default_timeout=300).run()
    at.text_input[0].input("admin")
    at.text_input[1].input(PASSWORD)
    at.button[0].click().run()
    rows = []
    for page in PAGES:

        def render(page: str = page) -> None:
            if page in ONCALL_RANGES:
                at.query_params["range"] = ONCALL_RANGES[page][0]
            # The pages are functions: open one by the hash st.navigation registered its URL path under.
            by_path = {info.get("url_pathname"): key for key, info in at._registered_pages.items()}
            at._page_hash = by_path[page.split("-")[0]]
            at.run()
            if at.exception:
                raise RuntimeError(f"page {page} failed: {at.exception[0].value}")

        page_s = timed(render, repeats)
        query_s = timed(data_only(page), repeats)
        rows.append({"page": page, "page_s": round(page_s, 3), "queries_s": round(query_s, 3),
                     "page_over_queries": round(page_s / query_s, 1) if query_s else None})  # fmt: skip
    return rows


def run_database(name: str, url: str, args: Any) -> dict[str, Any]:
    import streamlit as st

    tmp = tempfile.mkdtemp(prefix="bench-dashboard-")
    checklist = Path(tmp) / "checklist.yaml"
    checklist.write_text(CHECKLIST)
    env = {"CONTROLPLANE_STORE_URL": url, "CONTROLPLANE_AUDIT_URL": url, "CONTROLPLANE_AUDIT_KEY_DIR": f"{tmp}/keys",
           "CONTROLPLANE_CHECKLIST_PATH": str(checklist)}  # fmt: skip
    os.environ.update(env)
    st.cache_resource.clear()
    loader = make_engine(url, statement_timeout_ms=slo_eval.FILL_STATEMENT_TIMEOUT_MS)
    migrate_store(loader)
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    seed_rest(url)
    results, filled = [], 0
    for days in sorted(args.days):
        log.info(f"[{name}] filling to {days} days ...")
        fill(loader, filled, days, end, args.seed)
        filled = days
        from controlplane.slo.rollups import refresh_rollups
        from controlplane.slo.spec import load_events, load_slos

        refresh_rollups(
            loader,
            until=end,
            specs=load_slos(REPO / "config" / "slos.yaml", events=load_events(REPO / "config" / "events.yaml")),
        )
        from controlplane.slices import load_slices
        from controlplane.slo.rolled import evaluate_all_from_rollups

        specs = load_slos(REPO / "config" / "slos.yaml", events=load_events(REPO / "config" / "events.yaml"))
        report = evaluate_all_from_rollups(
            loader, specs, events={}, boundaries=load_slices(REPO / "config" / "slices.yaml").boundaries, at=end
        )
        events = sum(s.events for s in report.slos)
        if not events:
            raise SystemExit("the fill left no events in the SLO windows; the benchmark would measure nothing")
        pages = f"{len(PAGES)} pages x (warm-up + {args.repeats})"
        log.info(f"[{name}] D = {days}: {events:,} events in the SLO windows; {pages} ...")
        st.cache_resource.clear()
        results.append({"days": days, "pages": measure(args.repeats)})
    loader.dispose()
    from dashboards.shell import audit_store, store

    store().dispose()
    audit_store().dispose()
    st.cache_resource.clear()
    return {"database": name, "runs": results}


def render_text(report: dict[str, Any]) -> str:
    lines = [
        "Dashboard pages, server side: script run (AppTest, cold caches) beside its data queries alone; "
        f"median of {report['config']['repeats']}, seconds"
    ]
    for db in report["databases"]:
        if "skipped" in db:
            lines.append(f"\n{db['database']}: skipped ({db['skipped']})")
            continue
        lines.append(f"\n{db['database']}")
        lines.append(f"  {'days':>5}  {'page':<11} {'page s':>8} {'queries s':>10} {'page/queries':>13}")
        for run in db["runs"]:
            for row in run["pages"]:
                ratio = row["page_over_queries"]
                lines.append(
                    f"  {run['days']:>5}  {row['page']:<11} {row['page_s']:>8.3f} {row['queries_s']:>10.3f} "
                    f"{(f'{ratio:.1f}x' if ratio is not None else '-'):>13}"
                )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = BenchmarkParser("bench.dashboard", __doc__, QUICK)
    parser.add_argument("--days", type=slo_eval.parse_days, default=[30, 90], help="days of data (default 30,90)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per page (default 3)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse(argv)
    setup_logging()
    os.chdir(REPO)
    started = time.monotonic()
    report: dict[str, Any] = {"config": {"days": args.days, "repeats": args.repeats}, "databases": []}
    with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as tmp:
        report["databases"].append(run_database("SQLite", f"sqlite:///{Path(tmp) / 'store.db'}", args))
    if (why := postgres_skip_reason(args)) is not None:
        report["databases"].append({"database": "PostgreSQL", "skipped": why})
    else:
        with ScratchSchema(args.postgres_url, "bench_dash") as schema:
            report["databases"].append(run_database("PostgreSQL", schema.url, args))
    emit(report, args.format, render_text, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
