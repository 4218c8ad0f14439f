"""An incident's record as the CLI, the dashboard, the audit log and the proof bundle carry it: what
happened on which slice, its key figures (`kpis.py`), each alert, and what changed around it.

`to_dict()` is the JSON form (`controlplane incidents show ID --format json`); a closed incident's
record is kept in that form and read back with `IncidentRecord.from_dict`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from controlplane.clock import as_utc, utc_text
from controlplane.incidents.kpis import AlertEpisode, Kpis


def _time(value: datetime | None) -> str | None:
    return None if value is None else utc_text(value)


def _parse(value: Any) -> datetime | None:
    return None if value is None else as_utc(datetime.fromisoformat(str(value).replace("Z", "+00:00")))


def _required(value: Any) -> datetime:
    parsed = _parse(value)
    if parsed is None:
        raise ValueError("a time is missing")
    return parsed


@dataclass(frozen=True)
class Change:
    """An audit entry of a change near the incident, `offset_s` seconds from the impact's start."""

    seq: int
    at: datetime
    actor: str
    type: str
    reason: str
    subject: str
    what: str
    offset_s: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "at": utc_text(self.at),
            "actor": self.actor,
            "type": self.type,
            "reason": self.reason,
            "subject": self.subject,
            "what": self.what,
            "offset_s": self.offset_s,
        }


@dataclass(frozen=True)
class TimelineItem:
    """One line of the incident's timeline: an alert, a change, a checklist run or a run of bad minutes."""

    at: datetime
    source: str  # alert | change | checklist | sli
    text: str

    def to_dict(self) -> dict[str, Any]:
        return {"at": utc_text(self.at), "source": self.source, "text": self.text}


@dataclass(frozen=True)
class IncidentRecord:
    id: str
    slice: str
    slos: tuple[str, ...]
    title: str
    opened_at: datetime
    opened_by: str
    closed_at: datetime | None
    kpis: Kpis
    budget_spent: dict[str, float | None]  # slo -> the fraction of its budget the impact span consumed
    alerts: tuple[AlertEpisode, ...]
    changes: tuple[Change, ...]  # nearest to the impact's start first
    timeline: tuple[TimelineItem, ...]  # oldest first
    as_of: datetime  # when the figures were computed (the close, for a closed incident)

    @property
    def state(self) -> str:
        return "open" if self.closed_at is None else "closed"

    def to_dict(self) -> dict[str, Any]:
        k = self.kpis
        return {
            "id": self.id,
            "slice": self.slice,
            "slos": list(self.slos),
            "title": self.title,
            "state": self.state,
            "opened_by": self.opened_by,
            "opened_at": utc_text(self.opened_at),
            "closed_at": _time(self.closed_at),
            "impact_started_at": utc_text(k.impact_started_at),
            "detected_at": utc_text(k.detected_at),
            "mitigated_at": _time(k.mitigated_at),
            "resolved_at": _time(k.resolved_at),
            "time_to_detect_s": k.time_to_detect_s,
            "time_to_mitigate_s": k.time_to_mitigate_s,
            "user_impact_minutes": k.user_impact_minutes,
            "bad_events": dict(k.bad_events),
            "budget_spent": dict(self.budget_spent),
            "alerts": [
                {
                    "slo": a.slo,
                    "severity": a.severity,
                    "fired_at": utc_text(a.fired_at),
                    "resolved_at": _time(a.resolved_at),
                }
                for a in self.alerts
            ],
            "changes": [c.to_dict() for c in self.changes],
            "timeline": [t.to_dict() for t in self.timeline],
            "as_of": utc_text(self.as_of),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IncidentRecord:
        def at(key: str) -> datetime:
            return _required(data[key])

        return cls(
            id=str(data["id"]),
            slice=str(data["slice"]),
            slos=tuple(data["slos"]),
            title=str(data["title"]),
            opened_at=at("opened_at"),
            opened_by=str(data["opened_by"]),
            closed_at=_parse(data.get("closed_at")),
            kpis=Kpis(
                impact_started_at=at("impact_started_at"),
                detected_at=at("detected_at"),
                mitigated_at=_parse(data.get("mitigated_at")),
                resolved_at=_parse(data.get("resolved_at")),
                user_impact_minutes=int(data["user_impact_minutes"]),
                bad_events={str(k): int(v) for k, v in data["bad_events"].items()},
            ),
            budget_spent={str(k): None if v is None else float(v) for k, v in data["budget_spent"].items()},
            alerts=tuple(
                AlertEpisode(a["slo"], a["severity"], _required(a["fired_at"]), _parse(a.get("resolved_at")))
                for a in data["alerts"]
            ),
            changes=tuple(
                Change(
                    seq=int(c["seq"]),
                    at=_required(c["at"]),
                    actor=str(c["actor"]),
                    type=str(c["type"]),
                    reason=str(c["reason"]),
                    subject=str(c["subject"]),
                    what=str(c.get("what", "")),
                    offset_s=float(c["offset_s"]),
                )
                for c in data["changes"]
            ),
            timeline=tuple(
                TimelineItem(_required(t["at"]), str(t["source"]), str(t["text"])) for t in data["timeline"]
            ),
            as_of=at("as_of"),
        )
