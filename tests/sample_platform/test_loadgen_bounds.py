"""The load generator keeps its word whatever the server does: it ends on time, never queues without bound,
resolves bets left without an answer, and says whether it or the server was the bottleneck."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from sample_platform.loadgen import HEALTH, LoadConfig, render_table, run_load_async
from tests.sample_platform.test_loadgen import FakePlatform


class HangingBets(FakePlatform):
    """Bets commit on their first try, then no answer comes back while `hanging` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.hanging = True

    async def __call__(self, request: httpx.Request) -> httpx.Response:  # type: ignore[override]
        if (request.method, request.url.path) == ("POST", "/v1/bets") and self.hanging:
            key = request.headers["idempotency-key"]
            if key not in self.bets:
                self.bets[key] = (self.new_id(), request.content.decode())
            await asyncio.sleep(3600)
        return super().__call__(request)


@pytest.mark.timing
def test_a_run_ends_on_time_when_the_server_never_answers_bets() -> None:
    fake = HangingBets()
    config = LoadConfig(
        "http://fake", "steady", 2.0, 20.0, "admin", players=2, markets=1, sse_subscribers=1,
        request_timeout=1.0, settle_timeout=3.0,
    )  # fmt: skip
    started = time.monotonic()
    out = asyncio.run(run_load_async(config, transport=httpx.MockTransport(fake))).to_dict()
    took = time.monotonic() - started
    # duration + request timeout + settle phase, plus set-up and generous room for a busy machine
    assert took < 2.0 + 1.0 + 3.0 + 30.0
    assert out["elapsed_s"] <= 2.0 + 1.0 + 1.5  # the drain is bounded by one request timeout
    assert out["bets_unknown"] > 0  # said honestly, not hidden
    assert any(f"{out['bets_unknown']} bets still had no answer" in note for note in out["notes"])


@pytest.mark.timing
def test_bets_without_an_answer_are_resent_with_their_keys_after_the_load() -> None:
    fake = HangingBets()
    config = LoadConfig(
        "http://fake", "steady", 1.5, 20.0, "admin", players=2, markets=1, sse_subscribers=0,
        request_timeout=0.5, settle_timeout=30.0,
    )  # fmt: skip

    async def run() -> dict:
        async def answer_again() -> None:
            # Answers come back once the arrivals and the drain are over.
            await asyncio.sleep(config.duration + config.request_timeout + 1.0)
            fake.hanging = False

        waker = asyncio.create_task(answer_again())
        report = await run_load_async(config, transport=httpx.MockTransport(fake))
        await waker
        return report.to_dict()

    out = asyncio.run(run())
    assert fake.bets, "no bet was sent"
    assert out["bets_resent_after_load"] > 0
    assert out["bets_unknown"] == 0
    assert out["bets_accepted"] == len(fake.bets)
    assert set(out["accepted_bet_ids"]) == {bet_id for bet_id, _ in fake.bets.values()}
    assert out["settlement"]["all_settled"]


class SlowHealth:
    """GET /v1/health answering after `delay` seconds; counts how many requests it holds at once."""

    def __init__(self, delay: float, *, blocking: bool = False) -> None:
        self.delay, self.blocking = delay, blocking
        self.in_flight = self.most_in_flight = self.served = 0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if self.blocking:
                time.sleep(self.delay)  # holds the generator's own event loop, as a CPU-bound generator would
            else:
                await asyncio.sleep(self.delay)
        finally:
            self.in_flight -= 1
        self.served += 1
        return httpx.Response(200, json={"status": "ok"})


def test_a_slow_server_fills_the_in_flight_limit_and_the_rest_is_dropped_not_queued() -> None:
    server = SlowHealth(0.5)
    config = LoadConfig("http://fake", "steady", 1.0, 60.0, None, mix="health", max_connections=4, sse_subscribers=0)
    report = asyncio.run(run_load_async(config, transport=httpx.MockTransport(server)))
    out = report.to_dict()
    assert server.most_in_flight <= 4
    assert out["dropped_by_generator"] > 0 and out["first_drop_s"] is not None
    assert "the server fell behind" in (out["server_saturation"] or "")
    assert out["routes"][HEALTH]["ok"] == server.served
    assert "the server fell behind" in render_table(report)


def test_a_generator_that_falls_behind_says_so_and_from_when() -> None:
    server = SlowHealth(0.2, blocking=True)
    config = LoadConfig("http://fake", "steady", 1.5, 20.0, None, mix="health", sse_subscribers=0)
    report = asyncio.run(run_load_async(config, transport=httpx.MockTransport(server)))
    out = report.to_dict()
    assert out["generator_late_arrivals"] > 0 and out["generator_behind_from_s"] is not None
    assert out["generator_bottleneck"].startswith("the load generator was the bottleneck")
    assert "the load generator was the bottleneck" in render_table(report)
    json.dumps(out)
