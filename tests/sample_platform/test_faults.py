"""Game-day faults: each one does what it says, expires by itself, and is recorded as a change event."""

from __future__ import annotations

import json
import statistics
import threading
import time
import uuid

import httpx
import pytest
from sqlalchemy import func, select

from sample_platform.db import reader
from sample_platform.ledger import check_ledger
from sample_platform.models import Bet, OutboxEvent
from sample_platform.outbox import read_jsonl_events
from tests.conftest import ADMIN_TOKEN, bet_body

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def set_fault(client, **spec) -> dict:  # type: ignore[no-untyped-def]
    response = client.http.post("/v1/admin/faults", json=spec, headers=ADMIN)
    assert response.status_code == 201, response.text
    return response.json()


def clear_faults(client, **params) -> list[dict]:  # type: ignore[no-untyped-def]
    response = client.http.delete("/v1/admin/faults", params=params, headers=ADMIN)
    assert response.status_code == 200, response.text
    return response.json()["cleared"]


def _ledger_ok(engine) -> None:  # type: ignore[no-untyped-def]
    with reader(engine).begin() as conn:
        check = check_ledger(conn)
    assert check.ok, check.problems[:5]


def _events(engine, prefix: str) -> list[dict]:  # type: ignore[no-untyped-def]
    t = OutboxEvent.__table__
    with reader(engine).connect() as conn:
        rows = conn.execute(select(t.c.event_type, t.c.payload).where(t.c.event_type.like(f"{prefix}%"))).all()
    return [{"type": r.event_type, **json.loads(r.payload)} for r in rows]


def test_set_list_clear_and_change_events(client, engine) -> None:
    fault = set_fault(
        client,
        kind="latency",
        route="GET /v1/markets",
        latency_ms=50,
        ttl_seconds=60,
        actor="gameday-lead",
        reason="drill",
    )
    listed = client.http.get("/v1/admin/faults", headers=ADMIN).json()["faults"]
    assert [f["id"] for f in listed] == [fault["id"]]
    assert 0 < listed[0]["ttl_remaining_seconds"] <= 60
    assert [f["id"] for f in clear_faults(client)] == [fault["id"]]
    assert client.http.get("/v1/admin/faults", headers=ADMIN).json()["faults"] == []
    events = _events(engine, "change.fault")
    assert [e["type"] for e in events] == ["change.fault_set", "change.fault_cleared"]
    assert events[0]["actor"] == "gameday-lead" and events[0]["reason"] == "drill"


