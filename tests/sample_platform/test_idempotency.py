"""Invariant 5: bet writes are idempotent end to end (IETF Idempotency-Key semantics)."""

from __future__ import annotations

import threading
import uuid

import pytest
from sqlalchemy import func, select

from sample_platform.db import reader
from sample_platform.models import Bet, LedgerTransaction, OutboxEvent
from tests.conftest import bet_body


def _count(engine, table, *where) -> int:  # type: ignore[no-untyped-def]
    with reader(engine).connect() as conn:
        return conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one()


@pytest.mark.timing
def test_fifty_concurrent_requests_with_one_key_make_one_bet(client, engine, funded_player, market) -> None:
    body = bet_body(market)
    key = str(uuid.uuid4())
    barrier = threading.Barrier(50)
    responses = []
    lock = threading.Lock()

    def send() -> None:
        barrier.wait()
        response = client.place_bet(funded_player["token"], body, key=key)
        with lock:
            responses.append(response)

    threads = [threading.Thread(target=send) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    statuses = sorted(r.status_code for r in responses)
    assert all(s < 500 for s in statuses), statuses
    firsts = [r for r in responses if r.status_code == 201 and "Idempotent-Replayed" not in r.headers]
    replays = [r for r in responses if r.headers.get("Idempotent-Replayed") == "true"]
    conflicts = [r for r in responses if r.status_code == 409]
    assert len(firsts) == 1
    assert len(firsts) + len(replays) + len(conflicts) == 50
    for replay in replays:
        assert replay.status_code == 201
        assert replay.json() == firsts[0].json()
    for conflict in conflicts:
        assert conflict.headers["content-type"] == "application/problem+json"
        assert conflict.json()["type"].endswith("idempotency-key-in-flight")

    bet_id = firsts[0].json()["id"]
    assert _count(engine, Bet.__table__) == 1
    assert _count(engine, LedgerTransaction.__table__, LedgerTransaction.__table__.c.kind == "bet_hold") == 1
    assert _count(engine, OutboxEvent.__table__, OutboxEvent.__table__.c.event_type == "bet.placed") == 1
    assert client.wallet(funded_player["token"]) == {
        "account_id": funded_player["id"],
        "balance_minor": 10_000 - 500,
        "held_minor": 500,
        "owed_minor": 0,
    }
    assert client.bet(funded_player["token"], bet_id)["status"] == "open"


def test_replay_returns_first_response(client, funded_player, market) -> None:
    body = bet_body(market)
    first = client.place_bet(funded_player["token"], body, key="k-replay")
    again = client.place_bet(funded_player["token"], dict(reversed(list(body.items()))), key="k-replay")
    assert first.status_code == again.status_code == 201
    assert "Idempotent-Replayed" not in first.headers
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.content == first.content


def test_same_key_other_body_is_422_and_changes_nothing(client, engine, funded_player, market) -> None:
    assert client.place_bet(funded_player["token"], bet_body(market, stake=500), key="k1").status_code == 201
    before = client.wallet(funded_player["token"])
    reused = client.place_bet(funded_player["token"], bet_body(market, stake=700), key="k1")
    assert reused.status_code == 422
    assert reused.headers["content-type"] == "application/problem+json"
    assert reused.json()["type"].endswith("idempotency-key-reused")
    assert client.wallet(funded_player["token"]) == before
    assert _count(engine, LedgerTransaction.__table__, LedgerTransaction.__table__.c.kind == "bet_hold") == 1


def test_missing_key_is_400(client, funded_player, market) -> None:
    response = client.http.post(
        "/v1/bets", json=bet_body(market), headers={"Authorization": f"Bearer {funded_player['token']}"}
    )
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert "Idempotency-Key" in response.json()["detail"]


def test_keys_are_scoped_to_the_account(client, engine, market) -> None:
    players = []
    for name in ("kim", "lee"):
        account = client.create_account(f"{name}-{uuid.uuid4().hex[:6]}")
        client.deposit(account["id"], 5_000)
        players.append(account)
    first = client.place_bet(players[0]["token"], bet_body(market), key="shared-key")
    second = client.place_bet(players[1]["token"], bet_body(market), key="shared-key")
    assert first.status_code == second.status_code == 201
    assert "Idempotent-Replayed" not in second.headers
    assert first.json()["id"] != second.json()["id"]
    assert _count(engine, Bet.__table__) == 2


def test_refusal_is_remembered_under_its_key(client, funded_player, market) -> None:
    broke = bet_body(market, stake=20_000)  # more than the wallet holds
    first = client.place_bet(funded_player["token"], broke, key="k-broke")
    assert first.status_code == 422
    assert first.json()["type"].endswith("insufficient-funds")
    client.deposit(funded_player["id"], 50_000)
    again = client.place_bet(funded_player["token"], broke, key="k-broke")
    assert again.status_code == 422
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.content == first.content


def test_retryable_refusal_releases_the_key(client, funded_player, market) -> None:
    stale = bet_body(market)
    client.change_odds(market["id"], market["selections"][0]["id"], "2.20")
    assert client.place_bet(funded_player["token"], stale, key="k-stale").status_code == 409
    fresh_market = client.market(market["id"])
    # A new body under the same key is a different request, but the released key is free again.
    retried = client.place_bet(funded_player["token"], bet_body(fresh_market), key="k-stale")
    assert retried.status_code == 201
    assert retried.json()["odds"] == "2.20"
