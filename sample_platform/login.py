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

from sample_platform.accounts import token_hash
from sample_platform.clock import as_utc, utcnow
from sample_platform.db import reader
from sample_platform.models import Account, LoginSession, table
from sample_platform.problems import Problem

accounts_t = table(Account)
sessions_t = table(LoginSession)
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


def login(engine: Engine, policy: LoginPolicy, *, username: str, password: str, address: str) -> tuple[str, datetime]:
    """Returns (session token, expiry) or raises Problem 401 (wrong credentials) / 429 (limits, lockout)."""
    wait = policy.per_address.acquire(f"addr:{address}")
    if wait:
        raise _too_many("address-rate-limit", wait, "too many login attempts from this address; retry later")
    wait = policy.per_account.acquire(f"user:{username.lower()}")
    if wait:
        raise _too_many("account-rate-limit", wait, "too many login attempts for this account; retry later")
    now = utcnow()
    with reader(engine).connect() as conn:
        row = conn.execute(
            select(accounts_t.c.id, accounts_t.c.password_hash, accounts_t.c.locked_until).where(
                accounts_t.c.username == username
            )
        ).one_or_none()
    if row is not None and row.locked_until is not None and as_utc(row.locked_until) > now:
        raise _too_many(
            "account-locked",
            (as_utc(row.locked_until) - now).total_seconds(),
            "this account is locked after repeated failed logins; retry after the lockout or ask support to reset "
            "the password",
        )
    ok = verify_password(password, row.password_hash if row is not None and row.password_hash else policy.dummy_hash)
    if row is None or not row.password_hash or not ok:
        if row is not None:
            _record_failure(engine, policy, row.id, now)
        raise Problem(401, "invalid-credentials", "Invalid credentials", "the username or password is wrong")
    token = secrets.token_urlsafe(32)
    expires_at = now + policy.session_ttl
    with engine.begin() as conn:
        conn.execute(update(accounts_t).where(accounts_t.c.id == row.id).values(failed_logins=0, locked_until=None))
        conn.execute(
            sessions_t.insert().values(
                account_id=row.id, token_hash=token_hash(token), created_at=now, expires_at=expires_at
            )
        )
    return token, expires_at


def _record_failure(engine: Engine, policy: LoginPolicy, account_id: int, now: datetime) -> None:
    with engine.begin() as conn:
        failures = conn.execute(
            update(accounts_t)
            .where(accounts_t.c.id == account_id)
            .values(failed_logins=accounts_t.c.failed_logins + 1)
            .returning(accounts_t.c.failed_logins)
        ).scalar_one()
        if failures >= policy.max_failures:
            conn.execute(
                update(accounts_t)
                .where(accounts_t.c.id == account_id)
                .values(locked_until=now + policy.lockout, failed_logins=0)
            )


def set_password(engine: Engine, *, account_id: int, password: str, log2_n: int) -> None:
    """An admin reset: new password, lockout lifted, every login session revoked."""
    hashed = hash_password(password, log2_n=log2_n)
    with engine.begin() as conn:
        found = conn.execute(
            update(accounts_t)
            .where(accounts_t.c.id == account_id)
            .values(password_hash=hashed, failed_logins=0, locked_until=None)
        ).rowcount
        if not found:
            raise Problem(404, "unknown-account", "Unknown account", f"no account has id {account_id}")
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
