"""Per-client limits, settled before a request's body is read: a player's in-flight cap and token-bucket
rate per route class, an address's cap for requests without a valid token, a bound shared by all of
those, the admin token bound only by the class bounds; and uvicorn's header deadline."""

from __future__ import annotations

import socket
import threading
import time
import uuid

import httpx
import pytest

from sample_platform.admission import TokenBuckets
from tests.conftest import ADMIN_TOKEN
from tests.sample_platform.test_admission import _concurrently, _hold
from tests.support import wait_until


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_starts_full_refills_at_its_rate_and_says_how_long_to_wait() -> None:
    clock = FakeClock()
    buckets = TokenBuckets(clock)
    assert [buckets.take("a", 2.0, 3.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a", 2.0, 3.0) == pytest.approx(0.5)
    assert buckets.take("b", 2.0, 3.0) == 0.0  # another key has its own bucket
    clock.now += 0.5
    assert buckets.take("a", 2.0, 3.0) == 0.0
    assert buckets.take("a", 2.0, 3.0) == pytest.approx(0.5)
    clock.now += 60
    assert [buckets.take("a", 2.0, 3.0) for _ in range(4)][-1] > 0  # refilled to its capacity, no more


def test_buckets_that_have_refilled_are_forgotten_past_max_keys() -> None:
    clock = FakeClock()
    buckets = TokenBuckets(clock, max_keys=100)
    for i in range(100):
        buckets.take(i, 1.0, 2.0)
    clock.now += 10  # all of them full again
    buckets.take("new", 1.0, 2.0)
    buckets.take("newer", 1.0, 2.0)
    assert len(buckets) <= 2


def _player(client) -> dict:  # type: ignore[no-untyped-def]
    return client.create_account(f"c{uuid.uuid4().hex[:8]}")


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _limited(server, limit: str) -> float:  # type: ignore[no-untyped-def]
    registry = server.app.state.platform.metrics.registry
    return registry.get_sample_value("platform_rate_limited_total", {"limit": limit}) or 0.0


def test_a_player_past_its_rate_gets_429_while_others_are_served(start_platform) -> None:
    server, client = start_platform(client_reads_per_second=0.5, client_burst_seconds=6)
    greedy, other = _player(client), _player(client)
    with httpx.Client(base_url=server.url, timeout=60) as http:
        codes = [http.get("/v1/wallet", headers=_bearer(greedy["token"])).status_code for _ in range(5)]
        refused = http.get("/v1/wallet", headers=_bearer(greedy["token"]))
        assert http.get("/v1/wallet", headers=_bearer(other["token"])).status_code == 200
    assert codes == [200, 200, 200, 429, 429]
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["type"] == "/problems/too-many-requests" and refused.json()["retryable"] is True
    assert int(refused.headers["retry-after"]) >= 1
    assert _limited(server, "client_rate") == 3


def test_a_player_past_its_in_flight_cap_gets_429_and_others_are_not_held(start_platform) -> None:
    server, client = start_platform(client_max_in_flight=2)
    greedy, other = _player(client), _player(client)
    _hold(client, "GET /v1/wallet")
    responses = _concurrently(server.url, "GET", "/v1/wallet", 6, headers=_bearer(greedy["token"]))
    codes = sorted(r.status_code for r in responses)
    assert codes.count(429) >= 4 and set(codes) <= {200, 429}, codes
    assert _limited(server, "client_in_flight") == codes.count(429)
    both = _concurrently(server.url, "GET", "/v1/wallet", 2, headers=_bearer(other["token"]))
    assert [r.status_code for r in both] == [200, 200]


def test_requests_without_a_token_are_capped_per_address_then_shed_together(start_platform) -> None:
    server, client = start_platform(anonymous_max_in_flight_per_address=2)
    market = client.create_market("Capped", [("A", "2.00"), ("B", "2.00")])
    bettor = _player(client)
    _hold(client, "GET /v1/markets/{market_id}")
    path = f"/v1/markets/{market['id']}"
    # Other addresses claimed in X-Forwarded-For change nothing: no proxy is trusted by default.
    spoofed = [{"X-Forwarded-For": f"10.0.0.{i}"} for i in range(6)]
    responses = _concurrently(server.url, "GET", path, 6, headers=spoofed[0])
    codes = sorted(r.status_code for r in responses)
    assert codes.count(429) >= 4 and set(codes) <= {200, 429}, codes
    assert _limited(server, "address_in_flight") == codes.count(429)
    # A player reading the same route is no stranger: the address's cap is not theirs.
    assert _concurrently(server.url, "GET", path, 3, headers=_bearer(bettor["token"]))[0].status_code == 200

    server, client = start_platform(anonymous_max_in_flight=2, anonymous_max_in_flight_per_address=10)
    market = client.create_market("Shed", [("A", "2.00"), ("B", "2.00")])
    _hold(client, "GET /v1/markets/{market_id}")
    responses = _concurrently(server.url, "GET", f"/v1/markets/{market['id']}", 6)
    codes = sorted(r.status_code for r in responses)
    assert codes.count(503) >= 4 and set(codes) <= {200, 503}, codes
    assert all(r.json()["type"] == "/problems/overloaded" for r in responses if r.status_code == 503)


def test_a_trusted_proxy_names_the_client(start_platform) -> None:
    server, client = start_platform(anonymous_max_in_flight_per_address=1, trusted_proxies="127.0.0.1")
    market = client.create_market("Proxied", [("A", "2.00"), ("B", "2.00")])
    _hold(client, "GET /v1/markets/{market_id}")
    path = f"/v1/markets/{market['id']}"
    results: list[int] = []

    def read(address: str) -> None:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            results.append(http.get(path, headers={"X-Forwarded-For": address}).status_code)

    threads = [threading.Thread(target=read, args=(f"10.0.0.{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200, 200, 200, 200]  # four clients behind the proxy, one request each


def test_the_admin_token_is_bound_only_by_the_class_bounds(start_platform) -> None:
    server, client = start_platform(client_max_in_flight=1, client_writes_per_second=0.1, client_burst_seconds=1)
    players = [_player(client) for _ in range(5)]
    codes = [
        client.http.post(
            "/v1/admin/deposit", json={"account_id": p["id"], "amount_minor": 100}, headers=_bearer(ADMIN_TOKEN)
        ).status_code
        for p in players
        for _ in range(2)
    ]
    assert all(200 <= code < 300 for code in codes), codes
    assert _limited(server, "client_rate") == 0


def test_a_header_sent_slowly_loses_its_connection(start_platform) -> None:
    server, _client = start_platform(header_timeout_seconds=1)
    host, port = server.url.removeprefix("http://").split(":")
    slow = socket.create_connection((host, int(port)), timeout=60)
    silent = socket.create_connection((host, int(port)), timeout=60)
    kept = socket.create_connection((host, int(port)), timeout=60)
    try:
        slow.sendall(b"POST /v1/login HTTP/1.1\r\nHost: x\r\n")
        kept.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _health(kept).startswith(b"HTTP/1.1 200")
        kept.sendall(b"GET /v1/health HTTP/1.1\r\n")  # the next request on a kept-alive connection, unfinished
        started = time.monotonic()
        for conn in (slow, silent, kept):
            wait_until(lambda c=conn: _closed(c), "the server closed a connection whose header never came whole")
        assert time.monotonic() - started < 50
        with httpx.Client(base_url=server.url, timeout=60) as http:
            assert http.get("/v1/health").status_code == 200  # the server itself is fine
    finally:
        for conn in (slow, silent, kept):
            conn.close()


def _health(conn: socket.socket) -> bytes:
    """A whole answer of /v1/health, however many reads it takes."""
    answer = b""
    while not answer.endswith(b"}"):
        chunk = conn.recv(4096)
        assert chunk, answer
        answer += chunk
    return answer


def _closed(conn: socket.socket) -> bool:
    conn.settimeout(0.2)
    try:
        return conn.recv(4096) == b""
    except TimeoutError:
        return False
    except OSError:
        return True


def test_a_header_that_comes_whole_is_not_cut(start_platform) -> None:
    server, _client = start_platform(header_timeout_seconds=2)
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=60) as conn:
        conn.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _health(conn).startswith(b"HTTP/1.1 200")
        for _ in range(3):  # keep-alive requests spread over longer than the deadline, each header whole
            time.sleep(1)
            conn.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert _health(conn).startswith(b"HTTP/1.1 200")
