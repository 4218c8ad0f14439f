"""Signing in on SQLite and PostgreSQL: one reason for wrong passwords and unknown names, lockout and its
release on the clock passed in, and sessions that end on expiry, sign-out, disabling and a role change."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from sqlalchemy import Engine, select, update

from controlplane.users import (
    LOCKOUT,
    MAX_FAILED_ATTEMPTS,
    SESSION_TTL,
    UserError,
    add_user,
    authenticate,
    create_session,
    disable_user,
    enable_user,
    find_user,
    purge_sessions,
    revoke_session,
    session_user,
    set_role,
)
from controlplane.users import passwords as passwords_module
from controlplane.users import signin as signin_module
from controlplane.users.tables import sessions_t, users_t
from tests.controlplane.users.conftest import NOW, PASSWORD, store_texts


@pytest.fixture
def ana(store: Engine):  # type: ignore[no-untyped-def]
    return add_user(store, "ana", role="oncall", password=PASSWORD, by="bo", now=NOW)


def test_the_right_password_signs_in_and_is_remembered(store: Engine, ana) -> None:  # type: ignore[no-untyped-def]
    attempt = authenticate(store, " ANA ", PASSWORD, now=NOW + timedelta(minutes=1))
    assert attempt.ok and attempt.reason is None and attempt.user is not None
    assert (attempt.user.username, attempt.user.role) == ("ana", "oncall")
    assert find_user(store, "ana").last_login_at == NOW + timedelta(minutes=1)  # type: ignore[union-attr]


def test_a_wrong_password_and_an_unknown_user_give_the_same_reason(store: Engine, ana) -> None:  # type: ignore[no-untyped-def]
    wrong = authenticate(store, "ana", PASSWORD + "x", now=NOW)
    unknown = authenticate(store, "nobody", PASSWORD, now=NOW)
    malformed = authenticate(store, "not a name!", PASSWORD, now=NOW)
    for attempt in (wrong, unknown, malformed):
        assert (attempt.ok, attempt.user, attempt.reason) == (False, None, "unknown user or wrong password")


def test_an_unknown_user_costs_the_same_scrypt_work(
    store: Engine,
    ana,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[int, int, int]] = []
    real = hashlib.scrypt

    def counted(password: bytes, *, salt: bytes, n: int, r: int, p: int, maxmem: int, dklen: int) -> bytes:
        calls.append((n, r, p))
        return real(password, salt=salt, n=n, r=r, p=p, maxmem=maxmem, dklen=dklen)

    monkeypatch.setattr(passwords_module.hashlib, "scrypt", counted)
    authenticate(store, "ana", "a wrong password", now=NOW)
    known = list(calls)
    calls.clear()
    authenticate(store, "nobody", "a wrong password", now=NOW)
    assert known == calls == [(1 << 15, 8, 1)]


def test_five_failures_lock_for_fifteen_minutes_then_release(store: Engine, ana) -> None:  # type: ignore[no-untyped-def]
    assert (MAX_FAILED_ATTEMPTS, LOCKOUT) == (5, timedelta(minutes=15))
    for i in range(MAX_FAILED_ATTEMPTS):
        attempt = authenticate(store, "ana", "not the password", now=NOW + timedelta(seconds=i))
        assert attempt.reason == "unknown user or wrong password"
    until = NOW + timedelta(seconds=MAX_FAILED_ATTEMPTS - 1) + LOCKOUT
    assert attempt.locked_until == until
    locked = authenticate(store, "ana", PASSWORD, now=until - timedelta(seconds=1))
    assert not locked.ok, "the right password does not sign in while locked"
    assert locked.reason == "account locked until 2030-03-01T12:15:04Z"
    assert authenticate(store, "ana", PASSWORD, now=until).ok


def test_a_right_password_is_refused_when_failures_locked_the_account_while_it_was_checked(
    store: Engine,
    ana,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real, interleaved = signin_module.verify_password, []

    def checked_while_others_fail(password: str, encoded: str) -> bool:
        ok = real(password, encoded)
        if password == PASSWORD and not interleaved:  # the failures land between the check and the sign-in
            interleaved.append(True)
            for _ in range(MAX_FAILED_ATTEMPTS):
                authenticate(store, "ana", "not the password", now=NOW)
        return ok

    monkeypatch.setattr(signin_module, "verify_password", checked_while_others_fail)
    attempt = authenticate(store, "ana", PASSWORD, now=NOW)
    assert (attempt.ok, attempt.user, attempt.locked_until) == (False, None, NOW + LOCKOUT)
    assert attempt.reason == "account locked until 2030-03-01T12:15:00Z"
    assert find_user(store, "ana").last_login_at is None  # type: ignore[union-attr]


def test_a_success_resets_the_count(store: Engine, ana) -> None:  # type: ignore[no-untyped-def]
    for _ in range(MAX_FAILED_ATTEMPTS - 1):
        authenticate(store, "ana", "not the password", now=NOW)
    assert find_user(store, "ana").failed_attempts == MAX_FAILED_ATTEMPTS - 1  # type: ignore[union-attr]
    assert authenticate(store, "ana", PASSWORD, now=NOW).ok
    for _ in range(MAX_FAILED_ATTEMPTS - 1):
        authenticate(store, "ana", "not the password", now=NOW)
    assert authenticate(store, "ana", PASSWORD, now=NOW).ok, "4 + 4 failures with a success between: no lock"


def test_failures_while_locked_do_not_extend_the_lock(store: Engine, ana) -> None:  # type: ignore[no-untyped-def]
    for _ in range(MAX_FAILED_ATTEMPTS):
        authenticate(store, "ana", "not the password", now=NOW)
    for minute in (1, 7, 14):
        authenticate(store, "ana", "still guessing", now=NOW + timedelta(minutes=minute))
    assert authenticate(store, "ana", PASSWORD, now=NOW + LOCKOUT).ok


def test_a_disabled_account_says_so_only_to_the_right_password(store: Engine, ana) -> None:  # type: ignore[no-untyped-def]
    disable_user(store, "ana", by="bo", now=NOW)
    right = authenticate(store, "ana", PASSWORD, now=NOW)
    assert (right.ok, right.reason) == (False, "account disabled")
    assert authenticate(store, "ana", "not the password", now=NOW).reason == "unknown user or wrong password"


def test_a_session_lasts_its_ttl_and_stores_only_the_tokens_hash(store: Engine, ana) -> None:  # type: ignore[no-untyped-def]
    assert SESSION_TTL == timedelta(hours=8)
    token = create_session(store, ana, NOW)
    assert len(token) >= 43
    assert session_user(store, token, NOW + SESSION_TTL - timedelta(seconds=1)) == ana
    assert session_user(store, token, NOW + SESSION_TTL) is None
    with store.connect() as conn:
        assert (
            conn.execute(select(sessions_t.c.token_sha256)).scalar_one() == hashlib.sha256(token.encode()).hexdigest()
        )
    assert token not in store_texts(store)
    short = create_session(store, ana, NOW, ttl=timedelta(minutes=5))
    assert session_user(store, short, NOW + timedelta(minutes=5)) is None
    with pytest.raises(UserError, match="longer than 0 seconds"):
        create_session(store, ana, NOW, ttl=timedelta(0))


def test_a_revoked_session_stops_and_others_go_on(store: Engine, ana) -> None:  # type: ignore[no-untyped-def]
    first, second = create_session(store, ana, NOW), create_session(store, ana, NOW)
    assert first != second
    assert revoke_session(store, first, NOW)
    assert not revoke_session(store, first, NOW), "already revoked"
    assert session_user(store, first, NOW) is None
    assert session_user(store, second, NOW) == ana
    assert session_user(store, "not-a-token", NOW) is None and session_user(store, "", NOW) is None


def test_sessions_long_over_are_purged_and_live_ones_kept(store: Engine, ana) -> None:  # type: ignore[no-untyped-def]
    short = create_session(store, ana, NOW, ttl=timedelta(hours=1))
    revoked = create_session(store, ana, NOW)
    revoke_session(store, revoked, NOW)
    live = create_session(store, ana, NOW + timedelta(days=2))
    assert purge_sessions(store, NOW + timedelta(hours=12)) == 0  # ended, but not a day ago yet
    assert purge_sessions(store, NOW + timedelta(days=2, hours=1)) == 2
    with store.connect() as conn:
        assert len(conn.execute(select(sessions_t)).all()) == 1
    assert session_user(store, live, NOW + timedelta(days=2, hours=1)) == ana
    assert session_user(store, short, NOW) is None


def test_sessions_stop_when_the_user_is_disabled_and_stay_ended(store: Engine, ana) -> None:  # type: ignore[no-untyped-def]
    token = create_session(store, ana, NOW)
    disable_user(store, "ana", by="bo", now=NOW)
    assert session_user(store, token, NOW) is None
    with pytest.raises(UserError, match="no longer enabled with role 'oncall'"):
        create_session(store, ana, NOW)
    enable_user(store, "ana", by="bo", now=NOW)
    assert session_user(store, token, NOW) is None, "enabling again does not bring old sessions back"


def test_sessions_stop_when_the_role_changes(store: Engine, ana) -> None:  # type: ignore[no-untyped-def]
    token = create_session(store, ana, NOW)
    assert set_role(store, "ana", "oncall", by="bo", now=NOW) is None
    assert session_user(store, token, NOW) == ana
    set_role(store, "ana", "admin", by="bo", now=NOW)
    assert session_user(store, token, NOW) is None
    with pytest.raises(UserError, match="no longer enabled with role 'oncall'"):
        create_session(store, ana, NOW)  # a session for the old role
    admin = authenticate(store, "ana", PASSWORD, now=NOW).user
    assert admin is not None and admin.role == "admin"
    assert session_user(store, create_session(store, admin, NOW), NOW) == find_user(store, "ana")


@pytest.mark.parametrize("values", [{"disabled": True}, {"role": "compliance"}], ids=["disabled", "role"])
def test_a_session_checks_the_account_itself_not_only_its_revocation(
    store: Engine,
    ana,  # type: ignore[no-untyped-def]
    values: dict,
) -> None:
    token = create_session(store, ana, NOW)
    with store.begin() as conn:  # changed behind the API's back, so no session is revoked
        conn.execute(update(users_t).where(users_t.c.username == "ana").values(**values))
    assert session_user(store, token, NOW) is None
