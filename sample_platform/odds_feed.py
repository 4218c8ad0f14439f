"""The odds feed: price changes fanned out to Server-Sent-Events subscribers, and a price mover.

    broker = OddsBroker(metrics, queue_size=256)    # bound to a loop by the odds stream's server
    broker.publish({"market_id": 1, "selection_id": 2, "odds": "2.40", "price_version": 7})

Slow subscribers never delay the others: publishing writes each update to every subscriber's socket
without waiting. A subscriber with more than `queue_size` updates still unsent (it has fallen that
far behind) is disconnected with a final `overflow` event and counted in
`platform_odds_subscribers_dropped_total`; it should reconnect and re-read `GET /v1/markets`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from sqlalchemy import Engine, select

from sample_platform import markets
from sample_platform.clock import utcnow
from sample_platform.db import reader
from sample_platform.metrics import PlatformMetrics
from sample_platform.models import Market, MarketStatus, Selection, table
from sample_platform.problems import Problem
from sample_platform.telemetry import odds_publish_lag

if TYPE_CHECKING:
    from sample_platform.odds_bus import OddsBus

log = logging.getLogger(__name__)
KEEPALIVE_SECONDS = 15.0
ABORT_AFTER_DROP_SECONDS = 10.0  # a dropped subscriber that never reads its overflow notice is cut off


@dataclass(eq=False)
class Subscriber:
    """One SSE connection: the writer of its socket, and how many updates it was sent."""

    writer: asyncio.StreamWriter
    sent: int = field(default=0)
    dropped: bool = False

    def buffered(self) -> int:
        return self.writer.transport.get_write_buffer_size()


class OddsBroker:
    """Fans each update out to every subscriber's socket, on the loop it is bound to (the odds stream's).

    Each update is framed once and written to every subscriber without waiting. A subscriber whose
    socket has more than `queue_size` updates' worth of bytes still unsent has fallen that far behind:
    it gets a final `overflow` event and is disconnected."""

    def __init__(self, metrics: PlatformMetrics, *, queue_size: int = 256) -> None:
        self.metrics = metrics
        self.queue_size = queue_size
        self._subscribers: set[Subscriber] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._frame: Callable[[str], bytes] = str.encode
        self._seq = 0
        self._seq_lock = threading.Lock()
        self.bus: OddsBus | None = None  # set when odds go through NATS (sample_platform.odds_bus)

    def bind(self, loop: asyncio.AbstractEventLoop | None, frame: Callable[[str], bytes] = str.encode) -> None:
        """Fan out on `loop`, framing each event's text with `frame`; None: nobody is listening."""
        self._loop, self._frame = loop, frame

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def publish(self, update: dict) -> None:
        """Publish a change (callable from any thread), stamped with its publish time: through the odds
        bus to every replica when there is one, else straight to this replica's subscribers."""
        event = {**update, "published_at": utcnow().isoformat()}
        self.metrics.odds_updates.inc()
        bus = self.bus
        if bus is not None:
            if bus.send(event):
                return
            self.metrics.odds_bus_unsent.inc()
        self.deliver(event)

    def deliver(self, event: dict) -> None:
        """Fan a published change out to this replica's subscribers (callable from any thread), with this
        replica's own sequence as the SSE id."""
        with self._seq_lock:
            self._seq += 1
            seq = self._seq
        event = {**event, "seq": seq}
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            published = datetime.fromisoformat(str(event.get("published_at"))).timestamp()
        except ValueError:
            published = time.time()
        # Framed once here, not once per subscriber.
        chunk = self._frame(f"id: {seq}\nevent: odds\ndata: {json.dumps(event, separators=(',', ':'))}\n\n")
        try:
            loop.call_soon_threadsafe(self._fan_out, chunk, published)
        except RuntimeError:  # the loop closed meanwhile: nobody is listening
            pass

    def attach(self, writer: asyncio.StreamWriter) -> Subscriber:
        """A new subscriber on this socket (call on the bound loop, after the response head)."""
        subscriber = Subscriber(writer)
        writer.write(self._frame("retry: 2000\n: connected\n\n"))
        self._subscribers.add(subscriber)
        self.metrics.odds_subscribers.set(len(self._subscribers))
        return subscriber

    def detach(self, subscriber: Subscriber) -> None:
        self._subscribers.discard(subscriber)
        self.metrics.odds_subscribers.set(len(self._subscribers))

    def keepalive(self) -> None:
        chunk = self._frame(": keepalive\n\n")
        for subscriber in list(self._subscribers):
            subscriber.writer.write(chunk)

    def _fan_out(self, chunk: bytes, published: float) -> None:
        limit = self.queue_size * len(chunk)
        written = 0
        for subscriber in list(self._subscribers):
            if subscriber.buffered() + len(chunk) > limit:
                self._drop(subscriber)
                continue
            subscriber.writer.write(chunk)
            subscriber.sent += 1
            written += 1
        if written:
            # One observation per update: fresh only once every subscriber's socket has it (the clock
            # of the replica that published it, when it came through the bus).
            lag = max(0.0, time.time() - published)
            self.metrics.odds_publish_lag.observe(lag)
            odds_publish_lag.record(lag)

    def _drop(self, subscriber: Subscriber) -> None:
        subscriber.dropped = True
        self.detach(subscriber)
        self.metrics.odds_subscribers_dropped.inc()
        detail = {"reason": f"more than {self.queue_size} updates behind; reconnect and re-read /v1/markets"}
        subscriber.writer.write(self._frame(f"event: overflow\ndata: {json.dumps(detail)}\n\n"))
        subscriber.writer.close()  # after what is buffered; a client that never reads is cut off below
        if self._loop is not None:
            self._loop.call_later(ABORT_AFTER_DROP_SECONDS, subscriber.writer.transport.abort)


def change_and_publish(engine: Engine, broker: OddsBroker, *, market_id: int, selection_id: int, odds: Decimal) -> dict:
    """Change a price (committed) and then publish it: subscribers never see an uncommitted price."""
    view = markets.change_odds(engine, market_id=market_id, selection_id=selection_id, odds=odds)
    selection = next(s for s in view["selections"] if s["id"] == selection_id)
    broker.publish(
        {
            "market_id": market_id,
            "selection_id": selection_id,
            "odds": selection["odds"],
            "price_version": view["price_version"],
        }
    )
    return view


class PriceMover:
    """Moves one random price of an open market every `interval` seconds, like a trading desk."""

    def __init__(self, engine: Engine, broker: OddsBroker, *, interval: float, seed: int | None = None) -> None:
        self.engine = engine
        self.broker = broker
        self.interval = interval
        self.rng = random.Random(seed)

    def step(self) -> dict | None:
        with reader(self.engine).connect() as conn:
            rows = conn.execute(
                select(table(Selection).c.market_id, table(Selection).c.id, table(Selection).c.odds)
                .join(table(Market), table(Market).c.id == table(Selection).c.market_id)
                .where(table(Market).c.status == MarketStatus.OPEN.value)
            ).all()
        if not rows:
            return None
        market_id, selection_id, odds = self.rng.choice(rows)
        moved = Decimal(odds) * Decimal(str(self.rng.choice((0.95, 0.97, 0.98, 1.02, 1.03, 1.05))))
        new_odds = min(max(moved.quantize(Decimal("0.01")), Decimal("1.01")), Decimal("1000"))
        try:
            return change_and_publish(
                self.engine, self.broker, market_id=market_id, selection_id=selection_id, odds=new_odds
            )
        except Problem:  # the market closed between the read and the change
            return None

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(self.interval):
            try:
                self.step()
            except Exception:
                log.exception("price mover step failed; continuing")
