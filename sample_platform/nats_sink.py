"""The outbox relay's sink on NATS JetStream: each outbox event is published to the stream
`PLATFORM_EVENTS` (file storage, subjects `platform.events.<event_type>`) with `Nats-Msg-Id` = its event
id, so the server drops a re-send inside its duplicate window, and the W3C `traceparent` of the request
that wrote it as a header. `deliver` returns only when the server has acknowledged every message of the
batch; otherwise it raises `BrokerUnavailable`, the relay keeps its cursor, and the batch is sent again
(the outbox is the buffer: bets keep being accepted while the broker is away).

    sink = NatsSink("nats://127.0.0.1:4222")
    OutboxRelay(engine, sink).relay_once()
    sink.close()

nats-py is asyncio; the relay is a thread. The sink runs its own event loop in a thread of its own and
hands it each batch.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import nats
from nats.errors import Error as NatsError
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import NotFoundError

from sample_platform.outbox import OutboxMessage, SinkUnavailable

log = logging.getLogger(__name__)
STREAM = "PLATFORM_EVENTS"
SUBJECT_PREFIX = "platform.events"
DUPLICATE_WINDOW_SECONDS = 120.0
ACK_TIMEOUT_SECONDS = 10.0


async def _quiet(exc: Exception) -> None:
    log.debug("nats: %s: %s", type(exc).__name__, exc)


class BrokerUnavailable(SinkUnavailable):
    """The broker did not acknowledge a batch; nothing of it is marked delivered."""


def subject_of(event_type: str) -> str:
    return f"{SUBJECT_PREFIX}.{event_type}"


def stream_config(name: str = STREAM) -> StreamConfig:
    return StreamConfig(
        name=name,
        subjects=[f"{SUBJECT_PREFIX}.>"],
        storage=StorageType.FILE,
        duplicate_window=DUPLICATE_WINDOW_SECONDS,
    )


class NatsSink:
    def __init__(self, url: str, *, stream: str = STREAM, connect_timeout: float = 2.0) -> None:
        self.url = url
        self.stream = stream
        self.connect_timeout = connect_timeout
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="nats-sink", daemon=True)
        self._thread.start()
        self._nc: Any = None
        self._js: Any = None
        self._down_since_logged = False

    def _run(self, coroutine: Any, timeout: float) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    async def _connect(self) -> None:
        if self._nc is not None and self._nc.is_connected:
            return
        if self._nc is not None:
            await self._close()
        # No reconnection inside the client: a lost connection fails the batch, and the relay retries.
        self._nc = await nats.connect(
            self.url,
            connect_timeout=self.connect_timeout,
            allow_reconnect=False,
            max_reconnect_attempts=1,
            reconnect_time_wait=0.1,
            error_cb=_quiet,
        )  # nats-py retries a first connect forever unless max_reconnect_attempts is positive
        self._js = self._nc.jetstream(timeout=ACK_TIMEOUT_SECONDS)
        try:
            await self._js.stream_info(self.stream)
        except NotFoundError:
            await self._js.add_stream(stream_config(self.stream))
            log.info("created the JetStream stream %s", self.stream)

    async def _publish(self, messages: list[OutboxMessage]) -> None:
        await self._connect()
        acks = [
            self._js.publish(
                subject_of(m.event_type),
                m.to_json().encode(),
                stream=self.stream,
                headers={"Nats-Msg-Id": m.event_id, **({"traceparent": m.traceparent} if m.traceparent else {})},
            )
            for m in messages
        ]
        await asyncio.gather(*acks)

    async def _close(self) -> None:
        nc, self._nc, self._js = self._nc, None, None
        try:
            await nc.close()
        except Exception:  # already closed or never connected
            pass

    def deliver(self, messages: list[OutboxMessage]) -> None:
        if not messages:
            return
        try:
            self._run(self._publish(messages), ACK_TIMEOUT_SECONDS + self.connect_timeout + 5)
        except (NatsError, OSError, TimeoutError) as exc:
            if not self._down_since_logged:
                log.warning("the broker at %s did not take the outbox's events (%s); retrying", self.url, exc)
                self._down_since_logged = True
            try:
                self._run(self._close(), 5)
            except Exception:
                pass
            raise BrokerUnavailable(f"{self.url}: {type(exc).__name__}: {exc}") from exc
        if self._down_since_logged:
            log.info("the broker at %s takes the outbox's events again", self.url)
            self._down_since_logged = False

    def close(self) -> None:
        if self._nc is not None:
            try:
                self._run(self._close(), 5)
            except Exception:
                pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
