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

    running = start_stack(options, prepare(...), say=print)     # controlplane.demo.workdir.prepare
    report = run_demo(options, running, say=print, stop=threading.Event())
    report.ok
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from controlplane.checklist.records import list_runs
from controlplane.clock import parse_duration, utcnow
from controlplane.config import load_config
from controlplane.demo.evidence import gather_evidence
from controlplane.demo.gameday import FaultRecord, GameDay, page_state, paging_since
from controlplane.demo.incident import incident_section
from controlplane.demo.plan import AFTER_CLEAR, DemoPlan, page_deadline, plan_demo
from controlplane.demo.report import (
    DemoReport,
    alert_section,
    checklist_section,
    cost_section,
    load_section,
    slo_section,
)
from controlplane.demo.seed import (
    EVALUATION_DELAY,
    EVALUATION_EVERY,
    EVENT,
    DemoFiles,
    point_costs_at,
    seed_people,
    write_config,
    write_events,
)
from controlplane.demo.stack import Child, DemoError, Stack, child_env, free_port
from controlplane.scraped import latest
from controlplane.settings import Settings
from controlplane.slo.minute_store import ALL_TIME, minute_totals
from controlplane.slo.periods import floor_minute, minute_start
from controlplane.storage import make_engine, reader
from controlplane.store import migrate_store
from sample_platform import db as platform_db
from sample_platform.ledger import check_ledger
from sample_platform.loadgen import LoadConfig, LoadReport, run_load_async

if TYPE_CHECKING:
    from controlplane.demo.cluster import Cluster

PROGRESS_EVERY = 5.0
DRAIN_TIMEOUT = 180.0
STOP_LOAD_TIMEOUT = 30.0  # seconds the load thread gets to end after an interruption


@dataclass
class DemoOptions:
    workdir: Path = Path("var/demo")
    duration: float = 90.0
    rate: float = 4.0
    database_url: str | None = None  # the platform's database
    store_url: str | None = None
    audit_url: str | None = None
    config_dir: Path = Path(__file__).resolve().parents[2] / "config"
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
    platform_urls: tuple[str, ...] = ()  # every replica's, when there are several (the first is platform_url)
    cluster: Cluster | None = None  # --topology cluster: its processes and its own game day


def start_stack(options: DemoOptions, urls: dict[str, str], say: Callable[[str], None]) -> Running:
    """The collector, the platform and the scheduler, on the demo's files and databases; the dashboard's
    users and the people the checklist asks about, seeded."""
    work = options.workdir.resolve()
    files = write_config(work / "config", source=options.config_dir)
    admin_token, collector_token = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    stack = Stack(work / "logs")
    try:
        for attempt in range(3):  # the platform's port is chosen before the collector (which scrapes it) starts
            platform_url = f"http://127.0.0.1:{free_port()}"
            point_costs_at(files, [f"{platform_url}/metrics"])
            cp = controlplane_settings(work, urls, files, collector_token, admin_token, platform_url)
            env = child_env(cp, {})
            collector = stack.start_http("collector", ["collector", "serve"], env, health="/healthz")
            platform = platform_settings(work, urls, admin_token, collector_token, collector.url)
            try:
                stack.start_http(
                    "platform", ["platform", "serve"], child_env(cp, platform), health="/v1/health",
                    port=int(platform_url.rsplit(":", 1)[1]), fallback=False,
                )  # fmt: skip
                break
            except DemoError:
                stack.stop()  # the port was taken meanwhile (or the platform failed): both again
                if attempt == 2:
                    raise
        say(f"collector (OTLP/HTTP, scraper) on {collector.url}")
        say(f"platform on {platform_url} ({make_url(urls['platform']).render_as_string(hide_password=True)})")
        settings = Settings(**cp)
        logins = seed_store(settings)
        stack.start("scheduler", ["scheduler"], env, ready="scheduler started")
        say(f"scheduler running: SLOs every {EVALUATION_EVERY}, checklists before kickoff, checkpoints every 30 s")
    except BaseException:
        stack.stop()
        raise
    return Running(stack, settings, files, env, logins, platform_url, urls["platform"])


def seed_store(settings: Settings) -> dict[str, tuple[str, str]]:
    """The store migrated, the dashboard's users and the people the checklist asks about seeded."""
    store = make_engine(settings.store_url, **settings.engine_options())
    try:
        migrate_store(store)
        return seed_people(settings, store)
    finally:
        store.dispose()


