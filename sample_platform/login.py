"""Passwords (scrypt), login with short-lived session tokens, rate limits and lockout.

    hashed = hash_password("s3cret", log2_n=14)
    token, expires_at = login(engine, policy, username="alice", password="s3cret", address="10.0.0.1")

Neither passwords nor tokens are ever logged: only their hashes reach the database.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from sample_platform.accounts import token_hash
from sample_platform.clock import as_utc, utcnow
from sample_platform.db import reader
from sample_platform.models import Account, LoginFailure, LoginSession, table
from sample_platform.problems import Problem

accounts_t = table(Account)
sessions_t = table(LoginSession)
failures_t = table(LoginFailure)
SCRYPT_R, SCRYPT_P, SCRYPT_LEN = 8, 1, 32


def hash_password(password: str, *, log2_n: int) -> str:
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, log2_n, SCRYPT_R, SCRYPT_P)
    b64 = base64.b64encode
    return f"scrypt${log2_n}${SCRYPT_R}${SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, encoded: str) -> bool:
    try:
        scheme, log2_n, r, p, salt, digest = encoded.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = _scrypt(password, base64.b64decode(salt), int(log2_n), int(r), int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def _scrypt(password: str, salt: bytes, log2_n: int, r: int, p: int) -> bytes:
    n = 1 << log2_n
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=256 * n * r, dklen=SCRYPT_LEN)


class SlidingWindowLimiter:
    """At most `limit` events per key in any `window` seconds; in-process and thread-safe."""

    def __init__(self, limit: int, window: float = 60.0, clock=time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self._events: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def acquire(self, key: str) -> float:
        """Record an attempt; returns 0 if allowed, else the seconds until one would be."""
        now = self.clock()
        with self._lock:
            events = self._events.setdefault(key, deque())
            while events and events[0] <= now - self.window:
                events.popleft()
            if len(events) >= self.limit:
                return events[0] + self.window - now
            events.append(now)
            if len(self._events) > 100_000:  # forget idle keys so memory stays bounded
                for stale in [k for k, v in self._events.items() if not v or v[-1] <= now - self.window]:
                    del self._events[stale]
            return 0.0


@dataclass
class LoginPolicy:
    session_ttl: timedelta
    max_failures: int
    lockout: timedelta
    per_account: SlidingWindowLimiter
    per_address: SlidingWindowLimiter
    scrypt_log2_n: int
    # Verified for unknown usernames, so a miss costs as much time as a wrong password.
    dummy_hash: str = ""

    def __post_init__(self) -> None:
        self.dummy_hash = hash_password(secrets.token_urlsafe(16), log2_n=self.scrypt_log2_n)


def _too_many(limit: str, retry_after: float, detail: str) -> Problem:
    seconds = max(1, math.ceil(retry_after))
    return Problem(429, limit, "Too many login attempts", detail, headers={"Retry-After": str(seconds)}, limit=limit)


def name_key(username: str) -> str:
    """The key failed logins count under: a hash of the submitted name folded to lower case (the name
    itself, maybe a password typed in the wrong field, is never stored)."""
    return hashlib.sha256(b"login:" + username.strip().lower().encode()).hexdigest()


def login(engine: Engine, policy: LoginPolicy, *, username: str, password: str, address: str) -> tuple[str, datetime]:
    """Returns (session token, expiry) or raises Problem 401 (wrong credentials) / 429 (limits, lockout).

    A known name with a wrong password and an unknown name get the same answers in the same order, in
    about the same time: the password is checked with scrypt either way (against a dummy hash for an
    unknown name, and during a lockout too), and failures count per submitted name, known or not, in
    the database, so a lockout says nothing of which names exist."""
    wait = policy.per_address.acquire(f"addr:{address}")
    if wait:
        raise _too_many("address-rate-limit", wait, "too many login attempts from this address; retry later")
    wait = policy.per_account.acquire(f"user:{username.lower()}")
    if wait:
        raise _too_many("account-rate-limit", wait, "too many login attempts for this account; retry later")
    now = utcnow()
    key = name_key(username)
    with reader(engine).connect() as conn:
        row = conn.execute(
            select(accounts_t.c.id, accounts_t.c.password_hash).where(accounts_t.c.username == username)
        ).one_or_none()
        locked_until = conn.execute(select(failures_t.c.locked_until).where(failures_t.c.name_key == key)).scalar()
    ok = verify_password(password, row.password_hash if row is not None and row.password_hash else policy.dummy_hash)
    if locked_until is not None and as_utc(locked_until) > now:
        raise _locked(as_utc(locked_until), now)
    if row is None or not row.password_hash or not ok:
        _record_failure(engine, policy, key, now)
        raise Problem(401, "invalid-credentials", "Invalid credentials", "the username or password is wrong")
    token = secrets.token_urlsafe(32)
    expires_at = now + policy.session_ttl
    with engine.begin() as conn:
        # Locked meanwhile by failures that came in while this password was checked? Then refused: the
        # row is held until this commits, so no failure can slip in between the check and the session.
        held = select(failures_t.c.locked_until).where(failures_t.c.name_key == key)
        if conn.dialect.name == "postgresql":
            held = held.with_for_update()
        locked_until = conn.execute(held).scalar()
        if locked_until is not None and as_utc(locked_until) > now:
            raise _locked(as_utc(locked_until), now)
        conn.execute(delete(failures_t).where(failures_t.c.name_key == key))
        conn.execute(
            sessions_t.insert().values(
                account_id=row.id, token_hash=token_hash(token), created_at=now, expires_at=expires_at
            )
        )
    return token, expires_at


def _locked(until: datetime, now: datetime) -> Problem:
    return _too_many(
        "account-locked",
        (until - now).total_seconds(),
        "this account is locked after repeated failed logins; retry after the lockout or ask support to reset "
        "the password",
    )


def _record_failure(engine: Engine, policy: LoginPolicy, key: str, now: datetime) -> None:
    """One more failure for the name, in one statement (concurrent failures each count); at the limit
    the name is locked and its count starts again."""
    insert = pg_insert if engine.dialect.name == "postgresql" else sqlite_insert
    counted = (
        insert(failures_t)
        .values(name_key=key, failures=1, locked_until=None)
        .on_conflict_do_update(index_elements=[failures_t.c.name_key], set_={"failures": failures_t.c.failures + 1})
        .returning(failures_t.c.failures)
    )
    with engine.begin() as conn:
        if conn.execute(counted).scalar_one() >= policy.max_failures:
            conn.execute(
                update(failures_t)
                .where(failures_t.c.name_key == key)
                .values(locked_until=now + policy.lockout, failures=0)
            )


def set_password(engine: Engine, *, account_id: int, password: str, log2_n: int) -> None:
    """An admin reset: new password, lockout lifted, every login session revoked."""
    hashed = hash_password(password, log2_n=log2_n)
    with engine.begin() as conn:
        username = conn.execute(select(accounts_t.c.username).where(accounts_t.c.id == account_id)).scalar()
        if username is None:
            raise Problem(404, "unknown-account", "Unknown account", f"no account has id {account_id}")
        conn.execute(update(accounts_t).where(accounts_t.c.id == account_id).values(password_hash=hashed))
        conn.execute(delete(failures_t).where(failures_t.c.name_key == name_key(username)))
        conn.execute(delete(sessions_t).where(sessions_t.c.account_id == account_id))


def account_for_session(conn: Connection, token: str) -> int | None:
    return conn.execute(
        select(sessions_t.c.account_id).where(
            sessions_t.c.token_hash == token_hash(token), sessions_t.c.expires_at > utcnow()
        )
    ).scalar()


def purge_expired_sessions(engine: Engine) -> int:
    with engine.begin() as conn:
        return conn.execute(delete(sessions_t).where(sessions_t.c.expires_at <= utcnow())).rowcount
