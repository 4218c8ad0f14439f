"""The scheduler's jobs, each a plain function of the store and an instant, so tests drive them with
their own clock and `controlplane scheduler --once JOB` runs one now.

- `evaluate_slos`: every SLO as of the minute that ended `delay` ago -> a snapshot per SLO, and an
  alert transition for each severity that started firing or resolved since the previous snapshot
  (with the burn rates that caused it and exemplar trace ids), each queued for every receiver.
- `sign_checkpoint`: a signed audit checkpoint of the current tree head.
- `run_due_checklists`: for each event and offset (T-24h, T-1h), the checklist run once when due,
  whatever restarts happen: the run is claimed in `scheduled_runs` first. Offsets missed while the
  scheduler was down coalesce into one run (if the event has not started yet).
- `cost_rollups`: the cost of each component in the last complete hours, for charts.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, delete, false, or_, select
from sqlalchemy.exc import IntegrityError

from controlplane.auditing import audit_engine, open_audit
from controlplane.checklist.session import run_and_record
from controlplane.clock import as_utc, parse_duration
from controlplane.config import load_config
from controlplane.cost.hours import refresh_cost_hours
from controlplane.cost.report import CostInputs
from controlplane.scheduler.delivery import DeliveryStats
from controlplane.scheduler.tables import scheduled_t, snapshots_t, transitions_t
from controlplane.settings import Settings
from controlplane.slo.minute_store import blocks_t, compact_minutes
from controlplane.slo.periods import HOURLY, floor_minute
from controlplane.slo.results import SloReport, SloStatus
from controlplane.slo.rolled import evaluate_all_from_rollups
from controlplane.slo.rollups import refresh_rollups
from controlplane.slo.spec import EventSpec
from controlplane.slo.tables import buckets_t, changes_t, minutes_lat_t
from controlplane.storage import reader
from controlplane.store import SliExemplar, table
from controlplane.traces.store import prune as prune_traces
from controlplane.users.signin import purge_sessions

SEVERITIES = ("page", "ticket")


@dataclass
class Evaluation:
    at: datetime
    snapshots: int = 0
    transitions: list[dict[str, Any]] = field(default_factory=list)
    delivery: DeliveryStats | None = None  # the new transitions sent in the same run, if there were receivers


def transition_id(slo: str, severity: str, state: str, at: datetime) -> str:
    return hashlib.sha256(f"{slo}|{severity}|{state}|{as_utc(at).isoformat()}".encode()).hexdigest()[:32]


def _exemplars(store: Engine, slice_name: str, at: datetime) -> list[str]:
    ex = table(SliExemplar)
    query = (
        select(ex.c.trace_id)
        .where(ex.c.slice == slice_name, ex.c.minute >= at - timedelta(hours=1), ex.c.minute < at)
        .order_by(ex.c.minute.desc())
        .limit(5)
    )
    with reader(store).connect() as conn:
        return list(conn.execute(query).scalars())


def _previous(store: Engine, slo: str, at: datetime) -> dict[str, bool]:
    query = (
        select(snapshots_t.c.page, snapshots_t.c.ticket)
        .where(snapshots_t.c.slo == slo, snapshots_t.c.at < at)
        .order_by(snapshots_t.c.at.desc())
        .limit(1)
    )
    with reader(store).connect() as conn:
        row = conn.execute(query).first()
    return {"page": bool(row.page), "ticket": bool(row.ticket)} if row else {"page": False, "ticket": False}


def _started(store: Engine, slo: str, severity: str, at: datetime) -> datetime:
    query = (
        select(transitions_t.c.at)
        .where(transitions_t.c.slo == slo, transitions_t.c.severity == severity, transitions_t.c.state == "firing")
        .where(transitions_t.c.at <= at)
        .order_by(transitions_t.c.at.desc())
        .limit(1)
    )
    with reader(store).connect() as conn:
        started = conn.execute(query).scalar()
    return as_utc(started) if started else at


def _transition(store: Engine, status: SloStatus, severity: str, state: str, at: datetime) -> dict[str, Any]:
    thresholds = getattr(status.alert_thresholds, severity)
    detail = {
        "objective": status.objective,
        "sli": status.sli,
        "budget_remaining": status.budget_remaining,
        "burn_rates": dict(status.burn_rates),
        "thresholds": [t.to_dict() for t in thresholds],
        "exemplars": _exemplars(store, status.slice, at) if state == "firing" else [],
    }
    return {
        "id": transition_id(status.name, severity, state, at),
        "slo": status.name,
        "slice": status.slice,
        "severity": severity,
        "state": state,
        "at": at,
        "started_at": at if state == "firing" else _started(store, status.name, severity, at),
        "detail": json.dumps(detail, sort_keys=True),
    }


def record_report(store: Engine, report: SloReport) -> Evaluation:
    """Keep a snapshot per SLO and the transitions since each SLO's previous snapshot (idempotent)."""
    result = Evaluation(at=report.at)
    for status in report.slos:
        before = _previous(store, status.name, report.at)
        now = {"page": status.alerts.page, "ticket": status.alerts.ticket}
        changes = [
            _transition(store, status, sev, "firing" if now[sev] else "resolved", report.at)
            for sev in SEVERITIES
            if now[sev] != before[sev]
        ]
        try:
            with store.begin() as conn:
                conn.execute(
                    snapshots_t.insert().values(
                        slo=status.name,
                        slice=status.slice,
                        at=report.at,
                        sli=status.sli,
                        events=status.events,
                        bad_events=status.bad_events,
                        budget_remaining=status.budget_remaining,
                        page=status.alerts.page,
                        ticket=status.alerts.ticket,
                        status=json.dumps(status.to_dict(), sort_keys=True),
                    )
                )
                if changes:
                    conn.execute(transitions_t.insert(), changes)
        except IntegrityError:
            continue  # this minute was already evaluated (a second run, or a restart): nothing new
        result.snapshots += 1
        result.transitions += changes
    return result


