"""The odds feed: SSE updates with publish time and price version; slow subscribers never delay others."""

from __future__ import annotations

import socket
import time
from datetime import datetime

import httpx
import pytest

from sample_platform.odds_feed import PriceMover
from tests.support import SseReader


def test_price_changes_reach_subscribers(client, server, market) -> None:
    reader = SseReader(f"{server.url}/v1/odds/stream")
    selection = market["selections"][1]
    client.change_odds(market["id"], selection["id"], "3.40")
    reader.wait_for(1)
    reader.close()
    assert len(reader.events) == 1
    event = reader.events[0]
    assert event["market_id"] == market["id"] and event["selection_id"] == selection["id"]
    assert event["odds"] == "3.40"
    assert event["price_version"] == market["price_version"] + 1
    assert datetime.fromisoformat(event["published_at"]).tzinfo is not None


def test_price_mover_publishes(server, engine, market) -> None:
    reader = SseReader(f"{server.url}/v1/odds/stream")
    mover = PriceMover(engine, server.app.state.platform.broker, interval=0.01, seed=3)
    moved = [mover.step() for _ in range(5)]
    reader.wait_for(5)
    reader.close()
    assert all(m is not None for m in moved)
    assert [e["price_version"] for e in reader.events] == [2, 3, 4, 5, 6]


def _stalled_subscriber(url: str) -> socket.socket:
    """Connects to the stream's own server, asks for the stream, and never reads: its buffers fill, then
    its queue."""
    location = httpx.get(url, follow_redirects=False).headers["location"]
    host, port = httpx.URL(location).host, httpx.URL(location).port
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    sock.connect((host, int(port)))
    sock.sendall(f"GET /v1/odds/stream HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    return sock


def test_the_api_redirects_to_the_streams_own_server(server) -> None:
    api = httpx.get(f"{server.url}/v1/odds/stream", follow_redirects=False)
    stream = server.app.state.platform.stream
    assert api.status_code == 307
    assert api.headers["location"] == f"http://127.0.0.1:{stream.port}/v1/odds/stream"
    assert stream.port != httpx.URL(server.url).port
    other = httpx.get(f"http://127.0.0.1:{stream.port}/v1/markets")
    assert other.status_code == 404 and other.headers["content-type"] == "application/problem+json"
    posted = httpx.post(f"http://127.0.0.1:{stream.port}/v1/odds/stream")
    assert posted.status_code == 405 and posted.headers["allow"] == "GET"


@pytest.mark.timing
def test_slow_subscriber_does_not_delay_the_others(start_platform) -> None:
    server, _client = start_platform(odds_subscriber_queue=256)
    platform = server.app.state.platform
    fast = SseReader(f"{server.url}/v1/odds/stream")
    stalled = _stalled_subscriber(f"{server.url}/v1/odds/stream")
    deadline = time.monotonic() + 30
    while platform.broker.subscribers < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert platform.broker.subscribers == 2

    padding = "x" * 2000  # big events fill the stalled connection's socket buffers sooner
    total, burst = 6_016, 64  # 94 bursts
    for start in range(0, total, burst):
        # Bursts well inside the queue, each read by the fast subscriber before the next: however slow
        # this machine, the fast one never falls behind; the stalled one never reads and must be dropped.
        for i in range(start, start + burst):
            platform.broker.publish(
                {"market_id": 1, "selection_id": 1, "odds": "2.00", "price_version": i + 1, "padding": padding}
            )
        fast.wait_for(start + burst, timeout=60)
        assert len(fast.events) == start + burst, f"the fast subscriber stopped at {len(fast.events)}"
    dropped = platform.metrics.registry.get_sample_value("platform_odds_subscribers_dropped_total")
    fast.close()
    stalled.close()
    assert len(fast.events) == total, (len(fast.events), dropped)
    assert [e["price_version"] for e in fast.events] == list(range(1, total + 1))
    assert dropped == 1, (dropped, sorted(s.sent for s in platform.broker._subscribers))  # the stalled one, and only it
