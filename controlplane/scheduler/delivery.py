"""Delivery of alert transitions to receivers: at least once, with exponential backoff and jitter,
safe with several processes calling at once.

Usage (the scheduler, every minute, after evaluating the SLOs):

    enqueue(engine, new_transition_ids, receivers, now=now)   # idempotent
    stats = deliver_pending(engine, receivers, now=now)       # DeliveryStats
    refresh_firing(engine, receivers, now=now)                # keeps firing alerts open in Alertmanager
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, and_, exists, not_, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from controlplane.clock import as_utc
from controlplane.scheduler.receivers import Receiver, SendResult, Transition
from controlplane.scheduler.tables import deliveries_t, transitions_t
from controlplane.storage import reader

log = logging.getLogger(__name__)

DEFAULT_MAX_ATTEMPTS = 12  # with the backoff below: 3 to 5 hours of trying
BACKOFF_BASE = timedelta(seconds=30)
BACKOFF_CAP = timedelta(hours=1)
# A claimed delivery is not due again for this long (longer than any receiver's timeout), so another
# process does not send it too; if the claiming process dies mid-send, it is retried after that.
CLAIM_LEASE = timedelta(minutes=10)
# last_error of a delivery that will not be tried again starts with this (a permanent failure, or
# out of attempts); the history reports it `failed`.
GAVE_UP = "gave up"


@dataclass
class DeliveryStats:
    """What one `deliver_pending` call did: attempts made, and how they ended."""

    attempted: int = 0
    delivered: int = 0
    retrying: int = 0  # failed this time, due again after a backoff
    failed: int = 0  # permanent failure, or out of attempts: not tried again


@dataclass(frozen=True)
class _Claim:
    transition_id: str
    receiver: str
    attempts: int  # including this one


def backoff(attempts: int, rng: random.Random | None = None) -> timedelta:
    """Delay before the next try after `attempts` failed ones: 30 s doubling up to 1 h, each times a
    random factor in [0.5, 1] so receivers that failed together are not retried in lockstep."""
    ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** min(max(attempts - 1, 0), 20))
    return ceiling * (rng or random).uniform(0.5, 1.0)


def _insert(conn: Connection):
    return pg_insert if conn.dialect.name == "postgresql" else sqlite_insert


def enqueue(engine: Engine, transition_ids: Iterable[str], receivers: Sequence[Receiver], *, now: datetime) -> int:
    """Create a delivery, due `now`, of each transition to each receiver; one that exists is left as it
    is. Returns how many were created."""
    now = as_utc(now)
    created = 0
    with engine.begin() as conn:
        insert = _insert(conn)
        for transition_id in sorted(set(transition_ids)):
            for receiver in receivers:
                fresh = conn.execute(
                    insert(deliveries_t)
                    .values(transition_id=transition_id, receiver=receiver.name, attempts=0, next_attempt_at=now)
                    .on_conflict_do_nothing(index_elements=["transition_id", "receiver"])
                    .returning(deliveries_t.c.receiver)
                ).scalar_one_or_none()
                created += fresh is not None
    return created


def _claim(engine: Engine, receivers: dict[str, Receiver], *, now: datetime, max_attempts: int, limit: int):
    """Take up to `limit` due deliveries for this process: count the attempt and push `next_attempt_at`
    past the lease in one short transaction, before anything is sent."""
    d, t = deliveries_t, transitions_t
    due = (
        select(d.c.transition_id, d.c.receiver, d.c.attempts)
        .join(t, t.c.id == d.c.transition_id, isouter=True)
        .where(
            d.c.delivered_at.is_(None),
            d.c.next_attempt_at <= now,
            d.c.attempts < max_attempts,
            d.c.receiver.in_(sorted(receivers)),
            or_(d.c.last_error.is_(None), not_(d.c.last_error.startswith(GAVE_UP))),
        )
        .order_by(t.c.at, d.c.transition_id, d.c.receiver)  # a firing before its resolution
        .limit(limit)
    )
    claims = []
    with engine.begin() as conn:  # SQLite: BEGIN IMMEDIATE, so claimers take turns
        if conn.dialect.name == "postgresql":
            due = due.with_for_update(of=d, skip_locked=True)
        for transition_id, receiver, attempts in conn.execute(due).all():
            lease = max(CLAIM_LEASE, timedelta(seconds=3 * receivers[receiver].timeout_seconds))
            taken = conn.execute(
                update(d)
                .where(
                    d.c.transition_id == transition_id,
                    d.c.receiver == receiver,
                    d.c.attempts == attempts,
                    d.c.delivered_at.is_(None),
                )
                .values(attempts=attempts + 1, next_attempt_at=now + lease)
            )
            if taken.rowcount == 1:
                claims.append(_Claim(transition_id, receiver, attempts + 1))
    return claims


def _load(engine: Engine, ids: set[str]) -> dict[str, Transition]:
    """The transitions by id; a firing one already resolved carries its resolution time."""
    t, later = transitions_t, transitions_t.alias("later")
    resolved_at = (
        select(later.c.at)
        .where(
            later.c.slo == t.c.slo,
            later.c.severity == t.c.severity,
            later.c.state == "resolved",
            later.c.at >= t.c.at,
        )
        .order_by(later.c.at)
        .limit(1)
        .scalar_subquery()
    )
    with reader(engine).connect() as conn:
        rows = conn.execute(select(t, resolved_at.label("ended_at")).where(t.c.id.in_(sorted(ids)))).all()
    return {row.id: Transition.from_row(row, ended_at=row.ended_at if row.state == "firing" else None) for row in rows}


def _record(
    engine: Engine,
    claim: _Claim,
    result: SendResult,
    *,
    now: datetime,
    max_attempts: int,
    rng: random.Random | None,
    stats: DeliveryStats,
) -> None:
    d = deliveries_t
    if result.outcome == "delivered":
        values: dict[str, object] = {"delivered_at": now, "last_error": None}
        stats.delivered += 1
    elif result.outcome == "permanent":
        values = {"last_error": f"{GAVE_UP}: {result.error}"}
        stats.failed += 1
    elif claim.attempts >= max_attempts:
        values = {"last_error": f"{GAVE_UP} after {claim.attempts} attempts: {result.error}"}
        stats.failed += 1
    else:
        values = {"last_error": result.error, "next_attempt_at": now + backoff(claim.attempts, rng)}
        stats.retrying += 1
    with engine.begin() as conn:
        conn.execute(
            update(d)
            .where(
                d.c.transition_id == claim.transition_id,
                d.c.receiver == claim.receiver,
                d.c.attempts == claim.attempts,
            )
            .values(**values)
        )


def deliver_pending(
    engine: Engine,
    receivers: Sequence[Receiver],
    *,
    now: datetime,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    limit: int = 100,
    rng: random.Random | None = None,
) -> DeliveryStats:
    """Send every delivery due at `now` (up to `limit`) to its receiver, once, and record how it went:
    2xx delivered; network error, 5xx, 408 or 429 tried again after `backoff`, until `max_attempts`;
    any other status a permanent failure, not tried again. Deliveries to receivers not in `receivers`
    wait. Several processes may call this at once: each delivery is claimed by one of them first."""
    now = as_utc(now)
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
    by_name = {r.name: r for r in receivers}
    stats = DeliveryStats()
    if not by_name:
        return stats
    claims = _claim(engine, by_name, now=now, max_attempts=max_attempts, limit=limit)
    transitions = _load(engine, {c.transition_id for c in claims}) if claims else {}
    for claim in claims:
        stats.attempted += 1
        transition = transitions.get(claim.transition_id)
        if transition is None:
            result = SendResult("permanent", f"transition {claim.transition_id} is no longer in the store; not retried")
        else:
            result = by_name[claim.receiver].send(transition, now=now)
        if result.outcome != "delivered":
            log.warning("alert %s to %s: %s", claim.transition_id, claim.receiver, result.error)
        _record(engine, claim, result, now=now, max_attempts=max_attempts, rng=rng, stats=stats)
    return stats


def refresh_firing(engine: Engine, receivers: Sequence[Receiver], *, now: datetime) -> int:
    """Re-send every alert still firing (its latest transition is `firing`) to the receivers that
    expire alerts (Alertmanager), with endsAt moved to `now` + FIRING_TTL, so that an SLO still burning
    stays open there. Only to receivers its firing was delivered to; a failure is tried again at the
    next call. Call it every minute. Returns how many alerts were re-sent."""
    now = as_utc(now)
    refreshing = {r.name: r for r in receivers if r.refreshes_firing}
    if not refreshing:
        return 0
    t, d, later = transitions_t, deliveries_t, transitions_t.alias("later")
    superseded = exists().where(later.c.slo == t.c.slo, later.c.severity == t.c.severity, later.c.at > t.c.at)
    query = (
        select(t, d.c.receiver)
        .join(d, and_(d.c.transition_id == t.c.id, d.c.delivered_at.is_not(None)))
        .where(t.c.state == "firing", ~superseded, d.c.receiver.in_(sorted(refreshing)))
        .order_by(t.c.at, t.c.id)
    )
    with reader(engine).connect() as conn:
        rows = conn.execute(query).all()
    sent = 0
    for row in rows:
        result = refreshing[row.receiver].send(Transition.from_row(row), now=now)
        if result.outcome == "delivered":
            sent += 1
        else:
            log.warning("refreshing firing alert %s at %s: %s", row.id, row.receiver, result.error)
    return sent
