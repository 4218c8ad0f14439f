"""`controlplane demo`: derby night in one command.

The platform, the collector and the scheduler start as child processes on the demo's own databases
(SQLite files under the work directory unless URLs are given). The demo seeds the dashboard users,
the attestations and a failover drill, writes an event calendar whose kickoff is minutes away, and
drives a derby-night load (the 15x crowd at the off) while the scheduler runs the pre-kickoff
checklist and evaluates the SLOs every few seconds. After the peak comes the game day: the risk cache
off, the broker slow, then a lock wait held until the page alert fires, each set and cleared over
the admin API by a named person. At full time the markets are settled, a checkpoint is signed, proof
bundles for a bet and for the checklist run are verified offline, and the report is read back
through the control plane's APIs.

Usage:

    report = run_demo(DemoOptions(duration=120), say=print)
    report.ok
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, func, inspect, select
from sqlalchemy.engine import make_url

from controlplane.checklist.records import list_runs
from controlplane.clock import utcnow
from controlplane.demo.evidence import gather_evidence
from controlplane.demo.gameday import FaultRecord, GameDay, page_fired
from controlplane.demo.plan import AFTER_CLEAR, DemoPlan, plan_demo
from controlplane.demo.report import (
    DemoReport,
    alert_section,
    checklist_section,
    cost_section,
    load_section,
    slo_section,
)
from controlplane.demo.seed import EVALUATION_DELAY, EVENT, DemoFiles, seed_people, write_config, write_events
from controlplane.demo.stack import Child, DemoError, Stack, child_env, free_port
from controlplane.settings import Settings
from controlplane.slo import floor_minute
from controlplane.storage import make_engine, reader
from controlplane.store import SliBucket, migrate_store, table
from sample_platform import db as platform_db
from sample_platform.ledger import check_ledger
from sample_platform.loadgen import LoadConfig, LoadReport, run_load_async

PROGRESS_EVERY = 5.0
DRAIN_TIMEOUT = 180.0


@dataclass
class DemoOptions:
    workdir: Path = Path("var/demo")
    duration: float = 90.0
    rate: float = 3.0
    database_url: str | None = None  # the platform's database
    store_url: str | None = None
    audit_url: str | None = None
    config_dir: Path = Path("config")
    seed: int = 7


@dataclass
class Running:
    """What a run has started, for the caller to show, keep or stop."""

    stack: Stack
    settings: Settings
    files: DemoFiles
    env: dict[str, str]
    logins: dict[str, tuple[str, str]]
    platform_url: str
    platform_database_url: str


def _sqlite_file(url: str) -> Path | None:
    parsed = make_url(url)
    return Path(parsed.database) if parsed.get_backend_name() == "sqlite" and parsed.database else None


def is_own_file(url: str, workdir: Path) -> bool:
    """A SQLite file of the demo's own, in its work directory (the demo may delete it)."""
    path = _sqlite_file(url)
    return path is not None and path.resolve().parent == workdir.resolve()


def remove_sqlite(url: str) -> None:
    path = _sqlite_file(url)
    if path is not None:
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


def prepare_workdir(options: DemoOptions) -> dict[str, str]:
    """The three database URLs; the demo's own SQLite files from an earlier run are removed first."""
    work = options.workdir
    urls = {
        "platform": options.database_url or f"sqlite:///{work / 'platform.db'}",
        "store": options.store_url or f"sqlite:///{work / 'store.db'}",
        "audit": options.audit_url or f"sqlite:///{work / 'audit.db'}",
    }
    work.mkdir(parents=True, exist_ok=True)
    for name in ("keys", "logs", "bundles", "config"):
        shutil.rmtree(work / name, ignore_errors=True)
    for name in ("report.json", "env.sh", "logins.txt", "outbox.jsonl", "changes.jsonl"):
        (work / name).unlink(missing_ok=True)
    for which, url in urls.items():
        if is_own_file(url, work):
            remove_sqlite(url)
        else:
            _refuse_used(which, url)
    return urls


