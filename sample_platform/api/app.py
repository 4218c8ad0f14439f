"""The sample platform's HTTP API (FastAPI). Errors are application/problem+json (RFC 9457).

Usage:

    app = create_app(PlatformSettings(database_url="sqlite:///./var/platform.db"))
    uvicorn.run(app, port=8080)
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from sqlalchemy import Engine
from sqlalchemy.exc import DataError, DBAPIError, OperationalError
from starlette.responses import Response
from starlette.routing import Route

from sample_platform.admission import AdmissionControl, Auth, ClientGate, ClientLimits
from sample_platform.api import accounts, admin, bets, faults, markets, ops
from sample_platform.api.deps import current_player, get_platform, player_account, require_admin
from sample_platform.api.openapi import platform_openapi
from sample_platform.api.platform import Platform, build_platform
from sample_platform.api.routing import method_not_allowed, route_class
from sample_platform.db import make_engine
from sample_platform.faults import KINDS as FAULT_KINDS
from sample_platform.idempotency import purge_expired
from sample_platform.login import purge_expired_sessions
from sample_platform.middleware import (
    STREAMING_ROUTES,
    UNTIMED_PATHS,
    BodySizeLimit,
    RequestMetrics,
    RequestTimeout,
)
from sample_platform.odds_feed import PriceMover
from sample_platform.outbox import OutboxSink
from sample_platform.problems import Problem, database_busy, install_problem_handlers
from sample_platform.settings import PlatformSettings
from sample_platform.synthetic import SyntheticGate, is_synthetic
from sample_platform.telemetry import ServerSpans, flush_telemetry

log = logging.getLogger(__name__)
# Newer FastAPI releases emit spans of their own once a tracer provider is set; `ServerSpans` already
# makes exactly one server span per request (without url.path), so theirs would count every request twice.
_NO_NATIVE_TELEMETRY: dict[str, Any] = (
    {"telemetry": {"tracing": False, "metrics": False, "logs": False, "operation_spans": False}}
    if "telemetry" in inspect.signature(FastAPI.__init__).parameters
    else {}
)
TAGS = [
    {"name": "player", "description": "Log in, look at the wallet, place and follow bets (player bearer token)."},
    {"name": "markets", "description": "Markets, their prices and the live odds stream (no token needed)."},
    {"name": "admin", "description": "Accounts, deposits, markets, prices and results (admin bearer token)."},
    {"name": "game days", "description": "Inject and clear faults for game days (admin bearer token)."},
    {"name": "ops", "description": "Liveness and Prometheus metrics."},
]


def create_app(
    settings: PlatformSettings | None = None,
    *,
    engine: Engine | None = None,
    outbox_sink: OutboxSink | None = None,
    run_background: bool = True,
) -> FastAPI:
    """Build the platform app. Its schema must already be migrated (`sample_platform.db.migrate`).

    The outbox relay delivers to `outbox_sink` (any object with `deliver(events)`), by default the
    JSON-lines file at `settings.outbox_sink_path`; a caller that wants the events elsewhere (an
    audit log, a broker) injects its own sink."""
    settings = settings or PlatformSettings()
    engine = engine or make_engine(settings.database_url, **settings.engine_options())
    p = build_platform(settings, engine, outbox_sink)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        p.stream.start()  # the odds fan-out gets its own thread, loop and port: never this loop's work
        stop = threading.Event()
        workers: list[threading.Thread] = []
        if run_background:
            workers.append(
                threading.Thread(
                    target=p.relay.run, args=(stop, settings.outbox_relay_interval_seconds), name="outbox-relay"
                )
            )
            workers.append(threading.Thread(target=_housekeeping, args=(p, stop), name="housekeeping"))
            if settings.price_mover_interval_seconds > 0:
                mover = PriceMover(engine, p.broker, interval=settings.price_mover_interval_seconds)
                workers.append(threading.Thread(target=mover.run, args=(stop,), name="price-mover"))
        for worker in workers:
            worker.daemon = True
            worker.start()
        try:
            yield
        finally:
            stop.set()
            p.stream.stop()
            p.faults.close()
            for worker in workers:
                worker.join(timeout=10)
            close = getattr(p.relay.sink, "close", None)
            if callable(close):  # a broker connection, say
                close()
            flush_telemetry()

    app = FastAPI(
        **_NO_NATIVE_TELEMETRY,
        title="Sample betting platform",
        version="0.1.0",
        lifespan=lifespan,
        dependencies=[Depends(inject_faults)],
        openapi_tags=TAGS,
        description=(
            "A small but real betting service: accounts, a double-entry ledger, markets, bets and "
            "settlement. Errors are application/problem+json (RFC 9457). Money is integer minor "
            "units; odds are decimal strings.\n\n"
            f"**Idempotency**: `POST /v1/bets` requires an `Idempotency-Key` header. A key is "
            f"remembered for {settings.idempotency_ttl_seconds} seconds "
            "(`PLATFORM_IDEMPOTENCY_TTL_SECONDS`) per account.\n\n"
            "**Game days**: while a fault is injected (`POST /v1/admin/faults`), any route but the fault "
            "routes and `/metrics` may answer with the fault's status (503 unless set otherwise).\n\n"
            "**Synthetic requests**: a probe sends `X-Synthetic: <label>` with `X-Probe-Token: <a probe token "
            "(PLATFORM_PROBE_TOKENS) or the admin token>`; without one the label is ignored. It is served as "
            "usual but left out "
            "of the SLO metrics, admitted through a pool of its own (`PLATFORM_SYNTHETIC_MAX_IN_FLIGHT`), and "
            "alone touched by `synthetic_only` faults.\n\n"
            f"**Timeouts**: a request not answered within {settings.request_timeout_seconds:g} seconds "
            "(`PLATFORM_REQUEST_TIMEOUT_SECONDS`) gets 504 `timeout`; retry bets with the same Idempotency-Key."
        ),
    )
    app.state.platform = p
    install_problem_handlers(app)
    app.add_exception_handler(OperationalError, _database_busy)
    app.add_exception_handler(DataError, _data_refused)
    routers = [module.router for module in (ops, accounts, markets, bets, admin, faults)]
    for router in routers:
        app.include_router(router)
    app.add_exception_handler(405, method_not_allowed([*app.router.routes, *(r for x in routers for r in x.routes)]))
    app.openapi = lambda: platform_openapi(app)  # type: ignore[method-assign]

    # The routes themselves, not the wrappers of included routers: the bound is found per route template.
    routes = [r for r in (*app.router.routes, *(r for x in routers for r in x.routes)) if isinstance(r, Route)]
    auth = {(m, r.path): route_auth(r) for r in routes for m in getattr(r, "methods", None) or ()}
    # Inside admission control: a timed-out request keeps its slot until its work has really finished.
    app.add_middleware(RequestTimeout, seconds=settings.request_timeout_seconds, exempt=UNTIMED_PATHS)
    app.add_middleware(
        AdmissionControl,
        classes={
            "bets": settings.bet_max_in_flight,
            "writes": settings.write_max_in_flight,
            "reads": settings.read_max_in_flight,
        },
        synthetic_limit=settings.synthetic_max_in_flight,
        metrics=p.metrics,
    )
    app.add_middleware(BodySizeLimit, limit=settings.max_body_bytes, read_timeout=settings.body_read_timeout_seconds)
    # Outside the body's reading: who is calling, and their own limits, are settled before it.
    app.add_middleware(
        ClientGate,
        route_class=route_class,
        route_auth=lambda method, template: auth.get((method, template)),
        routes=lambda: routes,
        admin_token=settings.admin_token.get_secret_value(),
        identify=lambda token: player_account(engine, token),
        limits=ClientLimits(
            max_in_flight=settings.client_max_in_flight,
            per_second={
                "bets": settings.client_bets_per_second,
                "writes": settings.client_writes_per_second,
                "reads": settings.client_reads_per_second,
            },
            burst_seconds=settings.client_burst_seconds,
            anonymous_max_in_flight=settings.anonymous_max_in_flight,
            anonymous_max_in_flight_per_address=settings.anonymous_max_in_flight_per_address,
        ),
        metrics=p.metrics,
    )
    app.add_middleware(RequestMetrics, metrics=p.metrics)
    app.add_middleware(ServerSpans, streaming=STREAMING_ROUTES)
    probe_tokens = settings.probe_tokens.get_secret_value().split(",") if settings.probe_tokens else []
    app.add_middleware(
        SyntheticGate,
        tokens=[settings.admin_token.get_secret_value(), *(t.strip() for t in probe_tokens)],
        ignored=p.metrics.synthetic_ignored.inc,
    )
    return app


def route_auth(route: Route) -> Auth:
    """Which token a route needs: "admin", "player", or None (anyone)."""
    pending = [getattr(route, "dependant", None)]
    while pending:
        dependant = pending.pop()
        if dependant is None:
            continue
        if dependant.call is require_admin:
            return "admin"
        if dependant.call is current_player:
            return "player"
        pending.extend(dependant.dependencies)
    return None


async def inject_faults(request: Request) -> None:
    """Game days: delay or fail this request as the faults in force say (`synthetic_only` ones: only
    if it is synthetic)."""
    p = get_platform(request)
    route = getattr(request.scope.get("route"), "path", request.url.path)
    synthetic = is_synthetic(request.scope)
    delay = p.faults.route_delay(request.method, route, synthetic=synthetic)
    if delay:
        await asyncio.sleep(delay)
    status = p.faults.route_error(request.method, route, synthetic=synthetic)
    if status is not None:
        raise Problem(
            status,
            "injected-fault",
            "Injected fault",
            "a game-day fault failed this request on purpose; see GET /v1/admin/faults",
            headers={"Retry-After": "1"} if status in (429, 503) else None,
        )


async def _database_busy(request: Request, exc: Exception) -> Response:
    # Transient conditions only (lock and statement timeouts, serialization failures, deadlocks, a lost
    # connection): nothing was committed and a retry is safe. Data errors are `_data_refused`.
    get_platform(request).metrics.db_lock_waits.inc()
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    route = getattr(request.scope.get("route"), "path", None)
    log.warning(
        "request refused: database busy (%s)",
        type(orig).__name__,
        extra={"problem.type": "database-busy", "http.response.status_code": 503, "http.route": route},
    )
    return database_busy().response(request.url.path)


async def _data_refused(request: Request, exc: Exception) -> Response:
    # The edge validation should have caught it; the database refusing a value is the client's to fix,
    # and retrying it would fail the same way.
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    log.warning("database refused a value on %s %s: %s", request.method, request.url.path, type(orig).__name__)
    return Problem(
        400,
        "invalid-value",
        "Value not storable",
        "a value in the request is out of range or cannot be stored (ids up to 2^63-1, no NUL in text); "
        "fix the request instead of retrying it",
    ).response(request.url.path)


def _housekeeping(p: Platform, stop: threading.Event, interval: float = 1.0) -> None:
    rounds = 0
    while not stop.wait(interval):
        rounds += 1
        try:
            p.faults.sync()  # faults set or cleared through other replicas
            p.faults.expire()
            active = Counter(f.kind for f in p.faults.active())
            for kind in FAULT_KINDS:
                p.metrics.faults_active.labels(kind=kind).set(active[kind])
            if rounds % 60 == 0:
                purge_expired(p.engine)
                purge_expired_sessions(p.engine)
        except Exception:
            log.exception("housekeeping round failed; will retry")
