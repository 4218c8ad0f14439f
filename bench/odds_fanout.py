"""Benchmark: publish-to-delivery lag of the odds SSE stream (`GET /v1/odds/stream`) with 1, 100 and
1,000 subscribers.

    .venv/bin/python bench/odds_fanout.py                                    # 1, 100, 1000 subscribers
    .venv/bin/python bench/odds_fanout.py --subscribers 1,10 --rate 50 --duration 3
    .venv/bin/python bench/odds_fanout.py --format json > result.json

The platform server runs in its own process (`controlplane platform serve`, SQLite in a scratch
folder, the background price mover off), so this process is only the audience and the trader. For
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
server, set the lag. The ratio is p99 at N subscribers / p99 at the first (smallest) count.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import secrets
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.bet_placement import Server, host_busy_over, host_cpu_ticks  # noqa: E402
from sample_platform.loadgen import Histogram  # noqa: E402

DEFAULT_SUBSCRIBERS = "1,100,1000"
GENERATOR_BOUND = 0.9  # this process's CPU (fraction of a core) above which it is the bottleneck
CONNECT_CONCURRENCY = 64  # connection attempts in flight while opening the subscribers
FD_HEADROOM = 256


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def _epoch(stamp: str) -> float:
    parsed = datetime.fromisoformat(stamp)
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


# ---------------------------------------------------------------------------------------- subscribers


@dataclass(eq=False)
class Subscriber:
    index: int
    connected: asyncio.Event = field(default_factory=asyncio.Event)  # set on `: connected` or on failure
    hello: bool = False  # the server's `: connected` arrived
    events: int = 0  # `odds` events received
    last_seq: int = 0
    out_of_order: int = 0  # seq not above the previous one
    overflow: bool = False  # got `event: overflow`
    closed_by_server: bool = False  # the stream ended before we closed it
    error: str | None = None  # could not connect / read failed
    closing: bool = False  # we are closing it: an end of stream now is ours
    writer: asyncio.StreamWriter | None = None

    @property
    def dropped(self) -> bool:
        return self.overflow or self.closed_by_server or self.error is not None


class Step:
    """One subscriber count's shared state: lag histogram and the delivery target."""

    def __init__(self, subscribers: int) -> None:
        self.subscribers = [Subscriber(i) for i in range(subscribers)]
        self.lag = Histogram()
        self.target = 0  # events each subscriber must have before the step may end (set after publishing)
        self.progress = asyncio.Event()  # set whenever a subscriber may have reached the target or dropped
        self.other_events: dict[str, int] = {}

    def on_event(self, sub: Subscriber, name: str, data: str, received: float) -> None:
        if name == "odds":
            event = json.loads(data)
            self.lag.record_seconds(received - _epoch(event["published_at"]))
            seq = int(event["seq"])
            if seq <= sub.last_seq:
                sub.out_of_order += 1
            sub.last_seq = seq
            sub.events += 1
            if self.target and sub.events >= self.target:
                self.progress.set()
        else:
            self.other_events[name] = self.other_events.get(name, 0) + 1
            if name == "overflow":
                sub.overflow = True
                self.progress.set()

    def on_block(self, sub: Subscriber, block: str, received: float) -> None:
        """One SSE event block (the text between blank lines)."""
        name, data = "message", []
        for line in block.split("\n"):
            if line.startswith("data:"):
                data.append(line[5:].removeprefix(" "))
            elif line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith(":") and line[1:].strip() == "connected":
                sub.hello = True
                sub.connected.set()
        if data:
            self.on_event(sub, name, "\n".join(data), received)


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("the server closed the connection before answering")
    parts = status_line.decode("latin-1").split(" ", 2)
    status = int(parts[1])
    headers: dict[str, str] = {}
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            return status, headers
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()


