"""Checklist runs, attestations and waivers: kept in the control plane's store and appended to the
audit log, so a go/no-go, and what it leaned on, can be proven later.

Usage:

    att = attest(settings, store, check_id="incident-roles", by="ana", expires=timedelta(hours=24))
    waiver = waive(settings, store, check_id="risk-cache", requested_by="bo", approved_by="ana",
                   reason="cache rebuilt at 14:00", expires_at=event_end)
    save_run(settings, store, run)        # the run, each result, and a `checklist` audit entry
    save_run(settings, store, run, actor="ana")   # ... whose actor is the person who started it

Audit entries: a run is `checklist` / `checklist-run:<run_id>`; a waiver is `checklist` /
`waiver:<id>`; an attestation is `attestation` / `attestation:<id>`; a drill is `attestation` /
`drill:<kind>`.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Engine, Table, delete, select, update

from controlplane.auditing import AuditUnavailable, audit_append
from controlplane.checklist.results import ChecklistRun, CheckResult, RunSummary, evidence_digest, utc_text
from controlplane.checklist.tables import AttestationRow, WaiverRow, attestations_t, results_t, runs_t, waivers_t
from controlplane.clock import as_utc, utcnow
from controlplane.settings import Settings
from controlplane.storage import reader

RowModel = TypeVar("RowModel", AttestationRow, WaiverRow)


class RecordError(ValueError):
    """An attestation, waiver or drill the control plane refuses; the message says why and the fix."""


MAX_LIFETIME = timedelta(days=30)
SYSTEM_ACTOR = "controlplane"  # the actor of a run nobody in particular started (the scheduler, the CLI)


def new_id() -> str:
    return uuid.uuid4().hex[:16]


def _append(settings: Settings, entry: dict[str, Any]) -> int:
    try:
        return audit_append(settings, **entry)
    except AuditUnavailable as exc:
        raise RecordError(str(exc)) from None


def _recorded(
    settings: Settings, store: Engine, rows: list[tuple[Table, list[dict[str, Any]]]], entry: dict[str, Any]
) -> int:
    """Keep `rows` in the store and `entry` in the audit log, both or neither: the rows go in first
    (without their sequence number), are taken out again if the audit append fails, and get the
    entry's sequence number once it is appended."""
    with store.begin() as conn:
        for t, values in rows:
            conn.execute(t.insert(), values)
    try:
        seq = _append(settings, entry)
    except BaseException:
        with store.begin() as conn:
            for t, values in reversed(rows):
                key = t.primary_key.columns.values()[0]
                conn.execute(delete(t).where(key.in_({v[key.name] for v in values})))
        raise
    with store.begin() as conn:
        t, values = rows[0]
        key = t.primary_key.columns.values()[0]
        conn.execute(update(t).where(key == values[0][key.name]).values(audit_seq=seq))
    return seq


def until(expires: datetime | timedelta, now: datetime) -> datetime:
    """An expiry given as an instant, or as a lifetime counted from `now` (the moment it is recorded)."""
    if not isinstance(expires, timedelta):
        return expires
    try:
        return now + expires
    except OverflowError:
        raise RecordError(f"--expires: {expires.days} days is further than any date; give e.g. 24h") from None


def _name(value: str, flag: str) -> str:
    value = value.strip()
    if not value or len(value) > 200:
        raise RecordError(f"{flag} must name a person (1 to 200 characters)")
    return value


# -- attestations -----------------------------------------------------------------------------


def _as_model(model: type[RowModel], row: Any) -> RowModel:
    """A fetched (or fresh) row as its model, its times aware UTC (SQLite hands back naive ones)."""
    values = dict(row._mapping) if hasattr(row, "_mapping") else dict(row)
    return model(**values | {"created_at": as_utc(values["created_at"]), "expires_at": as_utc(values["expires_at"])})


def _attestation(row: Any) -> AttestationRow:
    return _as_model(AttestationRow, row)


