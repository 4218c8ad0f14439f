"""Audit ingestion as a consumer group: every `controlplane audit ingest` process pulls from one durable
JetStream consumer (explicit acks), so adding a process adds throughput and each event goes to one of
them at a time. An event is acked only after its audit entry is committed; the audit log refuses a
second entry for one event id, so a redelivery (a process killed between commit and ack) appends
nothing. A message that is not an outbox event, or whose append fails `max_deliver` times, is a dead
letter: it is published to `platform.dead.<event_type>` (stream PLATFORM_DEAD_LETTERS) with why, an
audit entry (kind `system`, type `dead_letter`) records it, and it is terminated on the stream.

    ingester = Ingester("nats://127.0.0.1:4222", sink, log, durable="audit-ingest")
    asyncio.run(ingester.run(stop))       # until stop is set (SIGTERM)
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import nats
from nats.errors import ConnectionClosedError, NoServersError
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import AckPolicy, ConsumerConfig, StorageType, StreamConfig
from nats.js.errors import BadRequestError, NotFoundError
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from controlplane.streams.wire import (
    DEAD_PREFIX,
    DEAD_STREAM,
    STREAM,
    SUBJECTS,
    BadEvent,
    StreamEvent,
    dead_subject,
)

log = logging.getLogger(__name__)
DUPLICATE_WINDOW_SECONDS = 120.0
LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class Sink(Protocol):
    def deliver(self, messages: list) -> None: ...


class EntryLog(Protocol):
    def append(
        self, *, kind: str, actor: str, subject: str, payload: dict[str, Any], event_id: str | None = None
    ) -> Any: ...


@dataclass
class IngestMetrics:
    registry: CollectorRegistry = field(default_factory=lambda: CollectorRegistry(auto_describe=True))
    otlp_lag: Any = None  # the OTLP histogram of the stream slice (controlplane.streams.telemetry), if exporting

    def __post_init__(self) -> None:
        r = self.registry
        self.appended = Counter("audit_ingest_events", "Stream events appended to the audit log.", registry=r)
        self.dead = Counter("audit_ingest_dead_letters", "Stream events sent to the dead-letter subject.", registry=r)
        self.pending = Gauge(
            "audit_ingest_pending", "Events in the stream not yet acked by the consumer group.", registry=r
        )
        self.lag = Histogram(
            "audit_ingest_lag_seconds",
            "From an event's commit in the platform to its ack after the audit append.",
            buckets=LAG_BUCKETS,
            registry=r,
        )


def events_stream() -> StreamConfig:
    return StreamConfig(
        name=STREAM, subjects=[SUBJECTS], storage=StorageType.FILE, duplicate_window=DUPLICATE_WINDOW_SECONDS
    )


def dead_stream() -> StreamConfig:
    return StreamConfig(name=DEAD_STREAM, subjects=[f"{DEAD_PREFIX}>"], storage=StorageType.FILE)


async def ensure_streams(js: Any) -> None:
    """Create the event and dead-letter streams unless they exist (another process may be creating them)."""
    for config in (events_stream(), dead_stream()):
        try:
            await js.stream_info(config.name)
        except NotFoundError:
            try:
                await js.add_stream(config)
            except BadRequestError:  # created meanwhile by another ingester or the platform
                await js.stream_info(config.name)


def _age_seconds(created_at: str) -> float | None:
    try:
        created = datetime.fromisoformat(created_at.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return None
    created = created if created.tzinfo else created.replace(tzinfo=UTC)
    return max(0.0, time.time() - created.timestamp())


class Ingester:
    def __init__(
        self,
        url: str,
        sink: Sink,
        log_: EntryLog,
        *,
        durable: str,
        batch: int = 100,
        max_deliver: int = 5,
        ack_wait: float = 30.0,
        metrics: IngestMetrics | None = None,
    ) -> None:
        self.url = url
        self.sink = sink
        self.entries = log_
        self.durable = durable
        self.batch = batch
        self.max_deliver = max_deliver
        self.ack_wait = ack_wait
        self.metrics = metrics or IngestMetrics()
        self._last_error_log = float("-inf")

    def consumer_config(self) -> ConsumerConfig:
        # The server redelivers without end; the ingester itself dead-letters at max_deliver, so an event
        # whose deliveries ran out while a process was killed mid-batch is never left undelivered.
        return ConsumerConfig(
            durable_name=self.durable,
            ack_policy=AckPolicy.EXPLICIT,
            max_deliver=-1,
            ack_wait=self.ack_wait,
            filter_subject=SUBJECTS,
        )

    async def run(self, stop: asyncio.Event) -> None:
        nc = await nats.connect(
            self.url,
            connect_timeout=2,
            allow_reconnect=True,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            error_cb=self._broker_error,
        )
        try:
            js = nc.jetstream(timeout=10)
            await ensure_streams(js)
            try:
                sub = await js.pull_subscribe(
                    SUBJECTS, durable=self.durable, stream=STREAM, config=self.consumer_config()
                )
            except BadRequestError as exc:  # the group exists with other settings: join it as it is
                log.warning("consumer %s exists with other settings (%s); joining it as it is", self.durable, exc)
                sub = await js.pull_subscribe_bind(durable=self.durable, stream=STREAM)
            log.info("ingesting %s as consumer %s", STREAM, self.durable)
            while not stop.is_set():
                try:
                    messages = await self._pull(sub)
                except NatsTimeout:
                    await self._observe(sub)
                    continue
                except (ConnectionClosedError, NoServersError, NatsError, OSError) as exc:
                    log.warning("the broker is away (%s); waiting", type(exc).__name__)
                    await asyncio.sleep(0.5)
                    continue
                try:
                    await self.handle(js, messages)
                except (NatsError, OSError) as exc:  # unsettled messages come back after ack_wait
                    log.warning("a batch was left unsettled (%s); it will be delivered again", exc)
                    await asyncio.sleep(0.5)
                await self._observe(sub)
        finally:
            await nc.close()

    async def _pull(self, sub: Any) -> list[Any]:
        """Wait (up to 1 s) for one event, then take whatever else is there, up to the batch. A single
        fetch of the whole batch would hold a trickle of events until the batch filled or its wait ran
        out: up to a second of lag when the group has more members than the load needs."""
        messages = await sub.fetch(1, timeout=1.0)
        if self.batch > 1:
            try:
                messages += await sub.fetch(self.batch - 1, timeout=0.05)
            except (NatsTimeout, TimeoutError, NatsError, OSError):
                # Nothing more now (the client raises its own timeout or asyncio's), or the broker went
                # away: the event in hand is handled all the same, never left to wait out ack_wait.
                pass
        return messages

    async def _broker_error(self, exc: Exception) -> None:
        """The client's error callback: a line every 10 s at most while the broker cannot be reached."""
        now = time.monotonic()
        if now - self._last_error_log >= 10:
            self._last_error_log = now
            log.warning("NATS at %s: %s: %s (retrying)", self.url, type(exc).__name__, exc)

    async def _observe(self, sub: Any) -> None:
        try:
            info = await sub.consumer_info()
        except Exception:  # the broker is away: the gauge keeps its last value
            return
        self.metrics.pending.set((info.num_pending or 0) + (info.num_ack_pending or 0))

    async def handle(self, js: Any, messages: list[Any]) -> None:
        events: list[tuple[Any, StreamEvent]] = []
        for message in messages:
            try:
                events.append((message, StreamEvent.from_bytes(message.data)))
            except BadEvent as exc:
                await self.dead_letter(js, message, None, str(exc))
        if not events:
            return
        try:
            await asyncio.to_thread(self.sink.deliver, [event for _, event in events])
        except Exception:
            # One of them, or the audit log itself: each on its own, so a poison event stops only itself.
            for message, event in events:
                await self._one(js, message, event)
            return
        for message, event in events:
            await self._acked(message, event)

    async def _settle(self, action: Any) -> bool:
        """Ack, nak or term; while the broker is away the message is simply delivered again later."""
        try:
            await action
        except (NatsError, OSError) as exc:
            log.warning("could not settle a message with the broker (%s); it will be delivered again", exc)
            return False
        return True

    async def _one(self, js: Any, message: Any, event: StreamEvent) -> None:
        try:
            await asyncio.to_thread(self.sink.deliver, [event])
        except Exception as exc:
            if message.metadata.num_delivered >= self.max_deliver:  # deliveries counted by the server
                await self.dead_letter(js, message, event, f"{type(exc).__name__}: {exc}"[:500])
            else:
                await self._settle(message.nak(delay=1))
            return
        await self._acked(message, event)

    async def _acked(self, message: Any, event: StreamEvent) -> None:
        if not await self._settle(message.ack()):
            return
        self.metrics.appended.inc()
        age = _age_seconds(event.created_at)
        if age is not None:
            self.metrics.lag.observe(age)
            if self.metrics.otlp_lag is not None:
                self.metrics.otlp_lag.record(age)

    async def dead_letter(self, js: Any, message: Any, event: StreamEvent | None, why: str) -> None:
        event_type = event.event_type if event else message.subject.removeprefix("platform.events.")
        stream_seq = message.metadata.sequence.stream
        headers = {
            "Nats-Msg-Id": f"dead-{stream_seq}",
            "Dead-Reason": why.replace("\n", " ")[:500],
            "Original-Subject": message.subject,
            "Original-Seq": str(stream_seq),
            "Deliveries": str(message.metadata.num_delivered),
        }
        if message.headers and message.headers.get("traceparent"):
            headers["traceparent"] = message.headers["traceparent"]
        payload = {
            "type": "dead_letter",
            "event_id": event.event_id if event else None,
            "event_type": event_type,
            "stream_seq": stream_seq,
            "deliveries": message.metadata.num_delivered,
            "reason": why[:500],
        }
        subject = f"event:{event.event_id}" if event else f"stream:{stream_seq}"
        try:
            # Both are idempotent (the dead stream's duplicate window, the audit log's event id), so a
            # dead letter interrupted here is completed by the next delivery.
            await js.publish(dead_subject(event_type), message.data, stream=DEAD_STREAM, headers=headers)
            await asyncio.to_thread(
                self.entries.append,
                kind="system",
                actor=self.durable,
                subject=subject,
                payload=payload,
                event_id=f"dead-letter:{STREAM}:{stream_seq}",
            )
        except Exception as exc:
            log.warning("could not dead-letter stream seq %s (%s); it will be delivered again", stream_seq, exc)
            await self._settle(message.nak(delay=5))
            return
        await self._settle(message.term())
        self.metrics.dead.inc()
        log.warning("dead letter: %s event at stream seq %s: %s", event_type, stream_seq, why[:200])
