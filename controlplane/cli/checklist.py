"""`controlplane checklist` (go/no-go before an event) and `controlplane drill` (drills as audit evidence).

`checklist run` exits 0 go, 1 go-with-warnings, 2 no-go, 3 when the run itself could not run.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Literal

import typer
from sqlalchemy.exc import SQLAlchemyError

from controlplane.checklist.records import RecordError, attest, list_runs, load_run, record_drill, save_run, waive
from controlplane.checklist.results import ChecklistRun, render_junit, render_table
from controlplane.checklist.runner import run_checklist
from controlplane.checklist.session import new_context
from controlplane.checklist.spec import Checklist, ChecklistConfigError
from controlplane.cli.common import (
    StoreUrl,
    TableOrJson,
    config_or_exit,
    fail,
    format_option,
    load_settings,
    store_engine,
)
from controlplane.clock import parse_duration, parse_since, utc_text, utcnow
from controlplane.config import ControlPlaneConfig
from controlplane.slo.spec import EventSpec

checklist_app = typer.Typer(
    help="Readiness checklists: a go/no-go before an event, attestations and waivers.", no_args_is_help=True
)
drill_app = typer.Typer(
    help="Drills (failover, backup restore, game day) recorded as audit evidence.", no_args_is_help=True
)

ChecklistPath = Annotated[
    Path | None, typer.Option("--checklist", help="Checklist file (default: $CONTROLPLANE_CHECKLIST_PATH).")
]
EventName = Annotated[str | None, typer.Option("--event", help="An event from the events file (config/events.yaml).")]
RunFormat = Annotated[Literal["table", "json", "junit"], format_option("table", "json", "junit")]


def _checklist(config: ControlPlaneConfig) -> Checklist:
    try:
        return config.checklist()
    except ChecklistConfigError as exc:
        raise fail(str(exc)) from None


def _event(events: dict[str, EventSpec], name: str | None) -> EventSpec | None:
    if name is None:
        return None
    if name not in events:
        known = ", ".join(sorted(events)) or "none defined"
        raise fail(f"--event: no event named {name!r} in the events file (known: {known})")
    return events[name]


def _render(run: ChecklistRun, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(run.to_dict(), indent=2)
    if fmt == "junit":
        return render_junit(run)
    return render_table(run)


@checklist_app.command("run")
def checklist_run(
    event: EventName = None,
    at: Annotated[
        str | None, typer.Option("--at", help="Evaluate as of this instant (ISO 8601, or 2h for two hours ago).")
    ] = None,
    checklist: ChecklistPath = None,
    store_url: StoreUrl = None,
    fmt: RunFormat = "table",
) -> None:
    """Run every check now (concurrently, each within its timeout) and decide: exit 0 go, 1 go-with-warnings,
    2 no-go, 3 could not run. The run and its evidence digests go to the store and the audit log."""

    settings = load_settings(store_url=store_url, checklist_path=checklist)
    config = config_or_exit(settings)
    spec = _checklist(config)
    chosen = _event(config.events, event)
    now = utcnow()
    try:
        when = parse_since(at, now=now) if at else now
    except (ValueError, OverflowError) as exc:
        raise fail(f"--at: {exc}") from None
    if when > now + timedelta(minutes=1):
        raise fail("--at lies in the future; a go/no-go is about what was true then, give a past or present time")
    ctx = new_context(settings, store_engine(settings), config, event=chosen, at=when, now=now)
    try:
        result = run_checklist(spec, ctx)
    except SQLAlchemyError as exc:  # the store failed under the run (waivers are read from it)
        raise fail(f"the store failed during the run: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    try:
        result = save_run(settings, ctx.store, result)
    except Exception as exc:  # an unrecorded go/no-go cannot be proven: the run did not complete
        typer.echo(_render(result, fmt))
        raise fail(f"the run could not be recorded: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    typer.echo(_render(result, fmt))
    raise typer.Exit(result.exit_code)


def _expiry(text: str, event: EventSpec | None, *, allow_event_end: bool) -> datetime | timedelta:
    """The end of an event's window, or a lifetime (counted from when the record is written)."""

    if allow_event_end and text == "event-end":
        if event is None:
            raise fail("--expires event-end needs --event NAME (the waiver ends an hour after its expected settlement)")
        return event.window()[1]
    try:
        return parse_duration(text)
    except (ValueError, OverflowError) as exc:
        hint = " or event-end" if allow_event_end else ""
        raise fail(f"--expires: {exc}{hint}") from None


