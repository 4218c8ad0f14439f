"""Synthetic requests (`X-Synthetic`): served like any other, but kept out of the SLO metrics, admitted
through a pool of their own, alone touched by `synthetic_only` faults; synthetic accounts and markets
are hidden from listings and mark their money events."""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select

from sample_platform import accounts as accounts_module
from sample_platform.db import reader
from sample_platform.models import OutboxEvent
from sample_platform.synthetic import synthetic_label
from tests.conftest import ADMIN_TOKEN, bet_body
from tests.support import wait_until

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
PROBE = {"X-Synthetic": "checklist", "X-Probe-Token": ADMIN_TOKEN}
MARKET = "/v1/markets/{market_id}"
HELD_AMOUNT = 101  # the probes' deposits held inside the platform by the pool test


def sample(server, name: str, **labels: str) -> float:  # type: ignore[no-untyped-def]
    value = server.app.state.platform.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def events(engine, *types: str) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    t = OutboxEvent.__table__
    with reader(engine).connect() as conn:
        rows = conn.execute(
            select(t.c.event_type, t.c.payload).where(t.c.event_type.in_(types)).order_by(t.c.seq)
        ).all()
    return [{"type": r.event_type, **json.loads(r.payload)} for r in rows]


@pytest.mark.parametrize(
    ("headers", "label"),
    [
        ([(b"x-synthetic", b"checklist")], "checklist"),
        ([(b"X-Synthetic", b"  drill ")], "drill"),
        ([(b"x-synthetic", b""), (b"x-synthetic", b"second")], "second"),
        ([(b"x-synthetic", b"   ")], None),
        ([(b"user-agent", b"synthetic")], None),
    ],
)
def test_the_label_is_the_first_non_empty_header(headers: list[tuple[bytes, bytes]], label: str | None) -> None:
    scope: dict[str, Any] = {"type": "http", "headers": headers}
    assert synthetic_label(scope) == label
    assert scope["platform.synthetic"] == label  # kept for the other middleware


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_synthetic_requests_stay_out_of_the_slo_metrics(server, client, market) -> None:
    path = f"/v1/markets/{market['id']}"
    labels = {"method": "GET", "route": MARKET, "code": "200"}

    def counted() -> dict[str, float]:
        return {
            "requests": sample(server, "platform_http_requests_total", **labels),
            "durations": sample(server, "platform_http_request_duration_seconds_count", **labels),
            "synthetic": sample(server, "platform_synthetic_requests_total", **labels),
        }

    # A request is counted as its answer goes out, so the counts are waited for, not read at once.
    assert client.http.get(path).status_code == 200
    wait_until(lambda: counted()["requests"] == 1, "the player's request counted")
    for _ in range(3):
        assert client.http.get(path, headers=PROBE).status_code == 200
    assert client.http.get(path, headers={"X-Synthetic": ""}).status_code == 200  # empty: a player's request
    wait_until(lambda: counted()["synthetic"] == 3 and counted()["requests"] == 2, "every request counted")
    assert counted() == {"requests": 2.0, "durations": 2.0, "synthetic": 3.0}
    exposition = client.http.get("/metrics").text
    assert (
        'platform_synthetic_requests_total{code="200",method="GET",route="/v1/markets/{market_id}"} 3.0' in exposition
    )