def _evaluated(store: Engine, slos: set[str], at: datetime) -> set[str]:
    """Which of `slos` have their snapshot at `at` already."""
    query = select(snapshots_t.c.slo).where(snapshots_t.c.slo.in_(sorted(slos)), snapshots_t.c.at == at)
    with reader(store).connect() as conn:
        return set(conn.execute(query).scalars())


def evaluate_slos(settings: Settings, store: Engine, *, now: datetime, delay: timedelta = timedelta(0)) -> Evaluation:
    """Evaluate every SLO at `floor_minute(now - delay)` and record it: with a delay, the minute just
    ended gets the telemetry that arrives late (exporters batch) before it is judged, once."""
    config = load_config(settings)
    at = floor_minute(now - delay)
    names = config.slo_names
    if names and names <= _evaluated(store, names, at):
        return Evaluation(at=at)  # a job every few seconds: this minute is done, nothing to compute
    report = evaluate_all_from_rollups(store, config.specs, events=config.events, boundaries=config.boundaries, at=at)
    return record_report(store, report)


def sign_checkpoint(settings: Settings) -> str:
    """Sign the audit log's current tree head (C2SP checkpoint) with the current key."""
    log, _ring = open_audit(settings)
    return log.checkpoint()


@dataclass(frozen=True)
class DueRun:
    event: EventSpec
    offsets: tuple[str, ...]  # the offsets this run stands for (several when missed ones coalesce)
    due_at: datetime


def due_checklists(events: dict[str, EventSpec], offsets: list[str], *, now: datetime, done: set[str]) -> list[DueRun]:
    """Runs due by `now` and not done, one per event (missed offsets coalesce), before kickoff only."""
    due = []
    for event in events.values():
        if now >= event.kickoff:
            continue  # the event has started: a pre-event check is no longer a go/no-go
        pending = [
            (event.kickoff - parse_duration(offset), offset)
            for offset in offsets
            if event.kickoff - parse_duration(offset) <= now and run_key(event.name, offset) not in done
        ]
        if pending:
            due.append(DueRun(event, tuple(o for _t, o in sorted(pending)), max(t for t, _o in pending)))
    return due


def run_key(event: str, offset: str) -> str:
    return f"checklist:{event}:T-{offset}"


def run_due_checklists(settings: Settings, store: Engine, *, now: datetime, offsets: list[str]) -> list[dict]:
    """Run each due checklist once: claim its keys in `scheduled_runs`, run, record the outcome."""
    events = load_config(settings).events
    with reader(store).connect() as conn:
        done = set(conn.execute(select(scheduled_t.c.key).where(scheduled_t.c.job == "checklists")).scalars())
    results = []
    for run in due_checklists(events, offsets, now=now, done=done):
        keys = [run_key(run.event.name, offset) for offset in run.offsets]
        try:
            with store.begin() as conn:  # the claim: a second scheduler or a restart finds these keys taken
                conn.execute(
                    scheduled_t.insert(),
                    [
                        {"key": k, "job": "checklists", "due_at": run.due_at, "ran_at": now, "outcome": "running"}
                        for k in keys
                    ],
                )
        except IntegrityError:
            continue
        try:
            recorded = run_and_record(settings, store, event=run.event, at=now)
            outcome = {"run_id": recorded.run_id, "decision": recorded.decision, "offsets": list(run.offsets)}
        except Exception as exc:  # recorded as the outcome; the run is not retried (it was due once)
            outcome = {"error": f"{type(exc).__name__}: {exc}", "offsets": list(run.offsets)}
        with store.begin() as conn:
            conn.execute(scheduled_t.update().where(scheduled_t.c.key.in_(keys)).values(outcome=json.dumps(outcome)))
        results.append({"event": run.event.name, **outcome})
    return results


