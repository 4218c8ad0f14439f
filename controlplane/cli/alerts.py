"""`controlplane alerts`: the SLO alert transitions and where each was delivered."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from controlplane.cli.common import StoreUrl, TableOrJson, fail, load_settings, store_engine
from controlplane.clock import parse_since
from controlplane.scheduler.history import alert_history, render_history_table
from controlplane.scheduler.receivers import utc_text

alerts_app = typer.Typer(help="SLO alerts: transitions (firing, resolved) and their delivery.", no_args_is_help=True)


@alerts_app.command("history")
def alerts_history(
    since: Annotated[
        str, typer.Option("--since", help="From how far back: 90m, 2h, 7d, 2w, or an ISO 8601 time (UTC if no zone).")
    ] = "7d",
    slo: Annotated[str | None, typer.Option("--slo", help="Only this SLO's transitions.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=100_000, help="At most this many, newest first.")] = 1000,
    store_url: StoreUrl = None,
    fmt: TableOrJson = "table",
) -> None:
    """Alert transitions, newest first, with their delivery to each receiver (delivered, pending, failed)."""

    try:
        start = parse_since(since)
    except ValueError as exc:
        raise fail(f"--since: {exc}") from None
    engine = store_engine(load_settings(store_url=store_url))
    try:
        items = alert_history(engine, since=start, slo=slo, limit=limit)
    finally:
        engine.dispose()
    if fmt == "json":
        typer.echo(json.dumps({"since": utc_text(start), "transitions": [i.to_dict() for i in items]}, indent=2))
        return
    typer.echo(render_history_table(items))
