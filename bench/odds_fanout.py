"""Benchmark: publish-to-delivery lag of the odds SSE stream (`GET /v1/odds/stream`) with 1, 100 and
1,000 subscribers, and the admin odds change's own latency at 0 and 1,000 subscribers.

    .venv/bin/python -m bench.odds_fanout                                    # 1, 100, 1000 subscribers
    .venv/bin/python -m bench.odds_fanout --quick                            # 1, 100 subscribers, 2 s each
    .venv/bin/python -m bench.odds_fanout --subscribers 1,10 --rate 50 --duration 3 --skip-postgres
    .venv/bin/python -m bench.odds_fanout --format json > result.json

The platform server runs in its own process (`controlplane platform serve`, the background price
mover off), so this process is only the audience and the trader: once on SQLite in a scratch folder,
then on a fresh schema of $CONTROLPLANE_TEST_POSTGRES_URL (dropped at the end; skipped with a note
when PostgreSQL does not answer, or with --skip-postgres). For
each subscriber count N, a fresh set of N SSE connections is opened (raw asyncio streams, one event
loop, one task per connection) and the benchmark waits until every one has received the server's
`: connected` comment. Then a publisher thread changes one price via `POST /v1/admin/markets/{id}/odds`
at a steady rate (`--rate` updates/s for `--duration` s; each request due at t0 + i/rate whatever
happened to the earlier ones), and the benchmark waits until every subscriber still connected has
received every update (or `--drain-timeout` runs out) before closing the connections.

Lag = the wall-clock time at which this process read the event off the socket minus the event's
`published_at` (same machine, same clock). The server stamps `published_at` when it publishes, which
is *after* the price change committed, so the database write is not in the lag: it covers the
server's fan-out (hand-over to its event loop, the subscriber's queue, SSE formatting, the HTTP
chunk), the socket, and this process's reading and parsing of the stream (including the wait for its
own event loop, which with 1,000 connections is busy). Every event of every subscriber is recorded
(log-bucketed histogram, <1% error); percentiles are nearest-rank.

Columns: published = price changes the server accepted; delivered / expected (= published x
subscribers); drops = subscribers that got `event: overflow` or were disconnected before the last
update (the server's own count of dropped subscribers is shown beside it); srv queue = the server's
mean time from publish until the subscriber's generator took the event off its queue (from
`platform_odds_publish_lag_seconds`); cli cpu% / srv cpu% = CPU of this process and of the server
process from the first publish until the last delivery (100% = one core); host% = share of all the
machine's cores busy. A cli cpu% near 100 means this process's parsing of the streams, not the
server, set the lag. The ratio is p99 at N subscribers / p99 at the smallest count with subscribers.
The 0-subscriber step publishes to nobody: its odds-change round trip (POST .../odds, send to answer)
is the API's latency with no fan-out at all, and each later step's round trip is shown against it.
Subscribers connect to the address `GET /v1/odds/stream` redirects to (the stream's own server).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import secrets
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from bench.odds_fanout_report import add_ratios, render_text
from bench.odds_fanout_stream import (
    Publishing,
    Step,
    publish,
    scrape,
    stream_address,
    subscribe,
    wait_for_no_subscribers,
)
from bench.postgres import ScratchSchema, postgres_skip_reason, redact
from bench.support import (
    BenchmarkParser,
    CpuMark,
    CpuUse,
    PlatformServer,
    emit,
    fmt,
    host_busy_before_start,
    log,
    setup_logging,
)

DEFAULT_SUBSCRIBERS = "0,1,100,1000"
GENERATOR_BOUND = 0.9  # this process's CPU (fraction of a core) above which it is the bottleneck
CONNECT_CONCURRENCY = 64  # connection attempts in flight while opening the subscribers
FD_HEADROOM = 256
QUICK = {"subscribers": "0,1,100", "duration": 2.0}


def raise_fd_limit(needed: int) -> str | None:
    """Raise the soft open-files limit to `needed` (the server inherits it); a note if it cannot."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        if target < needed:
            return f"open-files limit {target} (hard limit) is below the {needed} needed; some connections may fail"
    return None


