"""An incident's record computed from what is stored: the SLI per minute (the store), the alert
transitions (the store) and the changes (the audit log).

Usage:

    record = build_record(inputs, row, now=utcnow())   # row: an `incidents` row, open or closed
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select

from audit.query import FoundEntry, find_entries
from controlplane.clock import as_utc
from controlplane.formatting import burn, percent, utc_minute
from controlplane.incidents.kpis import IMPACT_LOOKBACK, AlertEpisode, Minutes, compute
from controlplane.incidents.record import Change, IncidentRecord, TimelineItem
from controlplane.markers import describe
from controlplane.scheduler.tables import transitions_t
from controlplane.slo.engine import load_counts
from controlplane.slo.periods import floor_minute, minute_index, minute_start, runs_of
from controlplane.slo.rolled import evaluate_all_from_rollups
from controlplane.slo.spec import EventSpec, SloSpec
from controlplane.storage import reader

CHANGES_BEFORE = timedelta(minutes=30)  # changes this long before the impact's start are candidates
ALERT_LOOKBACK = timedelta(days=1)  # an alert firing this long before the incident opened still joins it
CHANGE_LIMIT = 10_000


@dataclass(frozen=True)
class Inputs:
    """What a record is computed from: the store, the audit log, and the slice's SLOs as configured."""

    store: Engine
    audit: Engine | None  # None: no audit log, so no changes
    specs: list[SloSpec]
    events: dict[str, EventSpec]
    boundaries: tuple[float, ...]
    quiet: timedelta

    def slos_of(self, slice_name: str) -> list[SloSpec]:
        return [s for s in self.specs if s.slice == slice_name]


def load_minutes(inputs: Inputs, specs: list[SloSpec], start: datetime, end: datetime) -> Minutes:
    counts = {s.name: load_counts(inputs.store, s, start=start, end=end, boundaries=inputs.boundaries) for s in specs}
    return Minutes(counts=counts, allowed={s.name: 1.0 - s.objective for s in specs})


def alert_episodes(store: Engine, slos: list[str], opened_at: datetime, end: datetime) -> list[AlertEpisode]:
    """The alerts of these SLOs that fired by `end` and had not resolved before `opened_at`, each with
    its resolution if it came by `end`."""
    t = transitions_t
    with reader(store).connect() as conn:
        rows = conn.execute(
            select(t.c.slo, t.c.severity, t.c.state, t.c.at, t.c.started_at)
            .where(t.c.slo.in_(slos), t.c.at >= opened_at - ALERT_LOOKBACK, t.c.at <= end)
            .order_by(t.c.at)
        ).all()
    episodes: dict[tuple[str, str, datetime], datetime | None] = {}
    for slo, severity, state, at, started_at in rows:
        key = (slo, severity, as_utc(started_at))
        if state == "firing":
            episodes.setdefault(key, None)
        else:
            episodes[key] = as_utc(at)
    return sorted(
        (
            AlertEpisode(slo, severity, fired, resolved)
            for (slo, severity, fired), resolved in episodes.items()
            if fired <= end and (resolved is None or resolved >= opened_at)
        ),
        key=lambda a: (a.fired_at, a.slo, a.severity),
    )


def _change(entry: FoundEntry, impact: datetime) -> Change | None:
    if entry.kind == "checklist" and entry.subject.startswith("waiver:"):
        check = entry.payload.get("check_id", "?")
        described: tuple[str, str] | None = (f"waiver of check {check}", "waiver")
    else:
        described = describe(entry)
    if described is None:
        return None
    what, _category = described
    kind_type = str(entry.payload.get("type") or entry.subject.partition(":")[0])
    return Change(
        seq=entry.seq,
        at=as_utc(entry.time),
        actor=entry.actor,
        type=kind_type,
        reason=str(entry.payload.get("reason") or ""),
        subject=entry.subject,
        what=what,
        offset_s=round((as_utc(entry.time) - impact).total_seconds(), 3),
    )


def changes_near(audit: Engine | None, impact: datetime, end: datetime) -> list[Change]:
    """Changes (faults, config, SLOs, users, settlements, checklist waivers) from 30 minutes before the
    impact's start to `end`, nearest to the impact's start first."""
    if audit is None:
        return []
    since = impact - CHANGES_BEFORE
    found = find_entries(audit, kind="change", since=since, until=end, limit=CHANGE_LIMIT)
    found += find_entries(audit, kind="checklist", subject_prefix="waiver:", since=since, until=end, limit=CHANGE_LIMIT)
    changes = [c for c in (_change(e, impact) for e in found) if c is not None]
    return sorted(changes, key=lambda c: (abs(c.offset_s), c.seq))


