"""`controlplane cost`: unit cost per settled bet (`report`) and actual bills in FOCUS format (`import`).

Exit codes: 0 done, 3 could not run (bad flag, bad file, unreachable store), with the reason.
"""

from __future__ import annotations

import getpass
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from sqlalchemy.exc import SQLAlchemyError

from controlplane.auditing import AuditUnavailable, audit_append
from controlplane.cli.common import (
    StoreUrl,
    audit_or_exit,
    config_or_exit,
    fail,
    format_option,
    load_settings,
    store_engine,
)
from controlplane.clock import parse_duration, parse_since, utc_text, utcnow
from controlplane.cost.focus import CostDataError, FocusError, import_focus
from controlplane.cost.model import CostConfigError
from controlplane.cost.render import render_csv, render_table
from controlplane.cost.report import BucketingError, CostInputs, cost_report

cost_app = typer.Typer(help="Unit cost per settled bet, per component, beside the SLOs it buys.", no_args_is_help=True)
CostsPath = Annotated[Path | None, typer.Option("--costs", help="Cost model (default: $CONTROLPLANE_COSTS_PATH).")]
AuditUrl = Annotated[str | None, typer.Option("--audit-url", help="The audit log (default: $CONTROLPLANE_AUDIT_URL).")]


MAX_WINDOW = timedelta(days=400)
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)


def _window(
    window: str | None,
    event: str | None,
    start: str | None,
    end: str | None,
    at: str | None,
    events: dict[str, Any],
) -> tuple[datetime, datetime, datetime, Any]:
    """The window asked for, the instant the report is as of (`--at`, default now) and the event."""
    chosen = [flag for flag, value in (("--window", window), ("--event", event), ("--from", start)) if value]
    if len(chosen) > 1:
        raise fail(f"give one of --window, --event or --from/--to, not {' and '.join(chosen)}")
    if end is not None and start is None:
        raise fail("--to needs --from")
    if at is not None and start is not None:
        raise fail("--at goes with --window or --event; with --from, end the window with --to")
    now = utcnow().replace(microsecond=0)
    chosen_event = None
    try:
        when = parse_since(at, now=now) if at is not None else now
    except (ValueError, OverflowError) as exc:
        raise fail(f"--at: {exc}") from None
    if when > now:
        raise fail(f"--at: {utc_text(when)} is after now: there is no cost to report yet")
    try:
        if event is not None:
            if event not in events:
                known = ", ".join(sorted(events)) or "none defined"
                raise fail(f"--event: no event named {event!r} in the events file (known: {known})")
            chosen_event = events[event]
            first, last = chosen_event.window()
            what = f"event {event}"
        elif start is not None:
            first = parse_since(start, now=now)
            last = parse_since(end, now=now) if end is not None else max(now, first)
            what = "--from"
            if first < EARLIEST:
                raise fail(f"--from: {utc_text(first)} is before {utc_text(EARLIEST)}; no bill or bet is that old")
            if first >= now:
                raise fail(f"--from: {utc_text(first)} is after now: there is no cost to report yet")
            if last <= first:
                raise fail("--to must come after --from")
        else:
            first, last, what = when - parse_duration(window or "24h"), when, "--window"
    except (ValueError, OverflowError) as exc:
        flag = "--window" if start is None else "--from/--to"
        raise fail(f"{flag}: {exc}") from None
    if last - first > MAX_WINDOW:
        raise fail(f"{what}: a report covers at most {MAX_WINDOW.days} days; ask for a shorter window")
    if first >= when:
        after = "--at" if at is not None else "now"
        raise fail(f"{what} starts at {utc_text(first)}, after {after}: there is no cost to report yet")
    return first, last, when, chosen_event


