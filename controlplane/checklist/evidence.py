"""Evidence from people and the audit log: drills and game days within N days, and attestations that
have not expired."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from audit.query import find_entries
from controlplane.checklist.context import CheckContext
from controlplane.checklist.records import active_attestation, latest_attestation
from controlplane.checklist.results import Outcome, utc_text
from controlplane.checklist.spec import AuditEvidence

DRILL_HINT = "record one with `controlplane drill record --kind {kind} --by NAME --note TEXT` after the drill"


def _found(entry: Any, what: str) -> dict[str, Any]:
    return {
        "what": what,
        "seq": entry.seq,
        "time": utc_text(entry.time),
        "actor": entry.actor,
        "subject": entry.subject,
    }


def audit_evidence(params: AuditEvidence, ctx: CheckContext) -> Outcome:

    since = ctx.at - timedelta(days=params.within_days)
    until = ctx.at + timedelta(microseconds=1)
    found: list[dict[str, Any]] = []
    for kind in params.kinds:
        for entry in find_entries(ctx.audit, kind="attestation", subject=f"drill:{kind}", since=since, until=until):
            found.append(_found(entry, f"{kind} drill") | {"note": entry.payload.get("note")})
        if kind == "gameday":
            for entry in find_entries(ctx.audit, kind="change", subject_prefix="fault:", since=since, until=until):
                fault = entry.payload.get("fault") or {}
                probe = fault.get("synthetic_only") or entry.actor == "checklist" or fault.get("actor") == "checklist"
                if entry.payload.get("type") == "fault_set" and not probe:
                    found.append(_found(entry, f"game-day fault {fault.get('kind', '?')}"))
    found.sort(key=lambda f: f["seq"])
    kinds = " or ".join(params.kinds)
    evidence = {
        "kinds": params.kinds,
        "since": utc_text(since),
        "until": utc_text(ctx.at),
        "found": found[-5:],
        "count": len(found),
    }
    if not found:
        return Outcome.failed(
            f"no {kinds} in the audit log in the last {params.within_days} days; "
            + DRILL_HINT.format(kind=params.kinds[0]),
            **evidence,
        )
    last = found[-1]
    evidence["audit_seqs"] = [last["seq"]]  # exported with the run: the entry this pass rests on
    return Outcome.passed(f"{last['what']} at {last['time']} by {last['actor']} (audit seq {last['seq']})", **evidence)


def attestation(check_id: str, ctx: CheckContext) -> tuple[Outcome, dict[str, Any] | None]:
    """The check's unexpired attestation, if any, and the outcome it gives."""
    event = ctx.event.name if ctx.event else None
    current = active_attestation(ctx.store, check_id, at=ctx.at, event=event)
    hint = f"`controlplane checklist attest {check_id} --by NAME --expires 24h`"
    if current is not None:
        shown = current.to_dict()
        return (
            Outcome.passed(
                f"attested by {current.by} until {shown['expires_at']}",
                attestation_id=current.id,
                by=current.by,
                expires_at=shown["expires_at"],
            ),
            shown,
        )
    last = latest_attestation(ctx.store, check_id, at=ctx.at, event=event)
    before = last.to_dict() if last is not None else None
    if last is not None and last.expires_at <= ctx.at:
        return (
            Outcome.failed(
                f"the attestation by {last.by} expired at {utc_text(last.expires_at)}; attest again with {hint}",
                last_attestation=before,
            ),
            None,
        )
    return Outcome.failed(f"nobody has attested this; the owner attests with {hint}", last_attestation=before), None
