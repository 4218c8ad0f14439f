"""Bank-style run: concurrent bettors, moving prices and settling markets, watched by a reader.

Invariants 1-3 under concurrency: every read of the ledger sees the same total, every transaction
balances, no wallet is ever negative, and every bet ends resolved exactly once.
"""

from __future__ import annotations

import os
import random
import threading
import time
import uuid

import httpx
import pytest
from sqlalchemy import func, select

from sample_platform.client import PlatformClient
from sample_platform.db import reader
from sample_platform.ledger import check_ledger
from sample_platform.models import Bet, LedgerAccount, Posting
from tests.conftest import ADMIN_TOKEN

RUN_SECONDS = float(os.environ.get("CONTROLPLANE_TEST_BANK_SECONDS", "20"))
CLIENTS = 8
PLAYERS = 24
DEPOSIT = 50_000

accounts_t = LedgerAccount.__table__
postings_t = Posting.__table__


@pytest.mark.slow
def _retryable(response: httpx.Response) -> bool:
    try:
        return bool(response.json().get("retryable"))
    except ValueError:
        return False


def test_bank_run_keeps_the_books(server, engine) -> None:
    admin = PlatformClient(server.url, admin_token=ADMIN_TOKEN)
    players = []
    for i in range(PLAYERS):
        account = admin.create_account(f"bank-{i}-{uuid.uuid4().hex[:6]}")
        admin.deposit(account["id"], DEPOSIT)
        players.append(account)
    expected_total = PLAYERS * DEPOSIT

    open_markets: list[dict] = []
    markets_lock = threading.Lock()

    def new_market() -> None:
        market = admin.create_market(f"race-{uuid.uuid4().hex[:6]}", [("A", "2.10"), ("B", "3.40"), ("C", "4.50")])
        with markets_lock:
            open_markets.append(market)

    for _ in range(3):
        new_market()

    stop = threading.Event()
    violations: list[str] = []
    stats = {"reads": 0, "accepted": 0, "refused": 0, "settled_markets": 0}
    stats_lock = threading.Lock()
    errors: list[str] = []

    def bettor(seed: int) -> None:
        rng = random.Random(seed)
        with PlatformClient(server.url, admin_token=ADMIN_TOKEN) as client:
            while not stop.is_set():
                with markets_lock:
                    market_id = rng.choice(open_markets)["id"] if open_markets else None
                if market_id is None:
                    continue
                try:
                    market = client.market(market_id)
                except httpx.HTTPError as exc:
                    errors.append(f"GET market: {exc}")
                    continue
                selection = rng.choice(market["selections"])
                body = {
                    "market_id": market_id,
                    "selection_id": selection["id"],
                    "stake_minor": rng.choice((100, 500, 1_000, 5_000)),
                    "odds": selection["odds"],
                    "price_version": market["price_version"],
                    "accept_price_change": rng.choice(("none", "better", "any")),
                }
                key = str(uuid.uuid4())
                player = rng.choice(players)
                for _attempt in range(rng.choice((1, 1, 2))):
                    response = client.place_bet(player["token"], body, key=key)
                    # A busy machine may answer the documented retryable 503s (overloaded, database busy):
                    # a client retries them with the same Idempotency-Key; anything else 5xx is an error.
                    for _retry in range(50):
                        if response.status_code != 503 or not _retryable(response) or stop.is_set():
                            break
                        time.sleep(0.05)
                        response = client.place_bet(player["token"], body, key=key)
                    if response.status_code >= 500 and not (response.status_code == 503 and _retryable(response)):
                        errors.append(f"POST /v1/bets -> {response.status_code}: {response.text}")
                    with stats_lock:
                        stats["accepted" if response.status_code == 201 else "refused"] += 1

    def price_mover() -> None:
        rng = random.Random(99)
        while not stop.wait(0.05):
            with markets_lock:
                market = rng.choice(open_markets) if open_markets else None
            if market is None:
                continue
            selection = rng.choice(market["selections"])
            try:
                admin.change_odds(market["id"], selection["id"], f"{rng.uniform(1.5, 6):.2f}")
            except httpx.HTTPStatusError as exc:
                if exc.response.status_code != 409:  # the market closed meanwhile
                    errors.append(f"odds: {exc}")

    def settler() -> None:
        rng = random.Random(7)
        while not stop.wait(2.0):
            with markets_lock:
                market = open_markets.pop(0)
            new_market()
            choice = rng.random()
            if choice < 0.2:
                admin.result(market["id"], void=True)
            else:
                admin.result(market["id"], winner_selection_id=rng.choice(market["selections"])["id"])
            if choice > 0.85:  # a corrected result: resettle through reversing entries
                admin.result(market["id"], winner_selection_id=rng.choice(market["selections"])["id"])
            with stats_lock:
                stats["settled_markets"] += 1

    def auditor() -> None:
        while not stop.wait(0.1):
            with reader(engine).begin() as conn:
                balance_total = conn.execute(select(func.sum(accounts_t.c.balance_minor))).scalar_one()
                posted_total = conn.execute(select(func.coalesce(func.sum(postings_t.c.amount_minor), 0))).scalar_one()
                inside = conn.execute(
                    select(func.sum(accounts_t.c.balance_minor)).where(accounts_t.c.kind != "external")
                ).scalar_one()
                lowest = conn.execute(
                    select(func.min(accounts_t.c.balance_minor)).where(accounts_t.c.kind.in_(("wallet", "held")))
                ).scalar_one()
            if balance_total != 0 or posted_total != 0:
                violations.append(f"balances sum to {balance_total}, postings to {posted_total}")
            if inside != expected_total:
                violations.append(f"money inside the platform is {inside}, not {expected_total}")
            if lowest is not None and lowest < 0:
                violations.append(f"a wallet or held account is negative: {lowest}")
            with stats_lock:
                stats["reads"] += 1

    threads = [threading.Thread(target=bettor, args=(i,)) for i in range(CLIENTS)]
    threads += [threading.Thread(target=f) for f in (price_mover, settler, auditor)]
    for t in threads:
        t.start()
    time.sleep(RUN_SECONDS)
    stop.set()
    for t in threads:
        t.join(timeout=60)

    for market in list(open_markets):
        admin.result(market["id"], winner_selection_id=market["selections"][0]["id"])
    admin.close()

    assert not errors, errors[:5]
    assert not violations, violations[:5]
    assert stats["reads"] >= RUN_SECONDS * 5, stats
    assert stats["accepted"] > 50 and stats["settled_markets"] >= max(2, RUN_SECONDS // 4), stats
    with reader(engine).begin() as conn:
        check = check_ledger(conn)
        still_open = conn.execute(
            select(func.count()).select_from(Bet.__table__).where(Bet.__table__.c.status == "open")
        ).scalar_one()
    assert check.ok, check.problems[:10]
    assert still_open == 0