def attest(
    settings: Settings,
    store: Engine,
    *,
    check_id: str,
    by: str,
    expires_at: datetime | timedelta,
    event: str | None = None,
    note: str | None = None,
) -> AttestationRow:
    now = utcnow()
    expires_at = until(expires_at, now)
    if as_utc(expires_at) <= now:
        raise RecordError("--expires must lie in the future, e.g. 24h")
    if as_utc(expires_at) - now > MAX_LIFETIME:
        raise RecordError(f"--expires: an attestation holds at most {MAX_LIFETIME.days} days; attest again later")
    row: dict[str, Any] = {
        "id": new_id(),
        "check_id": check_id,
        "event": event,
        "by": _name(by, "--by"),
        "note": note,
        "created_at": now,
        "expires_at": as_utc(expires_at),
    }
    payload = {"type": "attestation", **_attestation({**row, "audit_seq": None}).to_dict()}
    payload.pop("audit_seq")
    row["audit_seq"] = _recorded(
        settings,
        store,
        [(attestations_t, [row])],
        {"kind": "attestation", "actor": row["by"], "subject": f"attestation:{row['id']}", "payload": payload},
    )
    return _attestation(row)


def _newest(store: Engine, t: Table, check_id: str, *, at: datetime, event: str | None, valid: bool) -> Any:
    """The newest row of `t` for the check made by `at` that applies to this event (or to none in
    particular); with `valid`, only one still in force at `at`."""
    query = (
        select(t)
        .where(t.c.check_id == check_id, t.c.created_at <= at)
        .where((t.c.event.is_(None)) | (t.c.event == event) if event else t.c.event.is_(None))
        .order_by(t.c.created_at.desc())
        .limit(1)
    )
    if valid:
        query = query.where(t.c.expires_at > at)
    with reader(store).connect() as conn:
        return conn.execute(query).first()


def active_attestation(store: Engine, check_id: str, *, at: datetime, event: str | None) -> AttestationRow | None:
    """The newest attestation of the check valid at `at` (for this event, or for none in particular)."""
    row = _newest(store, attestations_t, check_id, at=at, event=event, valid=True)
    return _attestation(row) if row else None


def latest_attestation(store: Engine, check_id: str, *, at: datetime, event: str | None) -> AttestationRow | None:
    """The newest attestation of the check made by `at` that would apply to this event, expired or not."""
    row = _newest(store, attestations_t, check_id, at=at, event=event, valid=False)
    return _attestation(row) if row else None


# -- waivers ----------------------------------------------------------------------------------


def _waiver(row: Any) -> WaiverRow:
    return _as_model(WaiverRow, row)


def waive(
    settings: Settings,
    store: Engine,
    *,
    check_id: str,
    requested_by: str,
    approved_by: str,
    reason: str,
    expires_at: datetime | timedelta,
    event: str | None = None,
) -> WaiverRow:
    requested_by, approved_by = _name(requested_by, "--by"), _name(approved_by, "--approved-by")
    if requested_by.casefold() == approved_by.casefold():
        raise RecordError("a waiver needs a second person: --approved-by must differ from --by")
    if len(reason.strip()) < 10:
        raise RecordError("--reason must justify the waiver (at least 10 characters)")
    now = utcnow()
    expires_at = until(expires_at, now)
    if as_utc(expires_at) <= now:
        raise RecordError("the waiver would already have expired; give --expires in the future (e.g. 48h)")
    if as_utc(expires_at) - now > MAX_LIFETIME:
        raise RecordError(f"--expires: a waiver lasts at most {MAX_LIFETIME.days} days; waive again if it must go on")
    row: dict[str, Any] = {
        "id": new_id(),
        "check_id": check_id,
        "event": event,
        "requested_by": requested_by,
        "approved_by": approved_by,
        "reason": reason.strip(),
        "created_at": now,
        "expires_at": as_utc(expires_at),
    }
    payload = {"type": "waiver", **_waiver({**row, "audit_seq": None}).to_dict()}
    payload.pop("audit_seq")
    row["audit_seq"] = _recorded(
        settings,
        store,
        [(waivers_t, [row])],
        {"kind": "checklist", "actor": requested_by, "subject": f"waiver:{row['id']}", "payload": payload},
    )
    return _waiver(row)


def active_waiver(store: Engine, check_id: str, *, at: datetime, event: str | None) -> WaiverRow | None:
    """The newest waiver of the check in force at `at`; an expired waiver is simply not found."""
    row = _newest(store, waivers_t, check_id, at=at, event=event, valid=True)
    return _waiver(row) if row else None


# -- runs -------------------------------------------------------------------------------------


