"""Bad input never crashes the platform: 4xx application/problem+json, never 500, nothing written."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from sample_platform.db import reader
from sample_platform.ledger import check_ledger
from tests.conftest import ADMIN_TOKEN, bet_body


def _assert_problem(response: httpx.Response, status: int | None = None) -> dict:
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    if status is not None:
        assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == response.status_code
    assert problem["title"] and problem["detail"]
    return problem


def _post_bet(client, token: str, content: bytes | str) -> httpx.Response:  # type: ignore[no-untyped-def]
    return client.http.post(
        "/v1/bets",
        content=content,
        headers={
            "Authorization": f"Bearer {token}",
            "Idempotency-Key": str(uuid.uuid4()),
            "Content-Type": "application/json",
        },
    )


@pytest.mark.parametrize(
    ("mutate", "status"),
    [
        (lambda b: b | {"stake_minor": 0}, 422),
        (lambda b: b | {"stake_minor": -500}, 422),
        (lambda b: b | {"stake_minor": "500"}, 422),
        (lambda b: b | {"stake_minor": 5.5}, 422),
        (lambda b: b | {"stake_minor": 10**30}, 422),
        (lambda b: b | {"odds": 2.5}, 422),
        (lambda b: b | {"odds": "abc"}, 422),
        (lambda b: b | {"odds": "0.50"}, 422),
        (lambda b: b | {"price_version": None}, 422),
        (lambda b: b | {"accept_price_change": "sometimes"}, 422),
        (lambda b: b | {"market_id": 999_999}, 422),
        (lambda b: b | {"selection_id": 999_999}, 422),
        (lambda b: b | {"unexpected": 1}, 422),
        (lambda b: {k: v for k, v in b.items() if k != "market_id"}, 422),
    ],
)
def test_invalid_bets_are_refused(client, engine, funded_player, market, mutate, status) -> None:
    response = _post_bet(client, funded_player["token"], json.dumps(mutate(bet_body(market))))
    _assert_problem(response, status)
    assert client.wallet(funded_player["token"])["held_minor"] == 0


@pytest.mark.parametrize(
    "content", [b"{", b"not json", b"", b"[]", b"null", b'"text"', b"\xff\xfe", b'{"market_id": NaN}']
)
def test_malformed_bodies_are_4xx(client, funded_player, content) -> None:
    _assert_problem(_post_bet(client, funded_player["token"], content))


def test_huge_body_is_413(client, funded_player, settings) -> None:
    huge = json.dumps({"market_id": 1, "padding": "x" * (settings.max_body_bytes + 10)})
    _assert_problem(_post_bet(client, funded_player["token"], huge), 413)


def test_huge_chunked_body_without_length_is_413(client, funded_player, settings) -> None:
    def chunks():  # type: ignore[no-untyped-def]
        for _ in range(settings.max_body_bytes // 1024 + 2):
            yield b" " * 1024

    response = client.http.post(
        "/v1/bets",
        content=chunks(),
        headers={"Authorization": f"Bearer {funded_player['token']}", "Idempotency-Key": "k"},
    )
    _assert_problem(response, 413)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer not-a-real-token"},
    ],
)
def test_bad_tokens_are_401(client, market, headers) -> None:
    for method, path in (("GET", "/v1/wallet"), ("POST", "/v1/bets"), ("GET", "/v1/bets/1")):
        response = client.http.request(method, path, json=bet_body(market), headers=headers | {"Idempotency-Key": "k"})
        _assert_problem(response, 401)


def test_admin_calls_need_the_admin_token(client, funded_player) -> None:
    player_auth = {"Authorization": f"Bearer {funded_player['token']}"}
    response = client.http.post("/v1/admin/deposit", json={"account_id": 1, "amount_minor": 1}, headers=player_auth)
    _assert_problem(response, 403)
    _assert_problem(client.http.post("/v1/accounts", json={"username": "x"}), 401)


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/v1/admin/deposit", {"account_id": 999_999, "amount_minor": 100}, 404),
        ("/v1/admin/deposit", {"account_id": 1, "amount_minor": 0}, 422),
        ("/v1/admin/deposit", {"account_id": 1, "amount_minor": -5}, 422),
        ("/v1/admin/deposit", {"account_id": 1, "amount_minor": 1.5}, 422),
        ("/v1/admin/markets", {"name": "x", "selections": [{"name": "a", "odds": "2.00"}]}, 422),
        (
            "/v1/admin/markets",
            {"name": "x", "selections": [{"name": "a", "odds": "1.00"}, {"name": "b", "odds": "2"}]},
            422,
        ),
        ("/v1/admin/markets/999999/odds", {"selection_id": 1, "odds": "2.00"}, 404),
        ("/v1/admin/markets/999999/result", {"void": True}, 404),
        ("/v1/accounts", {"username": ""}, 422),
        ("/v1/accounts", {"username": "has spaces"}, 422),
    ],
)
def test_admin_bad_input(client, funded_player, path, body, status) -> None:
    response = client.http.post(path, json=body, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    _assert_problem(response, status)


def test_result_must_name_a_selection_of_the_market(client, market) -> None:
    other = client.create_market("Other", [("A", "2.00"), ("B", "2.00")])
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    path = f"/v1/admin/markets/{market['id']}/result"
    _assert_problem(
        client.http.post(path, json={"winner_selection_id": other["selections"][0]["id"]}, headers=headers), 422
    )
    _assert_problem(client.http.post(path, json={"winner_selection_id": 1, "void": True}, headers=headers), 422)
    _assert_problem(client.http.post(path, json={}, headers=headers), 422)


def test_duplicate_username_is_409(client) -> None:
    client.create_account("same-name")
    response = client.http.post(
        "/v1/accounts", json={"username": "same-name"}, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    _assert_problem(response, 409)


def test_unknown_routes_and_ids_are_problems(client, funded_player) -> None:
    _assert_problem(client.http.get("/v1/nothing-here"), 404)
    _assert_problem(client.http.get("/v1/markets/123456"), 404)
    _assert_problem(client.http.get("/v1/markets/not-a-number"), 422)
    _assert_problem(
        client.http.delete("/v1/wallet", headers={"Authorization": f"Bearer {funded_player['token']}"}), 405
    )


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=15), inner, max_size=6),
    max_leaves=12,
)
bet_like = st.fixed_dictionaries(
    {},
    optional={
        "market_id": json_values,
        "selection_id": json_values,
        "stake_minor": st.integers() | json_values,
        "odds": st.sampled_from(["2.50", "1.01", "1000", "1000.001", "-2", "2.5e3"]) | json_values,
        "price_version": st.integers() | json_values,
        "accept_price_change": st.sampled_from(["none", "better", "any", "all"]) | json_values,
    },
)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_fuzzed_bet_bodies_never_500(client, engine, funded_player, market) -> None:
    token = funded_player["token"]

    @hsettings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(body=bet_like | json_values)
    def check(body) -> None:  # type: ignore[no-untyped-def]
        response = _post_bet(client, token, json.dumps(body))
        assert response.status_code < 500, (body, response.text)
        if response.status_code >= 400:
            assert response.headers["content-type"] == "application/problem+json"

    check()
    with reader(engine).begin() as conn:
        result = check_ledger(conn)
    assert result.ok, result.problems
