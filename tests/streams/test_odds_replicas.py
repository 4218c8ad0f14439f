"""Odds across replicas: two platform processes on one database, their odds through a real nats-server.
A subscriber on replica B gets every change made through replica A, in A's order, once (and A's
subscriber B's changes); the publish-to-delivery lag is measured on the receiving replica."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from sample_platform.client import PlatformClient
from tests.conftest import ADMIN_TOKEN
from tests.streams.conftest import NatsServer
from tests.support import PlatformProcess, SseReader, wait_until


def _lag_count(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    found = re.search(r"^platform_odds_publish_lag_seconds_count (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def test_a_subscriber_on_any_replica_gets_every_change_in_order_once(
    nats_server: NatsServer, database_url: str, tmp_path: Path
) -> None:
    env = {"PLATFORM_ODDS_BUS": "nats", "PLATFORM_NATS_URL": nats_server.url}
    a = PlatformProcess(database_url, tmp_path / "a.jsonl", **env)
    b = PlatformProcess(database_url, tmp_path / "b.jsonl", **env)
    readers: list[SseReader] = []
    try:
        with (
            PlatformClient(a.url, admin_token=ADMIN_TOKEN) as on_a,
            PlatformClient(b.url, admin_token=ADMIN_TOKEN) as on_b,
        ):
            market = on_a.create_market("Replica cup", [("Home", "2.00"), ("Away", "2.00")])
            home, away = (s["id"] for s in market["selections"])
            readers = [SseReader(f"{a.url}/v1/odds/stream"), SseReader(f"{b.url}/v1/odds/stream")]
            on_a_reader, on_b_reader = readers

            def both_hear_a_change() -> bool:  # the replicas' buses connect in the background
                on_a.change_odds(market["id"], home, "2.00")
                return bool(on_a_reader.events) and bool(on_b_reader.events)

            wait_until(both_hear_a_change, "both replicas' subscribers hear a change made on A", 60)
            start = max(e["price_version"] for r in readers for e in r.events)
            before = _lag_count(b.url)
            for r in readers:
                r.events.clear()
            made_on_a = [
                on_a.change_odds(market["id"], home, f"{2 + i / 100:.2f}")["price_version"] for i in range(1, 31)
            ]
            made_on_b = [
                on_b.change_odds(market["id"], away, f"{3 + i / 100:.2f}")["price_version"] for i in range(1, 11)
            ]
            everything = len(made_on_a) + len(made_on_b)
            for r in readers:
                r.wait_for(everything, timeout=60)
            wait_until(lambda: _lag_count(b.url) >= before + everything, "B measured the lag of every change")
    finally:
        for r in readers:
            r.close()
        a.stop()
        b.stop()
    assert min(made_on_a) > start
    for reader in readers:
        versions = [e["price_version"] for e in reader.events if e["market_id"] == market["id"]]
        assert sorted(versions) == sorted(made_on_a + made_on_b), "every change, once"
        assert [v for v in versions if v in set(made_on_a)] == made_on_a, "A's changes in A's order"
        assert [v for v in versions if v in set(made_on_b)] == made_on_b, "B's changes in B's order"
        seqs = [e["seq"] for e in reader.events]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