def _refuse_used(which: str, url: str) -> None:
    """A database given by URL must not hold an earlier run: its SLIs and alerts would mix with this one."""
    marker = {"platform": "accounts", "store": "sli_buckets", "audit": "audit_entries"}[which]
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table(marker):
                return
            rows = conn.execute(select(func.count()).select_from(table_named(conn, marker))).scalar_one()
    except Exception as exc:  # an unreachable server or a bad URL: say which and why
        raise DemoError(f"the {which} database ({make_url(url).render_as_string(hide_password=True)}): {exc}") from None
    finally:
        engine.dispose()
    if rows:
        shown = make_url(url).render_as_string(hide_password=True)
        raise DemoError(
            f"the {which} database {shown} already holds data ({rows} rows in {marker}); the demo needs empty "
            "databases so that its alerts and costs are its own: create new ones (e.g. `createdb demo_platform`)"
        )


def table_named(conn: Any, name: str) -> Any:
    from sqlalchemy import MetaData, Table

    return Table(name, MetaData(), autoload_with=conn)


def start_stack(options: DemoOptions, urls: dict[str, str], say: Callable[[str], None]) -> Running:
    work = options.workdir
    files = write_config(work / "config", source=options.config_dir)
    admin_token, collector_token = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    platform_port = free_port()
    platform_url = f"http://127.0.0.1:{platform_port}"
    cp: dict[str, Any] = {
        "environment": "development",
        "store_url": urls["store"],
        "audit_url": urls["audit"],
        "audit_key_dir": work / "keys",
        "slos_path": files.slos,
        "slices_path": files.slices,
        "events_path": files.events,
        "checklist_path": files.checklist,
        "costs_path": files.costs,
        "scheduler_path": files.scheduler,
        "collector_tokens": collector_token,
        "scrape_targets": f"{platform_url}/metrics",
        "scrape_interval_seconds": 1,
        "platform_url": platform_url,
        "platform_admin_token": admin_token,
        "outbox_sink": "audit",
        "change_log_path": work / "changes.jsonl",
    }
    stack = Stack(work / "logs")
    try:
        env = child_env(cp, {})
        collector = stack.start_http("collector", ["collector", "serve"], env, health="/healthz")
        say(f"collector (OTLP/HTTP, scraper) on {collector.url}")
        platform = {
            "environment": "development",
            "database_url": urls["platform"],
            "admin_token": admin_token,
            "otlp_endpoint": collector.url,
            "otlp_headers": f"Authorization=Bearer%20{collector_token}",
            "otlp_metric_interval_seconds": 2,
            "outbox_sink_path": work / "outbox.jsonl",
            "outbox_relay_interval_seconds": 0.2,
            "odds_stream_port": 0,
            # Risk features are trusted for two minutes on the night (one platform process, so no lag).
            "risk_cache_ttl_seconds": 120,
        }
        stack.start_http(
            "platform", ["platform", "serve"], child_env(cp, platform), health="/v1/health", port=platform_port
        )
        say(f"platform on {platform_url} ({make_url(urls['platform']).render_as_string(hide_password=True)})")
        settings = Settings(**cp)
        store = make_engine(settings.store_url, **settings.engine_options())
        try:
            migrate_store(store)
            logins = seed_people(settings, store)
        finally:
            store.dispose()
        stack.start("scheduler", ["scheduler"], env, ready="scheduler started")
        say("scheduler running: SLOs every 2 s, checklists before kickoff, checkpoints every 30 s")
    except BaseException:
        stack.stop()
        raise
    return Running(stack, settings, files, env, logins, platform_url, urls["platform"])


def start_load(
    running: Running, plan: DemoPlan, options: DemoOptions, stop: threading.Event
) -> tuple[threading.Thread, dict]:
    """The derby-night load in a thread of its own; `box` receives its report, its error, its progress."""
    box: dict[str, Any] = {}
    lead_in = max(0.0, (plan.curve_start - utcnow()).total_seconds())
    config = LoadConfig(
        target=running.platform_url,
        profile="derby-night",
        duration=plan.curve_seconds,
        rate=options.rate,
        admin_token=running.settings.platform_admin_token.get_secret_value()
        if running.settings.platform_admin_token
        else None,
        players=10,
        markets=4,
        sse_subscribers=3,
        seed=options.seed,
        settle_timeout=90.0,
        lead_in_seconds=lead_in,
        extend_seconds=plan.extend,
    )

    def progress(elapsed: float, snapshot: dict) -> None:
        box["progress"] = snapshot

    def run() -> None:
        try:
            box["report"] = asyncio.run(run_load_async(config, progress=progress, stop=stop))
        except BaseException as exc:  # shown by the main thread
            box["error"] = exc

    thread = threading.Thread(target=run, name="derby-night-load", daemon=True)
    thread.start()
    return thread, box


