"""Proof bundles a regulator verifies offline (`python -m audit.verify bundle.json --key VKEY`): every
entry about a bet, a checklist run with what it relied on, or a range of the log.

Usage:

    log, ring = open_audit(settings)      # controlplane.auditing
    bundle = export_bundle(log, ring, seqs_for_bet(log, 42))
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from audit.keys import KeyRing
from audit.log import AuditLog
from audit.note import NoteError, open_note
from audit.query import find_entries
from audit.schema import entries


class ProofError(ValueError):
    """Nothing to prove, or the log cannot prove it; the message says what to give instead."""


def seqs_for_bet(log: AuditLog, bet_id: int) -> list[int]:
    with log.engine.connect() as conn:
        seqs = list(conn.execute(select(entries.c.seq).where(entries.c.subject == f"bet:{bet_id}")).scalars())
    if not seqs:
        raise ProofError(f"no audit entry about bet {bet_id}; check the bet id")
    return seqs


def seqs_for_checklist_run(log: AuditLog, run_id: str) -> list[int]:
    """The run's entry, the entries of the waivers and attestations its results name, and the audit
    entries its evidence rests on (drills, game days)."""
    found = find_entries(log.engine, kind="checklist", subject=f"checklist-run:{run_id}")
    if not found:
        raise ProofError(f"no checklist run {run_id!r} in the audit log; `controlplane checklist history` lists runs")
    seqs = [entry.seq for entry in found]
    for check in found[0].payload.get("checks", []):
        for prefix, key in (("waiver", "waiver_id"), ("attestation", "attestation_id")):
            if check.get(key):
                seqs += [e.seq for e in find_entries(log.engine, subject=f"{prefix}:{check[key]}")]
        seqs += [int(seq) for seq in check.get("audit_seqs", [])]
    return seqs


def seqs_for_incident(log: AuditLog, incident: str, *, open_changes: list[int] | None = None) -> list[int]:
    """The incident's opening and closing entries (the closing one holds its whole record) and the entry of
    every change its record names. An incident still open has no closing entry yet: give the changes its
    live record names (`open_changes`) to prove what is known so far."""
    found = find_entries(log.engine, kind="incident", subject=f"incident:{incident}")
    if not found:
        raise ProofError(f"no incident {incident!r} in the audit log; `controlplane incidents list` shows their ids")
    closed = [e for e in found if e.payload.get("type") == "closed"]
    if closed:
        record = closed[-1].payload.get("record") or {}
        return [e.seq for e in found] + [int(c["seq"]) for c in record.get("changes", [])]
    if open_changes is None:
        raise ProofError(f"incident {incident} is still open: its record is written when it closes; export it then")
    return [e.seq for e in found] + list(open_changes)


def seqs_for_range(first: int, last: int) -> list[int]:
    if first < 0 or last < first:
        raise ProofError("--to-seq must not be below --from-seq (a range runs from a first sequence number to a last)")
    if last - first >= 100_000:
        raise ProofError("a bundle holds at most 100,000 entries; export a shorter range")
    return list(range(first, last + 1))


def export_bundle(log: AuditLog, ring: KeyRing, seqs: list[int]) -> dict[str, Any]:
    """The entries with their inclusion proofs against the latest signed checkpoint, and the verifier key
    that checkpoint was signed with (after a key rotation it may be an older one). Raises AuditError (no
    checkpoint yet, an entry beyond it), KeyError (an unknown sequence number) or ProofError."""
    bundle = log.export(sorted(set(seqs)), verifier_key="")
    for verifier in ring.verifiers():
        try:
            open_note(bundle["checkpoint"], verifier)
        except NoteError:
            continue
        bundle["verifier_key"] = str(verifier)
        return bundle
    raise ProofError("no key of this log's key ring signed its latest checkpoint; check CONTROLPLANE_AUDIT_KEY_DIR")