def test_fault_expires_by_itself(client, engine) -> None:
    set_fault(client, kind="cache_off", ttl_seconds=0.5)
    deadline = time.monotonic() + 10
    while client.http.get("/v1/admin/faults", headers=ADMIN).json()["faults"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert client.http.get("/v1/admin/faults", headers=ADMIN).json()["faults"] == []
    deadline = time.monotonic() + 10
    while len(_events(engine, "change.fault_expired")) < 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [e["fault"]["kind"] for e in _events(engine, "change.fault_expired")] == ["cache_off"]


@pytest.mark.parametrize(
    ("spec", "status"),
    [
        ({"kind": "meteor", "ttl_seconds": 5}, 422),
        ({"kind": "latency", "ttl_seconds": 10**6}, 422),
        ({"kind": "latency"}, 422),
        ({"kind": "error_rate", "error_rate": 2, "ttl_seconds": 5}, 422),
        ({"kind": "latency", "ttl_seconds": -1}, 422),
    ],
)
def test_bad_fault_specs(client, spec, status) -> None:
    response = client.http.post("/v1/admin/faults", json=spec, headers=ADMIN)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"


def test_faults_need_the_admin_token(client) -> None:
    assert client.http.post("/v1/admin/faults", json={"kind": "cache_off", "ttl_seconds": 5}).status_code == 401
    assert client.http.get("/v1/admin/faults").status_code == 401


def test_route_latency_and_errors(client, market) -> None:
    path = f"/v1/markets/{market['id']}"
    set_fault(client, kind="latency", route="GET /v1/markets/{market_id}", latency_ms=300, jitter_ms=20, ttl_seconds=30)
    started = time.monotonic()
    assert client.http.get(path).status_code == 200
    assert time.monotonic() - started >= 0.25
    started = time.monotonic()
    client.http.get("/v1/markets")
    assert time.monotonic() - started < 0.25  # another route is untouched
    clear_faults(client)
    set_fault(
        client, kind="error_rate", route="/v1/markets/{market_id}", error_rate=1.0, error_status=503, ttl_seconds=30
    )
    failed = client.http.get(path)
    assert failed.status_code == 503
    assert failed.json()["type"].endswith("injected-fault")
    assert client.http.get("/v1/markets").status_code == 200
    clear_faults(client)
    assert client.http.get(path).status_code == 200


def test_cache_off_still_answers_correctly(client, engine, funded_player, market, server) -> None:
    set_fault(client, kind="cache_off", ttl_seconds=60)
    accepted = 0
    for i in range(10):
        response = client.place_bet(funded_player["token"], bet_body(market, selection=i % 3, stake=100))
        assert response.status_code == 201, response.text
        accepted += 1
    registry = server.app.state.platform.metrics.registry
    assert registry.get_sample_value("platform_risk_cache_lookups_total", {"result": "bypass"}) >= 30
    assert client.wallet(funded_player["token"])["held_minor"] == 1_000
    clear_faults(client)
    for _ in range(5):
        assert client.place_bet(funded_player["token"], bet_body(market, stake=100)).status_code == 201
    assert registry.get_sample_value("platform_risk_cache_lookups_total", {"result": "hit"}) >= 1
    client.result(market["id"], winner_selection_id=market["selections"][0]["id"])
    _ledger_ok(engine)


def _bet_latencies(client, player, market, n: int) -> list[float]:  # type: ignore[no-untyped-def]
    out = []
    for _ in range(n):
        started = time.monotonic()
        response = client.place_bet(player["token"], bet_body(market, stake=100))
        assert response.status_code == 201, response.text
        out.append(time.monotonic() - started)
    return out


def test_broker_slow_lags_the_relay_not_the_bets(client, engine, funded_player, market, server, settings) -> None:
    relay = server.app.state.platform.relay
    baseline = _bet_latencies(client, funded_player, market, 20)
    set_fault(client, kind="broker_slow", latency_ms=500, ttl_seconds=60)
    slowed = _bet_latencies(client, funded_player, market, 30)
    # Two events a second get through; the rest wait, and age (however long placing the bets took).
    deadline = time.monotonic() + 30
    while (backlog := relay.backlog())[1] <= 0.8 and time.monotonic() < deadline:
        time.sleep(0.05)
    depth, lag = backlog
    assert depth >= 10 and lag > 0.8, (depth, lag)
    assert statistics.median(slowed) < statistics.median(baseline) * 3 + 0.02
    clear_faults(client)
    deadline = time.monotonic() + 30
    while relay.backlog()[0] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert relay.backlog() == (0, 0.0)
    delivered = read_jsonl_events(settings.outbox_sink_path, dedupe=False)
    t = OutboxEvent.__table__
    with reader(engine).connect() as conn:
        stored = conn.execute(select(t.c.event_id)).scalars().all()
    assert sorted(m.event_id for m in delivered) == sorted(stored)  # nothing lost, nothing twice


def test_lock_wait_fails_bets_fast_and_clean(client, engine, funded_player, market, settings) -> None:
    set_fault(client, kind="lock_wait", ttl_seconds=60)
    try:
        for _ in range(3):
            started = time.monotonic()
            response = client.place_bet(funded_player["token"], bet_body(market, stake=100))
            elapsed = time.monotonic() - started
            assert response.status_code == 503, response.text
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json()["retryable"] is True
            assert "Retry-After" in response.headers
            assert response.json()["type"].endswith("/database-busy")  # the lock wait gave up, nothing else
            # It waited for the lock (SQLite's busy handler gives up a sleep early), and gave up long
            # before the fault's holder lets go at 60 s.
            assert settings.db_lock_timeout_ms / 1000 / 2 <= elapsed < 30
    finally:
        clear_faults(client)
    with reader(engine).connect() as conn:
        assert conn.execute(select(func.count()).select_from(Bet.__table__)).scalar_one() == 0
    assert client.wallet(funded_player["token"])["held_minor"] == 0
    assert client.place_bet(funded_player["token"], bet_body(market, stake=100)).status_code == 201
    _ledger_ok(engine)


@pytest.mark.timing
def test_shedding_bounds_in_flight_bets(start_platform, engine) -> None:
    limit = 4
    server, client = start_platform(bet_max_in_flight=limit)
    market = client.create_market("Shed", [("A", "2.00"), ("B", "2.00")])
    players = []
    for i in range(8):
        account = client.create_account(f"shed{i}-{uuid.uuid4().hex[:6]}")
        client.deposit(account["id"], 100_000)
        players.append(account)
    set_fault(client, kind="db_latency", latency_ms=15, ttl_seconds=60)
    platform = server.app.state.platform
    peak = {"in_flight": 0}
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            current = (
                platform.metrics.registry.get_sample_value("platform_admitted_in_flight", {"route": "POST /v1/bets"})
                or 0
            )
            peak["in_flight"] = max(peak["in_flight"], current)
            time.sleep(0.002)

    watcher = threading.Thread(target=watch)
    watcher.start()
    results: list[tuple[int, float, dict]] = []
    lock = threading.Lock()

    def send(i: int) -> None:
        with httpx.Client(base_url=server.url, timeout=60) as c:
            started = time.monotonic()
            response = c.post(
                "/v1/bets",
                json=bet_body(market, selection=i % 2, stake=100),
                headers={"Authorization": f"Bearer {players[i % 8]['token']}", "Idempotency-Key": str(uuid.uuid4())},
            )
            with lock:
                results.append((response.status_code, time.monotonic() - started, response.json()))

    threads = [threading.Thread(target=send, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    watcher.join()
    clear_faults(client)

    shed = [r for r in results if r[0] == 503]
    accepted = [r for r in results if r[0] == 201]
    assert shed and accepted
    overloaded = [r for r in shed if r[2]["type"].endswith("overloaded")]
    # A bet that got in may still time out waiting for the (slowed) database: also a retryable 503.
    assert all(r[2]["type"].endswith(("overloaded", "database-busy")) for r in shed)
    assert overloaded
    # Refused at once, not after queueing for a place: a refusal takes less time than a bet it made way
    # for, whatever the machine's load does to both.
    assert statistics.median(r[1] for r in overloaded) < statistics.median(r[1] for r in accepted)
    assert all(r[2]["retryable"] is True for r in shed)
    assert 1 <= peak["in_flight"] <= limit
    assert {r[0] for r in results} <= {201, 503}
    assert platform.metrics.registry.get_sample_value(
        "platform_shed_requests_total", {"route": "POST /v1/bets"}
    ) == len(overloaded)
    with reader(engine).connect() as conn:
        assert conn.execute(select(func.count()).select_from(Bet.__table__)).scalar_one() == len(accepted)
    _ledger_ok(engine)
