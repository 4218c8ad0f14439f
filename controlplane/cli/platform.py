"""`controlplane platform`: run the bundled sample platform, drive load against a platform, game-day faults.

The platform is a separate system with its own settings (`PLATFORM_*`); these verbs start it, or talk to
a running one over HTTP (`--target`, `CONTROLPLANE_PLATFORM_URL`).
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from controlplane.cli.common import (
    AdminToken,
    TableOrJson,
    audit_outbox_sink,
    fail,
    load_settings,
    settings_or_exit,
)
from controlplane.cli.faults import faults_app
from controlplane.settings import Settings
from sample_platform.settings import PlatformSettings

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from sample_platform.outbox import OutboxSink

platform_app = typer.Typer(help="Run and manage the bundled sample betting platform.", no_args_is_help=True)
platform_app.add_typer(faults_app, name="faults")


def load_platform_settings(**overrides: object) -> PlatformSettings:
    """The sample platform's settings (`PLATFORM_*`), with the flags a verb was given."""
    return settings_or_exit(PlatformSettings, "PLATFORM_", overrides)


DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="Platform database URL (sqlite:///path or postgresql+psycopg://user@host/db). "
        "Default: $PLATFORM_DATABASE_URL, else sqlite:///./var/platform.db.",
    ),
]


@platform_app.command("migrate")
def platform_migrate(database_url: DatabaseUrl = None) -> None:
    """Create or upgrade the platform's database schema (Alembic) to the newest revision."""
    # local: the platform (FastAPI app, OpenTelemetry) adds ~390 ms to every command's start
    from sample_platform.db import migrate

    settings = load_platform_settings(database_url=database_url)
    engine = _engine(settings)
    migrate(engine)
    typer.echo(f"schema is up to date in {engine.url.render_as_string(hide_password=True)}")


@platform_app.command("serve")
def platform_serve(
    port: Annotated[int, typer.Option(help="TCP port to listen on.", min=0, max=65535)] = 8080,
    host: Annotated[str, typer.Option(help="Address to bind; 0.0.0.0 to accept remote clients.")] = "127.0.0.1",
    database_url: DatabaseUrl = None,
    migrate_first: Annotated[
        bool, typer.Option("--migrate/--no-migrate", help="Upgrade the schema before serving.")
    ] = True,
    stream_port: Annotated[
        int | None,
        typer.Option(
            help="Port of the odds stream's own server (GET /v1/odds/stream redirects there). "
            "Default: $PLATFORM_ODDS_STREAM_PORT, else --port + 1 (0: a free port).",
            min=0,
            max=65535,
        ),
    ] = None,
    log_format: Annotated[
        Literal["json", "text"],
        typer.Option("--log-format", help="Log lines as JSON objects (with trace and span ids) or as text."),
    ] = "json",
) -> None:
    """Serve the sample platform's HTTP API (docs at /docs), and its odds stream on a port of its own."""
    # local: the platform's app adds ~390 ms to every command's start
    import uvicorn

    from sample_platform.api import create_app
    from sample_platform.db import migrate
    from sample_platform.logs import setup_logging
    from sample_platform.server import uvicorn_options
    from sample_platform.telemetry import setup_telemetry

    setup_logging(log_format)

    stream = {"odds_stream_host": host}
    if stream_port is not None:
        stream["odds_stream_port"] = str(stream_port)
    elif "PLATFORM_ODDS_STREAM_PORT" not in os.environ:
        stream["odds_stream_port"] = str(port + 1 if port else 0)
    if "PLATFORM_ODDS_STREAM_HOST" in os.environ:
        del stream["odds_stream_host"]
    settings = load_platform_settings(database_url=database_url, **stream)
    engine = _engine(settings)
    if migrate_first:
        migrate(engine)
    sink = _outbox_sink(load_settings())
    setup_telemetry(settings)
    # Open odds streams never end by themselves: give them a few seconds, then close them.
    uvicorn.run(
        create_app(settings, engine=engine, outbox_sink=sink),
        host=host,
        port=port,
        log_level="warning",
        timeout_graceful_shutdown=5,
        **uvicorn_options(settings),
    )


