"""The platform killed with SIGKILL in the middle of settling a market, then restarted.

Repeating the settlement completes it: every bet settled exactly once, every committed money change
has its outbox event, and the sink holds every event once after deduplication.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import func, select

from sample_platform.client import PlatformClient
from sample_platform.db import reader
from sample_platform.ledger import check_ledger
from sample_platform.models import Bet, LedgerTransaction, OutboxEvent
from sample_platform.outbox import read_jsonl_events
from tests.conftest import ADMIN_TOKEN
from tests.support import PlatformProcess

BETS = 1_000
bets_t = Bet.__table__


def _settled(engine, market_id: int) -> int:  # type: ignore[no-untyped-def]
    with reader(engine).connect() as conn:
        return conn.execute(
            select(func.count()).select_from(bets_t).where(bets_t.c.market_id == market_id, bets_t.c.status != "open")
        ).scalar_one()


@pytest.mark.slow
def test_sigkill_mid_settlement_then_repeat_completes_it(engine, settings, tmp_path) -> None:
    sink = tmp_path / "crash-outbox.jsonl"
    platform = PlatformProcess(settings.database_url, sink)
    try:
        admin = PlatformClient(platform.url, admin_token=ADMIN_TOKEN)
        players = [admin.create_account(f"crash-{i}-{uuid.uuid4().hex[:6]}") for i in range(20)]
        for player in players:
            admin.deposit(player["id"], 1_000_000)
        market = admin.create_market("Big race", [("A", "2.00"), ("B", "3.00"), ("C", "5.00")])

        def place(i: int) -> int:
            player = players[i % len(players)]
            selection = market["selections"][i % 3]
            body = {
                "market_id": market["id"],
                "selection_id": selection["id"],
                "stake_minor": 100 + i,
                "odds": selection["odds"],
                "price_version": market["price_version"],
            }
            return admin.place_bet(player["token"], body).status_code

        with ThreadPoolExecutor(max_workers=4) as pool:
            statuses = list(pool.map(place, range(BETS)))
        assert statuses.count(201) == BETS

        def settle() -> None:
            try:
                admin.result(market["id"], winner_selection_id=market["selections"][1]["id"])
            except httpx.HTTPError:
                pass  # the server dies under it

        settling = threading.Thread(target=settle)
        settling.start()
        deadline = time.monotonic() + 60
        while _settled(engine, market["id"]) < BETS // 10 and time.monotonic() < deadline:
            time.sleep(0.005)
        platform.kill()
        settling.join(timeout=30)
        at_kill = _settled(engine, market["id"])
        assert 0 < at_kill < BETS, f"the kill did not land mid-settlement ({at_kill} of {BETS} settled)"
        admin.close()

        # The repeat must answer with its own settlement, not a 504 followed by a repeat that finds
        # nothing left: give it all the time a busy machine needs.
        platform = PlatformProcess(settings.database_url, sink, PLATFORM_REQUEST_TIMEOUT_SECONDS="600")
        with PlatformClient(platform.url, admin_token=ADMIN_TOKEN, timeout=600) as admin:
            report = admin.result(market["id"], winner_selection_id=market["selections"][1]["id"])["settlement"]
            assert report["complete"] is True
            assert report["settled"] == BETS - at_kill
            again = admin.result(market["id"], winner_selection_id=market["selections"][1]["id"])["settlement"]
            assert again["settled"] == 0

        with reader(engine).begin() as conn:
            events = conn.execute(select(OutboxEvent.__table__)).all()
            txn_ids = set(conn.execute(select(LedgerTransaction.__table__.c.id)).scalars())
            check = check_ledger(conn)
            statuses = dict(
                conn.execute(
                    select(bets_t.c.status, func.count())
                    .where(bets_t.c.market_id == market["id"])
                    .group_by(bets_t.c.status)
                ).all()
            )
        assert check.ok, check.problems[:5]
        assert statuses == {
            "won": BETS // 3 + (1 if BETS % 3 > 1 else 0),
            "lost": BETS - (BETS // 3 + (1 if BETS % 3 > 1 else 0)),
        }

        settled_events = [e for e in events if e.event_type == "bet.settled"]
        assert len(settled_events) == BETS
        assert len({json.loads(e.payload)["bet_id"] for e in settled_events}) == BETS
        money_events = [json.loads(e.payload) for e in events if "transaction_id" in json.loads(e.payload)]
        assert sorted(p["transaction_id"] for p in money_events) == sorted(txn_ids)

        deadline = time.monotonic() + 60
        while len(read_jsonl_events(sink)) < len(events) and time.monotonic() < deadline:
            time.sleep(0.1)
        delivered = read_jsonl_events(sink)
        assert sorted(m.event_id for m in delivered) == sorted(e.event_id for e in events)
        assert [m.seq for m in delivered] == sorted(m.seq for m in delivered)
    finally:
        platform.stop()