@cost_app.command("report")
def cost_report_command(
    window: Annotated[str | None, typer.Option("--window", help="The last 24h, 7d ... (default 24h).")] = None,
    event: Annotated[
        str | None, typer.Option("--event", help="An event of the events file: kickoff-1h to settlement+1h.")
    ] = None,
    start: Annotated[str | None, typer.Option("--from", help="Start, ISO 8601 (UTC if no zone).")] = None,
    end: Annotated[str | None, typer.Option("--to", help="End, ISO 8601 (default: now).")] = None,
    at: Annotated[
        str | None,
        typer.Option(
            "--at",
            help="As of this instant (ISO 8601, or 2h for two hours ago; default now): --window ends here, and an "
            "--event window not over by then is cut here. The dashboard's cost page at ?at=T&window=24h is "
            "`--window 24h --at T`.",
        ),
    ] = None,
    by: Annotated[
        Literal["minute", "hour", "day"] | None,
        typer.Option("--by", help="Buckets: minute (windows of up to 24 h), hour or day."),
    ] = None,
    fmt: Annotated[Literal["table", "json", "csv"], format_option("table", "json", "csv")] = "table",
    costs: CostsPath = None,
    store_url: StoreUrl = None,
    audit_url: AuditUrl = None,
) -> None:
    """Total cost, settled and voided bets, cost per settled bet (total cost ÷ settled bets) with the allocated
    cost per settled bet beside it, per component and bucket, beside each SLO."""

    settings = load_settings(store_url=store_url, audit_url=audit_url, costs_path=costs)
    config = config_or_exit(settings)
    first, last, when, chosen = _window(window, event, start, end, at, config.events)
    try:
        model = config.cost_model()
    except CostConfigError as exc:
        raise fail(str(exc)) from None
    store = store_engine(settings)
    audit = audit_or_exit(settings)
    inputs = CostInputs.from_config(config, store=store, audit=audit, model=model)
    try:
        report = cost_report(inputs, first, last, by=by, event=chosen, now=when)
    except CostDataError as exc:
        raise fail(str(exc)) from None
    except BucketingError as exc:
        raise fail(f"--by {by}: {exc}") from None
    except SQLAlchemyError as exc:
        raise fail(
            f"cannot read the store or the audit log: {type(exc).__name__}: {str(exc).splitlines()[0]}"
        ) from None
    finally:
        store.dispose()
    if fmt == "json":
        typer.echo(json.dumps(report.to_dict(), indent=2))
    elif fmt == "csv":
        typer.echo(render_csv(report), nl=False)
    else:
        typer.echo(render_table(report))


@cost_app.command("import")
def cost_import_command(
    focus: Annotated[Path, typer.Option("--focus", help="A FOCUS 1.x billing export (CSV).")],
    by: Annotated[str | None, typer.Option("--by", help="Who imports it (default: the OS user).")] = None,
    fmt: Annotated[Literal["table", "json"], format_option("table", "json")] = "table",
    store_url: StoreUrl = None,
    audit_url: AuditUrl = None,
) -> None:
    """Store a bill's rows (importing the same file again changes nothing); audited as a `change` entry."""

    settings = load_settings(store_url=store_url, audit_url=audit_url)
    who = (by or getpass.getuser()).strip()
    if not who or len(who) > 200:
        raise fail("--by must name a person (1 to 200 characters)")
    store = store_engine(settings)

    def record(payload: dict[str, Any]) -> int:
        return audit_append(
            settings, kind="change", actor=who, subject=f"cost-import:{payload['file_sha256']}", payload=payload
        )

    try:
        done = import_focus(store, focus, by=who, record=record)
    except (FocusError, AuditUnavailable) as exc:
        raise fail(str(exc)) from None
    except SQLAlchemyError as exc:
        raise fail(f"cannot write the store: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    finally:
        store.dispose()
    if fmt == "json":
        typer.echo(json.dumps(done.to_dict(), indent=2))
    elif done.new_rows:
        typer.echo(f"imported {done.new_rows} of {done.rows} rows from {done.file} (audit seq {done.audit_seq})")
    else:
        typer.echo(f"nothing new: all {done.rows} rows of {done.file} were already imported")
