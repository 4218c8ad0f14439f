"""Hostile values get a 4xx problem naming the field and the limit, on both databases: ids beyond the
columns' range, JSON nested deep enough to blow a parser's recursion, NUL characters. None of them is
a 5xx, and none is a retryable `database-busy` (a client following the contract would retry forever)."""

from __future__ import annotations

import pytest

from sample_platform.api.routing import MAX_JSON_DEPTH, json_depth
from tests.conftest import ADMIN_TOKEN, bet_body

BEYOND_64_BITS = 2**63
BEYOND_32_BITS = 2**31
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def _lock_timeouts(server) -> float:  # type: ignore[no-untyped-def]
    registry = server.app.state.platform.metrics.registry
    return registry.get_sample_value("platform_db_lock_timeouts_total") or 0.0


def _assert_problem(response, status: int, *words: str) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"] == "application/problem+json"
    text = response.text
    assert all(word in text for word in words), text


@pytest.mark.parametrize(
    "path",
    [
        f"/v1/markets/{BEYOND_64_BITS}",
        "/v1/markets/0",
        f"/v1/bets/{BEYOND_64_BITS}",
    ],
)
def test_ids_out_of_range_in_paths_are_refused_naming_the_field(client, server, funded_player, path: str) -> None:
    headers = {"Authorization": f"Bearer {funded_player['token']}"}
    response = client.http.get(path, headers=headers)
    _assert_problem(response, 422, "_id")
    assert _lock_timeouts(server) == 0


def test_ids_beyond_32_bits_are_just_not_found(client, server) -> None:
    # BIGINT columns on PostgreSQL too: a 33-bit id is a valid id that does not exist.
    _assert_problem(client.http.get(f"/v1/markets/{BEYOND_32_BITS}"), 404)
    assert _lock_timeouts(server) == 0


@pytest.mark.parametrize("field", ["market_id", "selection_id"])
@pytest.mark.parametrize("value", [BEYOND_64_BITS, BEYOND_32_BITS])
def test_ids_in_bodies(client, server, funded_player, market, field: str, value: int) -> None:
    body = bet_body(market, **{field: value})
    response = client.place_bet(funded_player["token"], body)
    assert 400 <= response.status_code < 500, response.text
    if value == BEYOND_64_BITS:
        _assert_problem(response, 422, field, str(2**63 - 1))
    assert _lock_timeouts(server) == 0


def test_deposit_to_an_account_beyond_range_is_refused(client, server) -> None:
    response = client.http.post(
        "/v1/admin/deposit", json={"account_id": BEYOND_64_BITS, "amount_minor": 1}, headers=ADMIN
    )
    _assert_problem(response, 422, "account_id")
    response = client.http.post(
        "/v1/admin/deposit", json={"account_id": BEYOND_32_BITS, "amount_minor": 1}, headers=ADMIN
    )
    assert 400 <= response.status_code < 500 and response.status_code != 503, response.text


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 1000, 100_000 // 2])
def test_deep_json_is_refused_before_parsing_even_anonymously(client, server, depth: int) -> None:
    body = b"[" * depth + b"]" * depth
    response = client.http.post("/v1/login", content=body, headers={"content-type": "application/json"})
    if len(body) > 65_536:
        _assert_problem(response, 413)
    else:
        _assert_problem(response, 400, "malformed-json", f"deeper than {MAX_JSON_DEPTH}")


def test_json_within_the_depth_limit_is_an_ordinary_validation_error(client) -> None:
    body = b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH
    response = client.http.post("/v1/login", content=body, headers={"content-type": "application/json"})
    _assert_problem(response, 422, "validation")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"a": "[[[[[[", "b": 1}', 1),
        (b'{"a": "\\\\", "b": [[1]]}', 3),
        (b'{"a": "\\"[[[", "b": {}}', 2),
        (b"", 0),
    ],
)
def test_depth_ignores_brackets_inside_strings(body: bytes, expected: int) -> None:
    assert json_depth(body) == expected


def test_nul_characters_are_refused_naming_the_field(client, server) -> None:
    login = client.http.post("/v1/login", json={"username": "nul\u0000user", "password": "whatever-long"})
    _assert_problem(login, 422, "username", "NUL")
    market = client.http.post(
        "/v1/admin/markets",
        json={"name": "Cup\u0000final", "selections": [{"name": "A", "odds": "2.00"}, {"name": "B", "odds": "2.00"}]},
        headers=ADMIN,
    )
    _assert_problem(market, 422, "name", "NUL")
    assert _lock_timeouts(server) == 0


@pytest.mark.parametrize(
    "params",
    [{"actor": "nul\u0000actor"}, {"actor": "x" * 101}, {"kind": "latency\u0000"}, {"id": "y" * 65}],
)
def test_fault_clearing_query_values_are_checked(client, server, params: dict) -> None:
    response = client.http.delete("/v1/admin/faults", params=params, headers=ADMIN)
    _assert_problem(response, 422, next(iter(params)))
    assert _lock_timeouts(server) == 0
