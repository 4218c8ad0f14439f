"""ASGI middleware of the platform: body size limit, admission control (load shedding), request metrics."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from starlette.routing import BaseRoute, Match
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


class AdmissionControl:
    """Bound the work in progress per class of route; past a bound, shed at once with 503 + Retry-After.

    It runs on the event loop before any thread is taken, so excess requests never queue for the
    worker pool: they are answered immediately and the client retries later. It finds the route
    itself first and leaves it in the scope, so a shed request is still labelled with its route
    template (metrics, server span) and counts against that route's SLO like any other 5xx.
    Routes in no class (health, metrics, the fault switches, the odds stream's redirect) are never shed.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        classes: dict[str, int],
        route_class: Callable[[str, str], str | None],
        routes: Callable[[], Sequence[BaseRoute]],
        metrics: PlatformMetrics,
    ) -> None:
        self.app = app
        self.limits = classes
        self.route_class = route_class
        self.routes = routes
        self.metrics = metrics
        self.in_flight = dict.fromkeys(classes, 0)

    def _match(self, scope: Scope) -> BaseRoute | None:
        for route in self.routes():
            match, child = route.matches(scope)
            if match is Match.FULL:
                scope.update(child)  # what the router would set: the outer layers see the route too
                return route
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = self._match(scope)
        template = getattr(route, "path", None)
        kind = self.route_class(scope["method"], template) if template else None
        if kind is None:
            await self.app(scope, receive, send)
            return
        label = f"{scope['method']} {template}"
        limit = self.limits[kind]
        if self.in_flight[kind] >= limit:
            self.metrics.shed_requests.labels(route=label).inc()
            problem = Problem(
                503,
                "overloaded",
                "Overloaded",
                f"{limit} requests of this kind ({kind}) are already in progress; retry after the Retry-After "
                "delay (bets: with the same Idempotency-Key)",
                headers={"Retry-After": "1"},
                retryable=True,
            )
            await problem.response(scope["path"])(scope, receive, send)
            return
        self.in_flight[kind] += 1
        admitted = self.metrics.admitted_in_flight.labels(route=label)
        admitted.inc()
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight[kind] -= 1
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
