"""`controlplane demo`: the sample platform under a few hundred bets, watched by the collector, summarised."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from controlplane.cli.common import EXIT_CRITICAL, EXIT_OK, fail, load_settings
from controlplane.cli.platform import DatabaseUrl, load_platform_settings
from controlplane.slices import SliceConfigError
from controlplane.slo_spec import SloConfigError
from controlplane.storage import StorageConfigError
from sample_platform.db import DatabaseConfigError


def demo(
    bets: Annotated[int, typer.Option(help="How many bets to place.", min=1, max=100_000)] = 300,
    database_url: DatabaseUrl = None,
) -> None:
    """Run the platform on SQLite, place a few hundred bets with retries and price moves, settle, summarise.

    Exit 0 when the ledger balances and every outbox event was delivered, 2 when not."""
    from controlplane.demo import run_demo

    # The demo starts from a clean slate, so it keeps its own database and sink apart from `serve`'s.
    platform = load_platform_settings(
        database_url=database_url or "sqlite:///./var/demo.db",
        outbox_sink_path=None if "PLATFORM_OUTBOX_SINK_PATH" in os.environ else "var/demo-outbox.jsonl",
    )
    settings = load_settings(
        store_url=None if "CONTROLPLANE_STORE_URL" in os.environ else "sqlite:///./var/demo-store.db",
    )
    try:
        summary = run_demo(settings, platform, bets=bets, out=typer.echo)
    except (SliceConfigError, SloConfigError, StorageConfigError, DatabaseConfigError) as exc:
        raise fail(str(exc)) from None
    raise typer.Exit(EXIT_OK if summary.ledger_ok else EXIT_CRITICAL)
