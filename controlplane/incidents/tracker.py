"""Incidents opened by page alerts or declared by a person, closed when it is over, each opening and
closing appended to the audit log (kind `incident`, subject `incident:<id>`).

- `track(...)` (the scheduler's `incidents` job, every minute): each page alert that started firing on
  a slice without an open incident opens one; an open incident closes once every alert in it has
  resolved and the slice's SLI has stayed within objective for the quiet period. Runs are idempotent:
  an incident's id is its slice and the minute it opened, and pages are replayed in time order (an
  incident closes before a later page on its slice opens the next).
- `declare(...)`: `controlplane incidents declare --slice S --by NAME --title T`.

Usage:

    tracker = Tracker(settings, store)
    tracker.track(now=utcnow())                     # -> TrackResult(opened=[...], closed=[...])
    tracker.declare("bet-placement", by="ana", title="odds stuck", now=utcnow())
    tracker.record("20261204-2107-bet-placement", now=utcnow())   # -> IncidentRecord
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, delete, or_, select, update

from controlplane.auditing import audit_append, audit_engine
from controlplane.clock import as_utc, utc_text
from controlplane.config import ControlPlaneConfig, load_config
from controlplane.incidents.build import Inputs, build_record, page_title
from controlplane.incidents.record import IncidentRecord
from controlplane.incidents.tables import incidents_t
from controlplane.scheduler.tables import transitions_t
from controlplane.settings import Settings
from controlplane.slo.periods import floor_minute
from controlplane.storage import reader

SYSTEM_ACTOR = "controlplane"
PAGE_LOOKBACK = timedelta(days=7)  # pages older than this never open an incident (first run, long outages)


class IncidentError(ValueError):
    """An incident the control plane cannot find or refuses to open; the message names the fix."""


@dataclass
class TrackResult:
    opened: list[str] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"opened": self.opened, "closed": self.closed}


def incident_id(slice_name: str, opened_at: datetime) -> str:
    return f"{as_utc(opened_at):%Y%m%d-%H%M}-{slice_name}"


class Tracker:
    def __init__(
        self,
        settings: Settings,
        store: Engine,
        *,
        config: ControlPlaneConfig | None = None,
        audit: Engine | None = None,
    ) -> None:
        self.settings, self.store = settings, store
        config = config or load_config(settings)
        self._audit = audit
        self.inputs = Inputs(
            store=store,
            audit=audit,
            specs=config.specs,
            events=config.events,
            boundaries=config.boundaries,
            quiet=timedelta(minutes=settings.incident_quiet_minutes),
        )
        self.slices = set(config.slice_names) | {s.slice for s in config.specs}

    def _with_audit(self) -> Inputs:
        if self.inputs.audit is None:
            self.inputs = replace(self.inputs, audit=audit_engine(self.settings))
        return self.inputs

    # reading

    def rows(self, *, since: datetime | None = None, until: datetime | None = None) -> list[Any]:
        t = incidents_t
        query = select(t).order_by(t.c.opened_at.desc(), t.c.id)
        if since is not None:
            query = query.where(t.c.opened_at >= since)
        if until is not None:
            query = query.where(t.c.opened_at < until)
        with reader(self.store).connect() as conn:
            return list(conn.execute(query).all())

    def row(self, incident: str) -> Any:
        with reader(self.store).connect() as conn:
            found = conn.execute(select(incidents_t).where(incidents_t.c.id == incident)).first()
        if found is None:
            raise IncidentError(f"no incident {incident!r}; `controlplane incidents list` shows their ids")
        return found

    def record(self, incident: str | Any, *, now: datetime) -> IncidentRecord:
        """The record of an incident: as kept at its close, or computed now while it is open."""
        row = self.row(incident) if isinstance(incident, str) else incident
        if row.record is not None:
            return IncidentRecord.from_dict(json.loads(row.record))
        return build_record(self._with_audit(), row, now=now)

    def _open_on(self, slice_name: str, at: datetime) -> Any | None:
        """The incident on the slice open at `at` (opened by then, not closed before)."""
        t = incidents_t
        with reader(self.store).connect() as conn:
            return conn.execute(
                select(t)
                .where(t.c.slice == slice_name, t.c.opened_at <= at, or_(t.c.closed_at.is_(None), t.c.closed_at > at))
                .order_by(t.c.opened_at.desc())
            ).first()

    # writing

    def _open(self, slice_name: str, *, at: datetime, by: str, title: str, detail: dict[str, Any]) -> str:
        ident = incident_id(slice_name, at)
        values = {"id": ident, "slice": slice_name, "title": title[:200], "opened_at": at, "opened_by": by}
        with self.store.begin() as conn:
            conn.execute(incidents_t.insert(), values)
        try:
            seq = audit_append(
                self.settings,
                kind="incident",
                actor=by,
                subject=f"incident:{ident}",
                payload={"type": "opened", "slice": slice_name, "title": title, "opened_at": utc_text(at), **detail},
            )
        except BaseException:
            with self.store.begin() as conn:
                conn.execute(delete(incidents_t).where(incidents_t.c.id == ident))
            raise
        with self.store.begin() as conn:
            conn.execute(update(incidents_t).where(incidents_t.c.id == ident).values(opened_seq=seq))
        return ident

    def _close(self, row: Any, record: IncidentRecord) -> None:
        assert record.closed_at is not None
        data = record.to_dict()
        claimed = and_(incidents_t.c.id == row.id, incidents_t.c.closed_at.is_(None))
        with self.store.begin() as conn:
            done = conn.execute(
                update(incidents_t).where(claimed).values(closed_at=record.closed_at, record=json.dumps(data))
            ).rowcount
        if not done:
            return  # closed meanwhile by another run
        try:
            seq = audit_append(
                self.settings,
                kind="incident",
                actor=SYSTEM_ACTOR,
                subject=f"incident:{row.id}",
                payload={"type": "closed", "record": data},
            )
        except BaseException:
            with self.store.begin() as conn:
                conn.execute(update(incidents_t).where(incidents_t.c.id == row.id).values(closed_at=None, record=None))
            raise
        with self.store.begin() as conn:
            conn.execute(update(incidents_t).where(incidents_t.c.id == row.id).values(closed_seq=seq))

    def close_if_over(self, row: Any, *, now: datetime) -> bool:
        """Close the open incident in `row` if, as of `now`, every alert in it has resolved and the SLI has
        stayed within objective for the quiet period; it closes at the later of the two."""
        record = build_record(self._with_audit(), row, now=now)
        k = record.kpis
        if k.mitigated_at is None or any(a.resolved_at is None for a in record.alerts):
            return False
        ends = [k.mitigated_at + self.inputs.quiet, as_utc(row.opened_at) + self.inputs.quiet]
        closed_at = max([*ends, *(a.resolved_at for a in record.alerts if a.resolved_at)])
        if closed_at > now:
            return False
        self._close(row, build_record(self.inputs, row, now=now, closed_at=closed_at))
        return True

    def declare(self, slice_name: str, *, by: str, title: str, now: datetime) -> str:
        if slice_name not in self.slices:
            known = ", ".join(sorted(self.slices)) or "none configured"
            raise IncidentError(f"no slice {slice_name!r} (known: {known}); see config/slices.yaml")
        if not by.strip() or not title.strip():
            raise IncidentError("--by and --title must not be empty: say who declares it and what users see")
        if len(by.strip()) > 64 or len(title.strip()) > 200:
            raise IncidentError("--by takes at most 64 characters and --title at most 200; shorten them")
        at = floor_minute(now)
        open_now = self._open_on(slice_name, now)
        if open_now is not None:
            raise IncidentError(
                f"incident {open_now.id} is already open on {slice_name}; it gathers what happens there"
            )
        if self._exists(incident_id(slice_name, at)):
            raise IncidentError(f"an incident on {slice_name} opened this minute; wait a minute and declare again")
        return self._open(slice_name, at=at, by=by.strip(), title=title.strip(), detail={"declared": True})

    def _exists(self, ident: str) -> bool:
        with reader(self.store).connect() as conn:
            return conn.execute(select(incidents_t.c.id).where(incidents_t.c.id == ident)).first() is not None

    def _pages(self, since: datetime, until: datetime) -> list[Any]:
        t = transitions_t
        with reader(self.store).connect() as conn:
            return list(
                conn.execute(
                    select(t.c.slo, t.c.slice, t.c.at, t.c.detail)
                    .where(t.c.severity == "page", t.c.state == "firing", t.c.at >= since, t.c.at <= until)
                    .order_by(t.c.at, t.c.slo)
                ).all()
            )

    def _still_open(self) -> list[Any]:
        with reader(self.store).connect() as conn:
            return list(conn.execute(select(incidents_t).where(incidents_t.c.closed_at.is_(None))).all())

    def track(self, *, now: datetime) -> TrackResult:
        """Open an incident for each page without one, close those that are over (see the module)."""
        result = TrackResult()
        for page in self._pages(now - PAGE_LOOKBACK, now):
            at = as_utc(page.at)
            current = self._open_on(page.slice, at)
            just_before = at - timedelta(microseconds=1)  # as of the page, without it: was the incident over?
            earlier = current is not None and as_utc(current.opened_at) < at
            if (
                current is not None
                and earlier
                and current.closed_at is None
                and self.close_if_over(current, now=just_before)
            ):
                result.closed.append(current.id)
                current = None
            if current is not None or self._exists(incident_id(page.slice, at)):
                continue
            if any(r.slice == page.slice and as_utc(r.opened_at) > at for r in self._still_open()):
                continue  # declared after this page fired, before this run saw it: the page joins that one
            detail = json.loads(page.detail) if page.detail else {}
            rates = {str(k): float(v) for k, v in (detail.get("burn_rates") or {}).items()}
            result.opened.append(
                self._open(
                    page.slice,
                    at=at,
                    by=SYSTEM_ACTOR,
                    title=page_title(page.slo, rates),
                    detail={"alert": {"slo": page.slo, "severity": "page", "at": utc_text(at), "burn_rates": rates}},
                )
            )
        for row in self._still_open():
            if self.close_if_over(row, now=now):
                result.closed.append(row.id)
        return result
