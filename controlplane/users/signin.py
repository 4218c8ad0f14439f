"""Signing in to the dashboard: passwords checked with lockout, and sessions kept by their token's hash.

    attempt = authenticate(engine, "ana", password, now=now)
    if attempt.ok:
        token = create_session(engine, attempt.user, now)     # give the browser the token
    user = session_user(engine, token, now)                   # on each request: None means sign in again

The reason a sign-in fails never tells a wrong password from an unknown name. An unknown name costs
the same scrypt work as a known one. After 5 wrong passwords in a row the account is locked for 15
minutes; while locked no password is tried, so guessing stops too.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, and_, delete, or_, select, update

from controlplane.clock import as_utc, utc_text, utcnow
from controlplane.storage import reader
from controlplane.users.accounts import User, user_from_row
from controlplane.users.passwords import DECOY_HASH, verify_password
from controlplane.users.policy import UserError, normalise_username
from controlplane.users.tables import sessions_t, users_t

MAX_FAILED_ATTEMPTS = 5
LOCKOUT = timedelta(minutes=15)
SESSION_TTL = timedelta(hours=8)
WRONG_CREDENTIALS = "unknown user or wrong password"
DISABLED = "account disabled"
MAX_TOKEN = 200


@dataclass(frozen=True)
class SignIn:
    """The outcome of one sign-in attempt. `reason` is what to show the person; `account` names the
    existing account the attempt was for (None for an unknown name), for the audit log only: showing it
    would tell whether a name exists."""

    ok: bool
    user: User | None  # only when ok
    reason: str | None  # None when ok
    account: str | None
    at: datetime
    locked_until: datetime | None = None  # the account is locked (by this attempt or before it) until then


def authenticate(engine: Engine, username: str, password: str, now: datetime | None = None) -> SignIn:
    """Check a username and password: ok with the user, or the reason it failed."""
    at = as_utc(now or utcnow())
    try:
        name: str | None = normalise_username(username)
    except UserError:
        name = None
    row = None
    if name is not None:
        with reader(engine).connect() as conn:
            row = conn.execute(select(users_t).where(users_t.c.username == name)).one_or_none()
    if row is None:
        verify_password(password, DECOY_HASH)
        return SignIn(False, None, WRONG_CREDENTIALS, None, at)
    user = user_from_row(row)
    if user.locked(at):
        verify_password(password, DECOY_HASH)  # the same work, but the account's password is not tried
        assert user.locked_until is not None
        reason = f"account locked until {utc_text(user.locked_until)}"
        return SignIn(False, None, reason, user.username, at, user.locked_until)
    if not verify_password(password, row.password_hash):
        return SignIn(False, None, WRONG_CREDENTIALS, user.username, at, _count_failure(engine, user.username, at))
    if user.disabled:
        return SignIn(False, None, DISABLED, user.username, at)
    not_locked = or_(users_t.c.locked_until.is_(None), users_t.c.locked_until <= at)
    with engine.begin() as conn:
        # Only if no failure locked the account while this password was checked: one statement, so
        # a right password after the limit is refused however the attempts interleave.
        signed = conn.execute(
            update(users_t)
            .where(users_t.c.username == user.username, not_locked)
            .values(failed_attempts=0, locked_until=None, last_login_at=at)
            .returning(users_t.c.username)
        ).scalar_one_or_none()
        until = None
        if signed is None:
            until = conn.execute(select(users_t.c.locked_until).where(users_t.c.username == user.username)).scalar()
    if signed is None:
        locked = as_utc(until) if until is not None else at
        return SignIn(False, None, f"account locked until {utc_text(locked)}", user.username, at, locked)
    signed_in = User(user.username, user.role, False, 0, None, user.created_at, at)
    return SignIn(True, signed_in, None, user.username, at)


def _count_failure(engine: Engine, username: str, now: datetime) -> datetime | None:
    """One more wrong password in a row; the fifth locks the account (and starts the count again).
    Returns when the lock ends if this failure locked it."""
    not_locked = or_(users_t.c.locked_until.is_(None), users_t.c.locked_until <= now)
    with engine.begin() as conn:
        failures = conn.execute(
            update(users_t)
            .where(users_t.c.username == username, not_locked)
            .values(failed_attempts=users_t.c.failed_attempts + 1)
            .returning(users_t.c.failed_attempts)
        ).scalar_one_or_none()
        if failures is None or failures < MAX_FAILED_ATTEMPTS:
            return None
        until = now + LOCKOUT
        conn.execute(
            update(users_t).where(users_t.c.username == username).values(locked_until=until, failed_attempts=0)
        )
    return until


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def create_session(engine: Engine, user: User, now: datetime, ttl: timedelta = SESSION_TTL) -> str:
    """A new session for a signed-in user; returns its token (only its SHA-256 is stored). Refused when
    the account is gone, disabled, or no longer has the role `user` names."""
    if ttl <= timedelta(0):
        raise UserError(f"a session must last longer than 0 seconds, not {ttl}; pass a positive ttl")
    at = as_utc(now)
    token = secrets.token_urlsafe(32)
    with engine.begin() as conn:
        live = conn.execute(
            select(users_t.c.role, users_t.c.disabled).where(users_t.c.username == user.username)
        ).one_or_none()
        if live is None or live.disabled or live.role != user.role:
            raise UserError(
                f"user {user.username!r} is no longer enabled with role {user.role!r}; sign in again for a session"
            )
        conn.execute(
            sessions_t.insert().values(
                token_sha256=token_sha256(token),
                username=user.username,
                role=user.role,
                created_at=at,
                expires_at=at + ttl,
                revoked_at=None,
            )
        )
    return token


def session_user(engine: Engine, token: str, now: datetime) -> User | None:
    """The user a session token signs in, while the session is unexpired and not revoked and the user is
    still enabled with the role the session was made for; else None."""
    if not token or len(token) > MAX_TOKEN:
        return None
    with reader(engine).connect() as conn:
        row = conn.execute(
            select(users_t)
            .join(sessions_t, and_(sessions_t.c.username == users_t.c.username, sessions_t.c.role == users_t.c.role))
            .where(
                sessions_t.c.token_sha256 == token_sha256(token),
                sessions_t.c.revoked_at.is_(None),
                sessions_t.c.expires_at > as_utc(now),
                users_t.c.disabled.is_(False),
            )
        ).one_or_none()
    return user_from_row(row) if row is not None else None


def purge_sessions(engine: Engine, now: datetime, *, keep: timedelta = timedelta(days=1)) -> int:
    """Delete sessions that expired or were revoked more than `keep` ago (the scheduler's retention job);
    returns how many. Sign-ins themselves stay in the audit log."""
    horizon = as_utc(now) - keep
    with engine.begin() as conn:
        return int(
            conn.execute(
                delete(sessions_t).where(or_(sessions_t.c.expires_at < horizon, sessions_t.c.revoked_at < horizon))
            ).rowcount
        )


def revoke_session(engine: Engine, token: str, now: datetime) -> bool:
    """Sign a session out; False when there was no live session with that token."""
    if not token or len(token) > MAX_TOKEN:
        return False
    with engine.begin() as conn:
        return bool(
            conn.execute(
                update(sessions_t)
                .where(
                    sessions_t.c.token_sha256 == token_sha256(token),
                    sessions_t.c.revoked_at.is_(None),
                    sessions_t.c.expires_at > as_utc(now),
                )
                .values(revoked_at=as_utc(now))
            ).rowcount
        )
