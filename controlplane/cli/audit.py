"""`controlplane audit`: the tamper-evident audit log: append, checkpoint, keys, verify, prove, export."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from audit.canonical import NotCanonical
from audit.keys import AuditKeyError, KeyRing
from audit.log import AuditError, AuditLog
from audit.sink import check_money
from controlplane.auditing import AuditUnavailable, open_audit
from controlplane.cli import audit_stream
from controlplane.cli.common import (
    EXIT_CRITICAL,
    TableOrJson,
    config_or_exit,
    fail,
    load_settings,
    store_engine,
)
from controlplane.clock import parse_since, utcnow
from controlplane.proofs import (
    ProofError,
    export_bundle,
    seqs_for_bet,
    seqs_for_checklist_run,
    seqs_for_incident,
    seqs_for_range,
)
from controlplane.settings import Settings

audit_app = typer.Typer(
    help="The tamper-evident audit log: append, checkpoint, prove, export, verify.", no_args_is_help=True
)
AuditUrl = Annotated[
    str | None,
    typer.Option(
        "--audit-url",
        help="The audit log's database (default: $CONTROLPLANE_AUDIT_URL, else sqlite:///./var/audit.db).",
    ),
]


def _audit(settings: Settings, *, signing: bool = True) -> tuple[AuditLog, KeyRing]:
    """The log, its key ring, and (when signing) the current signer."""
    try:
        return open_audit(settings, signing=signing)
    except (AuditUnavailable, AuditKeyError) as exc:
        raise fail(str(exc)) from None


@audit_app.command("append")
def audit_append(
    kind: Annotated[
        str, typer.Option(help="change, money, checklist, attestation, access, incident, policy or system.")
    ],
    actor: Annotated[str, typer.Option(help="Who did it.")],
    subject: Annotated[str, typer.Option(help="What it is about, e.g. bet:42 or slo:bet-placement.")],
    payload: Annotated[str, typer.Option(help="A JSON object (integers for money; no floats).")],
    audit_url: AuditUrl = None,
) -> None:
    """Append one entry; prints its sequence number and leaf hash."""

    try:
        document = json.loads(payload)
    except ValueError as exc:
        raise fail(f"--payload is not JSON ({exc}); give an object such as '{{\"amount_minor\": 500}}'") from None
    if not isinstance(document, dict):
        raise fail("--payload must be a JSON object")
    log, _ring = _audit(load_settings(audit_url=audit_url), signing=False)
    try:
        appended = log.append(kind=kind, actor=actor, subject=subject, payload=document)
    except (AuditError, NotCanonical) as exc:
        raise fail(str(exc)) from None
    typer.echo(json.dumps({"seq": appended.seq, "leaf_hash": appended.leaf_hash}))


@audit_app.command("checkpoint")
def audit_checkpoint(
    every: Annotated[float | None, typer.Option("--every", hidden=True)] = None,
    audit_url: AuditUrl = None,
) -> None:
    """Sign the current tree head (C2SP checkpoint) once; never signs one inconsistent with the last.

    For a checkpoint every few minutes run `controlplane scheduler` (job `checkpoint`) or cron."""

    if every is not None:
        raise fail(
            "--every is gone: periodic checkpoints are the scheduler's `checkpoint` job "
            "(`controlplane scheduler`, cadence in the scheduler config), or a cron line running "
            "`controlplane audit checkpoint`"
        )
    log, _ring = _audit(load_settings(audit_url=audit_url))
    try:
        typer.echo(log.checkpoint(), nl=False)
    except AuditError as exc:
        raise fail(str(exc), EXIT_CRITICAL) from None


@audit_app.command("verifier-key")
def audit_verifier_key(
    all_keys: Annotated[bool, typer.Option("--all", help="Every key ever used, with dates.")] = False,
    audit_url: AuditUrl = None,
) -> None:
    """Print the signed-note verifier key (name+keyid+base64) to give to whoever verifies the log."""
    _log, ring = _audit(load_settings(audit_url=audit_url))
    if all_keys:
        typer.echo(json.dumps(ring.verifier_keys(), indent=2))
    else:
        typer.echo(ring.signer().verifier_key())


@audit_app.command("rotate-key")
def audit_rotate_key(audit_url: AuditUrl = None) -> None:
    """Start signing with a new key; the old ones stay verifiers of the checkpoints they signed."""
    _log, ring = _audit(load_settings(audit_url=audit_url))
    typer.echo(ring.rotate().verifier_key())


@audit_app.command("verify")
def audit_verify(audit_url: AuditUrl = None) -> None:
    """Check chain, leaves, tree and every checkpoint. Exit 0 intact; 2 names the first bad entry."""
    log, ring = _audit(load_settings(audit_url=audit_url), signing=False)
    result = log.verify(*ring.verifiers())
    if result.ok:
        typer.echo(f"OK: {result.entries} entries, {result.checkpoints} checkpoints verified")
        return
    typer.echo(f"FAILED at seq {result.first_bad_seq}: {result.problem}", err=True)
    raise typer.Exit(EXIT_CRITICAL)


@audit_app.command("check-money")
def audit_check_money(audit_url: AuditUrl = None) -> None:
    """Money invariants from the log alone: every settlement has its placement, payouts are stake x
    bound odds. Exit 0 when they hold, 2 listing what does not."""

    log, _ring = _audit(load_settings(audit_url=audit_url), signing=False)
    result = check_money(log)
    if result.ok:
        typer.echo(f"OK: {result.bets} bets, every settlement placed and paid as bound")
        return
    for problem in result.problems[:50]:
        typer.echo(problem, err=True)
    raise typer.Exit(EXIT_CRITICAL)


@audit_app.command("prove")
def audit_prove(
    seq: Annotated[int, typer.Option("--seq", help="The entry to prove.", min=0)],
    audit_url: AuditUrl = None,
) -> None:
    """An inclusion proof of one entry against the latest signed checkpoint (JSON)."""

    log, ring = _audit(load_settings(audit_url=audit_url))
    try:
        bundle = log.export([seq], verifier_key=ring.signer().verifier_key())
    except (AuditError, KeyError) as exc:
        raise fail(str(exc)) from None
    typer.echo(json.dumps(bundle, indent=2))


def _open_incident_changes(settings: Settings, log: AuditLog, incident: str) -> list[int] | None:
    """The changes an open incident's live record names, read from the log being exported (None if it is
    closed, or not in the store)."""
    from controlplane.incidents.tracker import IncidentError, Tracker

    try:
        tracker = Tracker(settings, store_engine(settings), config=config_or_exit(settings), audit=log.engine)
        row = tracker.row(incident)
    except IncidentError:
        return None
    if row.closed_at is not None:
        return None
    return [c.seq for c in tracker.record(row, now=utcnow()).changes]


@audit_app.command("export")
def audit_export(
    out: Annotated[Path, typer.Option("--out", help="Where to write the bundle (JSON).")],
    from_seq: Annotated[int | None, typer.Option("--from-seq", min=0)] = None,
    to_seq: Annotated[int | None, typer.Option("--to-seq", min=0)] = None,
    bet: Annotated[int | None, typer.Option("--bet", help="Every entry about this bet.")] = None,
    checklist_run: Annotated[
        str | None,
        typer.Option("--checklist-run", help="A checklist run, with the waivers and attestations it relied on."),
    ] = None,
    incident: Annotated[
        str | None, typer.Option("--incident", help="A closed incident: its record and the changes it names.")
    ] = None,
    audit_url: AuditUrl = None,
) -> None:
    """A proof bundle that verifies offline: `python -m audit.verify bundle.json --key VKEY`."""

    ranges = from_seq is not None or to_seq is not None
    given = (ranges, bet is not None, checklist_run is not None, incident is not None)
    if sum(given) != 1 or (ranges and None in (from_seq, to_seq)):
        raise fail("give one of --from-seq A --to-seq B, --bet ID, --checklist-run RUN_ID or --incident ID")
    settings = load_settings(audit_url=audit_url)
    log, ring = _audit(settings)
    try:
        if incident is not None:
            try:
                seqs = seqs_for_incident(log, incident)
            except ProofError:  # still open (or unknown): what its live record names so far
                changes = _open_incident_changes(settings, log, incident)
                if changes is None:
                    raise
                seqs = seqs_for_incident(log, incident, open_changes=changes)
        elif checklist_run is not None:
            seqs = seqs_for_checklist_run(log, checklist_run)
        elif bet is not None:
            seqs = seqs_for_bet(log, bet)
        else:
            seqs = seqs_for_range(from_seq, to_seq)  # type: ignore[arg-type]
        bundle = export_bundle(log, ring, seqs)
    except (AuditError, KeyError, ProofError, AuditUnavailable) as exc:
        raise fail(str(exc)) from None
    out.write_text(json.dumps(bundle, indent=2))
    typer.echo(f"wrote {len(bundle['entries'])} entries, proven against tree size {bundle['tree_size']}, to {out}")


@audit_app.command("entries")
def audit_entries(
    kind: Annotated[
        str | None, typer.Option(help="change, money, checklist, incident, access, system, attestation, ...")
    ] = None,
    type_: Annotated[
        str | None, typer.Option("--type", help="The payload's type: bet.placed, fault_set, dead_letter, ...")
    ] = None,
    since: Annotated[str | None, typer.Option(help="From this time: ISO 8601 (UTC if no zone) or 90m, 2h, 7d.")] = None,
    limit: Annotated[
        int, typer.Option(help="At most this many (0: all); without --since, the newest ones.", min=0)
    ] = 100,
    fmt: TableOrJson = "table",
    audit_url: AuditUrl = None,
) -> None:
    """The entries a compliance officer searches, oldest first, as recorded (the hash chain covers them)."""
    from audit.query import find_entries

    start = None
    if since is not None:
        try:
            start = parse_since(since, now=utcnow())
        except (ValueError, OverflowError) as exc:
            raise fail(f"--since: {exc}") from None
    log, _ = _audit(load_settings(audit_url=audit_url), signing=False)
    newest = start is None and limit > 0
    found = find_entries(log.engine, kind=kind, type_=type_, since=start, limit=limit or None, newest_first=newest)
    records = [entry.as_record() for entry in (reversed(found) if newest else found)]
    if fmt == "json":
        typer.echo(json.dumps(records, indent=2, ensure_ascii=False))
        return
    if not records:
        typer.echo("no entries match")
        return
    typer.echo(f"{'seq':>7}  {'at':<20}  {'kind':<11} {'type':<22} {'actor':<20} subject")
    for r in records:
        at = r["at"][:19].replace("T", " ") + "Z"
        kind_, type_text = r["kind"], r["type"] or "-"
        typer.echo(f"{r['seq']:>7}  {at:<20}  {kind_:<11} {type_text:<22} {r['actor'][:20]:<20} {r['subject']}")


# The stream's verbs live with the stream's code; they are `controlplane audit ingest` and `dead-letters`.
audit_app.command("ingest")(audit_stream.ingest)
audit_app.command("dead-letters")(audit_stream.dead_letters)
