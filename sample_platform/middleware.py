"""ASGI middleware of the platform: body size limit, load shedding, request metrics."""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sample_platform.metrics import PlatformMetrics
from sample_platform.problems import Problem


class BodySizeLimit:
    """Refuse bodies above `limit` bytes with 413, whether or not Content-Length tells the truth."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_big = Problem(
            413, "body-too-large", "Request body too large", f"request bodies are limited to {self.limit} bytes"
        )
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await too_big.response(scope.get("path"))(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise _BodyTooLarge(too_big)
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _BodyTooLarge as exc:
            await exc.problem.response(scope.get("path"))(scope, receive, send)


class _BodyTooLarge(Exception):
    def __init__(self, problem: Problem) -> None:
        self.problem = problem


class InFlightLimit:
    """Bound the work in progress on some routes; past the bound, shed at once with 503 + Retry-After.

    It runs on the event loop before any thread is taken, so excess requests never queue for the
    worker pool: they are answered immediately and the client retries later.
    """

    def __init__(self, app: ASGIApp, *, routes: set[tuple[str, str]], limit: int, metrics: PlatformMetrics) -> None:
        self.app = app
        self.routes = routes
        self.limit = limit
        self.metrics = metrics
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (scope["method"], scope["path"]) not in self.routes:
            await self.app(scope, receive, send)
            return
        route = f"{scope['method']} {scope['path']}"
        if self.in_flight >= self.limit:
            self.metrics.shed_requests.labels(route=route).inc()
            problem = Problem(
                503,
                "overloaded",
                "Overloaded",
                f"{self.limit} requests of this kind are already in progress; retry after the Retry-After delay "
                "with the same Idempotency-Key",
                headers={"Retry-After": "1"},
                retryable=True,
            )
            await problem.response(scope["path"])(scope, receive, send)
            return
        self.in_flight += 1
        admitted = self.metrics.admitted_in_flight.labels(route=route)
        admitted.inc()
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
            admitted.dec()


STREAMING_ROUTES = frozenset({"/v1/odds/stream"})
TRACKED_PATHS = frozenset({"/v1/bets", "/v1/login", "/v1/odds/stream", "/v1/wallet"})


class RequestMetrics:
    """In-flight gauge, request counter and duration histogram per route template."""

    def __init__(self, app: ASGIApp, *, metrics: PlatformMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        in_flight = self.metrics.requests_in_flight.labels(
            route=scope["path"] if scope["path"] in TRACKED_PATHS else "other"
        )
        in_flight.inc()
        try:
            await self.app(scope, receive, recording_send)
        finally:
            in_flight.dec()
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            labels = {"method": scope["method"], "route": template, "code": str(status["code"])}
            self.metrics.requests.labels(**labels).inc()
            if template not in STREAMING_ROUTES:  # a stream's length is not a latency
                self.metrics.request_duration.labels(**labels).observe(time.perf_counter() - started)
