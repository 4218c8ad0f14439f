"""ASGI middleware of the platform: body size limit, request timeout, request metrics (admission control
and per-client limits: `sample_platform.admission`)."""

from __future__ import annotations

import asyncio
import logging
import time

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sample_platform.metrics import PlatformMetrics
from sample_platform.problems import Problem
from sample_platform.synthetic import is_synthetic

log = logging.getLogger(__name__)


class BodySizeLimit:
    """Read the whole request body before anything inside runs (admission control included): bodies above
    `limit` bytes get 413 whether or not Content-Length tells the truth, and a body not whole within
    `read_timeout` seconds gets 408. So a client sending its body slowly never holds a place in an
    in-flight bound: it is refused here, and only requests whose body has arrived are admitted."""

    def __init__(self, app: ASGIApp, limit: int, read_timeout: float = 10.0) -> None:
        self.app = app
        self.limit = limit
        self.read_timeout = read_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._too_big().response(scope.get("path"))(scope, receive, send)
            return
        try:
            with anyio.fail_after(self.read_timeout):
                first = await self._read_body(receive)
        except TimeoutError:
            slow = Problem(
                408,
                "body-timeout",
                "Request body too slow",
                f"the request body did not arrive whole within {self.read_timeout:g} seconds "
                "(PLATFORM_BODY_READ_TIMEOUT_SECONDS); send it at once",
                headers={"Connection": "close"},
            )
            await slow.response(scope.get("path"))(scope, receive, send)
            return
        except Problem as too_big:
            await too_big.response(scope.get("path"))(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return first
            return await receive()  # after the body: the disconnect, when it comes

        await self.app(scope, replay, send)

    def _too_big(self) -> Problem:
        return Problem(
            413, "body-too-large", "Request body too large", f"request bodies are limited to {self.limit} bytes"
        )

    async def _read_body(self, receive: Receive) -> Message:
        """The body as one `http.request` message (or the disconnect that cut it short)."""
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return message
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > self.limit:
                raise self._too_big()
            chunks.append(chunk)
            if not message.get("more_body", False):
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}


class RequestTimeout:
    """Answer 504 `timeout` to a request still unanswered after `seconds`, and drop its late answer.

    The work itself is not cancelled: a bet may be committing in a worker thread, and its outcome is
    kept under its Idempotency-Key for the client's retry. This returns only once the work has
    finished, so the admission slot around it stays taken until then: capacity is never handed out
    again while abandoned work still runs. A response that has started is never cut off, and paths
    under `exempt` (metrics, the fault switches, the odds stream) are never timed.
    """

    def __init__(self, app: ASGIApp, *, seconds: float, exempt: tuple[str, ...] = ()) -> None:
        self.app = app
        self.seconds = seconds
        self.exempt = exempt
        self.problem = Problem(
            504,
            "timeout",
            "Request timed out",
            f"no answer within {seconds:g} s (PLATFORM_REQUEST_TIMEOUT_SECONDS); the request may still complete. "
            "Retry; bets: with the same Idempotency-Key, which answers with the bet's outcome once it is known",
            headers={"Retry-After": "1"},
            retryable=True,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(self.exempt):
            await self.app(scope, receive, send)
            return
        answer = {"started": False, "abandoned": False}

        async def guarded_send(message: Message) -> None:
            if answer["abandoned"]:
                return  # the client has its 504: exactly one response per request
            if message["type"] == "http.response.start":
                answer["started"] = True
            await send(message)

        work = asyncio.ensure_future(self.app(scope, receive, guarded_send))
        try:
            await asyncio.wait({work}, timeout=self.seconds)
        except asyncio.CancelledError:  # the server is going away
            work.cancel()
            raise
        if work.done() or answer["started"]:
            await work
            return
        answer["abandoned"] = True
        try:
            await self.problem.response(scope["path"])(scope, receive, send)
        finally:
            await _finish(work, scope)


async def _finish(work: asyncio.Future[None], scope: Scope) -> None:
    """Wait for abandoned work; its errors are logged (its answer, and so its error response, is gone)."""
    try:
        await work
    except Exception:
        log.exception("%s %s failed after it had been answered 504 timeout", scope["method"], scope["path"])


STREAMING_ROUTES = frozenset({"/v1/odds/stream"})
# Never answered 504: scrapes, the switches that end a game day, the odds stream (long-lived by design).
UNTIMED_PATHS = ("/metrics", "/v1/admin/faults", "/v1/odds/stream")
TRACKED_PATHS = frozenset({"/v1/bets", "/v1/login", "/v1/odds/stream", "/v1/wallet"})


class RequestMetrics:
    """In-flight gauge, request counter and duration histogram per route template; synthetic requests
    go to a counter of their own instead, so that the SLO series describe players only.

    A request is counted as soon as its response's last byte is sent (for a timed-out request: its
    504), not when abandoned work behind it finishes; one that never got a response, when it ends."""

    def __init__(self, app: ASGIApp, *, metrics: PlatformMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500, "counted": False}

        def count() -> None:
            if status["counted"]:
                return
            status["counted"] = True
            template = getattr(scope.get("route"), "path", None) or "unmatched"
            labels = {"method": scope["method"], "route": template, "code": str(status["code"])}
            if is_synthetic(scope):
                self.metrics.synthetic_requests.labels(**labels).inc()
                return
            self.metrics.requests.labels(**labels).inc()
            if template not in STREAMING_ROUTES:  # a stream's length is not a latency
                self.metrics.request_duration.labels(**labels).observe(time.perf_counter() - started)

        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                count()

        in_flight = self.metrics.requests_in_flight.labels(
            route=scope["path"] if scope["path"] in TRACKED_PATHS else "other"
        )
        in_flight.inc()
        try:
            await self.app(scope, receive, recording_send)
        finally:
            in_flight.dec()
            count()
