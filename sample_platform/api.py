"""The sample platform's HTTP API (FastAPI). Errors are application/problem+json (RFC 9457).

Usage:

    app = create_app(PlatformSettings(database_url="sqlite:///./var/platform.db"))
    uvicorn.run(app, port=8080)
"""

import asyncio
import hmac
import inspect
import json
import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import Engine, event
from sqlalchemy.exc import DBAPIError
from starlette.responses import JSONResponse, Response, StreamingResponse

from sample_platform import accounts, markets
from sample_platform.bets import BetOrder, bet_view, place_bet
from sample_platform.db import make_engine, reader
from sample_platform.faults import Fault, FaultRegistry
from sample_platform.idempotency import (
    ClaimOutcome,
    claim_key,
    complete_key,
    fingerprint,
    parse_key_header,
    purge_expired,
    release_key,
)
from sample_platform.login import (
    LoginPolicy,
    SlidingWindowLimiter,
    account_for_session,
    hash_password,
    login,
    purge_expired_sessions,
    set_password,
)
from sample_platform.metrics import PlatformMetrics
from sample_platform.middleware import STREAMING_ROUTES, BodySizeLimit, InFlightLimit, RequestMetrics
from sample_platform.odds_feed import OddsBroker, PriceMover, change_and_publish
from sample_platform.outbox import JsonlSink, OutboxRelay, OutboxSink
from sample_platform.problems import PROBLEM_JSON, Problem, install_problem_handlers
from sample_platform.risk import FeatureCache, RiskEngine, RiskLimits
from sample_platform.schemas import (
    AccountCreate,
    BetCreate,
    DepositCreate,
    FaultCreate,
    LoginRequest,
    MarketCreate,
    OddsChange,
    PasswordReset,
    ResultCreate,
    json_body,
    parse_body,
)
from sample_platform.settings import PlatformSettings
from sample_platform.telemetry import ServerSpans, flush_telemetry, tracer

log = logging.getLogger(__name__)
# Newer FastAPI releases emit spans of their own once a tracer provider is set; `ServerSpans` already
# makes exactly one server span per request (without url.path), so theirs would count every request twice.
_NO_NATIVE_TELEMETRY = (
    {"telemetry": {"tracing": False, "metrics": False, "logs": False, "operation_spans": False}}
    if "telemetry" in inspect.signature(FastAPI.__init__).parameters
    else {}
)
Body = Annotated[Any, Depends(json_body)]


@dataclass
class Platform:
    """Everything the routes share, built once per app."""

    settings: PlatformSettings
    engine: Engine
    metrics: PlatformMetrics
    faults: FaultRegistry
    risk: RiskEngine
    broker: OddsBroker
    relay: OutboxRelay
    login_policy: LoginPolicy


