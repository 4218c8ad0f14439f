"""Money flow and changes into the log: an outbox sink, pseudonymous subjects, and a money checker.

Usage:

    sink = OutboxAuditSink(log, SubjectKeys(engine))
    OutboxRelay(platform_engine, sink).drain()      # at-least-once in, exactly once in the log

Account identifiers never enter the log: entries hold HMAC-SHA256 pseudonyms under a key per
account, kept outside the append-only tables. Deleting that key (crypto-shredding, for erasure after
the retention period) leaves the entries and every proof intact but unlinkable to the person.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_DOWN, Decimal
from typing import Any

from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from sqlalchemy import Engine, delete, select
from sqlalchemy.exc import IntegrityError

from audit.canonical import floats_as_strings
from audit.log import AuditLog
from audit.schema import entries, subject_keys

_tracer = trace.get_tracer("audit.sink")
_PROPAGATOR = TraceContextTextMapPropagator()
MAX_LINKS = 128  # the OpenTelemetry SDK's default link limit per span
SETTLEMENT_TYPES = {"won": "payout", "lost": "bet_lost", "void": "void"}


class SubjectKeys:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _key(self, subject: str) -> bytes:
        with self.engine.connect() as conn:
            found = conn.execute(select(subject_keys.c.hmac_key).where(subject_keys.c.subject == subject)).scalar()
        if found is not None:
            return bytes.fromhex(found)
        key = secrets.token_bytes(32)
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    subject_keys.insert().values(subject=subject, hmac_key=key.hex(), created_at=datetime.now(UTC))
                )
        except IntegrityError:  # another writer created it first: use theirs
            return self._key(subject)
        return key

    def pseudonym(self, subject: str) -> str:
        return hmac.new(self._key(subject), subject.encode(), hashlib.sha256).hexdigest()

    def shred(self, subject: str) -> bool:
        """Erase the subject's key: its pseudonyms can no longer be linked to it."""
        with self.engine.begin() as conn:
            return conn.execute(delete(subject_keys).where(subject_keys.c.subject == subject)).rowcount == 1

    def exists(self, subject: str) -> bool:
        with self.engine.connect() as conn:
            return (
                conn.execute(select(subject_keys.c.subject).where(subject_keys.c.subject == subject)).scalar()
                is not None
            )


class OutboxAuditSink:
    """Delivers platform outbox messages (objects with event_id, event_type, aggregate_*, payload).

    `annotate`, if given, is called for each change made through the platform's admin API (`change.*`
    events) and its keys are added to the entry's payload: the control plane passes its error budget
    policy there, so a change made while a slice is frozen says `policy: freeze`."""

    def __init__(self, log: AuditLog, keys: SubjectKeys, annotate: Callable[[], dict[str, Any]] | None = None) -> None:
        self.log = log
        self.keys = keys
        self.annotate = annotate

    def deliver(self, messages: list) -> None:
        """Append the messages' entries in one batch, in a span that links to the request behind each
        message (its W3C `traceparent`, when the platform traced it)."""
        links = []
        for message in messages[:MAX_LINKS]:
            parent = getattr(message, "traceparent", None)
            if parent:
                context = trace.get_current_span(_PROPAGATOR.extract({"traceparent": parent})).get_span_context()
                if context.is_valid:
                    links.append(trace.Link(context, {"event.id": str(message.event_id)}))
        with _tracer.start_as_current_span("audit append", links=links) as span:
            span.set_attribute("audit.entries", len(messages))
            self.log.append_many([self.entry(m) for m in messages])

    def entry(self, message: Any) -> dict:
        payload = dict(message.payload)
        if "account_id" in payload:
            payload["account"] = self.keys.pseudonym(f"account:{payload.pop('account_id')}")
        event_type = message.event_type
        if event_type.startswith("change."):
            kind, kind_type = "change", event_type.removeprefix("change.")
            actor = str(payload.get("actor") or "platform")
            if self.annotate is not None:
                payload.update(self.annotate())
        elif event_type.startswith("market."):
            kind, kind_type, actor = "change", event_type.replace(".", "_"), "platform"
        elif event_type == "money.deposit":
            kind, kind_type, actor = "money", "deposit", "platform"
        elif event_type == "bet.placed":
            kind, kind_type, actor = "money", "bet_placed", "platform"
        elif event_type == "bet.settled":
            kind, kind_type, actor = (
                "money",
                SETTLEMENT_TYPES.get(str(payload.get("outcome")), "bet_settled"),
                "platform",
            )
        elif event_type == "bet.settlement_reversed":
            kind, kind_type, actor = "money", "resettlement", "platform"
        else:
            kind, kind_type, actor = "system", event_type, "platform"
        subject = f"{message.aggregate_type}:{message.aggregate_id}"
        if message.aggregate_type == "account":
            subject = f"account:{payload.get('account', '')}"
        return {
            "kind": kind,
            "actor": actor,
            "subject": subject,
            "payload": {"type": kind_type, **floats_as_strings(payload)},
            "event_id": message.event_id,
        }


@dataclass
class MoneyCheck:
    bets: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_money(log: AuditLog) -> MoneyCheck:
    """Money invariants over the log alone: every settlement has its placement; a win pays
    stake x bound odds (rounded down), a void returns the stake, a loss pays nothing."""
    placed: dict[str, dict] = {}
    standing: dict[str, dict] = {}
    with log.engine.connect() as conn:
        rows = conn.execute(select(entries.c.entry).where(entries.c.kind == "money").order_by(entries.c.seq))
        for (text,) in rows:
            document = json.loads(text)
            payload, subject = document["payload"], document["subject"]
            if payload["type"] == "bet_placed":
                placed[subject] = payload
            elif payload["type"] in ("payout", "bet_lost", "void", "bet_settled"):
                standing[subject] = payload
    result = MoneyCheck(bets=len(placed))
    for subject, settled in standing.items():
        bet = placed.get(subject)
        if bet is None:
            result.problems.append(f"{subject} was settled but never placed")
            continue
        stake = bet["stake_minor"]
        expected = {
            "payout": int((Decimal(stake) * Decimal(bet["odds"])).to_integral_value(rounding=ROUND_DOWN)),
            "void": stake,
            "bet_lost": 0,
        }.get(settled["type"])
        if expected is not None and settled.get("payout_minor") != expected:
            result.problems.append(
                f"{subject} paid {settled.get('payout_minor')} for {settled['type']}, expected {expected}"
            )
    return result
