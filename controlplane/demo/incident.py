"""The demo's game day as an incident: the one the page opened, with its figures as of full time, the
change nearest its start (the likeliest cause), the error budget policy then, and the entries a proof
bundle of it holds.

Usage:

    section, proof = incident_section(settings, config, store, plan, at=end)
    section["time_to_detect_s"], section["top_change"], section["policy"]
    proof   # (incident id, audit seqs) for the bundle, or None when no page opened an incident
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from controlplane.config import ControlPlaneConfig
from controlplane.demo.plan import DemoPlan
from controlplane.incidents.tracker import Tracker
from controlplane.policy.recorder import current_policy
from controlplane.settings import Settings


def incident_section(
    settings: Settings, config: ControlPlaneConfig, store: Engine, plan: DemoPlan, *, at: datetime
) -> tuple[dict[str, Any], tuple[str, list[int]] | None]:
    tracker = Tracker(settings, store, config=config)
    tracker.track(now=at)  # the scheduler's job does this every few seconds; once more at full time
    rows = tracker.rows(since=plan.start, until=at)
    states = current_policy(config, store, at=at)
    policy = {s.slice: {"state": s.state, "reason": s.reason} for s in states.slices}
    if not rows:
        return {"opened": False, "reason": "no page alert fired, so no incident opened", "policy": policy}, None
    # The first the game day opened; on a tie, the bet-placement slice's (the lock wait's target).
    row = min(rows, key=lambda r: (r.opened_at, r.slice != "bet-placement"))
    record = tracker.record(row, now=at)
    data = record.to_dict()
    k = record.kpis
    section = {
        "opened": True,
        **{key: data[key] for key in ("id", "slice", "title", "state", "impact_started_at", "detected_at",
                                      "mitigated_at", "time_to_detect_s", "time_to_mitigate_s",
                                      "user_impact_minutes", "bad_events", "budget_spent")},
        "impact_started_s": round(plan.at(k.impact_started_at), 1),
        "detected_s": round(plan.at(k.detected_at), 1),
        "mitigated_s": round(plan.at(k.mitigated_at), 1) if k.mitigated_at else None,
        "quiet_minutes": settings.incident_quiet_minutes,
        "top_change": data["changes"][0] if data["changes"] else None,
        "changes": len(data["changes"]),
        "policy": policy,
        "incidents": len(rows),
    }  # fmt: skip
    seqs = [s for s in (row.opened_seq, row.closed_seq) if s is not None] + [c.seq for c in record.changes]
    return section, (record.id, seqs)
