"""Dead letters on the stream: list them, and replay one to its original subject once its cause is fixed.

    letters = asyncio.run(list_dead_letters("nats://127.0.0.1:4222"))
    asyncio.run(replay_dead_letter("nats://127.0.0.1:4222", seq=3))

A replay publishes the event again (a `Nats-Msg-Id` of its own, so the duplicate window does not drop
it) and removes the dead letter; the ingesters append it, and the audit log keeps one entry per event id
however often an event is replayed.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from nats.js.errors import NotFoundError

from controlplane.streams.ingester import ensure_streams
from controlplane.streams.wire import DEAD_STREAM, STREAM, BadEvent, StreamEvent, connect_once


class DeadLetterError(Exception):
    """A replay that cannot be done (no such dead letter)."""


@dataclass(frozen=True)
class DeadLetter:
    seq: int  # in the dead-letter stream: what --replay takes
    subject: str
    original_subject: str
    original_seq: int | None
    event_id: str | None
    event_type: str
    reason: str
    deliveries: int | None
    at: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _letter(raw: Any) -> DeadLetter:
    headers = raw.headers or {}
    try:
        event: StreamEvent | None = StreamEvent.from_bytes(raw.data or b"")
    except BadEvent:
        event = None
    original = headers.get("Original-Seq")
    deliveries = headers.get("Deliveries")
    return DeadLetter(
        seq=raw.seq,
        subject=raw.subject,
        original_subject=headers.get("Original-Subject", ""),
        original_seq=int(original) if original and original.isdigit() else None,
        event_id=event.event_id if event else None,
        event_type=raw.subject.removeprefix("platform.dead."),
        reason=headers.get("Dead-Reason", ""),
        deliveries=int(deliveries) if deliveries and deliveries.isdigit() else None,
        at=raw.time.isoformat().replace("+00:00", "Z") if getattr(raw, "time", None) else "",
    )


async def _connect(url: str) -> Any:
    return await connect_once(url)


async def list_dead_letters(url: str, *, limit: int = 1000) -> list[DeadLetter]:
    nc = await _connect(url)
    try:
        js = nc.jetstream(timeout=10)
        await ensure_streams(js)
        state = (await js.stream_info(DEAD_STREAM)).state
        letters: list[DeadLetter] = []
        if not state.messages:  # an empty stream's first and last seq are 0, which no message has
            return letters
        for seq in range(max(state.first_seq, 1), state.last_seq + 1):
            if len(letters) >= limit:
                break
            try:
                letters.append(_letter(await js.get_msg(DEAD_STREAM, seq)))
            except NotFoundError:  # replayed (deleted) or never there
                continue
        return letters
    finally:
        await nc.close()


async def replay_dead_letter(url: str, *, seq: int) -> DeadLetter:
    nc = await _connect(url)
    try:
        js = nc.jetstream(timeout=10)
        await ensure_streams(js)
        try:
            raw = await js.get_msg(DEAD_STREAM, seq)
        except NotFoundError:
            raise DeadLetterError(f"no dead letter {seq}; `controlplane audit dead-letters` lists them") from None
        letter = _letter(raw)
        if not letter.original_subject:
            raise DeadLetterError(f"dead letter {seq} does not name its original subject")
        headers = {"Nats-Msg-Id": f"replay-{STREAM}-{letter.original_seq}-{seq}"}
        traceparent = (raw.headers or {}).get("traceparent")
        if traceparent:
            headers["traceparent"] = traceparent
        await js.publish(letter.original_subject, raw.data, stream=STREAM, headers=headers)
        await js.delete_msg(DEAD_STREAM, seq)
        return letter
    finally:
        await nc.close()


def as_json(letters: list[DeadLetter]) -> str:
    return json.dumps([letter.to_dict() for letter in letters], indent=2)
