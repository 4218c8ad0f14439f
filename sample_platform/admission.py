"""Admission: who is asking, and whether there is room for them, decided before any work is done.

Two middleware, with the body's reading (`BodySizeLimit`) between them:

- `ClientGate` finds the route and, on a bounded route, identifies the caller from the Authorization
  header alone (the admin token; a player's token or session: one indexed read) before the body is
  read. A route that needs a token answers 401 or 403 at once without one. Then the caller's own
  limits: a player has an in-flight cap and a token-bucket rate per route class; a request without a
  valid token counts against its client address's in-flight cap and a small bound shared by all such
  requests. Past a per-client limit: 429 with Retry-After (the client's doing, so left out of the SLIs);
  past the shared anonymous bound: 503 (an overload, which counts). The admin token is the operator's:
  only the class bounds apply to it, and probes (synthetic requests) have their own pool.
- `AdmissionControl`, once the body is whole, bounds the work in progress per route class (503 past it).

So a client that sends its body slowly, or floods, holds at most its own places: never a bettor's.
"""

from __future__ import annotations

import hmac
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import anyio
from sqlalchemy.exc import SQLAlchemyError
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Receive, Scope, Send

from sample_platform.metrics import PlatformMetrics
from sample_platform.problems import Problem, admin_only, database_busy, missing_token, unknown_token
from sample_platform.synthetic import is_synthetic

CLASS_KEY = "platform.route_class"  # the route's admission class, found once by the gate
CALLER_KEY = "platform.caller"  # the `Caller` the gate identified (absent on routes it does not bound)
Auth = Literal["player", "admin"] | None


@dataclass(frozen=True)
class Caller:
    kind: Literal["admin", "player", "anonymous"]
    account_id: int | None = None
    token_sent: bool = False  # anonymous with a token: the token is unknown or expired


@dataclass(frozen=True)
class ClientLimits:
    max_in_flight: int  # per player
    per_second: dict[str, float]  # per player and route class
    burst_seconds: float  # a bucket holds this many seconds of its rate
    anonymous_max_in_flight: int  # requests without a valid token, all addresses together
    anonymous_max_in_flight_per_address: int


