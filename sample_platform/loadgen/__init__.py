"""Derby-night load generator: open-model arrivals of logins, odds reads, wallet reads and bets (with
client retries), long-lived SSE odds subscribers, and settlement of every market at full time.

    report = run_load(LoadConfig("http://127.0.0.1:8080", "derby-night", 120, 20, admin_token="changethis"))
    print(render_table(report))

Open model: arrival i is due at a time drawn from a Poisson process whose rate follows `rate_at`, and
is launched as its own task at that time whatever happened to the earlier ones; its latency runs
from that *scheduled* time, so a server (or generator) that falls behind shows up in the latency
instead of quietly lowering the offered load (no coordinated omission).

To drive the load while something else happens (a game day), give the profile an extension and end it
when done: arrivals stop, in-flight work drains, unanswered bets are re-sent and every market settled.

    stop = threading.Event()
    config = LoadConfig(target, "derby-night", 120, 20, admin_token, extend_seconds=3600)
    report = run_load(config, stop=stop)  # elsewhere, later: stop.set()
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

import httpx
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from sample_platform.loadgen.client import SpreadClient, open_clients
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
    stop: threading.Event | None = None,
) -> LoadReport:
    """Run one load profile against `config.targets` (round-robin); `progress(elapsed_s, snapshot)` is called ~4x/s.

    Setting `stop` (from any thread) launches no arrival after that moment (it is seen within
    STOP_POLL seconds); the run then ends as after a normal end, and `report.stopped_at` says when.
    The client is aiohttp; pass an httpx `transport` (e.g. `httpx.MockTransport`) to run offline."""
    async with open_clients(config.targets, connections=config.max_connections, transport=transport) as client:
        report = await LoadRun(config, client, progress, stop).run()
        if isinstance(client, SpreadClient):
            report.replicas = client.summary()
        return report


@contextmanager
def _interrupt_sets(stop: threading.Event) -> Iterator[None]:
    """While inside, the first Ctrl-C sets `stop` and the next one interrupts as usual. Only from the main
    thread, and only where Ctrl-C has its default meaning (a caller's own handler is left alone)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is not signal.default_int_handler:
        yield
        return

    def first_interrupt(signum: int, frame: FrameType | None) -> None:
        stop.set()
        signal.signal(signal.SIGINT, previous)

    signal.signal(signal.SIGINT, first_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def run_load(
    config: LoadConfig,
    *,
    show_progress: bool = True,
    stop: threading.Event | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> LoadReport:
    """`run_load_async` in its own event loop, with a progress bar on stderr.

    From the main thread, the first Ctrl-C sets `stop` (one is made if none is given): the arrivals end
    and the markets are still settled, so the report comes back; a second Ctrl-C interrupts at once."""
    stop = stop if stop is not None else threading.Event()
    with _interrupt_sets(stop):
        return _run_with_progress(config, show_progress, stop, transport)


def _run_with_progress(
    config: LoadConfig, show_progress: bool, stop: threading.Event, transport: httpx.AsyncBaseTransport | None
) -> LoadReport:
    if not show_progress:
        return asyncio.run(run_load_async(config, stop=stop, transport=transport))
    columns = (
        TextColumn("{task.description:<9}"),
        BarColumn(),
        TextColumn("{task.completed:>5.0f}/{task.total:.0f} s"),
        TimeElapsedColumn(),
        TextColumn("offered {task.fields[rate]:>7.1f}/s  sent {task.fields[sent]:>7}  errors {task.fields[errors]:>5}"),
    )
    total = config.arrival_seconds
    with Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task(config.profile, total=total, rate=0.0, sent=0, errors=0)

        def progress(elapsed: float, snap: dict) -> None:
            if snap["phase"] == "setup":
                done = 0.0
            elif snap["phase"] == "load":
                done = elapsed
            else:  # after the arrivals: where they ended
                done = total if snap["stopped_at"] is None else snap["stopped_at"]
            bar.update(
                task,
                completed=min(done, total),
                description=snap["phase"],
                rate=snap["offered_rate"],
                sent=snap["sent"],
                errors=snap["errors"],
            )

        return asyncio.run(run_load_async(config, progress=progress, stop=stop, transport=transport))
