"""Proof bundles a regulator verifies offline (`python -m audit.verify bundle.json --key VKEY`): every
entry about a bet, a checklist run with what it relied on, or a range of the log.

Usage:

    log, ring = open_audit(settings)
    bundle = export_bundle(log, ring, seqs_for_bet(log, 42))
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from audit.keys import KeyRing
from audit.log import AuditLog
from audit.note import NoteError, open_note
from audit.query import find_entries
from audit.schema import entries, migrate_audit
from controlplane.settings import Settings
from controlplane.storage import make_engine


class ProofError(ValueError):
    """Nothing to prove, or the log cannot prove it; the message says what to give instead."""


def key_ring(settings: Settings) -> KeyRing:
    passphrase = settings.audit_key_passphrase.get_secret_value().encode() if settings.audit_key_passphrase else None
    return KeyRing(
        settings.audit_key_dir,
        name=settings.audit_origin,
        passphrase=passphrase,
        development=settings.environment != "production",
    )


def open_audit(settings: Settings, *, signing: bool = True) -> tuple[AuditLog, KeyRing]:
    """The log (migrated), its key ring, and (when signing) the current signer. Raises StorageConfigError
    for a bad URL and AuditKeyError for keys that cannot be opened."""
    engine = make_engine(settings.audit_url, **settings.engine_options())
    try:
        migrate_audit(engine)
        ring = key_ring(settings)
        signer = ring.signer() if signing else None
    except BaseException:
        engine.dispose()
        raise
    return AuditLog(engine, origin=settings.audit_origin, signer=signer), ring


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