def save_run(settings: Settings, store: Engine, run: ChecklistRun, *, actor: str = SYSTEM_ACTOR) -> ChecklistRun:
    """Keep the run and every result in the store and append it to the audit log, both or neither; the
    audit entry's actor is who started the run (`controlplane` unless a person did)."""
    actor = _name(actor, "actor")
    head = {
        "run_id": run.run_id,
        "event": run.event,
        "at": run.at,
        "decision": run.decision,
        "spec_path": run.spec_path,
        "spec_digest": run.spec_digest,
        "created_at": utcnow(),
    }
    results = [
        {
            "run_id": run.run_id,
            "position": i,
            "check_id": c.id,
            "severity": c.severity,
            "status": c.status,
            "evidence_digest": evidence_digest(c.evidence),
            "result": json.dumps(c.to_dict(), sort_keys=True),
        }
        for i, c in enumerate(run.checks)
    ]
    entry = {
        "kind": "checklist",
        "actor": actor,
        "subject": f"checklist-run:{run.run_id}",
        "payload": run.audit_payload(),
    }
    seq = _recorded(settings, store, [(runs_t, [head]), (results_t, results)], entry)
    return replace(run, audit_seq=seq)


def load_run(store: Engine, run_id: str) -> ChecklistRun | None:
    with reader(store).connect() as conn:
        head = conn.execute(select(runs_t).where(runs_t.c.run_id == run_id)).first()
        if head is None:
            return None
        rows = conn.execute(
            select(results_t.c.result).where(results_t.c.run_id == run_id).order_by(results_t.c.position)
        ).scalars()
        checks = [CheckResult.from_dict(json.loads(text)) for text in rows]
    return ChecklistRun(
        run_id=head.run_id,
        event=head.event,
        at=as_utc(head.at),
        checks=checks,
        spec_path=head.spec_path,
        spec_digest=head.spec_digest,
        audit_seq=head.audit_seq,
    )


def list_runs(
    store: Engine,
    *,
    event: str | None = None,
    limit: int = 50,
    without_event: bool = False,
    until: datetime | None = None,
) -> list[RunSummary]:
    """The newest runs first: run id, event, time, decision, and counts by status (of one event, of runs
    for no event with `without_event`, or of all; made at or before `until` if given)."""
    query = select(runs_t).order_by(runs_t.c.at.desc(), runs_t.c.created_at.desc()).limit(limit)
    if until is not None:
        query = query.where(runs_t.c.at <= as_utc(until))
    if event is not None:
        query = query.where(runs_t.c.event == event)
    elif without_event:
        query = query.where(runs_t.c.event.is_(None))
    with reader(store).connect() as conn:
        heads = conn.execute(query).all()
        ids = [h.run_id for h in heads]
        counts: dict[str, dict[str, int]] = {i: {} for i in ids}
        if ids:
            for run_id, status in conn.execute(
                select(results_t.c.run_id, results_t.c.status).where(results_t.c.run_id.in_(ids))
            ):
                counts[run_id][status] = counts[run_id].get(status, 0) + 1
    return [RunSummary(h.run_id, h.event, as_utc(h.at), h.decision, counts[h.run_id], h.audit_seq) for h in heads]


# -- drills -----------------------------------------------------------------------------------

DRILL_KINDS = ("failover", "restore", "gameday")


@dataclass(frozen=True)
class Drill:
    """A drill as recorded: what, by whom, the note, when, and its audit entry."""

    drill: str
    by: str
    note: str
    recorded_at: datetime
    audit_seq: int


def record_drill(settings: Settings, *, kind: str, by: str, note: str) -> Drill:
    """A drill someone ran (failover, backup restore, game day), as an `attestation` entry `drill:<kind>`."""
    if kind not in DRILL_KINDS:
        raise RecordError(f"--kind must be one of {', '.join(DRILL_KINDS)}")
    if not note.strip():
        raise RecordError("--note must say what was drilled and what was learned")
    by = _name(by, "--by")
    at = utcnow()
    seq = _append(
        settings,
        {
            "kind": "attestation",
            "actor": by,
            "subject": f"drill:{kind}",
            "payload": {"type": "drill", "drill": kind, "by": by, "note": note.strip(), "recorded_at": utc_text(at)},
        },
    )
    return Drill(kind, by, note.strip(), at, seq)
