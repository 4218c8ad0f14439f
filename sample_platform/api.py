"""The sample platform's HTTP API (FastAPI). Errors are application/problem+json (RFC 9457).

app = create_app(Settings(database_url="sqlite:///./var/platform.db"))
uvicorn.run(app, port=8080)
"""


import hmac
import json
import logging
import threading
from collections.abc import Iterator
from contextlib import asynccontextmanager
from datetime import timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal, TypeVar

from fastapi import Depends, FastAPI, Header, Request
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationError, field_validator
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError
from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from controlplane.problems import PROBLEM_JSON, Problem, install_problem_handlers
from controlplane.settings import Settings
from controlplane.storage import make_engine, reader
from sample_platform import accounts, markets
from sample_platform.bets import BetOrder, RiskLimits, bet_view, place_bet
from sample_platform.idempotency import (
    ClaimOutcome,
    claim_key,
    complete_key,
    fingerprint,
    parse_key_header,
    purge_expired,
    release_key,
)
from sample_platform.outbox import JsonlSink, OutboxRelay

log = logging.getLogger(__name__)

ModelT = TypeVar("ModelT", bound=BaseModel)
ODDS_PATTERN = r"^[0-9]{1,4}(\.[0-9]{1,3})?$"
MAX_ODDS = Decimal("1000")


def _check_odds(value: str) -> str:
    odds = Decimal(value)
    if not Decimal("1") < odds <= MAX_ODDS:
        raise ValueError(f"odds must be decimal odds above 1.00 and at most {MAX_ODDS}, e.g. '2.50'")
    return value


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class AccountCreate(StrictModel):
    username: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")


class DepositCreate(StrictModel):
    account_id: StrictInt = Field(gt=0)
    amount_minor: StrictInt = Field(gt=0, le=10**12, description="Integer minor units (pence/cents).")
    reference: str | None = Field(default=None, max_length=200)


class SelectionCreate(StrictModel):
    name: str = Field(min_length=1, max_length=200)
    odds: str = Field(pattern=ODDS_PATTERN, description="Decimal odds as a string, e.g. '2.50'.")
    _odds = field_validator("odds")(_check_odds)


class MarketCreate(StrictModel):
    name: str = Field(min_length=1, max_length=200)
    selections: list[SelectionCreate] = Field(min_length=2, max_length=100)


class OddsChange(StrictModel):
    selection_id: StrictInt = Field(gt=0)
    odds: str = Field(pattern=ODDS_PATTERN)
    _odds = field_validator("odds")(_check_odds)


class ResultCreate(StrictModel):
    winner_selection_id: StrictInt | None = Field(default=None, gt=0)
    void: StrictBool = False


class BetCreate(StrictModel):
    market_id: StrictInt = Field(gt=0)
    selection_id: StrictInt = Field(gt=0)
    stake_minor: StrictInt = Field(gt=0, description="Integer minor units; must be above zero.")
    odds: str = Field(pattern=ODDS_PATTERN, description="The odds the client saw, e.g. '2.50'.")
    price_version: StrictInt = Field(ge=1)
    accept_price_change: Literal["none", "better", "any"] = "none"
    _odds = field_validator("odds")(_check_odds)


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
            413,
            "body-too-large",
            "Request body too large",
            f"request bodies are limited to {self.limit} bytes",
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


def _validation_problem(exc: ValidationError) -> Problem:
    errors = [{"field": ".".join(str(p) for p in err["loc"]) or "body", "message": err["msg"]} for err in exc.errors()]
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return Problem(422, "validation", "Request is not valid", detail, errors=errors)


def parse_body(model: type[ModelT], body: Any) -> ModelT:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise _validation_problem(exc) from exc


async def json_body(request: Request) -> Any:
    try:
        raw = await request.body()
    except ClientDisconnect as exc:
        # Nobody will read the answer; end the request quietly instead of as a server error.
        raise Problem(400, "client-disconnected", "Client disconnected", "the client went away mid-request") from exc
    try:
        return json.loads(raw, parse_float=Decimal)
    except ValueError as exc:
        raise Problem(
            400, "malformed-json", "Malformed JSON", f"the request body is not valid JSON ({exc}); send a JSON object"
        ) from exc


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