async def subscribe(step: Step, sub: Subscriber, host: str, port: int, gate: asyncio.Semaphore) -> None:
    """One SSE connection over a raw asyncio stream (HTTP/1.1, chunked), until closed or dropped."""
    try:
        async with gate:
            reader, writer = await asyncio.open_connection(host, port)
            sub.writer = writer
            writer.write(
                f"GET /v1/odds/stream HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n"
                "Cache-Control: no-cache\r\n\r\n".encode()
            )
            status, headers = await _read_head(reader)
        if status != 200:
            raise ConnectionError(f"HTTP {status}")
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        buffer = ""
        while True:
            if chunked:
                size_line = await reader.readline()
                if not size_line:
                    break
                size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    break
                payload = (await reader.readexactly(size + 2))[:-2]
            else:
                payload = await reader.read(65536)
                if not payload:
                    break
            received = time.time()
            buffer += payload.decode()
            if "\r" in buffer:
                buffer = buffer.replace("\r\n", "\n")
            while "\n\n" in buffer:
                block, buffer = buffer.split("\n\n", 1)
                step.on_block(sub, block, received)
        if not sub.closing:
            sub.closed_by_server = True
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # every failure is reported per subscriber
        if not sub.closing:
            sub.error = f"{type(exc).__name__}: {exc}"[:200]
    finally:
        step.progress.set()
        sub.connected.set()  # never leave the "all connected" wait hanging on a failed subscriber
        if sub.writer is not None:
            sub.writer.close()


# ---------------------------------------------------------------------------------------- publisher


@dataclass
class Publishing:
    sent: int = 0
    ok: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    latencies: Histogram = field(default_factory=Histogram)  # scheduled send -> response
    send_lag: Histogram = field(default_factory=Histogram)  # how late the publisher sent vs its schedule
    round_trip: Histogram = field(default_factory=Histogram)  # send -> response
    first_at: float | None = None  # wall clock of the first scheduled send
    last_at: float | None = None  # wall clock when the last response came back


def publish(url: str, admin_token: str, market: dict, rate: float, duration: float, out: Publishing) -> None:
    """Change prices at `rate`/s for `duration` s, in this thread's own event loop.

    Open model: request i is launched at t0 + i/rate whether or not the earlier ones have answered
    (a slow server must not quietly lower the publish rate); its latency counts from that time."""
    asyncio.run(_publish(url, admin_token, market, rate, duration, out))


async def _publish(url: str, admin_token: str, market: dict, rate: float, duration: float, out: Publishing) -> None:
    selections = [s["id"] for s in market["selections"]]
    count = max(1, round(rate * duration))
    headers = {"Authorization": f"Bearer {admin_token}"}
    loop = asyncio.get_running_loop()

    async def one(client: httpx.AsyncClient, i: int, due: float) -> None:
        sent_at = loop.time()
        body = {"selection_id": selections[i % len(selections)], "odds": f"{1.5 + (i % 200) / 100:.2f}"}
        try:
            response = await client.post(f"/v1/admin/markets/{market['id']}/odds", json=body)
            key = None if response.status_code == 200 else str(response.status_code)
        except httpx.HTTPError as exc:
            key = type(exc).__name__
        done = loop.time()
        out.latencies.record_seconds(done - due)
        out.round_trip.record_seconds(done - sent_at)
        if key is None:
            out.ok += 1
        else:
            out.errors[key] = out.errors.get(key, 0) + 1

    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=10.0, limits=limits) as client:
        t0 = loop.time() + 0.02
        out.first_at = time.time() + 0.02
        tasks = []
        for i in range(count):
            due = t0 + i / rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            out.send_lag.record_seconds(max(0.0, loop.time() - due))
            out.sent += 1
            tasks.append(asyncio.create_task(one(client, i, due)))
        await asyncio.gather(*tasks)
        out.last_at = time.time()


# ---------------------------------------------------------------------------------------- server metrics