def test_x_synthetic_counts_only_with_a_probe_token(start_platform) -> None:
    server, client = start_platform(probe_tokens=SecretStr("probe-one, probe-two"))
    player = client.create_account(f"p{uuid.uuid4().hex[:8]}")
    client.deposit(player["id"], 100_000)
    market = client.create_market("Gate cup", [("A", "2.00"), ("B", "2.00")])
    labels = {"method": "POST", "route": "/v1/bets", "code": "201"}

    def bet(**headers: str) -> int:
        base = {"Authorization": f"Bearer {player['token']}", "Idempotency-Key": str(uuid.uuid4())}
        return client.http.post("/v1/bets", json=bet_body(market, stake=100), headers={**base, **headers}).status_code

    def counted() -> tuple[float, float, float]:
        return (
            sample(server, "platform_http_requests_total", **labels),
            sample(server, "platform_synthetic_requests_total", **labels),
            sample(server, "platform_synthetic_header_ignored_total"),
        )

    # A player's token alone, or a wrong probe token: the label is ignored, the bet measured as a player's.
    assert bet(**{"X-Synthetic": "checklist"}) == 201
    assert bet(**{"X-Synthetic": "checklist", "X-Probe-Token": "probe-three"}) == 201
    wait_until(lambda: counted() == (2, 0, 2), "both bets counted as players'")
    # A probe token, either of them, or the admin token: synthetic.
    assert bet(**{"X-Synthetic": "checklist", "X-Probe-Token": "probe-two"}) == 201
    assert bet(**{"X-Synthetic": "drill", "X-Probe-Token": ADMIN_TOKEN}) == 201
    wait_until(lambda: counted() == (2, 2, 2), "the probes' bets counted apart")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_service_index_advertises_the_limits_a_probe_plans_around(start_platform) -> None:
    _server, client = start_platform(request_timeout_seconds=7.5, synthetic_max_in_flight=3)
    index = client.http.get("/").json()
    assert index["request_timeout_seconds"] == 7.5
    assert index["synthetic_max_in_flight"] == 3