@checklist_app.command("attest")
def checklist_attest(
    check: Annotated[str, typer.Argument(help="The id of an attestation check in the checklist.")],
    by: Annotated[str, typer.Option("--by", help="Who attests (a named person).")],
    expires: Annotated[str, typer.Option("--expires", help="How long it holds, e.g. 24h.")],
    event: EventName = None,
    note: Annotated[str | None, typer.Option("--note", help="What was checked.")] = None,
    checklist: ChecklistPath = None,
    store_url: StoreUrl = None,
) -> None:
    """Attest a human check ("incident roles named"); it passes until the attestation expires (audited)."""

    settings = load_settings(store_url=store_url, checklist_path=checklist)
    config = config_or_exit(settings)
    try:
        spec = _checklist(config).check(check)
    except ChecklistConfigError as exc:
        raise fail(str(exc)) from None
    if spec.evaluator.type != "attestation":
        raise fail(f"check {check!r} is evaluated by {spec.evaluator.type}, not by attestation; nothing to attest")
    chosen = _event(config.events, event)
    expires_at = _expiry(expires, chosen, allow_event_end=False)
    try:
        done = attest(
            settings, store_engine(settings), check_id=check, by=by, expires_at=expires_at,
            event=chosen.name if chosen else None, note=note,
        )  # fmt: skip
    except RecordError as exc:
        raise fail(str(exc)) from None
    typer.echo(f"attested {check} by {done.by} until {utc_text(done.expires_at)} (audit seq {done.audit_seq})")


@checklist_app.command("waive")
def checklist_waive(
    check: Annotated[str, typer.Argument(help="The id of the check to waive.")],
    by: Annotated[str, typer.Option("--by", help="Who asks for the waiver.")],
    approved_by: Annotated[str, typer.Option("--approved-by", help="Who approves it (another person).")],
    reason: Annotated[str, typer.Option("--reason", help="Why the risk is accepted.")],
    expires: Annotated[str, typer.Option("--expires", help="A duration (48h) or event-end (needs --event).")],
    event: EventName = None,
    checklist: ChecklistPath = None,
    store_url: StoreUrl = None,
) -> None:
    """Waive a check: it is reported `waived` (never `pass`) until the waiver expires (audited)."""

    settings = load_settings(store_url=store_url, checklist_path=checklist)
    config = config_or_exit(settings)
    try:
        _checklist(config).check(check)
    except ChecklistConfigError as exc:
        raise fail(str(exc)) from None
    chosen = _event(config.events, event)
    expires_at = _expiry(expires, chosen, allow_event_end=True)
    try:
        done = waive(
            settings, store_engine(settings), check_id=check, requested_by=by, approved_by=approved_by,
            reason=reason, expires_at=expires_at, event=chosen.name if chosen else None,
        )  # fmt: skip
    except RecordError as exc:
        raise fail(str(exc)) from None
    typer.echo(
        f"waived {check} until {utc_text(done.expires_at)} (asked by {done.requested_by}, approved by "
        f"{done.approved_by}; waiver {done.id}, audit seq {done.audit_seq})"
    )


@checklist_app.command("history")
def checklist_history(
    event: EventName = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000, help="How many runs, newest first.")] = 50,
    store_url: StoreUrl = None,
    fmt: TableOrJson = "table",
) -> None:
    """Past runs, newest first: decision and counts by status."""

    runs = list_runs(store_engine(load_settings(store_url=store_url)), event=event, limit=limit)
    if fmt == "json":
        typer.echo(json.dumps({"runs": [r.to_dict() for r in runs]}, indent=2))
        return
    typer.echo(f"{'run':<17} {'at':<28} {'event':<16} {'decision':<17} counts")
    for r in runs:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(r.counts.items()))
        typer.echo(f"{r.run_id:<17} {utc_text(r.at):<28} {r.event or '-':<16} {r.decision:<17} {counts}")
    if not runs:
        typer.echo("no runs yet; run `controlplane checklist run`")


@checklist_app.command("show")
def checklist_show(
    run_id: Annotated[str, typer.Argument(help="A run id from `checklist history`.")],
    store_url: StoreUrl = None,
    fmt: RunFormat = "table",
) -> None:
    """One past run with every check, its evidence, waiver and attestation."""

    run = load_run(store_engine(load_settings(store_url=store_url)), run_id)
    if run is None:
        raise fail(f"no checklist run {run_id!r}; `controlplane checklist history` lists them")
    typer.echo(_render(run, fmt))


@drill_app.command("record")
def drill_record(
    kind: Annotated[Literal["failover", "restore", "gameday"], typer.Option("--kind", help="What was drilled.")],
    by: Annotated[str, typer.Option("--by", help="Who ran the drill.")],
    note: Annotated[str, typer.Option("--note", help="What was done and learned.")],
) -> None:
    """Record a drill in the audit log, as evidence for the checklist's drill checks."""

    try:
        done = record_drill(load_settings(), kind=kind, by=by, note=note)
    except RecordError as exc:
        raise fail(str(exc)) from None
    typer.echo(f"recorded {kind} drill by {done.by} (audit seq {done.audit_seq})")
