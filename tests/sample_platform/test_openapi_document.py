"""What /openapi.json promises clients: request bodies, success and problem responses, the
Idempotency-Key, bearer auth; and that a wrong method is answered with every method of the path."""

from __future__ import annotations

import json
import re
import socket
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

import sample_platform.api
from sample_platform.client import PlatformClient
from sample_platform.schemas import ODDS_PATTERN, DepositCreate, ResultCreate, SelectionCreate
from sample_platform.server import PlatformServer
from tests.conftest import ADMIN_TOKEN

PLAIN_TEXT = {"schema": {"type": "string"}}
PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
PUBLIC = {"GET /", "GET /metrics", "GET /v1/health", "GET /v1/markets", "GET /v1/markets/{market_id}"}
PUBLIC |= {"GET /v1/odds/stream", "POST /v1/login"}
PLAYER = {"GET /v1/wallet", "POST /v1/bets", "GET /v1/bets/{bet_id}"}


@pytest.fixture
def document(client: PlatformClient) -> dict[str, Any]:
    response = client.http.get("/openapi.json")
    assert response.status_code == 200
    return dict(response.json())


def operations(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f"{method.upper()} {path}": op for path, item in document["paths"].items() for method, op in item.items()}


def test_api_package_exports() -> None:
    assert sorted(sample_platform.api.__all__) == ["Platform", "build_platform", "create_app"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_every_route_is_documented(document: dict[str, Any]) -> None:
    assert set(operations(document)) == PUBLIC | PLAYER | {
        "POST /v1/accounts",
        "POST /v1/admin/accounts/{account_id}/password",
        "POST /v1/admin/deposit",
        "POST /v1/admin/markets",
        "POST /v1/admin/markets/{market_id}/odds",
        "POST /v1/admin/markets/{market_id}/result",
        "POST /v1/admin/faults",
        "GET /v1/admin/faults",
        "DELETE /v1/admin/faults",
    }


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_every_post_documents_its_json_body(document: dict[str, Any]) -> None:
    for name, op in operations(document).items():
        if name.startswith("POST "):
            body = op.get("requestBody", {})
            assert body.get("required") is True, name
            assert set(body["content"]) == {"application/json"}, name
            assert body["content"]["application/json"]["schema"]["$ref"].startswith("#/components/schemas/"), name


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_every_success_response_has_a_schema(document: dict[str, Any]) -> None:
    for name, op in operations(document).items():
        redirects = {status: r for status, r in op["responses"].items() if status.startswith("3")}
        if redirects:  # the odds stream: served from its own port, the API points there
            assert name == "GET /v1/odds/stream" and set(redirects) == {"307"}, name
            assert "Location" in redirects["307"]["headers"], name
            continue
        successes = {status: response for status, response in op["responses"].items() if status.startswith("2")}
        assert len(successes) == 1, name
        (response,) = successes.values()
        assert response["content"], name
        for media in response["content"].values():
            assert media.get("schema"), name


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_errors_are_documented_as_problem_json(document: dict[str, Any]) -> None:
    assert "HTTPValidationError" not in json.dumps(document)
    problem = document["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"type", "title", "status", "detail"}
    assert problem.get("additionalProperties", True) is not False
    for name, op in operations(document).items():
        for status, response in op["responses"].items():
            if status == "400" and "application/problem+json" not in response["content"]:
                continue  # only the HTTP server's own refusal, below
            if status[0] in "45":
                assert response["content"].pop("text/plain", None) in (None, PLAIN_TEXT), (name, status)
                assert response["content"] == {"application/problem+json": {"schema": PROBLEM_REF}}, (name, status)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_every_route_documents_the_http_servers_refusal(server: PlatformServer, document: dict[str, Any]) -> None:
    # A request that is not valid HTTP never reaches a route: the server answers it in plain text.
    host, port = server.url.removeprefix("http://").split(":")
    for name, op in operations(document).items():
        assert op["responses"]["400"]["content"]["text/plain"] == PLAIN_TEXT, name
        method, path = name.split(" ", 1)
        with socket.create_connection((host, int(port)), timeout=30) as conn:
            conn.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\nX-Note: a\x00b\r\n\r\n".encode())
            head = conn.recv(4096).decode("latin-1")
        assert head.startswith("HTTP/1.1 400 "), (name, head)
        assert "content-type: text/plain" in head.lower(), (name, head)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_refusable_input_documents_422(document: dict[str, Any]) -> None:
    for name, op in operations(document).items():
        if "requestBody" in op or "{" in name:
            assert "422" in op["responses"], name
            assert op["responses"]["422"]["content"]["application/problem+json"]["schema"] == PROBLEM_REF, name


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_bets_require_an_idempotency_key_header(document: dict[str, Any]) -> None:
    parameters = operations(document)["POST /v1/bets"]["parameters"]
    (key,) = [p for p in parameters if p["name"] == "Idempotency-Key"]
    assert key["in"] == "header"
    assert key["required"] is True
    assert "400" in operations(document)["POST /v1/bets"]["responses"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_admin_and_player_routes_use_bearer_auth(document: dict[str, Any]) -> None:
    schemes = document["components"]["securitySchemes"]
    assert schemes == {
        "AdminToken": {"type": "http", "scheme": "bearer", "description": schemes["AdminToken"]["description"]},
        "PlayerToken": {"type": "http", "scheme": "bearer", "description": schemes["PlayerToken"]["description"]},
    }
    for name, op in operations(document).items():
        if name in PUBLIC:
            assert "security" not in op, name
            continue
        expected = "PlayerToken" if name in PLAYER else "AdminToken"
        assert op["security"] == [{expected: []}], name
        assert "401" in op["responses"], name
        assert ("403" in op["responses"]) == (expected == "AdminToken"), name
        assert "Authorization" not in {p["name"] for p in op.get("parameters", [])}, name


def test_missing_token_is_401_with_a_bearer_challenge(client: PlatformClient) -> None:
    for method, path in (("GET", "/v1/wallet"), ("GET", "/v1/admin/faults"), ("POST", "/v1/admin/deposit")):
        response = client.http.request(method, path, json={})
        assert response.status_code == 401, (path, response.text)
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/v1/admin/faults", "DELETE, GET, POST"),
        ("PATCH", "/v1/admin/faults", "DELETE, GET, POST"),
        ("DELETE", "/v1/wallet", "GET"),
        ("PUT", "/v1/markets/1", "GET"),
        ("GET", "/v1/bets", "POST"),
    ],
)
def test_wrong_method_is_405_allowing_every_method_of_the_path(
    client: PlatformClient, method: str, path: str, allowed: str
) -> None:
    response = client.http.request(method, path, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert response.status_code == 405, response.text
    assert response.headers["allow"] == allowed
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 405


def test_missing_idempotency_key_is_400_not_422(client: PlatformClient, funded_player: dict[str, Any]) -> None:
    response = client.http.post(
        "/v1/bets", json={"market_id": 1}, headers={"Authorization": f"Bearer {funded_player['token']}"}
    )
    assert response.status_code == 400, response.text
    assert response.json()["type"] == "/problems/idempotency-key-missing"


@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Type": "application/json"},
        {"Content-Type": "text/plain"},
        {"Content-Type": "application/x-www-form-urlencoded"},
        {},
    ],
)
def test_bodies_are_read_as_json_whatever_the_content_type(client: PlatformClient, headers: dict[str, str]) -> None:
    # `curl -d` sends form-urlencoded; the platform has always read every body as JSON.
    body = json.dumps({"name": "Any type", "selections": [{"name": "A", "odds": "2.00"}, {"name": "B", "odds": "2"}]})
    response = client.http.post(
        "/v1/admin/markets", content=body, headers=headers | {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    assert response.status_code == 201, response.text


def test_malformed_json_is_400_after_authentication(client: PlatformClient) -> None:
    anonymous = client.http.post("/v1/admin/markets", content=b"{", headers={"Content-Type": "application/json"})
    assert anonymous.status_code == 401
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"}
    for content in (b"{", b""):
        response = client.http.post("/v1/admin/markets", content=content, headers=admin)
        assert response.status_code == 400, response.text
        assert response.json()["type"] == "/problems/malformed-json"


def _walk(node: Any, path: str = "") -> Any:
    if isinstance(node, dict):
        for key, value in node.items():
            yield f"{path}/{key}", key, value
            yield from _walk(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{path}/{i}")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_document_states_limits_as_json_schema_with_exact_integers(document: dict[str, Any]) -> None:
    wrong = [where for where, key, _value in _walk(document) if key in ("gt", "ge", "lt", "le")]
    assert wrong == [], "pydantic-only keywords where JSON Schema ones belong"
    rounded = [
        where
        for where, key, value in _walk(document)
        if key in ("maximum", "minimum") and isinstance(value, float) and value > 2**53
    ]
    assert rounded == [], "an integer bound past 2**53 as a float is not the bound"
    deposit = document["components"]["schemas"]["DepositCreate"]["properties"]["account_id"]
    assert (deposit["minimum"], deposit["maximum"]) == (1, 2**63 - 1)
    assert [set(b["properties"]) for b in document["components"]["schemas"]["ResultCreate"]["oneOf"]] == [
        {"winner_selection_id", "void"}
    ] * 2


@given(text=st.from_regex(r"^[0-9]{1,4}(\.[0-9]{0,4})?$", fullmatch=True) | st.text(max_size=8))
def test_the_odds_pattern_admits_exactly_the_odds_the_server_takes(text: str) -> None:
    assert _takes(SelectionCreate, {"name": "x", "odds": text}) == bool(re.fullmatch(ODDS_PATTERN.strip("^$"), text))


@pytest.mark.parametrize(
    ("body", "taken"),
    [
        ({"account_id": 1, "amount_minor": 100.0}, True),  # JSON does not tell 100.0 from 100
        ({"account_id": 1.0, "amount_minor": 100}, True),
        ({"account_id": 1, "amount_minor": 100.5}, False),
        ({"account_id": 1, "amount_minor": "100"}, False),
        ({"account_id": True, "amount_minor": 100}, False),
        ({"account_id": 1, "amount_minor": 10**12 + 1}, False),
    ],
)
def test_whole_numbers_are_integers_and_nothing_else_is(body: dict[str, Any], taken: bool) -> None:
    assert _takes(DepositCreate, body) == taken


@pytest.mark.parametrize(
    ("body", "taken"),
    [
        ({"winner_selection_id": 3}, True),
        ({"void": True}, True),
        ({}, False),
        ({"winner_selection_id": 3, "void": True}, False),
    ],
)
def test_a_result_is_a_winner_or_void_exactly(body: dict[str, Any], taken: bool) -> None:
    assert _takes(ResultCreate, body) == taken


def _takes(model: type[BaseModel], body: dict[str, Any]) -> bool:
    """Whether the platform's request model accepts the body."""
    try:
        model.model_validate(body)
    except ValidationError:
        return False
    return True
