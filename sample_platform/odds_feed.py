"""The odds feed: price changes fanned out to Server-Sent-Events subscribers, and a price mover.

    broker = OddsBroker(metrics, queue_size=256); broker.bind(asyncio.get_running_loop())
    broker.publish({"market_id": 1, "selection_id": 2, "odds": "2.40", "price_version": 7})

Slow subscribers never delay the others: publishing puts each update on every subscriber's own
bounded queue without waiting. A subscriber whose queue is full (it has fallen `queue_size` updates
behind) is disconnected with a final `overflow` event and counted in
`platform_odds_subscribers_dropped_total`; it should reconnect and re-read `GET /v1/markets`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal

from sqlalchemy import Engine, select

from sample_platform import markets
from sample_platform.clock import utcnow
from sample_platform.db import reader
from sample_platform.metrics import PlatformMetrics
from sample_platform.models import Market, MarketStatus, Selection, table
from sample_platform.problems import Problem
from sample_platform.telemetry import odds_publish_lag

log = logging.getLogger(__name__)
KEEPALIVE_SECONDS = 15.0
_OVERFLOW = object()


@dataclass(eq=False)
class _Subscriber:
    queue: asyncio.Queue
    dropped: bool = False
    sent: int = field(default=0)


class OddsBroker:
    def __init__(self, metrics: PlatformMetrics, *, queue_size: int = 256) -> None:
        self.metrics = metrics
        self.queue_size = queue_size
        self._subscribers: set[_Subscriber] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._seq = 0
        self._seq_lock = threading.Lock()

    def bind(self, loop: asyncio.AbstractEventLoop | None) -> None:
        """Fan out on `loop` (the odds stream server's); None: nobody is listening."""
        self._loop = loop

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def publish(self, update: dict) -> None:
        """Fan an update out (callable from any thread); stamps its publish time and sequence."""
        with self._seq_lock:
            self._seq += 1
            seq = self._seq
        event = {**update, "seq": seq, "published_at": utcnow().isoformat()}
        self.metrics.odds_updates.inc()
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        # Encoded once here, not once per subscriber.
        text = f"id: {seq}\nevent: odds\ndata: {json.dumps(event, separators=(',', ':'))}\n\n"
        try:
            loop.call_soon_threadsafe(self._fan_out, (text, time.monotonic()))
        except RuntimeError:  # the loop closed meanwhile: nobody is listening
            pass

    def _fan_out(self, item: tuple[str, float]) -> None:
        for subscriber in list(self._subscribers):
            try:
                subscriber.queue.put_nowait(item)
            except asyncio.QueueFull:
                self._drop(subscriber)

    def _drop(self, subscriber: _Subscriber) -> None:
        subscriber.dropped = True
        self._subscribers.discard(subscriber)
        self.metrics.odds_subscribers.set(len(self._subscribers))
        self.metrics.odds_subscribers_dropped.inc()
        while not subscriber.queue.empty():
            subscriber.queue.get_nowait()
        subscriber.queue.put_nowait(_OVERFLOW)

    async def stream(self) -> AsyncIterator[str]:
        """One subscriber's SSE byte stream; ends when the client goes away or falls too far behind."""
        subscriber = _Subscriber(asyncio.Queue(maxsize=self.queue_size))
        self._subscribers.add(subscriber)
        self.metrics.odds_subscribers.set(len(self._subscribers))
        try:
            yield "retry: 2000\n: connected\n\n"
            while True:
                try:
                    item = await asyncio.wait_for(subscriber.queue.get(), timeout=KEEPALIVE_SECONDS)
                except TimeoutError:
                    yield ": keepalive\n\n"
                    continue
                if item is _OVERFLOW:
                    detail = {
                        "reason": f"more than {self.queue_size} updates behind; reconnect and re-read /v1/markets"
                    }
                    yield f"event: overflow\ndata: {json.dumps(detail)}\n\n"
                    return
                text, published = item
                lag = time.monotonic() - published
                self.metrics.odds_publish_lag.observe(lag)
                odds_publish_lag.record(lag)
                subscriber.sent += 1
                yield text
        finally:
            self._subscribers.discard(subscriber)
            self.metrics.odds_subscribers.set(len(self._subscribers))


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
