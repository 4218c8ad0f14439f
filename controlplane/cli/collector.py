"""`controlplane collector` and `controlplane sli`: receive telemetry into per-slice SLIs, and read them back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from controlplane.cli.common import (
    LogFormatOption,
    StoreUrl,
    TableOrJson,
    config_or_exit,
    fail,
    load_settings,
    log_export,
    slices_or_exit,
    store_engine,
)
from controlplane.clock import parse_since

collector_app = typer.Typer(
    help="Receive OTLP telemetry and scrape Prometheus metrics into SLIs.", no_args_is_help=True
)
sli_app = typer.Typer(help="Per-slice SLI buckets (events, bad events, latency) from the store.", no_args_is_help=True)


@collector_app.command("serve")
def collector_serve(
    port: Annotated[int, typer.Option(help="TCP port (OTLP/HTTP's usual is 4318).", min=0, max=65535)] = 4318,
    host: Annotated[str, typer.Option(help="Address to bind; 0.0.0.0 to accept remote exporters.")] = "127.0.0.1",
    store_url: StoreUrl = None,
    slices: Annotated[Path | None, typer.Option(help="Slices file (default: $CONTROLPLANE_SLICES_PATH).")] = None,
    scrape: Annotated[
        str | None,
        typer.Option(help="Comma-separated /metrics URLs to scrape (default: $CONTROLPLANE_SCRAPE_TARGETS)."),
    ] = None,
    log_format: LogFormatOption = "json",
) -> None:
    """Serve the OTLP/HTTP receiver (/v1/traces, /v1/metrics; /metrics for Prometheus) and the scraper."""
    # local: the collector's server (uvicorn, FastAPI, OTLP protobufs) adds ~270 ms to every command's start
    import uvicorn

    from collectors.service import create_collector_app
    from controlplane.logs import setup_logging

    settings = load_settings(store_url=store_url, slices_path=slices, scrape_targets=scrape)
    setup_logging(log_format, **log_export(settings, "controlplane-collector"))
    # Without an SLO file the collector still collects; with one it also serves SLO gauges.
    config = config_or_exit(settings) if Path(settings.slos_path).exists() else None
    sliced = config.slices if config else slices_or_exit(settings)
    engine = store_engine(settings)
    app = create_collector_app(settings, engine=engine, slices=sliced, config=config)
    uvicorn.run(app, host=host, port=port, log_level="warning", log_config=None)  # uvicorn logs through ours


@sli_app.command("show")
def sli_show(
    slice_name: Annotated[str | None, typer.Option("--slice", help="Only this slice.")] = None,
    since: Annotated[str, typer.Option(help="How far back: 90m, 2h, 1d, or an ISO 8601 time.")] = "2h",
    store_url: StoreUrl = None,
    fmt: TableOrJson = "table",
) -> None:
    """Per-minute buckets: events, bad events, bad ratio and latency quantiles per slice."""
    # local: as above, only `sli show` needs the collector's read-back
    from collectors.sli import render_sli_table, sli_rows

    settings = load_settings(store_url=store_url)
    try:
        start = parse_since(since)
    except ValueError as exc:
        raise fail(str(exc)) from None
    rows = sli_rows(store_engine(settings), since=start, slice_name=slice_name)
    if fmt == "json":
        typer.echo(json.dumps([r.to_dict() for r in rows], indent=2))
    else:
        typer.echo(render_sli_table(rows, since=start, slice_name=slice_name))
