"""What changed, when and by whom, for the time charts: faults set and cleared, markets resulted (the
settlements), checklist runs, config, SLO and user changes, read from the audit log's `change` and
`checklist` entries, so the engineer sees "lock_wait fault set by riley.gameday" where the ratio jumps.

Usage:

    for m in change_markers(audit_engine, start, end):
        print(m.time, m.what, m.actor, m.reason)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from audit.query import FoundEntry, find_entries

MARKER_KINDS = ("change", "checklist")
LIMIT = 300  # per kind: a chart with more marks than this is unreadable anyway


@dataclass(frozen=True)
class ChangeMarker:
    seq: int
    time: datetime
    actor: str
    what: str
    reason: str
    subject: str
    category: str  # fault | settlement | checklist | config | market | access


def _fault(payload: dict[str, Any], verb: str) -> str:
    fault = payload.get("fault") or {}
    kind = fault.get("kind", "?") if isinstance(fault, dict) else "?"
    route = fault.get("route") if isinstance(fault, dict) else None
    return f"{kind} fault {verb}" + (f" on {route}" if route else "")


def describe(entry: FoundEntry) -> tuple[str, str] | None:
    """(what, category) of an entry worth a marker; None for entries that are not (odds ticks, waivers)."""
    kind, payload, subject = entry.kind, entry.payload, entry.subject
    kind_type = str(payload.get("type", ""))
    if kind == "checklist":
        if not subject.startswith("checklist-run:"):
            return None
        decision = payload.get("decision", "?")
        event = payload.get("event")
        return f"checklist run: {str(decision).upper()}" + (f" for {event}" if event else ""), "checklist"
    if kind_type in ("fault_set", "fault_cleared", "fault_expired"):
        return _fault(payload, kind_type.removeprefix("fault_")), "fault"
    if kind_type == "market_resulted":
        return f"{subject} resulted (settlement)", "settlement"
    if kind_type.startswith("market_"):
        return None  # created, odds changed: too frequent to mark
    return f"{subject} changed", "config"


def change_markers(audit: Engine, start: datetime, end: datetime) -> list[ChangeMarker]:
    """The changes recorded in [start, end), oldest first."""
    found: list[FoundEntry] = []
    for kind in MARKER_KINDS:
        found += find_entries(audit, kind=kind, since=start, until=end, limit=LIMIT, newest_first=True)
    markers = []
    for entry in sorted(found, key=lambda e: e.seq):
        described = describe(entry)
        if described is None:
            continue
        what, category = described
        reason = entry.payload.get("reason") or ""
        markers.append(ChangeMarker(entry.seq, entry.time, entry.actor, what, str(reason), entry.subject, category))
    return markers