def _bearer(authorization: str | None) -> str:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Problem(
            401,
            "unauthenticated",
            "Authentication required",
            "send Authorization: Bearer <token>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return token.strip()


def build_platform(settings: PlatformSettings, engine: Engine, outbox_sink: OutboxSink | None = None) -> Platform:
    metrics = PlatformMetrics()
    faults = FaultRegistry(engine)
    limits = RiskLimits(
        max_stake_minor=settings.max_stake_minor,
        max_liability_minor=settings.max_liability_minor,
        max_exposure_minor=settings.max_exposure_minor,
        max_bets_per_minute=settings.max_bets_per_minute,
    )
    risk = RiskEngine(
        limits,
        FeatureCache(ttl=settings.risk_cache_ttl_seconds, metrics=metrics),
        cache_enabled=lambda: not faults.cache_off,
    )
    relay = OutboxRelay(engine, outbox_sink or JsonlSink(settings.outbox_sink_path), delay=faults.broker_delay)
    metrics.watch_outbox(relay.backlog)
    policy = LoginPolicy(
        session_ttl=timedelta(seconds=settings.session_ttl_seconds),
        max_failures=settings.login_max_failures,
        lockout=timedelta(seconds=settings.login_lockout_seconds),
        per_account=SlidingWindowLimiter(settings.login_attempts_per_minute_account),
        per_address=SlidingWindowLimiter(settings.login_attempts_per_minute_address),
        scrypt_log2_n=settings.password_scrypt_log2_n,
    )
    broker = OddsBroker(metrics, queue_size=settings.odds_subscriber_queue)

    @event.listens_for(engine, "before_cursor_execute")
    def _slow_database(*_args: object) -> None:
        delay = faults.db_delay()
        if delay:
            time.sleep(delay)

    return Platform(settings, engine, metrics, faults, risk, broker, relay, policy)


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
    ttl = timedelta(seconds=settings.idempotency_ttl_seconds)
    lock = timedelta(seconds=settings.idempotency_lock_seconds)
    admin_token = settings.admin_token.get_secret_value()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        p.broker.bind(asyncio.get_running_loop())
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
            p.faults.close()
            for worker in workers:
                worker.join(timeout=10)
            flush_telemetry()

    app = FastAPI(
        **_NO_NATIVE_TELEMETRY,
        title="Sample betting platform",
        version="0.1.0",
        lifespan=lifespan,
        dependencies=[Depends(_fault_injection(p))],
        description=(
            "A small but real betting service: accounts, a double-entry ledger, markets, bets and "
            "settlement. Errors are application/problem+json (RFC 9457). Money is integer minor "
            "units; odds are decimal strings.\n\n"
            f"**Idempotency**: `POST /v1/bets` requires an `Idempotency-Key` header. A key is "
            f"remembered for {settings.idempotency_ttl_seconds} seconds "
            "(`PLATFORM_IDEMPOTENCY_TTL_SECONDS`) per account."
        ),
    )
    app.state.platform = p
    install_problem_handlers(app)

    @app.exception_handler(DBAPIError)
    async def _database_busy(request: Request, exc: DBAPIError) -> Response:
        # Lock and statement timeouts land here: nothing was committed, a retry is safe.
        p.metrics.db_lock_waits.inc()
        log.warning("database error on %s %s: %s", request.method, request.url.path, type(exc.orig).__name__)
        return Problem(
            503,
            "database-busy",
            "Database busy",
            "the database did not answer in time; nothing was written, retry with the same Idempotency-Key",
            headers={"Retry-After": "1"},
            retryable=True,
        ).response(request.url.path)

    app.add_middleware(
        InFlightLimit, routes={("POST", "/v1/bets")}, limit=settings.bet_max_in_flight, metrics=p.metrics
    )
    app.add_middleware(BodySizeLimit, limit=settings.max_body_bytes)
    app.add_middleware(RequestMetrics, metrics=p.metrics)
    app.add_middleware(ServerSpans, streaming=STREAMING_ROUTES)

    def admin(authorization: Annotated[str | None, Header()] = None) -> None:
        if not hmac.compare_digest(_bearer(authorization).encode(), admin_token.encode()):
            raise Problem(403, "forbidden", "Forbidden", "this call needs the admin token")

    def player(authorization: Annotated[str | None, Header()] = None) -> int:
        token = _bearer(authorization)
        with reader(engine).connect() as conn:
            account_id = accounts.account_for_token(conn, token) or account_for_session(conn, token)
        if account_id is None:
            raise Problem(
                401,
                "unauthenticated",
                "Unknown or expired token",
                "the bearer token is not valid; log in again with POST /v1/login",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return account_id

    def idempotency_key(idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None) -> str:
        return parse_key_header(idempotency_key)

    Admin = Depends(admin)

    @app.get("/v1/health", tags=["ops"])
    def health() -> dict:
        """Liveness: answers without touching the database (the framework's own ceiling)."""
        return {"status": "ok"}

    @app.get("/metrics", tags=["ops"], include_in_schema=False)
    def prometheus_metrics() -> Response:
        return Response(generate_latest(p.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/v1/accounts", status_code=201, dependencies=[Admin], tags=["admin"])
    def create_account(body: Body) -> dict:
        req = parse_body(AccountCreate, body)
        hashed = hash_password(req.password, log2_n=settings.password_scrypt_log2_n) if req.password else None
        account_id, token = accounts.create_account(engine, username=req.username, password_hash=hashed)
        return {"id": account_id, "username": req.username, "token": token}

    @app.post("/v1/admin/accounts/{account_id}/password", dependencies=[Admin], tags=["admin"])
    def reset_password(account_id: int, body: Body) -> dict:
        """Set a new password, lift any lockout and revoke the account's login sessions."""
        req = parse_body(PasswordReset, body)
        set_password(engine, account_id=account_id, password=req.password, log2_n=settings.password_scrypt_log2_n)
        return {"id": account_id, "password_reset": True}

    @app.post("/v1/login", tags=["player"])
    def log_in(request: Request, body: Body) -> dict:
        """Exchange username and password for a short-lived bearer token.

        Limits: attempts per account and per client address per minute (429 with Retry-After), and
        a lockout after `PLATFORM_LOGIN_MAX_FAILURES` consecutive wrong passwords."""
        req = parse_body(LoginRequest, body)
        address = request.client.host if request.client else "unknown"
        try:
            token, expires_at = login(
                engine, p.login_policy, username=req.username, password=req.password, address=address
            )
        except Problem as problem:
            outcome = problem.extensions.get("limit", problem.slug)
            p.metrics.login_attempts.labels(outcome=outcome).inc()
            if problem.status == 429:
                p.metrics.rate_limited.labels(limit=outcome).inc()
            raise
        p.metrics.login_attempts.labels(outcome="ok").inc()
        return {"token": token, "expires_at": expires_at.isoformat(), "token_type": "Bearer"}

    @app.post("/v1/admin/deposit", dependencies=[Admin], tags=["admin"])
    def deposit(body: Body) -> dict:
        req = parse_body(DepositCreate, body)
        return accounts.deposit(
            engine, account_id=req.account_id, amount_minor=req.amount_minor, reference=req.reference
        )

    @app.get("/v1/wallet", tags=["player"])
    def wallet(account_id: Annotated[int, Depends(player)]) -> dict:
        with reader(engine).begin() as conn:
            return {"account_id": account_id, **accounts.wallet(conn, account_id)}

    @app.post("/v1/admin/markets", status_code=201, dependencies=[Admin], tags=["admin"])
    def create_market(body: Body) -> dict:
        req = parse_body(MarketCreate, body)
        return markets.create_market(
            engine, name=req.name, selections=[(s.name, Decimal(s.odds)) for s in req.selections]
        )

    @app.post("/v1/admin/markets/{market_id}/odds", dependencies=[Admin], tags=["admin"])
    def change_odds(market_id: int, body: Body) -> dict:
        req = parse_body(OddsChange, body)
        return change_and_publish(
            engine, p.broker, market_id=market_id, selection_id=req.selection_id, odds=Decimal(req.odds)
        )

    @app.post("/v1/admin/markets/{market_id}/result", dependencies=[Admin], tags=["admin"])
    def result(market_id: int, body: Body) -> dict:
        """Record the result and settle every bet on the market, exactly once each.

        Repeating the same result finishes an interrupted settlement and changes nothing else;
        a different result resettles the market's bets through reversing entries."""
        req = parse_body(ResultCreate, body)
        markets.set_result(engine, market_id=market_id, winner_selection_id=req.winner_selection_id, void=req.void)
        try:
            report = markets.settle_market(engine, market_id=market_id, batch_size=settings.settlement_batch_size)
        finally:
            p.risk.settled()
        return {"market": markets.get_market(engine, market_id), "settlement": report.as_dict()}

    @app.get("/v1/markets", tags=["markets"])
    def list_markets() -> dict:
        return {"markets": markets.list_markets(engine)}

    @app.get("/v1/markets/{market_id}", tags=["markets"])
    def get_market(market_id: int) -> dict:
        return markets.get_market(engine, market_id)

    @app.get("/v1/odds/stream", tags=["markets"], response_class=StreamingResponse)
    async def odds_stream() -> StreamingResponse:
        """Server-Sent Events: one `odds` event per price change, with `published_at` (UTC) and
        `price_version`. A subscriber more than `PLATFORM_ODDS_SUBSCRIBER_QUEUE` updates behind
        gets a final `overflow` event and is disconnected; it should reconnect and re-read markets."""
        return StreamingResponse(
            p.broker.stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @app.post("/v1/bets", status_code=201, tags=["player"])
    def create_bet(
        request: Request,
        account_id: Annotated[int, Depends(player)],
        key: Annotated[str, Depends(idempotency_key)],
        body: Body,
    ) -> Response:
        """Place a bet. Requires `Idempotency-Key`: a retry with the same key and body returns the
        first response again (`Idempotent-Replayed: true`); the same key with another body is 422; a
        retry while the first is still running is 409. Keys are per account and expire after
        `PLATFORM_IDEMPOTENCY_TTL_SECONDS` (default 86400). When too many bets are in progress
        the request is shed at once with 503 and Retry-After."""
        req = parse_body(BetCreate, body)
        claim = claim_key(
            engine,
            account_id=account_id,
            key=key,
            fingerprint=fingerprint("POST", request.url.path, body),
            ttl=ttl,
            lock=lock,
        )
        if claim.outcome is ClaimOutcome.REPLAY:
            p.metrics.idempotency_replays.inc()
            status = claim.response_status or 500
            return Response(
                claim.response_body,
                status_code=status,
                media_type="application/json" if status < 400 else PROBLEM_JSON,
                headers={"Idempotent-Replayed": "true"},
            )
        order = BetOrder(
            market_id=req.market_id,
            selection_id=req.selection_id,
            stake_minor=req.stake_minor,
            odds=Decimal(req.odds),
            price_version=req.price_version,
            accept_price_change=req.accept_price_change,
        )
        stored: dict[str, Any] = {}

        def remember_response(view: dict) -> None:
            stored["view"] = view
            stored["text"] = json.dumps(view, separators=(",", ":"))
            if not complete_key(conn, claim, status=201, body=stored["text"]):
                raise Problem(
                    409,
                    "idempotency-key-in-flight",
                    "Request with this Idempotency-Key is in flight",
                    "another request took over this Idempotency-Key; retry to get its response",
                    headers={"Retry-After": "1"},
                )

        try:
            with tracer.start_as_current_span("ledger commit"), engine.begin() as conn:
                place_bet(conn, account_id=account_id, order=order, risk=p.risk, before_outbox=remember_response)
        except Problem as problem:
            # Refusals that a retry cannot change are remembered under the key; the rest are released.
            if problem.status == 422:
                with engine.begin() as conn:
                    complete_key(conn, claim, status=422, body=problem.body_text(request.url.path))
            else:
                release_key(engine, claim)
            raise
        except BaseException:
            release_key(engine, claim)
            raise
        view = stored["view"]
        p.risk.committed(
            account_id=account_id,
            selection_id=view["selection_id"],
            stake_minor=view["stake_minor"],
            liability_minor=view["potential_payout_minor"] - view["stake_minor"],
        )
        return Response(stored["text"], status_code=201, media_type="application/json")

    @app.get("/v1/bets/{bet_id}", tags=["player"])
    def get_bet(bet_id: int, account_id: Annotated[int, Depends(player)]) -> dict:
        with reader(engine).begin() as conn:
            return bet_view(conn, bet_id, account_id=account_id)

    @app.post("/v1/admin/faults", status_code=201, dependencies=[Admin], tags=["game days"])
    def set_fault(body: Body) -> dict:
        """Inject a fault for a game day. It expires by itself after `ttl_seconds`; every change is
        written to the outbox as a `change.fault_*` event."""
        req = parse_body(FaultCreate, body)
        if req.ttl_seconds > settings.fault_max_ttl_seconds:
            raise Problem(
                422,
                "fault-ttl-too-long",
                "Fault TTL too long",
                f"ttl_seconds {req.ttl_seconds} is above the longest allowed TTL "
                f"(PLATFORM_FAULT_MAX_TTL_SECONDS={settings.fault_max_ttl_seconds})",
            )
        options = req.model_dump(exclude={"kind", "ttl_seconds"})
        fault = p.faults.add(Fault.new(req.kind, ttl_seconds=float(req.ttl_seconds), **options))
        p.metrics.faults_active.labels(kind=fault.kind).inc()
        return fault.to_dict()

    @app.get("/v1/admin/faults", dependencies=[Admin], tags=["game days"])
    def list_faults() -> dict:
        return {"faults": [f.to_dict() for f in p.faults.active()]}

    @app.delete("/v1/admin/faults", dependencies=[Admin], tags=["game days"])
    def clear_faults(kind: str | None = None, id: str | None = None, actor: str = "admin") -> dict:
        """Clear every fault, or those of one `kind`, or the one with `id`."""
        cleared = p.faults.clear(kind=kind, fault_id=id, actor=actor)
        for fault in cleared:
            p.metrics.faults_active.labels(kind=fault.kind).dec()
        return {"cleared": [f.to_dict() for f in cleared]}

    @app.get("/", include_in_schema=False)
    def root() -> JSONResponse:
        return JSONResponse({"service": "sample betting platform", "docs": "/docs"})

    return app


def _fault_injection(p: Platform):  # type: ignore[no-untyped-def]
    async def inject(request: Request) -> None:
        route = getattr(request.scope.get("route"), "path", request.url.path)
        delay = p.faults.route_delay(request.method, route)
        if delay:
            await asyncio.sleep(delay)
        status = p.faults.route_error(request.method, route)
        if status is not None:
            raise Problem(
                status,
                "injected-fault",
                "Injected fault",
                "a game-day fault failed this request on purpose; see GET /v1/admin/faults",
                headers={"Retry-After": "1"} if status in (429, 503) else None,
            )

    return inject


def _housekeeping(p: Platform, stop: threading.Event, interval: float = 1.0) -> None:
    rounds = 0
    while not stop.wait(interval):
        rounds += 1
        try:
            for fault in p.faults.expire():
                p.metrics.faults_active.labels(kind=fault.kind).dec()
            if rounds % 60 == 0:
                purge_expired(p.engine)
                purge_expired_sessions(p.engine)
        except Exception:
            log.exception("housekeeping round failed; will retry")
