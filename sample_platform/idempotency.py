"""Idempotency-Key handling per the IETF draft (draft-ietf-httpapi-idempotency-key-header).

A key is claimed in its own short transaction, then completed inside the transaction that does the
work, so the stored response commits (or not) together with the bet itself:

    claim = claim_key(engine, account_id=7, key="k1", fingerprint=fp, ttl=..., lock=...)
    ... work, then in the same transaction: complete_key(conn, claim, status=201, body=json_text)

Keys are scoped to the account. A claim whose request died (process killed) is taken over after
`lock` seconds; `complete_key` then refuses the old owner, so the work can never commit twice.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, Engine, Row, delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from sample_platform.clock import as_utc, utcnow
from sample_platform.models import IdempotencyKey, table
from sample_platform.problems import Problem

keys_t = table(IdempotencyKey)
MAX_KEY_LENGTH = 255
CLAIM_ROUNDS = 5  # inserts tried when the key's row vanishes between our statements


class ClaimOutcome(StrEnum):
    NEW = "new"  # this request owns the key; do the work
    REPLAY = "replay"  # the work was done; answer with the stored response


@dataclass(frozen=True)
class Claim:
    outcome: ClaimOutcome
    account_id: int
    key: str
    owner: str
    response_status: int | None = None
    response_body: str | None = None


def parse_key_header(raw: str | None) -> str:
    """The header is a Structured Field string (`"abc"`); a bare token is accepted too."""
    if raw is None or not raw.strip():
        raise Problem(
            400,
            "idempotency-key-missing",
            "Idempotency-Key header missing",
            'POST /v1/bets needs an Idempotency-Key header, e.g. Idempotency-Key: "a-fresh-uuid"; '
            "send the same key when you retry the same bet",
        )
    key = raw.strip()
    if len(key) >= 2 and key[0] == key[-1] == '"':
        key = key[1:-1]
    if not key or len(key) > MAX_KEY_LENGTH or not all(0x20 <= ord(ch) < 0x7F for ch in key):
        raise Problem(
            400,
            "idempotency-key-invalid",
            "Idempotency-Key header invalid",
            f"the Idempotency-Key must be 1-{MAX_KEY_LENGTH} printable ASCII characters (a UUID is a good choice)",
        )
    return key


def fingerprint(method: str, path: str, body: Any) -> str:
    """Same request = same method, path and JSON body (key order and whitespace do not matter)."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{method} {path}\n{canonical}".encode()).hexdigest()


def claim_key(
    engine: Engine,
    *,
    account_id: int,
    key: str,
    fingerprint: str,
    ttl: timedelta,
    lock: timedelta,
    now: datetime | None = None,
) -> Claim:
    now = now or utcnow()
    owner = str(uuid.uuid4())
    fresh = {
        "request_hash": fingerprint,
        "state": "in_flight",
        "owner": owner,
        "response_status": None,
        "response_body": None,
        "created_at": now,
        "locked_until": now + lock,
        "expires_at": now + ttl,
    }
    dialect_insert = pg_insert if engine.dialect.name == "postgresql" else sqlite_insert
    with engine.begin() as conn:
        # The key's row can change between our statements: its owner may release it (a retryable
        # failure deletes it) after our insert saw it and before our read. Each round starts over on
        # what is committed now; a row that keeps vanishing is a busy key, answered as in flight.
        for _round in range(CLAIM_ROUNDS):
            inserted = conn.execute(
                dialect_insert(keys_t)
                .values(account_id=account_id, key=key, **fresh)
                .on_conflict_do_nothing()
                .returning(keys_t.c.id)
            ).scalar_one_or_none()
            if inserted is not None:
                return Claim(ClaimOutcome.NEW, account_id, key, owner)
            row = conn.execute(
                select(keys_t).where(keys_t.c.account_id == account_id, keys_t.c.key == key).with_for_update()
            ).one_or_none()
            if row is not None:
                return _claim_existing(conn, row, fresh, fingerprint=fingerprint, now=now)
        raise _in_flight(retry_after=1)


def _claim_existing(
    conn: Connection, row: Row[Any], fresh: dict[str, Any], *, fingerprint: str, now: datetime
) -> Claim:
    """The key is taken: take it over if it expired or its request died, else replay, refuse or wait."""
    account_id, key, owner = row.account_id, row.key, fresh["owner"]
    if as_utc(row.expires_at) <= now:
        _take_over(conn, row.id, fresh)
        return Claim(ClaimOutcome.NEW, account_id, key, owner)
    if row.request_hash != fingerprint:
        raise Problem(
            422,
            "idempotency-key-reused",
            "Idempotency-Key reused with another request",
            "this Idempotency-Key was already used for a different request body; "
            "use a new key for a new bet, or resend exactly the original body",
        )
    if row.state == "completed":
        return Claim(ClaimOutcome.REPLAY, account_id, key, row.owner, row.response_status, row.response_body)
    if as_utc(row.locked_until) > now:
        raise _in_flight(retry_after=max(1, int((as_utc(row.locked_until) - now).total_seconds())))
    _take_over(conn, row.id, {**fresh, "expires_at": row.expires_at})
    return Claim(ClaimOutcome.NEW, account_id, key, owner)


def _in_flight(*, retry_after: int) -> Problem:
    return Problem(
        409,
        "idempotency-key-in-flight",
        "Request with this Idempotency-Key is in flight",
        "the first request with this Idempotency-Key is still being processed; retry shortly",
        headers={"Retry-After": str(min(retry_after, 5))},
    )


def _take_over(conn: Connection, row_id: int, values: dict[str, Any]) -> None:
    conn.execute(update(keys_t).where(keys_t.c.id == row_id).values(**values))


def complete_key(conn: Connection, claim: Claim, *, status: int, body: str) -> bool:
    """Store the response in the caller's transaction. False if the claim was taken over meanwhile."""
    return (
        conn.execute(
            update(keys_t)
            .where(
                keys_t.c.account_id == claim.account_id,
                keys_t.c.key == claim.key,
                keys_t.c.owner == claim.owner,
                keys_t.c.state == "in_flight",
            )
            .values(state="completed", response_status=status, response_body=body)
        ).rowcount
        == 1
    )


def release_key(engine: Engine, claim: Claim) -> None:
    """Forget a claim whose request failed in a retryable way, so the same key can be retried."""
    with engine.begin() as conn:
        conn.execute(
            delete(keys_t).where(
                keys_t.c.account_id == claim.account_id,
                keys_t.c.key == claim.key,
                keys_t.c.owner == claim.owner,
                keys_t.c.state == "in_flight",
            )
        )


def purge_expired(engine: Engine, *, now: datetime | None = None, limit: int = 1000) -> int:
    now = now or utcnow()
    with engine.begin() as conn:
        ids = select(keys_t.c.id).where(keys_t.c.expires_at <= now).limit(limit).scalar_subquery()
        return conn.execute(delete(keys_t).where(keys_t.c.id.in_(ids))).rowcount