PACK_AFTER = timedelta(hours=1)  # an hour's minutes stay rows until it ended this long ago


def refresh(settings: Settings, store: Engine, *, now: datetime) -> Any:
    """Fold complete hours and days of SLI minutes into rollups (freshness SLOs get their series), then
    pack the minutes of hours that ended an hour ago or more (late events for them are packed later)."""
    stats = refresh_rollups(store, until=now, specs=load_config(settings).specs)
    compact_minutes(store, before=now - PACK_AFTER)
    return stats


def retention_horizon(settings: Settings, minute_retention: str, *, now: datetime) -> datetime:
    """Minutes older than this go: the configured retention, or longer while an SLO's window needs them
    (a window that starts mid-hour reads its first hour's minutes)."""
    specs = load_config(settings).specs
    longest = max((timedelta(days=s.window.rolling_days) for s in specs if s.window.rolling_days), default=timedelta())
    keep = max(parse_duration(minute_retention), longest + timedelta(days=1), timedelta(days=32))
    return floor_minute(now) - keep


def retention(settings: Settings, store: Engine, *, now: datetime, minute_retention: str) -> dict[str, int]:
    """The nightly clean-up: rolled-up SLI minutes past the horizon, dashboard sessions long over, and kept
    traces past their retention (or beyond the size bound)."""
    return (
        purge_minutes(settings, store, now=now, minute_retention=minute_retention)
        | {"dashboard_sessions": purge_sessions(store, now)}
        | prune_traces(
            store,
            max_bytes=settings.collector_trace_max_bytes,
            older_than=now - timedelta(days=settings.trace_retention_days),
        )
    )


def purge_minutes(settings: Settings, store: Engine, *, now: datetime, minute_retention: str) -> dict[str, int]:
    """Delete SLI minutes (counts, latency buckets, exemplars) older than the horizon, but only in
    hours already folded into rollups: an hour still marked as changed keeps its minutes."""
    horizon = retention_horizon(settings, minute_retention, now=now)
    refresh_rollups(store, until=now)  # fold what is pending first
    with reader(store).connect() as conn:
        pending = conn.execute(
            select(changes_t.c.slice, changes_t.c.start).where(
                changes_t.c.period == HOURLY, changes_t.c.start < horizon
            )
        ).all()
    deleted = {}
    for name, t, column in (
        ("sli_buckets", buckets_t, buckets_t.c.minute),
        ("sli_latency_buckets", minutes_lat_t, minutes_lat_t.c.minute),
        ("sli_minute_blocks", blocks_t, blocks_t.c.hour),
    ):
        # A block goes with its whole hour: one that ends after the horizon stays.
        before = horizon.replace(minute=0, second=0, microsecond=0) if t is blocks_t else horizon
        kept = or_(
            false(),
            *(
                and_(t.c.slice == s, column >= as_utc(start), column < as_utc(start) + timedelta(hours=1))
                for s, start in pending
            ),
        )
        with store.begin() as conn:
            deleted[name] = conn.execute(delete(t).where(column < before, ~kept)).rowcount or 0
    ex = table(SliExemplar)
    with store.begin() as conn:
        deleted["sli_exemplars"] = conn.execute(delete(ex).where(ex.c.minute < horizon)).rowcount or 0
    return deleted


def cost_rollups(settings: Settings, store: Engine, *, now: datetime, hours: int = 3) -> dict[str, Any]:
    """The last `hours` complete hours of cost per component, recomputed into `cost_hours`; skipped, with
    the reason, while there is no cost model file."""
    if not settings.costs_path.exists():
        return {"skipped": f"no cost model at {settings.costs_path} (CONTROLPLANE_COSTS_PATH)"}
    inputs = CostInputs.from_config(load_config(settings), store=store, audit=audit_engine(settings))
    return refresh_cost_hours(inputs, now=now, hours=hours)