class Clock:
    """Waits on the wall clock, saying what is happening every few seconds."""

    def __init__(self, plan: DemoPlan, box: dict, store: Engine, faults: list[FaultRecord], say: Callable[[str], None]):
        self.plan, self.box, self.store, self.faults, self.say = plan, box, store, faults, say
        self.last = 0.0
        self.phase = "build-up"
        self.checklist_seen = False

    def tick(self) -> None:
        if "error" in self.box:
            raise DemoError(f"the load generator failed: {self.box['error']}")
        if time.monotonic() - self.last < PROGRESS_EVERY:
            return
        self.last = time.monotonic()
        if not self.checklist_seen:
            runs = list_runs(self.store, event=EVENT, limit=1)
            if runs:
                self.checklist_seen = True
                run = runs[0]
                self.say(f"pre-kickoff checklist: {run['decision'].upper()} {run['counts']} (run {run['run_id']})")
        snap = self.box.get("progress", {})
        active = [f.kind for f in self.faults if f.cleared_at is None]
        paged = page_fired(self.store, since=floor_minute(self.plan.start))
        self.say(
            f"[{self.plan.at(utcnow()):5.0f}s] {self.phase:<22} offered {snap.get('offered_rate', 0):5.1f}/s  "
            f"bets {snap.get('bets_accepted', 0):>5}  errors {snap.get('errors', 0):>4}  "
            f"faults {','.join(active) or '-':<12} page {'FIRING' if paged else '-'}"
        )

    def until(self, moment: datetime, *, done: Callable[[], bool] | None = None) -> bool:
        """Wait until `moment` (or until `done()` is true: then True)."""
        while utcnow() < moment:
            self.tick()
            if done is not None and done():
                return True
            time.sleep(0.25)
        return bool(done and done())


def play(running: Running, plan: DemoPlan, clock: Clock, gameday: GameDay, report: DemoReport) -> None:
    """The script, on the plan's clock: the undercard, the checklist, the kickoff, the game day."""
    say = clock.say
    clock.phase = "build-up"
    say(f"the pre-kickoff checklist is due at {plan.checklist_at:%H:%M:%S} (kickoff {plan.kickoff:%H:%M:%S})")
    clock.until(plan.kickoff - timedelta(seconds=1))
    clock.phase = "the off: 15x"
    for step in plan.faults:
        clock.until(step.start)
        record = gameday.set_fault(step)
        clock.phase = f"game day: {step.kind}"
        say(f"fault set: {step.kind} by {record.set_by} ({step.reason})")
        if step.until_page:
            since = floor_minute(record.set_at)
            paged = clock.until(
                record.set_at + timedelta(seconds=step.hold),
                done=lambda since=since: page_fired(clock.store, since=since) is not None,  # type: ignore[misc]
            )
            because = "the page alert fired" if paged else f"no page within {step.hold:.0f} s"
        else:
            clock.until(record.set_at + timedelta(seconds=step.hold))
            because = "its slot in the game day ended"
        gameday.clear_fault(record, because=because)
        say(f"fault cleared: {step.kind} ({because})")
    clock.phase = "after the game day"
    clock.until(utcnow() + timedelta(seconds=AFTER_CLEAR))


def _outbox_depth(platform_url: str) -> float | None:
    try:
        text = httpx.get(f"{platform_url}/metrics", timeout=10).text
    except httpx.HTTPError:
        return None
    found = re.search(r"^platform_outbox_depth (\S+)$", text, re.M)
    return float(found.group(1)) if found else None


def _settlement_events(store: Engine) -> int:
    t = table(SliBucket)
    with reader(store).connect() as conn:
        return int(conn.execute(select(func.sum(t.c.total)).where(t.c.slice == "settlement")).scalar() or 0)


