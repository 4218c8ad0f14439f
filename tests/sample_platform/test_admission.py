"""Admission control on every route that touches the database: past its class's bound a request is shed
at once (503 `overloaded`, Retry-After, retryable), labelled with its route; health, metrics and the
fault switches are never shed."""

from __future__ import annotations

import threading
import uuid

import httpx
import pytest

from sample_platform.api.routing import route_class
from tests.conftest import ADMIN_TOKEN

HOLD_SECONDS = 3  # long enough that every concurrent request arrives while the first ones are held


@pytest.mark.parametrize(
    ("method", "template", "expected"),
    [
        ("POST", "/v1/bets", "bets"),
        ("GET", "/v1/bets/{bet_id}", "reads"),
        ("GET", "/v1/markets/{market_id}", "reads"),
        ("GET", "/v1/wallet", "reads"),
        ("POST", "/v1/login", "writes"),
        ("POST", "/v1/admin/deposit", "writes"),
        ("POST", "/v1/admin/markets/{market_id}/result", "writes"),
        ("GET", "/v1/health", None),
        ("GET", "/metrics", None),
        ("POST", "/v1/admin/faults", None),
        ("DELETE", "/v1/admin/faults", None),
        ("GET", "/v1/odds/stream", None),
        ("GET", "/docs", None),
    ],
)
def test_every_route_has_its_class(method: str, template: str, expected: str | None) -> None:
    assert route_class(method, template) == expected


def _hold(client, route: str) -> None:  # type: ignore[no-untyped-def]
    response = client.http.post(
        "/v1/admin/faults",
        json={"kind": "latency", "route": route, "latency_ms": HOLD_SECONDS * 1000, "ttl_seconds": 60},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    assert response.status_code == 201, response.text


def _concurrently(url: str, method: str, path: str, n: int, **kwargs: object) -> list[httpx.Response]:
    responses: list[httpx.Response] = []
    lock = threading.Lock()
    barrier = threading.Barrier(n)

    def send() -> None:
        with httpx.Client(base_url=url, timeout=60) as http:
            barrier.wait()
            response = http.request(method, path, **kwargs)  # type: ignore[arg-type]
        with lock:
            responses.append(response)

    threads = [threading.Thread(target=send) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return responses


@pytest.mark.parametrize(
    ("setting", "method", "route"),
    [("read_max_in_flight", "GET", "/v1/markets/{market_id}"), ("write_max_in_flight", "POST", "/v1/admin/deposit")],
)
@pytest.mark.timing
def test_reads_and_writes_are_shed_past_their_bound(start_platform, setting: str, method: str, route: str) -> None:
    server, client = start_platform(**{setting: 2})
    market = client.create_market("Held", [("A", "2.00"), ("B", "2.00")])
    player = client.create_account(f"held-{uuid.uuid4().hex[:8]}")
    _hold(client, f"{method} {route}")
    path = route.replace("{market_id}", str(market["id"]))
    body = {"account_id": player["id"], "amount_minor": 100} if method == "POST" else None
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    done = threading.Event()
    during: dict[str, int] = {}

    def probe_unshed_routes() -> None:
        # While the bound is full, the routes that must never be shed still answer.
        with httpx.Client(base_url=server.url, timeout=60) as http:
            while not done.is_set() and server.app.state.platform.metrics.registry.get_sample_value(
                "platform_shed_requests_total", {"route": f"{method} {route}"}
            ) in (None, 0.0):
                done.wait(0.01)
            during["health"] = http.get("/v1/health").status_code
            during["metrics"] = http.get("/metrics").status_code
            during["faults"] = http.get("/v1/admin/faults", headers=headers).status_code

    prober = threading.Thread(target=probe_unshed_routes)
    prober.start()
    responses = _concurrently(server.url, method, path, 8, json=body, headers=headers)
    done.set()
    prober.join()

    codes = sorted(r.status_code for r in responses)
    shed = [r for r in responses if r.status_code == 503]
    assert 1 <= len(shed) <= 6, codes  # at most two held at once; the rest shed at once
    assert all(200 <= c < 300 or c == 503 for c in codes), codes
    for response in shed:
        problem = response.json()
        assert response.headers["content-type"] == "application/problem+json"
        assert problem["type"] == "/problems/overloaded" and problem["retryable"] is True
        assert response.headers["retry-after"] == "1"
    assert during == {"health": 200, "metrics": 200, "faults": 200}
    registry = server.app.state.platform.metrics.registry
    assert registry.get_sample_value("platform_shed_requests_total", {"route": f"{method} {route}"}) == len(shed)
    # The shed answers are labelled with their route template, not "unmatched".
    counted = registry.get_sample_value(
        "platform_http_requests_total", {"method": method, "route": route, "code": "503"}
    )
    assert counted == len(shed)


def _slow_bet(host: str, port: int, token: str | None):  # type: ignore[no-untyped-def]
    """A connection that sends a bet's headers, then one byte of a 200-byte body, and no more."""
    import socket

    conn = socket.create_connection((host, port), timeout=60)
    auth = f"Authorization: Bearer {token}\r\n".encode() if token else b""
    conn.sendall(
        b"POST /v1/bets HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 200\r\n"
        + auth
        + b"Idempotency-Key: k\r\n\r\n{"
    )
    return conn


def test_slow_bodies_take_no_place_in_the_bets_bound_and_get_408(start_platform) -> None:
    from tests.conftest import bet_body

    server, client = start_platform(bet_max_in_flight=2, body_read_timeout_seconds=3)
    player, stranger = (client.create_account(f"s{uuid.uuid4().hex[:8]}") for _ in range(2))
    client.deposit(player["id"], 100_000)
    market = client.create_market("Slow cup", [("A", "2.00"), ("B", "2.00")])
    host, port = server.url.removeprefix("http://").split(":")
    # Three times the bound: a player of its own sending bet bodies a byte at a time, or not at all.
    slow = [_slow_bet(host, int(port), stranger["token"]) for _ in range(6)]
    try:
        bets = [client.place_bet(player["token"], bet_body(market, stake=100)).status_code for _ in range(3)]
        assert bets == [201, 201, 201]  # the bound is free: the slow bodies hold no place in it
        registry = server.app.state.platform.metrics.registry
        shed = [s.value for m in registry.collect() for s in m.samples if s.name == "platform_shed_requests_total"]
        assert sum(shed) == 0
        answers = []
        for conn in slow:  # each slow sender is told, once its deadline has passed
            conn.settimeout(60)
            answers.append(conn.recv(200).split(b"\r\n", 1)[0])
        assert answers == [b"HTTP/1.1 408 Request Timeout"] * 6
    finally:
        for conn in slow:
            conn.close()


@pytest.mark.parametrize("token", [None, "not-a-token"])
def test_a_bet_without_a_valid_token_is_refused_before_its_body(start_platform, token: str | None) -> None:
    server, _client = start_platform(body_read_timeout_seconds=60)
    host, port = server.url.removeprefix("http://").split(":")
    conn = _slow_bet(host, int(port), token)
    try:
        head = conn.recv(4096)  # answered at once, though 199 bytes of the body have not come
    finally:
        conn.close()
    assert head.startswith(b"HTTP/1.1 401 Unauthorized"), head
    assert b"application/problem+json" in head and b"www-authenticate: bearer" in head.lower()
