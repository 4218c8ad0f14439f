"""Checklist runs, attestations and waivers: kept in the control plane's store and appended to the
audit log, so a go/no-go, and what it leaned on, can be proven later.

Usage:

    att = attest(settings, store, check_id="incident-roles", by="ana", expires=timedelta(hours=24))
    waiver = waive(settings, store, check_id="risk-cache", requested_by="bo", approved_by="ana",
                   reason="cache rebuilt at 14:00", expires_at=event_end)
    save_run(settings, store, run)        # the run, each result, and a `checklist` audit entry

Audit entries: a run is `checklist` / `checklist-run:<run_id>`; a waiver is `checklist` /
`waiver:<id>`; an attestation is `attestation` / `attestation:<id>`; a drill is `attestation` /
`drill:<kind>`.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, Table, delete, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from controlplane.checklist.results import ChecklistRun, CheckResult, evidence_digest, utc_text
from controlplane.checklist.tables import (
    attestations_t,
    results_t,
    runs_t,
    waivers_t,
)
from controlplane.clock import as_utc, utcnow
from controlplane.settings import Settings
from controlplane.storage import StorageConfigError, make_engine, reader


class RecordError(ValueError):
    """An attestation, waiver or drill the control plane refuses; the message says why and the fix."""


MAX_LIFETIME = timedelta(days=30)


def new_id() -> str:
    return uuid.uuid4().hex[:16]


def audit_append(settings: Settings, *, kind: str, actor: str, subject: str, payload: dict) -> int:
    """Append one entry to the audit log at `settings.audit_url`; returns its sequence number.
    Raises RecordError (naming the log, password hidden) when the log cannot be written."""
    from audit.canonical import floats_as_strings
    from audit.log import AuditLog
    from audit.schema import migrate_audit

    try:
        engine = make_engine(settings.audit_url, **settings.engine_options())
    except StorageConfigError as exc:
        raise RecordError(f"CONTROLPLANE_AUDIT_URL: {exc}") from None
    try:
        migrate_audit(engine)
        log = AuditLog(engine, origin=settings.audit_origin)
        return log.append(kind=kind, actor=actor, subject=subject, payload=floats_as_strings(payload)).seq
    except SQLAlchemyError as exc:
        where = make_url(settings.audit_url).render_as_string(hide_password=True)
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise RecordError(f"the audit log at {where} cannot be written: {type(exc).__name__}: {first}") from None
    finally:
        engine.dispose()


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
        seq = audit_append(settings, **entry)
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


def attestation_dict(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "check_id": row.check_id,
        "event": row.event,
        "by": row.by,
        "note": row.note,
        "created_at": utc_text(as_utc(row.created_at)),
        "expires_at": utc_text(as_utc(row.expires_at)),
        "audit_seq": row.audit_seq,
    }


def attest(
    settings: Settings,
    store: Engine,
    *,
    check_id: str,
    by: str,
    expires_at: datetime | timedelta,
    event: str | None = None,
    note: str | None = None,
) -> dict[str, Any]:
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
    payload = {"type": "attestation", **attestation_dict(_Row({**row, "audit_seq": None}))}
    payload.pop("audit_seq")
    row["audit_seq"] = _recorded(
        settings,
        store,
        [(attestations_t, [row])],
        {"kind": "attestation", "actor": row["by"], "subject": f"attestation:{row['id']}", "payload": payload},
    )
    return attestation_dict(_Row(row))


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


def active_attestation(store: Engine, check_id: str, *, at: datetime, event: str | None) -> dict[str, Any] | None:
    """The newest attestation of the check valid at `at` (for this event, or for none in particular)."""
    row = _newest(store, attestations_t, check_id, at=at, event=event, valid=True)
    return attestation_dict(row) if row else None


def latest_attestation(store: Engine, check_id: str, *, at: datetime, event: str | None) -> dict[str, Any] | None:
    """The newest attestation of the check made by `at` that would apply to this event, expired or not."""
    row = _newest(store, attestations_t, check_id, at=at, event=event, valid=False)
    return attestation_dict(row) if row else None


# -- waivers ----------------------------------------------------------------------------------


def waiver_dict(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "check_id": row.check_id,
        "event": row.event,
        "requested_by": row.requested_by,
        "approved_by": row.approved_by,
        "reason": row.reason,
        "created_at": utc_text(as_utc(row.created_at)),
        "expires_at": utc_text(as_utc(row.expires_at)),
        "audit_seq": row.audit_seq,
    }


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
) -> dict[str, Any]:
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
    payload = {"type": "waiver", **waiver_dict(_Row({**row, "audit_seq": None}))}
    payload.pop("audit_seq")
    row["audit_seq"] = _recorded(
        settings,
        store,
        [(waivers_t, [row])],
        {"kind": "checklist", "actor": requested_by, "subject": f"waiver:{row['id']}", "payload": payload},
    )
    return waiver_dict(_Row(row))


def active_waiver(store: Engine, check_id: str, *, at: datetime, event: str | None) -> dict[str, Any] | None:
    """The newest waiver of the check in force at `at`; an expired waiver is simply not found."""
    row = _newest(store, waivers_t, check_id, at=at, event=event, valid=True)
    return waiver_dict(row) if row else None


# -- runs -------------------------------------------------------------------------------------


def save_run(settings: Settings, store: Engine, run: ChecklistRun) -> ChecklistRun:
    """Keep the run and every result in the store and append it to the audit log: both or neither."""
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
        "actor": "controlplane",
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
    store: Engine, *, event: str | None = None, limit: int = 50, without_event: bool = False
) -> list[dict[str, Any]]:
    """The newest runs first: run id, event, time, decision, and counts by status (of one event, of runs
    for no event with `without_event`, or of all)."""
    query = select(runs_t).order_by(runs_t.c.at.desc(), runs_t.c.created_at.desc()).limit(limit)
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
    return [
        {
            "run_id": h.run_id,
            "event": h.event,
            "at": utc_text(as_utc(h.at)),
            "decision": h.decision,
            "counts": counts[h.run_id],
            "audit_seq": h.audit_seq,
        }
        for h in heads
    ]


class _Row:
    """Attribute access over a dict, so fresh rows and fetched rows render alike."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)


# -- drills -----------------------------------------------------------------------------------

DRILL_KINDS = ("failover", "restore", "gameday")


def record_drill(settings: Settings, *, kind: str, by: str, note: str) -> dict[str, Any]:
    """A drill someone ran (failover, backup restore, game day), as an `attestation` entry `drill:<kind>`."""
    if kind not in DRILL_KINDS:
        raise RecordError(f"--kind must be one of {', '.join(DRILL_KINDS)}")
    if not note.strip():
        raise RecordError("--note must say what was drilled and what was learned")
    by = _name(by, "--by")
    at = utc_text(utcnow())
    seq = audit_append(
        settings,
        kind="attestation",
        actor=by,
        subject=f"drill:{kind}",
        payload={"type": "drill", "drill": kind, "by": by, "note": note.strip(), "recorded_at": at},
    )
    return {"drill": kind, "by": by, "note": note.strip(), "recorded_at": at, "audit_seq": seq}