async def run_step(server: PlatformServer, market: dict, subscribers: int, args: argparse.Namespace) -> dict[str, Any]:
    host, port = await asyncio.to_thread(stream_address, server.url)
    leftover = await wait_for_no_subscribers(server.url, 15.0)
    step = Step(subscribers)
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    connect_start = time.monotonic()
    tasks = [asyncio.create_task(subscribe(step, s, host, port, gate)) for s in step.subscribers]
    try:
        await asyncio.wait_for(
            asyncio.gather(*(s.connected.wait() for s in step.subscribers)), timeout=args.connect_timeout
        )
    except TimeoutError:
        pass
    connect_s = time.monotonic() - connect_start
    live = [s for s in step.subscribers if s.hello and s.error is None and not s.closed_by_server]
    failed_connect = len(step.subscribers) - len(live)
    metrics0 = await asyncio.to_thread(scrape, server.url)
    await asyncio.sleep(0.2)  # let the last `: connected` sends finish before the clock starts

    pub = Publishing()
    start = CpuMark.now(server)
    thread = threading.Thread(
        target=publish, args=(server.url, server.admin_token, market, args.rate, args.duration, pub), daemon=True
    )
    thread.start()
    while thread.is_alive():
        await asyncio.sleep(0.05)
    thread.join()

    # Wait for every live subscriber to have every accepted update (or to have dropped).
    step.target = pub.ok
    deadline = time.monotonic() + args.drain_timeout
    timed_out = False
    while True:
        pending = [s for s in live if s.events < step.target and not s.dropped]
        if not pending:
            break
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            timed_out = True
            break
        step.progress.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(step.progress.wait(), timeout=min(remaining, 0.25))
    cpu = CpuUse.between(start, CpuMark.now(server))
    metrics1 = await asyncio.to_thread(scrape, server.url)

    for s in step.subscribers:
        s.closing = True
        if s.writer is not None:
            s.writer.close()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)

    delivered = sum(s.events for s in step.subscribers)
    expected = pub.ok * len(live)
    lag = step.lag
    q_count = metrics1.get("platform_odds_publish_lag_seconds_count", 0) - metrics0.get(
        "platform_odds_publish_lag_seconds_count", 0
    )
    q_sum = metrics1.get("platform_odds_publish_lag_seconds_sum", 0) - metrics0.get(
        "platform_odds_publish_lag_seconds_sum", 0
    )
    errors: dict[str, int] = {}
    for s in step.subscribers:
        if s.error:
            kind = s.error.split(":", 1)[0]
            errors[kind] = errors.get(kind, 0) + 1
    samples = sorted({s.error for s in step.subscribers if s.error})[:3]
    return {
        "subscribers": subscribers,
        "connected": len(live),
        "failed_to_connect": failed_connect,
        "connect_s": round(connect_s, 2),
        "leftover_subscribers_before": leftover,
        "published": pub.ok,
        "publish_attempts": pub.sent,
        "publish_errors": pub.errors,
        "publish_rate_offered": args.rate,
        "publish_window_s": round((pub.last_at or 0) - (pub.first_at or 0), 3) if pub.first_at else None,
        "publish_latency_ms": pub.latencies.summary_ms((50, 99)),
        "publisher_send_lag_ms": pub.send_lag.summary_ms((50, 99)),
        "publish_round_trip_ms": pub.round_trip.summary_ms((50, 99)),
        "delivered": delivered,
        "expected": expected,
        "missing": max(0, expected - delivered),
        "subscribers_complete": sum(1 for s in live if s.events >= pub.ok),
        "overflows": sum(1 for s in step.subscribers if s.overflow),
        "disconnects": sum(1 for s in live if (s.closed_by_server or s.error) and not s.overflow),
        "drops": sum(1 for s in live if s.dropped),
        "server_dropped": int(
            metrics1.get("platform_odds_subscribers_dropped_total", 0)
            - metrics0.get("platform_odds_subscribers_dropped_total", 0)
        ),
        "out_of_order": sum(s.out_of_order for s in step.subscribers),
        "other_events": dict(step.other_events),
        "subscriber_errors": errors,
        "subscriber_error_samples": samples,
        "drain_timed_out": timed_out,
        "lag_ms": lag.summary_ms((50, 95, 99)),
        "server_queue_mean_ms": round(1000 * q_sum / q_count, 2) if q_count > 0 else None,
        "measure_s": round(cpu.wall_s, 2),
        "client_cpu_pct": round(cpu.client * 100, 1),
        "server_cpu_pct": None if cpu.server is None else round(cpu.server * 100, 1),
        "host_busy_pct": None if cpu.host is None else round(cpu.host * 100, 1),
        "generator_bound": cpu.client >= GENERATOR_BOUND,
    }


