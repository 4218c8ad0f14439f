"""Idempotency-Key claims when the key's row changes between the claim's own statements (forced, no sleeps).

Another request's release (a retryable failure deletes its claim) can commit after our insert found
the row and before we read it; the claim must then start over, never fail with a server error."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
from sqlalchemy import Engine, event, func, select

from sample_platform.accounts import create_account
from sample_platform.db import reader
from sample_platform.idempotency import ClaimOutcome, claim_key, release_key
from sample_platform.models import IdempotencyKey, table
from sample_platform.problems import Problem

TTL, LOCK = timedelta(hours=1), timedelta(seconds=30)
keys_t = table(IdempotencyKey)
OTHER_CLAIM = (
    "INSERT INTO idempotency_keys (account_id, key, request_hash, state, owner, created_at, locked_until, "
    "expires_at) VALUES ({account}, 'k-race', 'fp-1', 'in_flight', 'other', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, "
    "CURRENT_TIMESTAMP)"
)


@pytest.fixture
def account(engine: Engine) -> int:
    account_id, _token = create_account(engine, username="racer", password_hash=None)
    return account_id


@contextmanager
def interleave(
    engine: Engine, account: int, *, release_before_read: int, claim_before_insert: int = 0
) -> Iterator[list[str]]:
    """Run another request's statements on the claim's connection at the racy points: its release right
    before the claim reads the row (`release_before_read` times), its claim right before the claim's
    insert (`claim_before_insert` times, after the first)."""
    done: list[str] = []

    def before(conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
        if "idempotency_keys" not in statement:
            return
        verb = statement.lstrip().split(None, 1)[0].upper()
        if verb == "SELECT" and done.count("release") < release_before_read:
            done.append("release")
            cursor.execute("DELETE FROM idempotency_keys")
        elif verb == "INSERT" and "release" in done and done.count("claim") < claim_before_insert:
            done.append("claim")
            cursor.execute(OTHER_CLAIM.format(account=int(account)))

    event.listen(engine, "before_cursor_execute", before)
    try:
        yield done
    finally:
        event.remove(engine, "before_cursor_execute", before)


def _claim(engine: Engine, account: int):  # type: ignore[no-untyped-def]
    return claim_key(engine, account_id=account, key="k-race", fingerprint="fp-1", ttl=TTL, lock=LOCK)


def _rows(engine: Engine) -> int:
    with reader(engine).connect() as conn:
        return conn.execute(select(func.count()).select_from(keys_t)).scalar_one()


def test_a_key_released_between_insert_and_read_is_claimed_anew(engine, account) -> None:
    first = _claim(engine, account)
    assert first.outcome is ClaimOutcome.NEW
    with interleave(engine, account, release_before_read=1) as done:
        second = _claim(engine, account)
    assert done == ["release"], "the interleaving was not forced"
    assert second.outcome is ClaimOutcome.NEW and second.owner != first.owner
    assert _rows(engine) == 1
    release_key(engine, first)  # the old owner's late release leaves the new owner's claim alone
    assert _rows(engine) == 1


def test_a_key_that_keeps_changing_hands_is_answered_in_flight(engine, account) -> None:
    _claim(engine, account)
    with interleave(engine, account, release_before_read=100, claim_before_insert=100) as done:
        with pytest.raises(Problem) as refused:
            _claim(engine, account)
    assert done.count("release") >= 2, "the interleaving was not forced"
    assert refused.value.status == 409
    assert refused.value.slug == "idempotency-key-in-flight"
    assert refused.value.headers["Retry-After"] == "1"
