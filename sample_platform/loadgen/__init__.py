"""Derby-night load generator: open-model arrivals of logins, odds reads, wallet reads and bets (with
client retries), long-lived SSE odds subscribers, and settlement of every market at full time.

    report = run_load(LoadConfig("http://127.0.0.1:8080", "derby-night", 120, 20, admin_token="changethis"))
    print(render_table(report))

Open model: arrival i is due at a time drawn from a Poisson process whose rate follows `rate_at`, and
is launched as its own task at that time whatever happened to the earlier ones; its latency runs
from that *scheduled* time, so a server (or generator) that falls behind shows up in the latency
instead of quietly lowering the offered load (no coordinated omission).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx

from sample_platform.loadgen.client import open_client
from sample_platform.loadgen.profiles import (
    BETS,
    HEALTH,
    LOGIN,
    MARKETS,
    MIX,
    ODDS,
    PEAK_FACTOR,
    PROFILES,
    SSE,
    LoadConfig,
    LoadSetupError,
    arrival_offsets,
    rate_at,
)
from sample_platform.loadgen.report import Histogram, LoadReport, RouteStats, render_table
from sample_platform.loadgen.run import LoadRun

__all__ = [
    "BETS",
    "HEALTH",
    "LOGIN",
    "MARKETS",
    "MIX",
    "ODDS",
    "PEAK_FACTOR",
    "PROFILES",
    "SSE",
    "Histogram",
    "LoadConfig",
    "LoadReport",
    "LoadSetupError",
    "RouteStats",
    "arrival_offsets",
    "rate_at",
    "render_table",
    "run_load",
    "run_load_async",
]


async def run_load_async(
    config: LoadConfig,
    *,
    progress: Callable[[float, dict], None] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> LoadReport:
    """Run one load profile against `config.target`; `progress(elapsed_s, snapshot)` is called ~4x/s.

    The client is aiohttp; pass an httpx `transport` (e.g. `httpx.MockTransport`) to run offline."""
    async with open_client(config.target, connections=config.max_connections, transport=transport) as client:
        return await LoadRun(config, client, progress).run()


def run_load(config: LoadConfig, *, show_progress: bool = True) -> LoadReport:
    """`run_load_async` in its own event loop, with a progress bar on stderr."""
    if not show_progress:
        return asyncio.run(run_load_async(config))
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (
        TextColumn("{task.description:<9}"),
        BarColumn(),
        TextColumn("{task.completed:>5.0f}/{task.total:.0f} s"),
        TimeElapsedColumn(),
        TextColumn("offered {task.fields[rate]:>7.1f}/s  sent {task.fields[sent]:>7}  errors {task.fields[errors]:>5}"),
    )
    with Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task(config.profile, total=config.duration, rate=0.0, sent=0, errors=0)

        def progress(elapsed: float, snap: dict) -> None:
            done = elapsed if snap["phase"] == "load" else (config.duration if snap["phase"] != "setup" else 0)
            bar.update(
                task,
                completed=min(done, config.duration),
                description=snap["phase"],
                rate=snap["offered_rate"],
                sent=snap["sent"],
                errors=snap["errors"],
            )

        return asyncio.run(run_load_async(config, progress=progress))
