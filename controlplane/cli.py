"""The `controlplane` command: `controlplane <group> <verb>`. Thin: it calls the domain packages.

Exit codes for checks meant for cron: 0 ok, 1 warning, 2 critical, 3 unknown or usage error.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer
from pydantic import ValidationError

from controlplane.settings import Settings
from controlplane.storage import StorageConfigError

EXIT_OK, EXIT_WARNING, EXIT_CRITICAL, EXIT_UNKNOWN = 0, 1, 2, 3

app = typer.Typer(
    help="SRE observability and compliance control plane for betting platforms.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
platform_app = typer.Typer(help="Run and manage the bundled sample betting platform.", no_args_is_help=True)
app.add_typer(platform_app, name="platform")


def fail(message: str, code: int = EXIT_UNKNOWN) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def load_settings(**overrides: object) -> Settings:
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(
            f"CONTROLPLANE_{'_'.join(str(p) for p in e['loc']).upper() or 'SETTINGS'}: {e['msg']}" for e in exc.errors()
        )
        raise fail(f"invalid settings: {problems}") from None


DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="Platform database URL (sqlite:///path or postgresql+psycopg://user@host/db). "
        "Default: $CONTROLPLANE_DATABASE_URL, else sqlite:///./var/platform.db.",
    ),
]


@platform_app.command("migrate")
def platform_migrate(database_url: DatabaseUrl = None) -> None:
    """Create or upgrade the platform's database schema (Alembic) to the newest revision."""
    from sample_platform.db import migrate

    settings = load_settings(database_url=database_url)
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
) -> None:
    """Serve the sample platform's HTTP API (docs at /docs)."""
    import uvicorn

    from sample_platform.api import create_app
    from sample_platform.db import migrate

    settings = load_settings(database_url=database_url)
    engine = _engine(settings)
    if migrate_first:
        migrate(engine)
    uvicorn.run(create_app(settings, engine=engine), host=host, port=port, log_level="warning")


@app.command("demo")
def demo(
    bets: Annotated[int, typer.Option(help="How many bets to place.", min=1, max=100_000)] = 300,
    database_url: DatabaseUrl = None,
) -> None:
    """Run the platform on SQLite, place a few hundred bets with retries and price moves, settle, summarise."""
    from controlplane.demo import run_demo

    # The demo starts from a clean slate, so it keeps its own database and sink apart from `serve`'s.
    settings = load_settings(
        database_url=database_url or "sqlite:///./var/demo.db",
        outbox_sink_path=None if "CONTROLPLANE_OUTBOX_SINK_PATH" in os.environ else "var/demo-outbox.jsonl",
    )
    summary = run_demo(settings, bets=bets, out=typer.echo)
    raise typer.Exit(EXIT_OK if summary.ledger_ok else EXIT_CRITICAL)


def _engine(settings: Settings):  # type: ignore[no-untyped-def]
    from controlplane.storage import make_engine

    try:
        return make_engine(settings.database_url, **settings.engine_options())
    except StorageConfigError as exc:
        raise fail(str(exc)) from None


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