def _checklist_runs(audit: Engine | None, start: datetime, end: datetime) -> list[TimelineItem]:
    if audit is None:
        return []
    found = find_entries(audit, kind="checklist", subject_prefix="checklist-run:", since=start, until=end, limit=100)
    items = []
    for entry in found:
        what = describe(entry)
        items.append(
            TimelineItem(
                as_utc(entry.time), "checklist", f"{what[0] if what else entry.subject} (audit seq {entry.seq})"
            )
        )
    return items


def _budget_spent(inputs: Inputs, specs: list[SloSpec], bad: dict[str, int], at: datetime) -> dict[str, float | None]:
    report = evaluate_all_from_rollups(inputs.store, specs, events=inputs.events, boundaries=inputs.boundaries, at=at)
    spent: dict[str, float | None] = {}
    for status in report.slos:
        total = status.budget_total_events
        spent[status.name] = round(bad.get(status.name, 0) / total, 6) if total > 0 else None
    return spent


def _timeline(
    minutes: Minutes,
    alerts: list[AlertEpisode],
    changes: list[Change],
    runs: list[TimelineItem],
    *,
    start: datetime,
    end: datetime,
    record: dict[str, Any],
) -> tuple[TimelineItem, ...]:
    items = list(runs)
    for a in alerts:
        items.append(TimelineItem(a.fired_at, "alert", f"{a.severity.upper()} {a.slo} fired"))
        if a.resolved_at is not None:
            items.append(TimelineItem(a.resolved_at, "alert", f"{a.severity} {a.slo} resolved"))
    for c in changes:
        reason = f": {c.reason}" if c.reason else ""
        items.append(TimelineItem(c.at, "change", f"{c.what} by {c.actor}{reason} (audit seq {c.seq})"))
    bad = [i for i in range(minute_index(start), minute_index(end)) if minutes.slice_bad(i)]
    for first, stop in runs_of(bad):
        n = stop - first
        worst = max(
            (c.bad[i - c.first] / c.events[i - c.first], name)
            for name, c in minutes.counts.items()
            for i in range(first, stop)
            if 0 <= i - c.first < len(c.events) and c.events[i - c.first]
        )
        text = (
            f"{n} bad minute{'s' if n != 1 else ''} to {utc_minute(minute_start(stop))}, "
            f"worst error ratio {percent(worst[0], 2)} ({worst[1]})"
        )
        items.append(TimelineItem(minute_start(first), "sli", text))
    for key, text in (
        ("impact_started_at", "impact started"),
        ("detected_at", "detected"),
        ("mitigated_at", "mitigated"),
        ("closed_at", "incident closed"),
    ):
        if record.get(key) is not None:
            items.append(TimelineItem(record[key], "incident", text))
    return tuple(sorted(items, key=lambda t: (t.at, t.source)))


def build_record(inputs: Inputs, row: Any, *, now: datetime, closed_at: datetime | None = None) -> IncidentRecord:
    """The record of the incident in `row` as of `now` (its close, for one being closed)."""
    opened_at = as_utc(row.opened_at)
    closed_at = closed_at or (as_utc(row.closed_at) if row.closed_at is not None else None)
    end = floor_minute(closed_at or now)
    specs = inputs.slos_of(row.slice)
    alerts = alert_episodes(inputs.store, [s.name for s in specs], opened_at, closed_at or now)
    start = floor_minute(min([opened_at, *(a.fired_at for a in alerts)]) - IMPACT_LOOKBACK)
    minutes = load_minutes(inputs, specs, start, end)
    kpis = compute(minutes, alerts, opened_at=opened_at, now=end, quiet=inputs.quiet)
    span_end = kpis.mitigated_at or end
    changes = changes_near(inputs.audit, kpis.impact_started_at, span_end)
    runs = _checklist_runs(inputs.audit, kpis.impact_started_at - CHANGES_BEFORE, span_end)
    budget = _budget_spent(inputs, specs, kpis.bad_events, floor_minute(span_end)) if specs else {}
    marks = {"impact_started_at": kpis.impact_started_at, "detected_at": kpis.detected_at,
             "mitigated_at": kpis.mitigated_at, "closed_at": closed_at}  # fmt: skip
    timeline = _timeline(
        minutes, alerts, changes, runs, start=kpis.impact_started_at - CHANGES_BEFORE, end=span_end, record=marks
    )
    return IncidentRecord(
        id=row.id,
        slice=row.slice,
        slos=tuple(s.name for s in specs),
        title=row.title,
        opened_at=opened_at,
        opened_by=row.opened_by,
        closed_at=closed_at,
        kpis=kpis,
        budget_spent=budget,
        alerts=tuple(alerts),
        changes=tuple(changes),
        timeline=timeline,
        as_of=closed_at or now,
    )


def page_title(slo: str, burn_rates: dict[str, float]) -> str:
    rate = burn_rates.get("1h")
    return f"{slo} paging" + (f": burn {burn(rate)} over 1h" if rate is not None else "")