def test_synthetic_requests_have_a_pool_of_their_own(start_platform, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # Players get one write and one read slot; the probes' pool (2, the default) is apart from both.
    server, client = start_platform(write_max_in_flight=1, read_max_in_flight=1, request_timeout_seconds=600)
    market = client.create_market("Pool cup", [("A", "2.00"), ("B", "2.00")])
    player = client.create_account(f"pool-{uuid.uuid4().hex[:8]}")
    release = threading.Event()
    real_deposit = accounts_module.deposit

    def held_deposit(*args: Any, **kwargs: Any) -> Any:  # the probes' deposits (101) wait inside, admitted
        if kwargs.get("amount_minor") == HELD_AMOUNT:
            release.wait(120)
        return real_deposit(*args, **kwargs)

    monkeypatch.setattr(accounts_module, "deposit", held_deposit)
    answers: list[int] = []

    def deposit() -> None:
        with httpx.Client(base_url=server.url, timeout=120) as http:
            body = {"account_id": player["id"], "amount_minor": HELD_AMOUNT}
            answers.append(http.post("/v1/admin/deposit", json=body, headers=ADMIN | PROBE).status_code)

    senders = [threading.Thread(target=deposit) for _ in range(2)]
    try:
        for sender in senders:
            sender.start()
        wait_until(
            lambda: sample(server, "platform_http_requests_in_flight", route="other") == 2,
            "two synthetic deposits held in flight",
        )
        # Players' slots are untouched: a player's write and read are both admitted.
        assert client.deposit(player["id"], 100)["balance_minor"] == 100
        assert client.http.get(f"/v1/markets/{market['id']}").status_code == 200
        # The probes' pool is full, whatever the route's class: the third probe is shed at once.
        shed = client.http.get(f"/v1/markets/{market['id']}", headers=PROBE)
        assert shed.status_code == 503, shed.text
        assert shed.headers["content-type"] == "application/problem+json"
        assert shed.headers["retry-after"] == "1"
        problem = shed.json()
        assert problem["type"] == "/problems/overloaded" and problem["retryable"] is True
        assert "synthetic" in problem["detail"]
    finally:
        release.set()
        for sender in senders:
            sender.join()
    assert answers == [200, 200]
    assert client.wallet(player["token"])["balance_minor"] == 100 + 2 * HELD_AMOUNT
    deposits = {"method": "POST", "route": "/v1/admin/deposit", "code": "200"}
    wait_until(lambda: sample(server, "platform_synthetic_requests_total", **deposits) == 2, "the probes counted")
    # The shed probe is not a shed player: neither the shed counter nor the SLO series saw it.
    assert sample(server, "platform_shed_requests_total", route=f"GET {MARKET}") == 0
    assert sample(server, "platform_http_requests_total", method="GET", route=MARKET, code="503") == 0
    assert sample(server, "platform_synthetic_requests_total", method="GET", route=MARKET, code="503") == 1
    assert (
        sample(server, "platform_synthetic_requests_total", method="POST", route="/v1/admin/deposit", code="200") == 2
    )
    assert sample(server, "platform_http_requests_total", method="POST", route="/v1/admin/deposit", code="200") == 1


@pytest.mark.parametrize(
    ("synthetic_only", "headers", "status"),
    [
        (True, PROBE, 418),  # a synthetic-only fault acts on probes ...
        (True, {}, 200),  # ... and never on players
        (False, PROBE, 418),  # a plain fault acts on everyone
        (False, {}, 418),
    ],
)
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_synthetic_only_error_faults_fail_probes_alone(
    client, market, synthetic_only: bool, headers: dict[str, str], status: int
) -> None:
    spec = {"kind": "error_rate", "route": f"GET {MARKET}", "error_rate": 1, "error_status": 418, "ttl_seconds": 60}
    made = client.http.post("/v1/admin/faults", json=spec | {"synthetic_only": synthetic_only}, headers=ADMIN)
    assert made.status_code == 201, made.text
    response = client.http.get(f"/v1/markets/{market['id']}", headers=headers)
    assert response.status_code == status, response.text
    if status == 418:
        assert response.json()["type"] == "/problems/injected-fault"


def test_synthetic_only_latency_slows_probes_alone(start_platform) -> None:
    # A delay far beyond the timeout: a slowed request can only be answered 504, an unslowed one 200.
    _server, client = start_platform(request_timeout_seconds=5)
    market = client.create_market("Slow cup", [("A", "2.00"), ("B", "2.00")])
    spec = {"kind": "latency", "route": MARKET, "latency_ms": 60_000, "ttl_seconds": 120, "synthetic_only": True}
    assert client.http.post("/v1/admin/faults", json=spec, headers=ADMIN).status_code == 201
    assert client.http.get(f"/v1/markets/{market['id']}").status_code == 200
    slowed = client.http.get(f"/v1/markets/{market['id']}", headers=PROBE)
    assert slowed.status_code == 504, slowed.text
    assert slowed.json()["type"] == "/problems/timeout"


@pytest.mark.parametrize("kind", ["db_latency", "cache_off", "broker_slow", "lock_wait"])
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_synthetic_only_is_for_route_faults_only(client, engine, kind: str) -> None:
    spec = {"kind": kind, "ttl_seconds": 30, "synthetic_only": True}
    response = client.http.post("/v1/admin/faults", json=spec, headers=ADMIN)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == "/problems/validation"
    assert [e["field"] for e in problem["errors"]] == ["synthetic_only"]
    assert "latency and error_rate" in problem["detail"]
    assert client.http.get("/v1/admin/faults", headers=ADMIN).json()["faults"] == []
    assert events(engine, "change.fault_set") == []


def test_the_flag_shows_in_listings_and_change_events(client, engine) -> None:
    spec = {"kind": "latency", "route": "POST /v1/bets", "latency_ms": 10, "ttl_seconds": 60, "synthetic_only": True}
    made = client.http.post("/v1/admin/faults", json=spec, headers=ADMIN).json()
    plain = client.http.post("/v1/admin/faults", json={"kind": "cache_off", "ttl_seconds": 60}, headers=ADMIN).json()
    assert (made["synthetic_only"], plain["synthetic_only"]) == (True, False)
    listed = client.http.get("/v1/admin/faults", headers=ADMIN).json()["faults"]
    assert {f["id"]: f["synthetic_only"] for f in listed} == {made["id"]: True, plain["id"]: False}
    client.http.delete("/v1/admin/faults", headers=ADMIN)
    changes = events(engine, "change.fault_set", "change.fault_cleared")
    assert sorted((e["type"], e["fault"]["id"], e["fault"]["synthetic_only"]) for e in changes) == sorted(
        [
            ("change.fault_set", made["id"], True),
            ("change.fault_set", plain["id"], False),
            ("change.fault_cleared", made["id"], True),
            ("change.fault_cleared", plain["id"], False),
        ]
    )


def test_synthetic_markets_are_not_listed(client, engine) -> None:
    listed_market = client.create_market("Cup final", [("A", "2.00"), ("B", "2.00")])
    body = {"name": "Probe market", "selections": [{"name": "A", "odds": "2.00"}, {"name": "B", "odds": "2.00"}]}
    response = client.http.post("/v1/admin/markets", json=body | {"synthetic": True}, headers=ADMIN)
    assert response.status_code == 201, response.text
    probe_market = response.json()
    assert (listed_market["synthetic"], probe_market["synthetic"]) == (False, True)
    listed = client.http.get("/v1/markets").json()["markets"]
    assert [m["id"] for m in listed] == [listed_market["id"]]
    assert client.market(probe_market["id"]) == probe_market  # by id it is found as usual
    created = {e["id"]: e for e in events(engine, "market.created")}
    assert created[probe_market["id"]]["synthetic"] is True
    assert "synthetic" not in created[listed_market["id"]]  # players' events keep their shape


def _account(client, *, synthetic: bool) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    body = {"username": f"s-{uuid.uuid4().hex[:10]}", "synthetic": synthetic}
    response = client.http.post("/v1/accounts", json=body, headers=ADMIN)
    assert response.status_code == 201, response.text
    account = response.json()
    assert account["synthetic"] is synthetic
    return dict(account)


def _market(client, *, synthetic: bool) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    body = {"name": "Mark cup", "selections": [{"name": "A", "odds": "2.00"}, {"name": "B", "odds": "2.00"}]}
    response = client.http.post("/v1/admin/markets", json=body | {"synthetic": synthetic}, headers=ADMIN)
    assert response.status_code == 201, response.text
    return dict(response.json())


@pytest.mark.parametrize(
    ("synthetic_account", "synthetic_market"), [(False, False), (True, False), (False, True), (True, True)]
)
def test_money_events_of_probes_are_marked(client, engine, synthetic_account: bool, synthetic_market: bool) -> None:
    account = _account(client, synthetic=synthetic_account)
    market = _market(client, synthetic=synthetic_market)
    client.deposit(account["id"], 10_000)
    placed = client.place_bet(account["token"], bet_body(market, stake=500))
    assert placed.status_code == 201, placed.text
    winner, loser = (s["id"] for s in market["selections"])
    client.result(market["id"], winner_selection_id=winner)
    client.result(market["id"], winner_selection_id=loser)  # resettled: reversal and settlement again
    money = events(engine, "money.deposit", "bet.placed", "bet.settled", "bet.settlement_reversed")
    # The key is there only for probes, so players' payloads are exactly what they always were; a
    # deposit belongs to the account alone, a bet's events to its account and its market.
    bet_mark = synthetic_account or synthetic_market
    assert [(e["type"], e.get("synthetic", "absent")) for e in money] == [
        ("money.deposit", True if synthetic_account else "absent"),
        ("bet.placed", True if bet_mark else "absent"),
        ("bet.settled", True if bet_mark else "absent"),
        ("bet.settlement_reversed", True if bet_mark else "absent"),
        ("bet.settled", True if bet_mark else "absent"),
    ]


def test_a_synthetic_account_does_not_mark_other_players_bets(client, engine) -> None:
    market = _market(client, synthetic=False)
    probe, player = _account(client, synthetic=True), _account(client, synthetic=False)
    for account in (probe, player):
        client.deposit(account["id"], 10_000)
        assert client.place_bet(account["token"], bet_body(market, stake=500)).status_code == 201
    client.result(market["id"], winner_selection_id=market["selections"][0]["id"])
    settled = events(engine, "bet.settled")  # one settlement batch holds both bets
    marks = {e["account_id"]: e.get("synthetic", False) for e in settled}
    assert marks == {probe["id"]: True, player["id"]: False}
