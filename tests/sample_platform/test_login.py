"""Login: scrypt passwords, short-lived tokens, rate limits per account and address, lockout."""

from __future__ import annotations

import logging
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

from sqlalchemy import select, update

from sample_platform.db import reader
from sample_platform.login import SlidingWindowLimiter, hash_password, name_key, verify_password
from sample_platform.models import LoginFailure, LoginSession
from tests.conftest import ADMIN_TOKEN

PASSWORD = "correct horse battery"


def _account(client, password: str = PASSWORD) -> dict:  # type: ignore[no-untyped-def]
    response = client.http.post(
        "/v1/accounts",
        json={"username": f"u{uuid.uuid4().hex[:8]}", "password": password},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    assert response.status_code == 201, response.text
    return response.json()


def _login(client, username: str, password: str):  # type: ignore[no-untyped-def]
    return client.http.post("/v1/login", json={"username": username, "password": password})


def test_password_hash_round_trip() -> None:
    encoded = hash_password("s3cret-pass", log2_n=12)
    assert encoded.startswith("scrypt$12$8$1$")
    assert "s3cret" not in encoded
    assert verify_password("s3cret-pass", encoded)
    assert not verify_password("s3cret-pasS", encoded)
    assert not verify_password("s3cret-pass", "scrypt$garbage")


def test_login_gives_a_short_lived_token(client, engine, settings) -> None:
    account = _account(client)
    response = _login(client, account["username"], PASSWORD)
    assert response.status_code == 200, response.text
    body = response.json()
    expires = datetime.fromisoformat(body["expires_at"])
    assert timedelta(0) < expires - datetime.now(expires.tzinfo) <= timedelta(seconds=settings.session_ttl_seconds)
    assert client.wallet(body["token"])["account_id"] == account["id"]
    # An expired session no longer authenticates.
    with engine.begin() as conn:
        conn.execute(update(LoginSession.__table__).values(expires_at=datetime(2000, 1, 1)))
    assert client.http.get("/v1/wallet", headers={"Authorization": f"Bearer {body['token']}"}).status_code == 401


def test_wrong_password_and_unknown_user_look_the_same(client) -> None:
    account = _account(client)
    wrong = _login(client, account["username"], "not the password")
    unknown = _login(client, "nobody-here", "whatever")
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["detail"] == unknown.json()["detail"]


def test_a_known_name_and_an_unknown_one_get_the_same_answers_in_the_same_order(client, settings) -> None:
    account = _account(client)
    attempts = settings.login_max_failures + 3
    known = [_login(client, account["username"], "not the password") for _ in range(attempts)]
    ghost = f"nobody-{uuid.uuid4().hex[:8]}"
    unknown = [_login(client, ghost, "not the password") for _ in range(attempts)]
    answers = [(r.status_code, r.json()["type"], r.json()["detail"]) for r in known]
    assert answers == [(r.status_code, r.json()["type"], r.json()["detail"]) for r in unknown]
    assert [a[0] for a in answers] == [401] * settings.login_max_failures + [429] * 3  # locked, both of them
    # Names differing only in case are one name to the lockout, as to the rate limit.
    assert _login(client, account["username"].upper(), PASSWORD).status_code == 429


def test_concurrent_failures_each_count_and_a_right_password_after_the_limit_is_refused(client, settings) -> None:
    account = _account(client)
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(
            pool.map(
                lambda _i: _login(client, account["username"], "wrong").status_code, range(settings.login_max_failures)
            )
        )
    assert sorted(statuses) == [401] * settings.login_max_failures  # each one counted, none lost to a race
    assert _login(client, account["username"], PASSWORD).status_code == 429


def test_hundred_wrong_passwords_lock_the_account(client, engine, settings, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    account = _account(client)
    statuses = []
    for _ in range(100):
        response = _login(client, account["username"], "wrong password!")
        statuses.append(response.status_code)
        assert response.status_code < 500
        if response.status_code == 429:
            assert int(response.headers["Retry-After"]) >= 1
            assert response.headers["content-type"] == "application/problem+json"
    assert set(statuses) == {401, 429}
    first_429 = statuses.index(429)
    assert first_429 <= settings.login_max_failures
    assert all(s == 429 for s in statuses[first_429:])
    with reader(engine).connect() as conn:
        locked_until = conn.execute(
            select(LoginFailure.__table__.c.locked_until).where(
                LoginFailure.__table__.c.name_key == name_key(account["username"])
            )
        ).scalar_one()
    assert locked_until is not None
    refused = _login(client, account["username"], PASSWORD)
    assert refused.status_code == 429
    assert "Retry-After" in refused.headers
    assert PASSWORD not in caplog.text and "wrong password!" not in caplog.text


def test_admin_reset_lifts_the_lockout(client, settings) -> None:
    account = _account(client)
    for _ in range(settings.login_max_failures):
        assert _login(client, account["username"], "nope nope nope").status_code == 401
    assert _login(client, account["username"], PASSWORD).status_code == 429
    reset = client.http.post(
        f"/v1/admin/accounts/{account['id']}/password",
        json={"password": "a brand new password"},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    assert reset.status_code == 200
    assert _login(client, account["username"], PASSWORD).status_code == 401
    assert _login(client, account["username"], "a brand new password").status_code == 200


def test_rate_limit_per_client_address(client, settings) -> None:
    statuses = [
        _login(client, f"nobody-{i}", "whatever").status_code
        for i in range(settings.login_attempts_per_minute_address + 5)
    ]
    assert statuses[: settings.login_attempts_per_minute_address] == [401] * settings.login_attempts_per_minute_address
    assert statuses[settings.login_attempts_per_minute_address :] == [429] * 5


def test_token_never_reaches_the_logs(client, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    account = _account(client)
    token = _login(client, account["username"], PASSWORD).json()["token"]
    client.wallet(token)
    client.http.get("/v1/wallet", headers={"Authorization": "Bearer " + token + "x"})
    assert token not in caplog.text
    assert account["token"] not in caplog.text


def test_sliding_window_limiter() -> None:
    now = [0.0]
    limiter = SlidingWindowLimiter(3, window=10, clock=lambda: now[0])
    assert [limiter.acquire("k") for _ in range(3)] == [0, 0, 0]
    assert limiter.acquire("k") == 10
    assert limiter.acquire("other") == 0
    now[0] = 10.5
    assert limiter.acquire("k") == 0