def controlplane_settings(
    work: Path, urls: dict[str, str], files: DemoFiles, collector_token: str, admin_token: str, platform_url: str
) -> dict[str, Any]:
    return {
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


def platform_settings(
    work: Path, urls: dict[str, str], admin_token: str, collector_token: str, collector_url: str
) -> dict[str, Any]:
    return {
        "environment": "development",
        "database_url": urls["platform"],
        "admin_token": admin_token,
        "otlp_endpoint": collector_url,
        "otlp_headers": f"Authorization=Bearer%20{collector_token}",
        "otlp_metric_interval_seconds": 2,
        "outbox_sink_path": work / "outbox.jsonl",
        "outbox_relay_interval_seconds": 0.2,
        "odds_stream_port": 0,
        # Risk features are trusted for two minutes on the night (one platform process, so no lag).
        "risk_cache_ttl_seconds": 120,
    }


def start_load(
    running: Running, plan: DemoPlan, options: DemoOptions, stop: threading.Event
) -> tuple[threading.Thread, dict]:
    """The derby-night load in a thread of its own; `box` receives its report, its error, its progress.
    The curve is anchored on the wall clock, so the game day meets it where the plan says."""
    box: dict[str, Any] = {}
    token = running.settings.platform_admin_token
    config = LoadConfig(
        target=running.platform_url,
        replicas=running.platform_urls[1:],
        profile="derby-night",
        duration=plan.curve_seconds,
        rate=options.rate,
        admin_token=token.get_secret_value() if token else None,
        players=8,
        markets=3,
        sse_subscribers=3,
        seed=options.seed,
        settle_timeout=90.0,
        curve_at=plan.curve_start.timestamp(),
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
    """Waits on the wall clock, saying what is happening every few seconds, and stops the demo with
    the reason when a child process or the load generator dies."""

    def __init__(
        self, plan: DemoPlan, box: dict, running: Running, store: Engine, faults: list[FaultRecord],
        say: Callable[[str], None],
    ) -> None:  # fmt: skip
        self.plan, self.box, self.running, self.store, self.faults, self.say = plan, box, running, store, faults, say
        self.last = 0.0
        self.phase = "build-up"
        self.checklist_seen = False

    def tick(self) -> None:
        if "error" in self.box:
            raise DemoError(f"the load generator failed: {self.box['error']}")
        if self.running.cluster is not None:
            self.running.cluster.act(self.plan, self.box.get("progress", {}).get("phase", ""), self.say)
        self.running.stack.check()
        if time.monotonic() - self.last < PROGRESS_EVERY:
            return
        self.last = time.monotonic()
        if not self.checklist_seen:
            runs = list_runs(self.store, event=EVENT, limit=1)
            if runs:
                self.checklist_seen = True
                run = runs[0]
                self.say(f"pre-kickoff checklist: {run.decision.upper()} {run.counts} (run {run.run_id})")
        snap = self.box.get("progress", {})
        active = [f.kind for f in self.faults if f.cleared_at is None]
        paging = page_state(self.store)
        self.say(
            f"[{self.plan.at(utcnow()):5.0f}s] {self.phase:<22} offered {snap.get('offered_rate', 0):5.1f}/s  "
            f"bets {snap.get('bets_accepted', 0):>5}  errors {snap.get('errors', 0):>4}  "
            f"faults {','.join(active) or '-':<12} paging {','.join(paging) or '-'}"
        )

    def until(self, moment: datetime, *, done: Callable[[], bool] | None = None) -> bool:
        """Wait until `moment` (or until `done()` is true: then True)."""
        while utcnow() < moment:
            self.tick()
            if done is not None and done():
                return True
            time.sleep(0.25)
        return bool(done and done())


def play(plan: DemoPlan, clock: Clock, gameday: GameDay, settle_lag: float) -> None:
    """The script, on the plan's clock: the checklist (the scheduler's), the kickoff, the game day."""
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
            # Only a judgement of a minute the fault was in can count: the first ends after the set.
            judged_from = floor_minute(record.set_at) + timedelta(minutes=1)
            deadline = page_deadline(record.set_at, settle_lag)
            paged = clock.until(
                deadline,
                done=lambda since=judged_from: paging_since(clock.store, since=since),  # type: ignore[misc]
            )
            waited = (deadline - record.set_at).total_seconds()
            because = "the page alert fired" if paged else f"no page within {waited:.0f} s"
        else:
            clock.until(record.set_at + timedelta(seconds=step.hold))
            because = "its slot in the game day ended"
        gameday.clear_fault(record, because=because)
        say(f"fault cleared: {step.kind} ({because})")
    clock.phase = "after the game day"
    curve_end = plan.curve_start + timedelta(seconds=plan.curve_seconds)  # the crowd drifts away to the end
    clock.until(max(utcnow() + timedelta(seconds=AFTER_CLEAR), curve_end))


def _outbox_depth(store: Engine, since: datetime) -> float | None:
    """The platform's outbox depth as the collector last scraped it, if scraped after `since`."""
    for sample in latest(store, name="platform_outbox_depth"):
        if sample.time >= since:
            return float(sample.value)
    return None


def _settlement_events(store: Engine) -> int:
    with reader(store).connect() as conn:
        return sum(total for *_, total, _bad in minute_totals(conn, "settlement", [(minute_start(0), ALL_TIME)]))


def wait_for_full_time(store: Engine, settlements: int, say: Callable[[str], None], clock: Clock) -> list[str]:
    """Until the outbox is delivered to the audit log (the scraped depth is 0) and the settlements'
    telemetry reached the store."""
    notes = []
    since, deadline = utcnow(), time.monotonic() + DRAIN_TIMEOUT
    while (depth := _outbox_depth(store, since)) != 0 and time.monotonic() < deadline:
        clock.tick()
        time.sleep(0.5)
    if depth != 0:
        notes.append(f"the outbox still held {depth} undelivered events after {DRAIN_TIMEOUT:.0f} s")
    deadline = time.monotonic() + 60
    while (seen := _settlement_events(store)) < settlements and time.monotonic() < deadline:
        time.sleep(0.5)
    if seen < settlements:
        notes.append(f"{settlements - seen} settlements' telemetry had not reached the collector after 60 s")
    say(
        "full time: " + ("; ".join(notes) if notes else "the outbox is delivered to the audit log, the telemetry is in")
    )
    return notes


def ledger_check(url: str) -> dict[str, Any]:
    engine = platform_db.make_engine(url)
    try:
        with platform_db.reader(engine).begin() as conn:
            check = check_ledger(conn)
    finally:
        engine.dispose()
    return {"ok": check.ok, "transactions": check.transactions, "problems": check.problems[:10]}


def run_demo(
    options: DemoOptions, running: Running, *, say: Callable[[str], None], stop: threading.Event
) -> DemoReport:
    """The whole derby night on a started stack. On Ctrl-C (KeyboardInterrupt) or a failure, the load
    is told to stop, every fault is cleared and the load thread is given time to end before the
    exception propagates."""
    settings = running.settings
    settle_lag = parse_duration(EVALUATION_DELAY).total_seconds() + 5
    store = make_engine(settings.store_url, **settings.engine_options())
    try:
        plan = plan_demo(utcnow(), duration=options.duration, settle_lag=settle_lag)
        write_events(running.files, plan)
        report = DemoReport(plan=plan)
        token = settings.platform_admin_token.get_secret_value() if settings.platform_admin_token else ""
        with GameDay(running.platform_url, token) as gameday:
            report.undercard = gameday.undercard()
            say(f"the undercard settled before the event: {report.undercard['settlement']}")
            thread, box = start_load(running, plan, options, stop)
            say(f"derby night: kickoff at {plan.kickoff:%H:%M:%S} UTC; the load runs until the game day is over")
            clock = Clock(plan, box, running, store, gameday.faults, say)
            try:
                play(plan, clock, gameday, settle_lag)
                stop.set()
                clock.phase = "full time: settling"
                while thread.is_alive():
                    clock.tick()
                    thread.join(timeout=0.1)
            except BaseException:
                stop.set()
                say("stopping the load and clearing the faults")
                gameday.clear_all(because="the demo stopped")
                thread.join(timeout=STOP_LOAD_TIMEOUT)
                raise
            report.faults = [f.to_dict(plan.start) for f in gameday.faults]
        if "error" in box:
            raise DemoError(f"the load generator failed: {box['error']}")
        load: LoadReport = box["report"]
        load_dict = load.to_dict()
        report.load = load_section(load_dict)
        report.notes += wait_for_full_time(store, len(load.settlements) + 1, say, clock)
        if running.cluster is not None:
            report.cluster = running.cluster.full_time(
                load_dict, running.platform_database_url, settings.audit_url, plan.start,
                clock.tick, say,
            )  # fmt: skip
        end = utcnow()
        report.checklist = checklist_section(store, plan, EVENT)
        bet_id = min(load.accepted_bet_ids) if load.accepted_bet_ids else None
        config = load_config(settings)
        report.incident, proof = incident_section(settings, config, store, plan, at=end)
        report.evidence = gather_evidence(
            settings,
            options.workdir / "bundles",
            bet_id=bet_id,
            checklist_run=report.checklist.get("run_id"),
            incident=proof,
        )
        report.slos = slo_section(config, store, at=end)
        report.alerts = alert_section(store, plan, gameday.faults)
        if any(a["severity"] == "page" and a["when"] == "before the first fault" for a in report.alerts):
            report.notes.append(
                "a page fired before the game day: the platform failed bets at the peak on this machine "
                "(see the SLOs' bad events); a lower --rate keeps the spike within what it can serve"
            )
        report.cost = cost_section(settings, config, store, start=floor_minute(plan.start), end=end)
        report.ledger = ledger_check(running.platform_database_url)
        report.finished_at = utcnow()
    finally:
        store.dispose()
    (options.workdir / "report.json").write_text(json.dumps(report.to_dict(), indent=2, default=str))
    return report


def start_dashboard(running: Running, port: int) -> Child:
    """The dashboard on `port`, or on a free one when that is taken."""
    return running.stack.start_http("dashboard", ["dashboard"], running.env, health="/_stcore/health", port=port)
