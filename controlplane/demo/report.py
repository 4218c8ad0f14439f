"""The end-of-run report: each section read back through the control plane's own APIs (SLOs from the
store, alert transitions and when they came relative to the faults, the checklist run, cost per
settled bet from the audit log), beside what the load generator saw and the ledger check.

Usage:

    report = DemoReport(plan=plan, ...)      # filled section by section by controlplane.demo.run
    report.ok                                 # ledger balances, audit verifies, every bundle verifies
    json.dumps(report.to_dict())
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from controlplane.auditing import audit_engine
from controlplane.checklist.records import list_runs, load_run
from controlplane.clock import as_utc, utc_text
from controlplane.config import ControlPlaneConfig
from controlplane.cost.compute import rounded
from controlplane.cost.report import CostInputs, cost_report
from controlplane.demo.evidence import Evidence
from controlplane.demo.gameday import FaultRecord
from controlplane.demo.plan import DemoPlan
from controlplane.scheduler.history import alert_history
from controlplane.settings import Settings
from controlplane.slo.periods import floor_minute
from controlplane.slo.rolled import evaluate_all_from_rollups


@dataclass
class DemoReport:
    plan: DemoPlan
    finished_at: datetime | None = None
    slos: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    faults: list[dict[str, Any]] = field(default_factory=list)
    checklist: dict[str, Any] = field(default_factory=dict)
    cost: dict[str, Any] = field(default_factory=dict)
    load: dict[str, Any] = field(default_factory=dict)
    evidence: Evidence | None = None
    ledger: dict[str, Any] = field(default_factory=dict)
    undercard: dict[str, Any] = field(default_factory=dict)
    incident: dict[str, Any] = field(default_factory=dict)
    cluster: dict[str, Any] = field(default_factory=dict)  # --topology cluster only
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        stream = self.cluster.get("stream", {})
        exactly_once = not self.cluster or (stream.get("missing") == 0 and stream.get("doubled") == 0)
        return bool(self.ledger.get("ok")) and self.evidence is not None and self.evidence.ok and exactly_once

    def to_dict(self) -> dict[str, Any]:
        plan = self.plan
        return {
            "ok": self.ok,
            "timeline": {
                "load_started_at": utc_text(plan.start),
                "checklist_due_at": utc_text(plan.checklist_at),
                "kickoff": utc_text(plan.kickoff),
                "kickoff_s": round(plan.at(plan.kickoff), 1),
                "finished_at": utc_text(self.finished_at) if self.finished_at else None,
            },
            "slos": self.slos,
            "alerts": self.alerts,
            "incident": self.incident,
            "faults": self.faults,
            "checklist": self.checklist,
            "cost": self.cost,
            "load": self.load,
            "undercard": self.undercard,
            "audit": self.evidence.to_dict() if self.evidence else None,
            "ledger": self.ledger,
            "cluster": self.cluster or None,
            "notes": self.notes,
        }


def slo_section(config: ControlPlaneConfig, store: Engine, *, at: datetime) -> list[dict[str, Any]]:
    """Each SLO as of the end of the run (the minute under way included)."""
    report = evaluate_all_from_rollups(
        store,
        config.specs,
        events=config.events,
        boundaries=config.boundaries,
        at=floor_minute(at) + timedelta(minutes=1),
    )
    return [
        {
            "slo": s.name,
            "slice": s.slice,
            "objective": s.objective,
            "sli": None if s.no_data else round(s.sli, 6),
            "events": s.events,
            "bad_events": s.bad_events,
            "budget_remaining": round(s.budget_remaining, 4),
            "alert": "page" if s.alerts.page else ("ticket" if s.alerts.ticket else "ok"),
        }
        for s in report.slos
    ]


def when(moment: datetime, faults: list[FaultRecord]) -> str:
    """Where `moment` falls in the game day: during a fault, after one, or before the first."""
    moment = as_utc(moment)
    during = [f.kind for f in faults if f.set_at <= moment and (f.cleared_at is None or moment <= f.cleared_at)]
    if during:
        return "during " + " and ".join(during)
    before = [f for f in faults if f.set_at <= moment]
    if not before:
        return "before the first fault"
    last = max(before, key=lambda f: f.set_at)
    return f"after {last.kind} was cleared"


def alert_section(store: Engine, plan: DemoPlan, faults: list[FaultRecord]) -> list[dict[str, Any]]:
    """Every alert transition since the load started, oldest first, placed against the faults."""
    items = alert_history(store, since=floor_minute(plan.start))
    out = []
    for item in reversed(items):
        t = item.transition
        nearest = max((f for f in faults if f.set_at <= t.at), key=lambda f: f.set_at, default=None)
        out.append(
            {
                "at": utc_text(t.at),
                "at_s": round(plan.at(t.at), 1),
                "slo": t.slo,
                "severity": t.severity,
                "state": t.state,
                "burn_rates": {k: round(v, 2) for k, v in t.burn_rates.items()},
                "when": when(t.at, faults),
                "after_fault": None
                if nearest is None
                else {"kind": nearest.kind, "seconds": round((t.at - nearest.set_at).total_seconds(), 1)},
                "deliveries": [d.to_dict() for d in item.deliveries],
            }
        )
    return out


def checklist_section(store: Engine, plan: DemoPlan, event: str) -> dict[str, Any]:
    runs = list_runs(store, event=event, limit=5)
    if not runs:
        return {"ran": False, "reason": f"no checklist run for {event} was recorded"}
    head = runs[-1]  # the first one: the pre-kickoff run
    run = load_run(store, head.run_id)
    if run is None:
        return {"ran": False, "reason": f"checklist run {head.run_id} could not be read back"}
    return {
        "ran": True,
        "run_id": run.run_id,
        "at": utc_text(run.at),
        "before_kickoff": as_utc(run.at) < plan.kickoff,
        "seconds_before_kickoff": round((plan.kickoff - as_utc(run.at)).total_seconds(), 1),
        "decision": run.decision,
        "exit_code": run.exit_code,
        "audit_seq": run.audit_seq,
        "checks": len(run.checks),
        "counts": dict(Counter(c.status for c in run.checks)),
        "not_passing": [
            {"id": c.id, "severity": c.severity, "status": c.status, "reason": c.reason}
            for c in run.checks
            if c.status != "pass"
        ],
    }


def cost_section(
    settings: Settings, config: ControlPlaneConfig, store: Engine, *, start: datetime, end: datetime
) -> dict[str, Any]:
    """Cost per settled bet over the run, from the cost model and the audit log's settlements."""
    inputs = CostInputs.from_config(config, store=store, audit=audit_engine(settings))
    report = cost_report(inputs, start, end, by=None, event=None, now=end)
    figures = report.figures
    return {
        "window": report.window.to_dict(),
        "currency": report.currency,
        "total_cost": rounded(figures.total_cost),
        "settled_bets": figures.settled_bets,
        "voided_bets": figures.voided_bets,
        "cost_per_settled_bet": rounded(figures.cost_per_settled_bet),
        "components": [
            {
                "name": c.name,
                "cost": rounded(c.cost),
                "share": rounded(c.share),
                "cost_per_settled_bet": rounded(c.cost_per_settled_bet),
                "allocation": c.allocation,
            }
            for c in report.components
        ],
        "cost_per_settled_bet_reason": figures.cost_per_settled_bet_reason,
    }


