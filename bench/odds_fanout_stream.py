"""The odds fan-out benchmark's two sides of the stream: SSE subscribers on raw asyncio connections, each
event's lag recorded on arrival, and the trader changing prices at a steady rate; plus the server's
own odds-feed series from /metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx

from sample_platform.loadgen import Histogram


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


def stream_address(url: str) -> tuple[str, int]:
    """Where the API's `GET /v1/odds/stream` redirects to: the odds stream's own server."""
    response = httpx.get(f"{url}/v1/odds/stream", follow_redirects=False, timeout=10.0)
    if response.status_code not in (301, 302, 307, 308):
        return "127.0.0.1", httpx.URL(url).port or 80  # a server that streams on the API's own port
    location = httpx.URL(response.headers["location"])
    return location.host, location.port or 80


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
