"""The stream's wire contract: names, subjects, and an event as the platform's relay publishes it (the
outbox message's canonical JSON, `Nats-Msg-Id` = its event id, `traceparent` when traced)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

STREAM = "PLATFORM_EVENTS"
SUBJECTS = "platform.events.>"
EVENT_PREFIX = "platform.events."
DEAD_STREAM = "PLATFORM_DEAD_LETTERS"
DEAD_PREFIX = "platform.dead."
DEFAULT_DURABLE = "audit-ingest"


class BadEvent(ValueError):
    """A message that is not an outbox event: it can never be appended, so it is a dead letter at once."""


@dataclass(frozen=True)
class StreamEvent:
    """What `audit.sink.OutboxAuditSink` reads of an outbox message."""

    seq: int
    event_id: str
    aggregate_type: str
    aggregate_id: str
    event_type: str
    payload: dict[str, Any]
    created_at: str
    traceparent: str | None = None

    @classmethod
    def from_bytes(cls, data: bytes) -> StreamEvent:
        try:
            doc = json.loads(data)
        except (ValueError, RecursionError) as exc:
            raise BadEvent(f"not JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise BadEvent("not a JSON object")
        try:
            event = cls(**{k: doc[k] for k in cls.__dataclass_fields__ if k in doc})
        except TypeError as exc:
            raise BadEvent(f"not an outbox event: {exc}") from None
        if not isinstance(event.event_id, str) or not event.event_id or not isinstance(event.payload, dict):
            raise BadEvent("an outbox event needs an event_id and an object payload")
        return event


def dead_subject(event_type: str) -> str:
    return f"{DEAD_PREFIX}{event_type or 'unknown'}"


async def quiet_error(exc: Exception) -> None:
    """The client's error callback: one line, not the client's default traceback per attempt."""
    logging.getLogger("controlplane.streams").debug("nats: %s: %s", type(exc).__name__, exc)


async def connect_once(url: str, *, timeout: float = 3.0) -> Any:
    """A connection for one request: a server that does not answer raises (NoServersError or OSError)
    after two tries. (nats-py retries an unanswered first connect forever unless
    max_reconnect_attempts is positive, whatever allow_reconnect says.)"""
    import nats  # local: nats-py costs ~0.2 s at import, and only a process that connects needs it

    return await nats.connect(
        url, connect_timeout=timeout, allow_reconnect=False, max_reconnect_attempts=1, reconnect_time_wait=0.1,
        error_cb=quiet_error,
    )  # fmt: skip
