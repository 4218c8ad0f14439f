"""Player bet routes: placing a bet (idempotent end to end) and reading one back with its ledger entries."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Request
from opentelemetry import trace
from starlette.responses import Response

from sample_platform.api.deps import IDEMPOTENCY_KEY_PARAMETER, IdempotencyKey, JsonDocument, PlatformDep, PlayerId
from sample_platform.api.openapi import problems
from sample_platform.api.routing import JsonBodyRoute
from sample_platform.bets import BetOrder, bet_view, place_bet
from sample_platform.db import reader
from sample_platform.idempotency import ClaimOutcome, claim_key, complete_key, fingerprint, release_key
from sample_platform.problems import PROBLEM_JSON, Problem
from sample_platform.schemas import BetCreate, BetDetail, BetView, PathId
from sample_platform.telemetry import tracer

router = APIRouter(route_class=JsonBodyRoute, tags=["player"])

REPLAYED = {
    "Idempotent-Replayed": {
        "description": "`true` when this is the stored answer to an earlier request with the same key.",
        "schema": {"type": "string", "enum": ["true"]},
    }
}


@router.post(
    "/v1/bets",
    status_code=201,
    response_model=None,
    responses={
        201: {"model": BetView, "description": "The bet, accepted.", "headers": REPLAYED},
        **problems(
            400,
            401,
            409,
            413,
            422,
            503,
            descriptions={
                400: "The body is not JSON, or the Idempotency-Key is missing or malformed.",
                409: "The price moved (`price-changed`, with `current_odds`), the market is closed, or a "
                "request with this Idempotency-Key is still in flight (Retry-After).",
                422: "Not valid (`validation`), a risk limit, insufficient funds, an unknown market or "
                "selection, or this Idempotency-Key was used with another body. Remembered under the key.",
                503: "Too many bets in progress (`overloaded`), database busy or a game-day fault; nothing was "
                "written. Retry after `Retry-After` seconds with the same Idempotency-Key.",
            },
        ),
    },
    openapi_extra={"parameters": [IDEMPOTENCY_KEY_PARAMETER]},
)
def create_bet(
    request: Request,
    account_id: PlayerId,
    key: IdempotencyKey,
    body: BetCreate,
    document: JsonDocument,
    platform: PlatformDep,
) -> Response:
    """Place a bet. Requires `Idempotency-Key`: a retry with the same key and body returns the
    first response again (`Idempotent-Replayed: true`); the same key with another body is 422; a
    retry while the first is still running is 409. Keys are per account and expire after
    `PLATFORM_IDEMPOTENCY_TTL_SECONDS` (default 86400). When too many bets are in progress
    the request is shed at once with 503 and Retry-After."""
    engine = platform.engine
    request_span = trace.get_current_span()  # the server span: what the bet became, for its trace
    request_span.set_attributes({"bet.market_id": body.market_id, "bet.selection_id": body.selection_id})
    with tracer.start_as_current_span("idempotency claim"):
        claim = claim_key(
            engine,
            account_id=account_id,
            key=key,
            fingerprint=fingerprint("POST", request.url.path, document),
            ttl=platform.idempotency_ttl,
            lock=platform.idempotency_lock,
        )
    if claim.outcome is ClaimOutcome.REPLAY:
        request_span.set_attribute("bet.outcome", "replayed")
        platform.metrics.idempotency_replays.inc()
        status = claim.response_status or 500
        # The stored text itself, so a replay is byte for byte the first answer.
        return Response(
            claim.response_body,
            status_code=status,
            media_type="application/json" if status < 400 else PROBLEM_JSON,
            headers={"Idempotent-Replayed": "true"},
        )
    order = BetOrder(
        market_id=body.market_id,
        selection_id=body.selection_id,
        stake_minor=body.stake_minor,
        odds=Decimal(body.odds),
        price_version=body.price_version,
        accept_price_change=body.accept_price_change,
    )
    stored: dict[str, Any] = {}

    def remember_response(view: dict[str, Any]) -> None:
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
            place_bet(conn, account_id=account_id, order=order, risk=platform.risk, before_outbox=remember_response)
    except Problem as problem:
        request_span.set_attributes({"bet.outcome": "refused", "problem.type": problem.slug})
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
    request_span.set_attributes({"bet.id": view["id"], "bet.outcome": "placed"})
    platform.risk.committed(
        account_id=account_id,
        selection_id=view["selection_id"],
        stake_minor=view["stake_minor"],
        liability_minor=view["potential_payout_minor"] - view["stake_minor"],
    )
    return Response(stored["text"], status_code=201, media_type="application/json")


@router.get(
    "/v1/bets/{bet_id}",
    responses=problems(
        401,
        404,
        422,
        503,
        descriptions={
            404: "No bet of yours has this id (`unknown-bet`); other players' bets look the same.",
            422: "`bet_id` is not an integer (`validation`).",
        },
    ),
)
def get_bet(bet_id: PathId, account_id: PlayerId, platform: PlatformDep) -> BetDetail:
    with reader(platform.engine).begin() as conn:
        return BetDetail.model_validate(bet_view(conn, bet_id, account_id=account_id))