def create_app(
    settings: Settings | None = None, *, engine: Engine | None = None, run_background: bool = True
) -> FastAPI:
    """Build the platform app. Its schema must already be migrated (`controlplane platform migrate`)."""
    settings = settings or Settings()
    engine = engine or make_engine(settings.database_url, busy_timeout_ms=settings.db_busy_timeout_ms)
    limits = RiskLimits(settings.max_stake_minor, settings.max_liability_minor)
    ttl = timedelta(seconds=settings.idempotency_ttl_seconds)
    lock = timedelta(seconds=settings.idempotency_lock_seconds)
    admin_token = settings.admin_token.get_secret_value()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> Iterator[None]:  # type: ignore[misc]
        stop = threading.Event()
        workers: list[threading.Thread] = []
        if run_background:
            relay = OutboxRelay(engine, JsonlSink(settings.outbox_sink_path))
            workers.append(
                threading.Thread(
                    target=relay.run, args=(stop, settings.outbox_relay_interval_seconds), name="outbox-relay"
                )
            )
            workers.append(threading.Thread(target=_housekeeping, args=(engine, stop), name="housekeeping"))
        for worker in workers:
            worker.daemon = True
            worker.start()
        _app.state.outbox_stop = stop
        try:
            yield
        finally:
            stop.set()
            for worker in workers:
                worker.join(timeout=10)

    app = FastAPI(
        title="Sample betting platform",
        version="0.1.0",
        lifespan=lifespan,
        description=(
            "A small but real betting service: accounts, a double-entry ledger, markets, bets and "
            "settlement. Errors are application/problem+json (RFC 9457). Money is integer minor "
            "units; odds are decimal strings.\n\n"
            f"**Idempotency**: `POST /v1/bets` requires an `Idempotency-Key` header. A key is "
            f"remembered for {settings.idempotency_ttl_seconds} seconds "
            "(`CONTROLPLANE_IDEMPOTENCY_TTL_SECONDS`) per account."
        ),
    )
    app.state.engine = engine
    app.state.settings = settings
    install_problem_handlers(app)

    @app.exception_handler(DBAPIError)
    async def _database_busy(request: Request, exc: DBAPIError) -> Response:
        log.warning("database error on %s %s: %s", request.method, request.url.path, exc.orig)
        return Problem(
            503,
            "database-busy",
            "Database busy",
            "the database did not answer in time; nothing was written, retry with the same Idempotency-Key",
            headers={"Retry-After": "1"},
            retryable=True,
        ).response(request.url.path)

    app.add_middleware(BodySizeLimit, limit=settings.max_body_bytes)

    def admin(authorization: Annotated[str | None, Header()] = None) -> None:
        if not hmac.compare_digest(_bearer(authorization).encode(), admin_token.encode()):
            raise Problem(403, "forbidden", "Forbidden", "this call needs the admin token")

    def player(authorization: Annotated[str | None, Header()] = None) -> int:
        token = _bearer(authorization)
        with reader(engine).connect() as conn:
            account_id = accounts.account_for_token(conn, token)
        if account_id is None:
            raise Problem(
                401,
                "unauthenticated",
                "Unknown token",
                "the bearer token is not valid",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return account_id

    def idempotency_key(idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None) -> str:
        return parse_key_header(idempotency_key)

    Admin = Depends(admin)
    Body = Annotated[Any, Depends(json_body)]

    @app.get("/v1/health", tags=["ops"])
    def health() -> dict:
        """Liveness: answers without touching the database (the framework's own ceiling)."""
        return {"status": "ok"}

    @app.post("/v1/accounts", status_code=201, dependencies=[Admin], tags=["admin"])
    def create_account(body: Body) -> dict:
        req = parse_body(AccountCreate, body)
        account_id, token = accounts.create_account(engine, username=req.username)
        return {"id": account_id, "username": req.username, "token": token}

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
        return markets.change_odds(engine, market_id=market_id, selection_id=req.selection_id, odds=Decimal(req.odds))

    @app.post("/v1/admin/markets/{market_id}/result", dependencies=[Admin], tags=["admin"])
    def result(market_id: int, body: Body) -> dict:
        """Record the result and settle every bet on the market, exactly once each.

        Repeating the same result finishes an interrupted settlement and changes nothing else;
        a different result resettles the market's bets through reversing entries."""
        req = parse_body(ResultCreate, body)
        markets.set_result(engine, market_id=market_id, winner_selection_id=req.winner_selection_id, void=req.void)
        report = markets.settle_market(engine, market_id=market_id, batch_size=settings.settlement_batch_size)
        return {"market": markets.get_market(engine, market_id), "settlement": report.as_dict()}

    @app.get("/v1/markets", tags=["markets"])
    def list_markets() -> dict:
        return {"markets": markets.list_markets(engine)}

    @app.get("/v1/markets/{market_id}", tags=["markets"])
    def get_market(market_id: int) -> dict:
        return markets.get_market(engine, market_id)

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
        `CONTROLPLANE_IDEMPOTENCY_TTL_SECONDS` (default 86400)."""
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
        stored: dict[str, str] = {}

        def remember_response(view: dict) -> None:
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
            with engine.begin() as conn:
                place_bet(conn, account_id=account_id, order=order, limits=limits, before_outbox=remember_response)
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
        return Response(stored["text"], status_code=201, media_type="application/json")

    @app.get("/v1/bets/{bet_id}", tags=["player"])
    def get_bet(bet_id: int, account_id: Annotated[int, Depends(player)]) -> dict:
        with reader(engine).begin() as conn:
            return bet_view(conn, bet_id, account_id=account_id)

    @app.get("/", include_in_schema=False)
    def root() -> JSONResponse:
        return JSONResponse({"service": "sample betting platform", "docs": "/docs"})

    return app


def _housekeeping(engine: Engine, stop: threading.Event, interval: float = 60.0) -> None:
    while not stop.wait(interval):
        try:
            purge_expired(engine)
        except Exception:
            log.exception("purging expired idempotency keys failed; will retry")
