"""Odds across replicas: with a NATS server configured, each price change is published on
`odds.<market_id>` and every replica's odds stream subscribes to `odds.>`, so a subscriber on any
replica gets every change (its own replica's too, through the server), in the order the server
received them, once. Core NATS, not JetStream: a price is worth nothing late, and a client that
reconnects re-reads `GET /v1/markets` anyway.

    bus = OddsBus("nats://127.0.0.1:4222", broker)
    broker.bus = bus                        # broker.publish now goes through the server
    loop.create_task(bus.run())             # on the odds stream's loop; delivers to broker.deliver

While the server cannot be reached, changes are fanned out to this replica's subscribers only (and
counted in `platform_odds_bus_unsent_total`); the bus keeps reconnecting.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any

import nats

if TYPE_CHECKING:
    from sample_platform.odds_feed import OddsBroker

log = logging.getLogger(__name__)
SUBJECT_PREFIX = "odds"
RETRY_SECONDS = 1.0


async def _quiet(exc: Exception) -> None:
    log.debug("odds bus: %s: %s", type(exc).__name__, exc)


def subject_of(market_id: int | str) -> str:
    return f"{SUBJECT_PREFIX}.{market_id}"


class OddsBus:
    def __init__(self, url: str, broker: OddsBroker) -> None:
        self.url = url
        self.broker = broker
        self._nc: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped = False

    @property
    def connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    async def run(self) -> None:
        """Connect (again and again until it works), subscribe, and deliver until cancelled."""
        self._loop = asyncio.get_running_loop()
        while not self._stopped:
            try:
                self._nc = await nats.connect(
                    self.url, connect_timeout=2, allow_reconnect=True, max_reconnect_attempts=-1,
                    reconnect_time_wait=0.5, name="sample-platform-odds", error_cb=_quiet,
                )  # fmt: skip
                await self._nc.subscribe(f"{SUBJECT_PREFIX}.>", cb=self._received)
                log.info("odds changes go through NATS at %s", self.url)
                return
            except (OSError, TimeoutError, nats.errors.Error) as exc:
                log.warning("odds bus: cannot reach NATS at %s (%s); retrying", self.url, exc)
                await asyncio.sleep(RETRY_SECONDS)

    async def _received(self, message: Any) -> None:
        try:
            event = json.loads(message.data)
        except ValueError:
            log.warning("odds bus: a message on %s is not JSON; dropped", message.subject)
            return
        if isinstance(event, dict):
            self.broker.deliver(event)

    def send(self, event: dict) -> bool:
        """Publish (callable from any thread); False when the server cannot take it now."""
        loop, nc = self._loop, self._nc
        if loop is None or loop.is_closed() or nc is None or not nc.is_connected:
            return False
        data = json.dumps(event, separators=(",", ":")).encode()
        try:
            asyncio.run_coroutine_threadsafe(nc.publish(subject_of(event["market_id"]), data), loop)
        except RuntimeError:  # the loop closed meanwhile
            return False
        return True

    async def close(self) -> None:
        self._stopped = True
        if self._nc is not None:
            try:
                await self._nc.drain()
            except Exception:  # already closed or never connected
                pass
