"""50 concurrent bets with one Idempotency-Key, three times, on a machine kept busy by CPU hogs, while the
price moves under them: one bet at most per key, never a server error, and clients that retry as the API
tells them agree on what happened."""

from __future__ import annotations

import threading
import time
import uuid

import httpx
import pytest
from sqlalchemy import func, select

from sample_platform.db import reader
from sample_platform.models import Bet, table
from tests.conftest import bet_body, cpu_hogs

CLIENTS, ROUNDS, RETRIES = 50, 3, 30


def _retrying_client(url: str, token: str, key: str, body: dict, barrier: threading.Barrier) -> list[httpx.Response]:
    """Sends the bet, then resends it with the same key and body on 409 in-flight and 503, as told."""
    answers = []
    with httpx.Client(base_url=url, timeout=60) as http:
        barrier.wait()
        for _ in range(RETRIES):
            response = http.post(
                "/v1/bets", json=body, headers={"Authorization": f"Bearer {token}", "Idempotency-Key": key}
            )
            answers.append(response)
            retry = response.status_code == 503 or (
                response.status_code == 409 and response.json().get("type") == "/problems/idempotency-key-in-flight"
            )
            if not retry:
                break
            time.sleep(min(float(response.headers.get("retry-after", "1")), 1.0) * 0.2)
    return answers


def _one_round(url: str, token: str, key: str, body: dict) -> list[list[httpx.Response]]:
    barrier = threading.Barrier(CLIENTS)
    results: list[list[httpx.Response]] = []
    lock = threading.Lock()

    def run() -> None:
        answers = _retrying_client(url, token, key, body, barrier)
        with lock:
            results.append(answers)

    threads = [threading.Thread(target=run) for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


@pytest.mark.timing
def test_one_key_fifty_clients_busy_machine_moving_prices(start_platform, engine, funded_player) -> None:
    server, client = start_platform(price_mover_interval_seconds=0.02, bet_max_in_flight=8)
    market = client.create_market("Contended", [("Home", "2.50"), ("Away", "2.80")])
    outcomes = []
    with cpu_hogs(3):
        for _ in range(ROUNDS):
            current = client.market(market["id"])
            body = bet_body(current, stake=100)  # accept_price_change "none": a move refuses and releases the key
            key = str(uuid.uuid4())
            results = _one_round(server.url, funded_player["token"], key, body)
            outcomes.append((key, body, results))

    for key, body, results in outcomes:
        every = [r for answers in results for r in answers]
        assert all(
            r.status_code < 500 or r.json()["type"] in ("/problems/overloaded", "/problems/database-busy")
            for r in every
        )
        assert all("retry-after" in r.headers for r in every if r.status_code == 503)
        finals = [answers[-1] for answers in results]
        accepted = {r.json()["id"] for r in finals if r.status_code == 201}
        assert len(accepted) <= 1, accepted  # every client that got a bet got the same one
        with reader(engine).connect() as conn:
            stored = set(conn.execute(select(table(Bet).c.id).where(table(Bet).c.id.in_(accepted))).scalars())
        assert stored == accepted
        if accepted:
            # The key is spent on that bet: the same key with another body is refused, the same body replays.
            headers = {"Authorization": f"Bearer {funded_player['token']}", "Idempotency-Key": key}
            other = httpx.post(f"{server.url}/v1/bets", json={**body, "stake_minor": 101}, headers=headers, timeout=60)
            assert other.status_code == 422 and other.json()["type"] == "/problems/idempotency-key-reused"
            again = httpx.post(f"{server.url}/v1/bets", json=body, headers=headers, timeout=60)
            assert again.status_code == 201 and again.json()["id"] in accepted
    with reader(engine).connect() as conn:
        total = conn.execute(select(func.count()).select_from(table(Bet))).scalar_one()
    assert total == sum(1 for key, body, results in outcomes if any(a[-1].status_code == 201 for a in results))