class TokenBuckets:
    """A token bucket per key, created full: `take` spends a token, or says how long until there is one.
    Buckets that have refilled are forgotten once there are more than `max_keys`, so memory stays bounded."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000) -> None:
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: dict[object, tuple[float, float, float]] = {}  # key -> (tokens, when counted, when full)

    def take(self, key: object, rate: float, capacity: float) -> float:
        """0.0 when a token was taken; otherwise the seconds until one is there (nothing is taken)."""
        now = self.clock()
        tokens, then, _ = self._buckets.get(key, (capacity, now, now))
        tokens = min(capacity, tokens + (now - then) * rate)
        taken = tokens >= 1.0
        if taken:
            tokens -= 1.0
        self._buckets[key] = (tokens, now, now + (capacity - tokens) / rate)
        if taken and len(self._buckets) > self.max_keys:  # a full bucket is what a forgotten one becomes
            self._buckets = {k: v for k, v in self._buckets.items() if v[2] > now}
        return 0.0 if taken else (1.0 - tokens) / rate

    def __len__(self) -> int:
        return len(self._buckets)


class InFlight:
    """Counts per key of requests in progress; a key is dropped when its count is back to zero."""

    def __init__(self) -> None:
        self._counts: dict[object, int] = {}

    def try_enter(self, key: object, limit: int) -> bool:
        count = self._counts.get(key, 0)
        if count >= limit:
            return False
        self._counts[key] = count + 1
        return True

    def leave(self, key: object) -> None:
        count = self._counts[key] - 1
        if count:
            self._counts[key] = count
        else:
            del self._counts[key]

    def __getitem__(self, key: object) -> int:
        return self._counts.get(key, 0)


def match_route(scope: Scope, routes: Sequence[BaseRoute]) -> BaseRoute | None:
    """The route a request goes to, left in the scope (what the router would set) for the outer layers."""
    for route in routes:
        match, child = route.matches(scope)
        if match is Match.FULL:
            scope.update(child)
            return route
    return None


class ClientGate:
    """Identify the caller and apply its own limits, before the body is read (see the module's docstring).

    `identify(token)` is the account id of a player's token or session, or None; it runs in a thread
    pool of `lookup_threads`, so a flood of invented tokens cannot take the workers' threads."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        route_class: Callable[[str, str], str | None],
        route_auth: Callable[[str, str], Auth],
        routes: Callable[[], Sequence[BaseRoute]],
        admin_token: str,
        identify: Callable[[str], int | None],
        limits: ClientLimits,
        metrics: PlatformMetrics,
        lookup_threads: int = 8,
    ) -> None:
        self.app = app
        self.route_class = route_class
        self.route_auth = route_auth
        self.routes = routes
        self.admin_token = admin_token.encode()
        self.identify = identify
        self.limits = limits
        self.metrics = metrics
        self.lookups = anyio.CapacityLimiter(lookup_threads)
        self.buckets = TokenBuckets()
        self.players = InFlight()
        self.addresses = InFlight()
        self.anonymous = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = match_route(scope, self.routes())
        template = getattr(route, "path", None)
        kind = self.route_class(scope["method"], template) if template else None
        scope[CLASS_KEY] = kind
        if kind is None or template is None:  # (the second: for the type checker; no class without a route)
            await self.app(scope, receive, send)
            return
        try:
            caller = await self._identify(scope)
            _check_auth(self.route_auth(scope["method"], template), caller)
        except Problem as refused:
            await refused.response(scope["path"])(scope, receive, send)
            return
        scope[CALLER_KEY] = caller
        if caller.kind == "admin" or is_synthetic(scope):
            await self.app(scope, receive, send)
        elif caller.kind == "player":
            await self._as_player(caller.account_id, kind, scope, receive, send)
        else:
            await self._as_anonymous(scope, receive, send)

    async def _identify(self, scope: Scope) -> Caller:
        token = _bearer(scope)
        if token is None:
            return Caller("anonymous")
        if hmac.compare_digest(token, self.admin_token):
            return Caller("admin", token_sent=True)
        try:
            account = await anyio.to_thread.run_sync(self.identify, token.decode("latin-1"), limiter=self.lookups)
        except SQLAlchemyError:
            raise database_busy() from None
        if account is None:
            return Caller("anonymous", token_sent=True)
        return Caller("player", account, token_sent=True)

    async def _as_player(self, account_id: int | None, kind: str, scope: Scope, receive: Receive, send: Send) -> None:
        rate = self.limits.per_second[kind]
        wait = self.buckets.take((account_id, kind), rate, max(1.0, rate * self.limits.burst_seconds))
        if wait:
            detail = f"more than {rate:g} requests per second of this kind ({kind}) from one player"
            await self._throttled("client_rate", detail, wait, scope, receive, send)
            return
        if not self.players.try_enter(account_id, self.limits.max_in_flight):
            detail = f"{self.limits.max_in_flight} requests of this player are already in progress"
            await self._throttled("client_in_flight", detail, 1.0, scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.players.leave(account_id)

    async def _as_anonymous(self, scope: Scope, receive: Receive, send: Send) -> None:
        address = (scope.get("client") or ("unknown",))[0]
        per_address = self.limits.anonymous_max_in_flight_per_address
        if not self.addresses.try_enter(address, per_address):
            detail = f"{per_address} requests without a valid token from this address are already in progress"
            await self._throttled("address_in_flight", detail, 1.0, scope, receive, send)
            return
        try:
            if self.anonymous >= self.limits.anonymous_max_in_flight:
                label = f"{scope['method']} {getattr(scope.get('route'), 'path', scope['path'])}"
                self.metrics.shed_requests.labels(route=label).inc()
                detail = f"{self.limits.anonymous_max_in_flight} requests without a valid token are already in progress"
                await overloaded(detail)(scope, receive, send)
                return
            self.anonymous += 1
            try:
                await self.app(scope, receive, send)
            finally:
                self.anonymous -= 1
        finally:
            self.addresses.leave(address)

    async def _throttled(self, limit: str, why: str, wait: float, scope: Scope, receive: Receive, send: Send) -> None:
        self.metrics.rate_limited.labels(limit=limit).inc()
        problem = Problem(
            429,
            "too-many-requests",
            "Too many requests",
            f"{why}; retry after the Retry-After delay (bets: with the same Idempotency-Key)",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
            retryable=True,
        )
        await problem.response(scope["path"])(scope, receive, send)


def _check_auth(needed: Auth, caller: Caller) -> None:
    if needed == "admin" and caller.kind != "admin":
        raise missing_token() if not caller.token_sent else admin_only()
    if needed == "player" and caller.kind != "player":
        raise missing_token() if not caller.token_sent else unknown_token()


def _bearer(scope: Scope) -> bytes | None:
    """The bearer token of the Authorization header (None without one, as FastAPI's HTTPBearer reads it)."""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            token = token.strip()
            return token if scheme.lower() == b"bearer" and token else None
    return None


class AdmissionControl:
    """Bound the work in progress per class of route; past a bound, shed at once with 503 + Retry-After.

    It runs on the event loop before any thread is taken and after the body has arrived, so excess
    requests never queue for the worker pool: they are answered immediately and the client retries
    later. The route and its class are the gate's (`ClientGate`), so a shed request is still labelled
    with its route template (metrics, server span) and counts against that route's SLO like any other
    5xx. Routes in no class (health, metrics, the fault switches, the odds stream's redirect) are never
    shed. Synthetic requests on a bounded route, whatever its class, share a pool of their own
    (`synthetic_limit`): a probe can prove that shedding works without taking a player's slot.
    """

    def __init__(
        self, app: ASGIApp, *, classes: dict[str, int], synthetic_limit: int, metrics: PlatformMetrics
    ) -> None:
        self.app = app
        self.limits = classes
        self.synthetic_limit = synthetic_limit
        self.metrics = metrics
        self.in_flight = dict.fromkeys(classes, 0)
        self.synthetic_in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope.get(CLASS_KEY) if scope["type"] == "http" else None
        if kind is None:
            await self.app(scope, receive, send)
            return
        if is_synthetic(scope):
            await self._admit_synthetic(scope, receive, send)
            return
        label = f"{scope['method']} {scope['route'].path}"
        limit = self.limits[kind]
        if self.in_flight[kind] >= limit:
            self.metrics.shed_requests.labels(route=label).inc()
            await overloaded(f"{limit} requests of this kind ({kind}) are already in progress")(scope, receive, send)
            return
        self.in_flight[kind] += 1
        admitted = self.metrics.admitted_in_flight.labels(route=label)
        admitted.inc()
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight[kind] -= 1
            admitted.dec()

    async def _admit_synthetic(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Neither counted as shed nor as admitted: those series describe what players get.
        if self.synthetic_in_flight >= self.synthetic_limit:
            detail = f"{self.synthetic_limit} synthetic requests are already in progress (their own pool)"
            await overloaded(detail)(scope, receive, send)
            return
        self.synthetic_in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.synthetic_in_flight -= 1


def overloaded(why: str) -> ASGIApp:
    problem = Problem(
        503,
        "overloaded",
        "Overloaded",
        f"{why}; retry after the Retry-After delay (bets: with the same Idempotency-Key)",
        headers={"Retry-After": "1"},
        retryable=True,
    )

    async def answer(scope: Scope, receive: Receive, send: Send) -> None:
        await problem.response(scope["path"])(scope, receive, send)

    return answer