def load_section(load: dict[str, Any]) -> dict[str, Any]:
    """What the load generator saw of bets: placed, replays, shed, rejected by reason."""
    bets = load.get("routes", {}).get("POST /v1/bets", {})
    errors: dict[str, int] = bets.get("errors", {})
    settlement = load.get("settlement", {})
    return {
        "requests": sum(r.get("sent", 0) for r in load.get("routes", {}).values()),
        "arrivals": load.get("arrivals", 0),
        "bet_attempts": bets.get("sent", 0),
        "bets_placed": load.get("bets_accepted", 0),
        "replays": bets.get("replays", 0),
        "retries": load.get("bet_retries", 0),
        "shed": errors.get("503 overloaded", 0),  # admission control's answer to too much in flight
        "database_busy": errors.get("503 database-busy", 0),  # a lock wait timed out (the lock-wait fault)
        "rejected": {reason: n for reason, n in sorted(errors.items())},
        "bets_unknown": load.get("bets_unknown", 0),
        "bet_latency_ms": load.get("bet_latency_ms", {}),
        "markets_settled": sum(1 for m in settlement.get("markets", []) if m.get("status") == "settled"),
        "bets_won": settlement.get("won", 0),
        "bets_lost": settlement.get("lost", 0),
        "bets_void": settlement.get("void", 0),
        # The demo always ends the arrivals itself, once the game day is over: not worth a note.
        "notes": [n for n in load.get("notes", []) if "stopped early" not in n],
    }