def _outbox_sink(settings: Settings) -> OutboxSink | None:
    """The platform's relay delivers to its own sink (PLATFORM_OUTBOX_SINK) unless CONTROLPLANE_OUTBOX_SINK=audit."""
    return audit_outbox_sink(settings) if settings.outbox_sink == "audit" else None


@platform_app.command("load")
def platform_load(
    profile: Annotated[str, typer.Option(help="derby-night, steady or spike.")] = "derby-night",
    duration: Annotated[float, typer.Option(help="Seconds of the profile's shape.")] = 60.0,
    extend: Annotated[
        float,
        typer.Option(
            help="Seconds of arrivals after --duration, at the rate the curve has reached (derby-night keeps "
            "decaying toward the baseline; steady and spike stay at it). Ctrl-C ends them early."
        ),
    ] = 0.0,
    rate: Annotated[float, typer.Option(help="Baseline arrivals per second, all routes together.")] = 10.0,
    targets: Annotated[
        list[str] | None,
        typer.Option(
            "--target",
            help="Base URL of the platform; repeat it for each replica of one platform and requests are spread "
            "round-robin over them (the report counts each replica's answers). Default http://127.0.0.1:8080.",
            envvar="CONTROLPLANE_PLATFORM_URL",
        ),
    ] = None,
    admin_token: AdminToken = None,
    players: Annotated[int, typer.Option(help="Player accounts to create (with --admin-token).")] = 20,
    markets: Annotated[int, typer.Option(help="Markets to create (with --admin-token).")] = 4,
    sse_subscribers: Annotated[int, typer.Option(help="Odds stream subscribers held open.")] = 5,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed sends the same mix.")] = 1,
    mix: Annotated[
        str, typer.Option(help="betting (logins, odds, wallet, bets) or health (GET /v1/health only: a ceiling probe).")
    ] = "betting",
    request_timeout: Annotated[
        float, typer.Option(help="Seconds an attempt may take, counted from its scheduled time.")
    ] = 10.0,
    max_connections: Annotated[
        int, typer.Option(help="Connections, and so requests in flight; an arrival beyond is dropped and counted.")
    ] = 256,
    settle_timeout: Annotated[
        float, typer.Option(help="After the load: seconds for re-sending unanswered bets and settling markets.")
    ] = 60.0,
    fmt: TableOrJson = "table",
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Progress bar on stderr.")] = True,
) -> None:
    """Drive open-model load (derby-night: baseline, 15x within 10 s, then decay) and report per route.

    Requests are sent on schedule, not when earlier ones return, so latency includes any queueing
    (no coordinated omission). With --admin-token it creates its own players and markets, retries
    bets with the same Idempotency-Key, re-sends unanswered bets after the load, and settles its
    markets at full time. A run ends by duration + extend + request timeout + settle timeout, always;
    the first Ctrl-C ends the arrivals there and the run still drains, settles and reports (a second
    one aborts). The report says when the generator itself, or the server, was the bottleneck."""
    # local: the load generator adds ~120 ms to every command's start
    from sample_platform.loadgen import LoadConfig, LoadSetupError, render_table, run_load

    try:
        urls = [t.rstrip("/") for t in targets or ["http://127.0.0.1:8080"]]
        config = LoadConfig(
            target=urls[0],
            replicas=tuple(urls[1:]),
            profile=profile,
            duration=duration,
            extend_seconds=extend,
            rate=rate,
            admin_token=admin_token,
            players=players,
            markets=markets,
            sse_subscribers=sse_subscribers,
            seed=seed,
            mix=mix,
            request_timeout=request_timeout,
            max_connections=max_connections,
            settle_timeout=settle_timeout,
        )
        report = run_load(config, show_progress=progress and fmt == "table")
    except (ValueError, LoadSetupError) as exc:
        raise fail(str(exc)) from None
    typer.echo(json.dumps(report.to_dict(), indent=2) if fmt == "json" else render_table(report))


def _engine(settings: PlatformSettings) -> Engine:
    # local: the platform's database layer, only for `platform load`'s own store
    from sample_platform.db import DatabaseConfigError, make_engine

    try:
        return make_engine(settings.database_url, **settings.engine_options())
    except DatabaseConfigError as exc:
        raise fail(str(exc)) from None
