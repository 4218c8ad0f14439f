"""The request timeout: an unanswered request gets one 504 `timeout` (retryable), its work still finishes
and keeps its admission slot until then, and metrics, the fault switches and the odds stream are never timed."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.types import Message, Receive, Scope, Send

from sample_platform.middleware import UNTIMED_PATHS, RequestTimeout
from tests.conftest import ADMIN_TOKEN

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


class SlowApp:
    """An ASGI app that answers 200 only once `release` is set; `finished` tells whether it has."""

    def __init__(self, *, start_first: bool = False) -> None:
        self.release = asyncio.Event()
        self.finished = False
        self.start_first = start_first

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.start_first:
            await send({"type": "http.response.start", "status": 200, "headers": []})
        await self.release.wait()
        if not self.start_first:
            await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"late", "more_body": False})
        self.finished = True


def http_scope(path: str) -> dict[str, Any]:
    return {"type": "http", "method": "GET", "path": path, "headers": []}


TIMEOUT = 0.01


async def _serve(app: SlowApp, path: str, *, expect_timeout: bool) -> tuple[list[Message], bool]:
    """Run one request; returns the messages sent and whether the middleware was still waiting for the
    work when the work was let finish."""
    sent: list[Message] = []
    answered = asyncio.Event()

    async def send(message: Message) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            answered.set()

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    middleware = RequestTimeout(app, seconds=TIMEOUT, exempt=UNTIMED_PATHS)
    serving = asyncio.ensure_future(middleware(http_scope(path), receive, send))
    if expect_timeout:
        await answered.wait()
    else:
        # The timeout's timer fires first on this loop; nothing may be cut off when it does.
        await asyncio.sleep(TIMEOUT * 10)
    still_waiting = not serving.done()
    app.release.set()
    await serving
    return sent, still_waiting


def test_one_504_then_the_late_answer_is_dropped_and_the_work_awaited() -> None:
    app = SlowApp()
    sent, still_waiting = asyncio.run(_serve(app, "/v1/markets/1", expect_timeout=True))
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert sent[0]["status"] == 504
    # The middleware returned only after the work had finished: the slot around it was held till then.
    assert still_waiting and app.finished


def test_a_started_response_is_never_cut_off() -> None:
    app = SlowApp(start_first=True)
    sent, _ = asyncio.run(_serve(app, "/v1/markets/1", expect_timeout=False))
    assert [(m["type"], m.get("status")) for m in sent] == [("http.response.start", 200), ("http.response.body", None)]


@pytest.mark.parametrize("path", ["/metrics", "/v1/admin/faults", "/v1/odds/stream"])
def test_metrics_fault_switches_and_the_stream_are_never_timed(path: str) -> None:
    app = SlowApp()
    sent, _ = asyncio.run(_serve(app, path, expect_timeout=False))
    assert [(m["type"], m.get("status")) for m in sent] == [("http.response.start", 200), ("http.response.body", None)]


def test_an_unanswered_request_is_504_and_keeps_its_slot(start_platform) -> None:
    # A delay far beyond the timeout: the request cannot be answered in time, whatever the machine.
    _server, client = start_platform(request_timeout_seconds=3, read_max_in_flight=1)
    market = client.create_market("Late cup", [("A", "2.00"), ("B", "2.00")])
    spec = {"kind": "latency", "route": "GET /v1/markets/{market_id}", "latency_ms": 60_000, "ttl_seconds": 120}
    assert client.http.post("/v1/admin/faults", json=spec, headers=ADMIN).status_code == 201
    late = client.http.get(f"/v1/markets/{market['id']}")
    assert late.status_code == 504, late.text
    assert late.headers["content-type"] == "application/problem+json"
    assert late.headers["retry-after"] == "1"
    problem = late.json()
    assert problem["type"] == "/problems/timeout" and problem["retryable"] is True
    assert "Idempotency-Key" in problem["detail"] and "PLATFORM_REQUEST_TIMEOUT_SECONDS" in problem["detail"]
    # The abandoned work still runs (its delay is a minute), so the one read slot is still taken.
    held = client.http.get("/v1/markets")
    assert held.status_code == 503 and held.json()["type"] == "/problems/overloaded", held.text
    # The switches that end a game day answer meanwhile, untimed.
    assert client.http.get("/v1/admin/faults", headers=ADMIN).status_code == 200
    assert client.http.get("/metrics").status_code == 200