async def run_all(server: PlatformServer, args: argparse.Namespace) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(
        base_url=server.url, headers={"Authorization": f"Bearer {server.admin_token}"}, timeout=10.0
    ) as client:
        body = {
            "name": f"odds fan-out bench {secrets.token_hex(3)}",
            "selections": [{"name": f"runner {i + 1}", "odds": f"{2 + i:.2f}"} for i in range(4)],
        }
        response = await client.post("/v1/admin/markets", json=body)
        if response.status_code != 201:
            raise RuntimeError(f"could not create the market: {response.status_code} {response.text[:300]}")
        market = response.json()
    # Warm-up (not recorded): one subscriber, a few updates, so the first step pays no first-call costs.
    warm = argparse.Namespace(**{**vars(args), "rate": 20.0, "duration": 0.5, "drain_timeout": 5.0})
    await run_step(server, market, 1, warm)
    steps = []
    for n in args.subscribers:
        log.info(f"  {n} subscriber(s): connecting, then {args.rate:g} updates/s for {args.duration:g} s")
        result = await run_step(server, market, n, args)
        lag = result["lag_ms"]
        log.info(
            f"  {n} subscriber(s): connected {result['connected']} in {result['connect_s']:.1f} s, "
            f"published {result['published']}, delivered {result['delivered']}/{result['expected']}, "
            f"drops {result['drops']}, lag p50 {fmt(lag['p50'])} p99 {fmt(lag['p99'])} ms, "
            f"cli cpu {result['client_cpu_pct']:.0f}%, srv cpu {fmt(result['server_cpu_pct'], '.0f')}%"
        )
        steps.append(result)
    return steps


# ---------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = BenchmarkParser("bench.odds_fanout", __doc__, QUICK)
    parser.add_argument(
        "--subscribers", default=DEFAULT_SUBSCRIBERS, help=f"subscriber counts (default {DEFAULT_SUBSCRIBERS})"
    )
    parser.add_argument("--rate", type=float, default=20.0, help="price changes per second (default 20)")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of publishing per step (default 5)")
    parser.add_argument(
        "--queue", type=int, default=256, help="the server's per-subscriber queue (PLATFORM_ODDS_SUBSCRIBER_QUEUE)"
    )
    parser.add_argument(
        "--drain-timeout", type=float, default=30.0, help="most seconds to wait for the last update (default 30)"
    )
    parser.add_argument(
        "--connect-timeout", type=float, default=30.0, help="most seconds to open the subscribers (default 30)"
    )
    args = parser.parse(argv)
    try:
        args.subscribers = [int(n) for n in args.subscribers.split(",") if n.strip()]
    except ValueError:
        parser.error("--subscribers must be a comma-separated list of integers, e.g. 1,100,1000")
    if not args.subscribers or any(n < 0 for n in args.subscribers):
        parser.error("--subscribers must be integers from 0 (0: the admin odds change with nobody listening)")
    if args.rate <= 0 or args.duration <= 0 or args.queue < 1:
        parser.error("--rate, --duration and --queue must be positive")
    return args


def bench_database(label: str, database_url: str, workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Every subscriber count against one server on this database."""
    settings = {"PLATFORM_PRICE_MOVER_INTERVAL_SECONDS": "0", "PLATFORM_ODDS_SUBSCRIBER_QUEUE": str(args.queue)}
    server = PlatformServer(database_url, workdir, settings)
    out: dict[str, Any] = {"database": label, "database_url": redact(database_url), "steps": [], "notes": []}
    log.info(f"[{label}] starting the server on {server.url}")
    try:
        server.start()
        out["steps"] = asyncio.run(run_all(server, args))
    except Exception as exc:  # report it and go on with the other database
        out["failed"] = f"{type(exc).__name__}: {exc}"
        log.info(f"[{label}] failed: {out['failed']}")
    finally:
        if server.exit_code() is not None:
            out["notes"].append(f"the server exited during the run with code {server.exit_code()}")
        server.stop()
    out["server_log_excerpt"] = server.log_problems()
    add_ratios(out["steps"])
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging()
    started = time.monotonic()
    notes = []
    fd_note = raise_fd_limit(max(args.subscribers) * 2 + FD_HEADROOM)  # before the server starts: it inherits it
    if fd_note:
        notes.append(fd_note)
    baseline = host_busy_before_start()
    report: dict[str, Any] = {
        "config": {
            "subscribers": args.subscribers,
            "rate": args.rate,
            "duration": args.duration,
            "updates_per_step": max(1, round(args.rate * args.duration)),
            "queue": args.queue,
            "drain_timeout": args.drain_timeout,
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "host_busy_before_pct": None if baseline is None else round(baseline * 100, 1),
        },
        "databases": [],
        "notes": notes,
    }
    with tempfile.TemporaryDirectory(prefix="bench-odds-") as tmp:
        workdir = Path(tmp)
        report["databases"].append(bench_database("SQLite", f"sqlite:///{workdir / 'bench.db'}", workdir, args))
        if (why := postgres_skip_reason(args)) is not None:
            report["databases"].append({"database": "PostgreSQL", "skipped": why})
        else:
            with ScratchSchema(args.postgres_url, "bench_odds") as schema:
                report["databases"].append(bench_database("PostgreSQL", schema.url, workdir, args))
    emit(report, args.format, render_text, started)
    return 1 if any(db.get("failed") for db in report["databases"]) else 0


if __name__ == "__main__":
    sys.exit(main())
