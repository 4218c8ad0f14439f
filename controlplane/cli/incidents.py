"""`controlplane incidents`: incidents opened by page alerts (or declared), their key figures, the
post-incident review skeleton, and the monthly report per slice."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Literal

import typer
from sqlalchemy.exc import SQLAlchemyError

from audit.log import AuditError
from controlplane.auditing import AuditUnavailable
from controlplane.cli.common import (
    StoreUrl,
    TableOrJson,
    config_or_exit,
    fail,
    format_option,
    load_settings,
    store_engine,
)
from controlplane.clock import parse_since, utc_text, utcnow
from controlplane.incidents.record import IncidentRecord
from controlplane.incidents.render import monthly, render_list, render_markdown, render_monthly, render_show
from controlplane.incidents.tracker import IncidentError, Tracker

incidents_app = typer.Typer(
    help="Incidents: opened by page alerts or declared; time to detect, to mitigate, user-impact minutes.",
    no_args_is_help=True,
)
ShowFormat = Annotated[Literal["table", "json", "markdown"], format_option("table", "json", "markdown")]
TIME_HELP = "An ISO 8601 time (UTC if no zone), or how far back: 90m, 2h, 7d."


def _time(option: str, text: str | None, *, now: datetime) -> datetime | None:
    if text is None:
        return None
    try:
        return parse_since(text, now=now)
    except (ValueError, OverflowError) as exc:
        raise fail(f"{option}: {exc}; give an ISO 8601 time or a span such as 7d") from None


def _tracker(store_url: str | None) -> Tracker:
    settings = load_settings(store_url=store_url)
    config = config_or_exit(settings)
    return Tracker(settings, store_engine(settings), config=config)


def _records(tracker: Tracker, start: datetime | None, end: datetime | None, now: datetime) -> list[IncidentRecord]:
    try:
        return [tracker.record(row, now=now) for row in tracker.rows(since=start, until=end)]
    except AuditUnavailable as exc:
        raise fail(str(exc)) from None
    except SQLAlchemyError as exc:
        raise fail(f"could not read the incidents: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None


@incidents_app.command("list")
def incidents_list(
    start: Annotated[str | None, typer.Option("--from", help=f"Opened from. {TIME_HELP}")] = "30d",
    end: Annotated[str | None, typer.Option("--to", help=f"Opened before. {TIME_HELP} Default: now.")] = None,
    store_url: StoreUrl = None,
    fmt: TableOrJson = "table",
) -> None:
    """Incidents opened in the range, newest first, with their key figures."""
    now = utcnow()
    since, until = _time("--from", start, now=now), _time("--to", end, now=now)
    if since is not None and until is not None and until <= since:
        raise fail("--to must be after --from")
    records = _records(_tracker(store_url), since, until, now)
    if fmt == "json":
        typer.echo(json.dumps({"incidents": [r.to_dict() for r in records]}, indent=2))
        return
    typer.echo(render_list(records))


@incidents_app.command("show")
def incidents_show(
    incident: Annotated[str, typer.Argument(help="The incident's id, as `incidents list` shows it.")],
    store_url: StoreUrl = None,
    fmt: ShowFormat = "table",
) -> None:
    """One incident: key figures, alerts, and what changed nearest its start (markdown: a post-incident
    review with the timeline, and sections for people to fill)."""
    tracker = _tracker(store_url)
    try:
        record = tracker.record(incident, now=utcnow())
    except (IncidentError, AuditUnavailable, AuditError) as exc:
        raise fail(str(exc)) from None
    except SQLAlchemyError as exc:
        raise fail(f"the store refused it: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    if fmt == "json":
        typer.echo(json.dumps(record.to_dict(), indent=2))
    elif fmt == "markdown":
        typer.echo(render_markdown(record))
    else:
        typer.echo(render_show(record))


@incidents_app.command("report")
def incidents_report(
    start: Annotated[str, typer.Option("--from", help=f"Opened from. {TIME_HELP}")] = "90d",
    end: Annotated[str | None, typer.Option("--to", help=f"Opened before. {TIME_HELP} Default: now.")] = None,
    store_url: StoreUrl = None,
    fmt: TableOrJson = "table",
) -> None:
    """Per slice and month: incidents, mean time to detect (MTTD), mean time to mitigate (MTTM, over the
    mitigated ones), user-impact minutes."""
    now = utcnow()
    since, until = _time("--from", start, now=now), _time("--to", end, now=now)
    if since is not None and until is not None and until <= since:
        raise fail("--to must be after --from")
    rows = monthly(_records(_tracker(store_url), since, until, now))
    if fmt == "json":
        body = {
            "from": utc_text(since) if since else None,
            "to": utc_text(until or now),
            "months": [r.to_dict() for r in rows],
        }
        typer.echo(json.dumps(body, indent=2))
        return
    typer.echo(render_monthly(rows))


@incidents_app.command("declare")
def incidents_declare(
    slice_name: Annotated[str, typer.Option("--slice", help="The slice users feel it on (config/slices.yaml).")],
    by: Annotated[str, typer.Option("--by", help="Who declares it (recorded as the audit entry's actor).")],
    title: Annotated[str, typer.Option("--title", help="What users see, in a line.")],
    store_url: StoreUrl = None,
) -> None:
    """Open an incident by hand (no page has fired yet, or the impact is one no SLO measures); it gathers
    the slice's alerts and closes like any other."""
    tracker = _tracker(store_url)
    try:
        ident = tracker.declare(slice_name, by=by, title=title, now=utcnow())
    except (IncidentError, AuditUnavailable, AuditError) as exc:
        raise fail(str(exc)) from None
    except SQLAlchemyError as exc:
        raise fail(f"the store refused it: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    typer.echo(f"incident {ident} opened on {slice_name} by {by.strip()}")


@incidents_app.command("track")
def incidents_track(store_url: StoreUrl = None, fmt: TableOrJson = "table") -> None:
    """Open an incident for each page alert without one and close those that are over, now (the
    scheduler's `incidents` job does this every minute)."""
    tracker = _tracker(store_url)
    try:
        result = tracker.track(now=utcnow())
    except (AuditUnavailable, AuditError) as exc:
        raise fail(str(exc)) from None
    except SQLAlchemyError as exc:  # e.g. the scheduler's job opened the same incident a moment before
        raise fail(f"the store refused it (run again): {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    if fmt == "json":
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    typer.echo(f"opened: {', '.join(result.opened) or 'none'}; closed: {', '.join(result.closed) or 'none'}")