def wait_for_full_time(running: Running, store: Engine, settlements: int, say: Callable[[str], None]) -> list[str]:
    """Until the outbox is delivered to the audit log and the settlements' telemetry reached the store."""
    notes = []
    deadline = time.monotonic() + DRAIN_TIMEOUT
    while (depth := _outbox_depth(running.platform_url)) != 0 and time.monotonic() < deadline:
        time.sleep(0.5)
    if depth != 0:
        notes.append(f"the outbox still held {depth} events after {DRAIN_TIMEOUT:.0f} s")
    deadline = time.monotonic() + 60
    while _settlement_events(store) < settlements and time.monotonic() < deadline:
        time.sleep(0.5)
    if _settlement_events(store) < settlements:
        notes.append("not every settlement's telemetry reached the collector within 60 s")
    say("outbox delivered to the audit log; telemetry in")
    return notes


def ledger_check(url: str) -> dict[str, Any]:
    engine = platform_db.make_engine(url)
    try:
        with platform_db.reader(engine).begin() as conn:
            check = check_ledger(conn)
    finally:
        engine.dispose()
    return {"ok": check.ok, "transactions": check.transactions, "problems": check.problems[:10]}


def write_env(running: Running, path: Path) -> None:
    """`source var/demo/env.sh` points every `controlplane` command at the demo's data."""
    lines = [
        f"export {k}={json.dumps(v)}"
        for k, v in sorted(running.env.items())
        if k.startswith("CONTROLPLANE_") and not k.endswith(("TOKENS", "ADMIN_TOKEN"))
    ]
    path.write_text("\n".join(lines) + "\n")


def run_demo(
    options: DemoOptions, running: Running, *, say: Callable[[str], None], stop: threading.Event
) -> DemoReport:
    """The whole derby night on a started stack; Ctrl-C (KeyboardInterrupt) propagates after the faults
    are cleared and the load is told to stop."""
    settings = running.settings
    store = make_engine(settings.store_url, **settings.engine_options())
    plan = plan_demo(utcnow(), duration=options.duration, settle_lag=_seconds(EVALUATION_DELAY) + 5)
    write_events(running.files, plan)
    report = DemoReport(plan=plan)
    gameday = GameDay(running.platform_url, settings.platform_admin_token.get_secret_value())  # type: ignore[union-attr]
    report.undercard = gameday.undercard()
    say(f"the undercard settled before the event: {report.undercard['settlement']}")
    thread, box = start_load(running, plan, options, stop)
    say(f"derby night: kickoff at {plan.kickoff:%H:%M:%S} UTC; the load runs until the game day is over")
    clock = Clock(plan, box, store, gameday.faults, say)
    try:
        play(running, plan, clock, gameday, report)
    finally:
        gameday.clear_all(because="the demo stopped")
        stop.set()
    clock.phase = "full time: settling"
    while thread.is_alive():
        clock.tick()
        thread.join(timeout=0.5)
    if "error" in box:
        raise DemoError(f"the load generator failed: {box['error']}")
    load: LoadReport = box["report"]
    loaded = load.to_dict()
    report.load = load_section(loaded)
    report.faults = [f.to_dict(plan.start) for f in gameday.faults]
    gameday.close()
    settlements = len(load.settlements) + 1
    report.notes += wait_for_full_time(running, store, settlements, say)
    end = utcnow()
    report.checklist = checklist_section(store, plan, EVENT)
    bet_id = min(load.accepted_bet_ids) if load.accepted_bet_ids else None
    report.evidence = gather_evidence(
        settings, options.workdir / "bundles", bet_id=bet_id, checklist_run=report.checklist.get("run_id")
    )
    report.slos = slo_section(settings, store, at=end)
    report.alerts = alert_section(store, plan, gameday.faults)
    report.cost = cost_section(settings, store, start=floor_minute(plan.start), end=end)
    report.ledger = ledger_check(running.platform_database_url)
    report.finished_at = utcnow()
    store.dispose()
    (options.workdir / "report.json").write_text(json.dumps(report.to_dict(), indent=2, default=str))
    write_env(running, options.workdir / "env.sh")
    return report


def _seconds(text: str) -> float:
    return float(text.rstrip("s"))


def start_dashboard(running: Running, port: int | None) -> Child:
    return running.stack.start_http("dashboard", ["dashboard"], running.env, health="/_stcore/health", port=port)