def scrape(url: str) -> dict[str, float]:
    """The odds feed's Prometheus series from /metrics (unlabelled ones only)."""
    wanted = (
        "platform_odds_publish_lag_seconds_sum",
        "platform_odds_publish_lag_seconds_count",
        "platform_odds_subscribers_dropped_total",
        "platform_odds_subscribers",
        "platform_odds_updates_total",
    )
    out: dict[str, float] = {}
    try:
        text = httpx.get(f"{url}/metrics", timeout=10.0).text
    except httpx.HTTPError:
        return out
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in wanted:
            with contextlib.suppress(ValueError):
                out[name] = float(value)
    return out


async def wait_for_no_subscribers(url: str, limit: float) -> float | None:
    """Wait until the server counts no odds subscriber (the previous step's streams are gone)."""
    start = time.monotonic()
    while time.monotonic() - start < limit:
        current = (await asyncio.to_thread(scrape, url)).get("platform_odds_subscribers")
        if current == 0:
            return 0.0
        await asyncio.sleep(0.2)
    return (await asyncio.to_thread(scrape, url)).get("platform_odds_subscribers")


# ---------------------------------------------------------------------------------------- one step


def raise_fd_limit(needed: int) -> str | None:
    """Raise the soft open-files limit to `needed` (the server inherits it); a note if it cannot."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        if target < needed:
            return f"open-files limit {target} (hard limit) is below the {needed} needed; some connections may fail"
    return None


async def run_step(
    server: Server, admin_token: str, market: dict, subscribers: int, args: argparse.Namespace
) -> dict[str, Any]:
    host, port = "127.0.0.1", server.port
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
    cpu0, srv0, host0, wall0 = time.process_time(), server.cpu_seconds(), host_cpu_ticks(), time.monotonic()
    thread = threading.Thread(
        target=publish, args=(server.url, admin_token, market, args.rate, args.duration, pub), daemon=True
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
    wall1 = time.monotonic()
    cli_cpu = (time.process_time() - cpu0) / max(wall1 - wall0, 1e-9)
    srv1, host1 = server.cpu_seconds(), host_cpu_ticks()
    srv_cpu = (srv1 - srv0) / max(wall1 - wall0, 1e-9) if srv0 is not None and srv1 is not None else None
    host_busy = 1 - (host1[1] - host0[1]) / (host1[0] - host0[0]) if host0 and host1 and host1[0] > host0[0] else None
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
        "measure_s": round(wall1 - wall0, 2),
        "client_cpu_pct": round(cli_cpu * 100, 1),
        "server_cpu_pct": None if srv_cpu is None else round(srv_cpu * 100, 1),
        "host_busy_pct": None if host_busy is None else round(host_busy * 100, 1),
        "generator_bound": cli_cpu >= GENERATOR_BOUND,
    }


async def run_all(server: Server, admin_token: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(
        base_url=server.url, headers={"Authorization": f"Bearer {admin_token}"}, timeout=10.0
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
    await run_step(server, admin_token, market, 1, warm)
    steps = []
    for n in args.subscribers:
        log(f"  {n} subscriber(s): connecting, then {args.rate:g} updates/s for {args.duration:g} s")
        result = await run_step(server, admin_token, market, n, args)
        lag = result["lag_ms"]
        log(
            f"  {n} subscriber(s): connected {result['connected']} in {result['connect_s']:.1f} s, "
            f"published {result['published']}, delivered {result['delivered']}/{result['expected']}, "
            f"drops {result['drops']}, lag p50 {_fmt(lag['p50'])} p99 {_fmt(lag['p99'])} ms, "
            f"cli cpu {result['client_cpu_pct']:.0f}%, srv cpu {_fmt(result['server_cpu_pct'], '.0f')}%"
        )
        steps.append(result)
    return steps


# ---------------------------------------------------------------------------------------- report


def add_ratios(steps: list[dict[str, Any]]) -> None:
    base = steps[0]["lag_ms"]["p99"] if steps else None
    for s in steps:
        p99 = s["lag_ms"]["p99"]
        s["p99_ratio_to_baseline"] = round(p99 / base, 2) if base and p99 is not None else None


def render_text(report: dict[str, Any]) -> str:
    cfg = report["config"]
    steps = report["steps"]
    lines = [
        f"odds fan-out benchmark: {cfg['rate']:g} price changes/s for {cfg['duration']:g} s per step, "
        f"subscriber queue {cfg['queue']}, drain timeout {cfg['drain_timeout']:g} s, {cfg['cpus']} CPUs, "
        f"machine {_fmt(cfg.get('host_busy_before_pct'), '.0f')}% busy before the start",
        "lag = time this process read the event - its published_at (stamped by the server after the commit): "
        "server fan-out + socket + this process's reading/parsing; every event of every subscriber counted",
        "drops = subscribers that got `event: overflow` or were disconnected (srv drop = the server's count); "
        "srv queue = server's mean publish -> dequeue time; cli/srv cpu% = this process / the server "
        "(100 = one core) from the first publish to the last delivery; * = this process used >= 90% of a core",
        "",
        f"{'subs':>5} {'conn s':>6} {'pub':>5} {'delivered':>10} {'expected':>10} {'drops':>5} {'srv drop':>8} "
        f"{'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8} {'srv queue':>9} {'cli cpu%':>8} "
        f"{'srv cpu%':>8} {'host%':>6} {'p99 x':>7}",
    ]
    for s in steps:
        lag = s["lag_ms"]
        flag = "*" if s["generator_bound"] else " "
        lines.append(
            f"{s['subscribers']:>5} {s['connect_s']:>6.1f} {s['published']:>5} {s['delivered']:>10} "
            f"{s['expected']:>10} {s['drops']:>5} {s['server_dropped']:>8} "
            f"{_fmt(lag['p50']):>8} {_fmt(lag['p95']):>8} {_fmt(lag['p99']):>8} {_fmt(lag['max']):>8} "
            f"{_fmt(s['server_queue_mean_ms']):>9} {s['client_cpu_pct']:>7.0f}{flag} "
            f"{_fmt(s['server_cpu_pct'], '.0f'):>8} {_fmt(s['host_busy_pct'], '.0f'):>6} "
            f"{_fmt(s['p99_ratio_to_baseline'], '.2f'):>7}"
        )
    if steps:
        base = steps[0]
        lines.append("")
        lines.append(
            f"baseline: p99 lag {_fmt(base['lag_ms']['p99'])} ms at {base['subscribers']} subscriber(s)"
            + "".join(f"; {s['subscribers']} subscribers {_fmt(s['p99_ratio_to_baseline'], '.2f')}x" for s in steps[1:])
        )
    for s in steps:
        notes = []
        if s["failed_to_connect"]:
            notes.append(f"{s['failed_to_connect']} failed to connect")
        if s["missing"]:
            notes.append(f"{s['missing']} events missing")
        if s["delivered"] > s["expected"]:
            notes.append(f"{s['delivered'] - s['expected']} events more than expected")
        if s["overflows"] or s["disconnects"]:
            notes.append(f"{s['overflows']} overflow(s), {s['disconnects']} disconnect(s)")
        if s["out_of_order"]:
            notes.append(f"{s['out_of_order']} events out of order")
        if s["drain_timed_out"]:
            notes.append("the drain timed out before every subscriber had every update")
        if s["publish_errors"]:
            notes.append(f"publish errors {s['publish_errors']}")
        if s["leftover_subscribers_before"]:
            notes.append(f"{s['leftover_subscribers_before']:g} subscribers of the previous step still on the server")
        if s["generator_bound"]:
            notes.append("this process was CPU-bound: the lag includes its own backlog, not only the server's")
        if s["subscriber_error_samples"]:
            notes.append(f"errors e.g. {s['subscriber_error_samples'][0]}")
        pub, rtt, late = s["publish_latency_ms"], s["publish_round_trip_ms"], s["publisher_send_lag_ms"]
        achieved = s["published"] / s["publish_window_s"] if s["publish_window_s"] else 0.0
        lines.append(
            f"  {s['subscribers']:>4} subs: publish POST round trip p50 {_fmt(rtt['p50'])} ms p99 {_fmt(rtt['p99'])} "
            f"ms, from schedule p99 {_fmt(pub['p99'])} ms (publisher late p99 {_fmt(late['p99'])} ms), "
            f"{achieved:.1f} updates/s achieved, "
            f"{s['subscribers_complete']}/{s['connected']} subscribers got every update"
            + (f"; {'; '.join(notes)}" if notes else "")
        )
    if cfg["updates_per_step"] < cfg["queue"]:
        lines.append(
            f"note: {cfg['updates_per_step']} updates per step < queue {cfg['queue']}: no subscriber can overflow "
            "in this run however slow it is (raise --rate x --duration or lower --queue to test overflow)"
        )
    for note in report.get("notes", []):
        lines.append(f"note: {note}")
    if report.get("server_log_excerpt"):
        lines.append("server log (warnings/errors, last lines):")
        lines.extend(f"  {line[:300]}" for line in report["server_log_excerpt"])
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
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
    parser.add_argument("--format", choices=("text", "json"), default="text")
    args = parser.parse_args(argv)
    try:
        args.subscribers = [int(n) for n in args.subscribers.split(",") if n.strip()]
    except ValueError:
        parser.error("--subscribers must be a comma-separated list of integers, e.g. 1,100,1000")
    if not args.subscribers or any(n < 1 for n in args.subscribers):
        parser.error("--subscribers must be positive integers")
    if args.rate <= 0 or args.duration <= 0 or args.queue < 1:
        parser.error("--rate, --duration and --queue must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    notes = []
    fd_note = raise_fd_limit(max(args.subscribers) * 2 + FD_HEADROOM)  # before the server starts: it inherits it
    if fd_note:
        notes.append(fd_note)
    baseline = host_busy_over(1.0)
    if baseline is not None and baseline > 0.15:
        log(f"warning: the machine was already {baseline * 100:.0f}% busy before the start; figures will be noisy")
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
        "steps": [],
        "notes": notes,
    }
    failed = None
    with tempfile.TemporaryDirectory(prefix="bench-odds-") as tmp:
        workdir = Path(tmp)
        admin_token = secrets.token_urlsafe(24)
        server = Server(
            f"sqlite:///{workdir / 'bench.db'}",
            workdir,
            admin_token,
            extra_env={
                "PLATFORM_PRICE_MOVER_INTERVAL_SECONDS": "0",
                "PLATFORM_ODDS_SUBSCRIBER_QUEUE": str(args.queue),
            },
        )
        log(f"starting the server on {server.url}")
        try:
            server.start()
            report["steps"] = asyncio.run(run_all(server, admin_token, args))
        except Exception as exc:  # report what we have
            failed = f"{type(exc).__name__}: {exc}"
            log(f"failed: {failed}")
        finally:
            if server.proc is not None and not server.alive():
                notes.append(f"the server exited during the run with code {server.proc.returncode}")
            server.stop()
        report["server_log_excerpt"] = [
            line
            for line in server.log_tail(200).splitlines()
            if any(word in line for word in ("ERROR", "WARNING", "Traceback", "Error", "error"))
        ][-15:]
    add_ratios(report["steps"])
    report["elapsed_s"] = round(time.monotonic() - started, 1)
    if failed:
        report["failed"] = failed
    if args.format == "json":
        print(json.dumps(report, indent=2))
    else:
        print(render_text(report))
        if failed:
            print(f"FAILED: {failed}")
        print(f"\n(total run time {report['elapsed_s']:.0f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
