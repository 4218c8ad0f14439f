"""Request bodies of the platform's API, validated strictly (no silent type coercion of money)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any, Literal, TypeVar

from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, ValidationError, field_validator
from starlette.requests import ClientDisconnect

from sample_platform.problems import Problem

ModelT = TypeVar("ModelT", bound=BaseModel)
ODDS_PATTERN = r"^[0-9]{1,4}(\.[0-9]{1,3})?$"
MAX_ODDS = Decimal("1000")
USERNAME_PATTERN = r"^[A-Za-z0-9_.\-]+$"


def _check_odds(value: str) -> str:
    odds = Decimal(value)
    if not Decimal("1") < odds <= MAX_ODDS:
        raise ValueError(f"odds must be decimal odds above 1.00 and at most {MAX_ODDS}, e.g. '2.50'")
    return value


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class AccountCreate(StrictModel):
    username: str = Field(min_length=1, max_length=64, pattern=USERNAME_PATTERN)
    password: str | None = Field(default=None, min_length=8, max_length=256)


class PasswordReset(StrictModel):
    password: str = Field(min_length=8, max_length=256)


class LoginRequest(StrictModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


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


class FaultCreate(StrictModel):
    kind: Literal["latency", "error_rate", "db_latency", "cache_off", "broker_slow", "lock_wait"]
    ttl_seconds: StrictInt | StrictFloat = Field(gt=0, description="The fault ends by itself after this long.")
    route: str = Field(
        default="*",
        max_length=200,
        description='For latency and error_rate: "POST /v1/bets", "/v1/bets" (every method) or "*".',
    )
    latency_ms: StrictInt = Field(
        default=0, ge=0, le=60_000, description="Added delay (latency, db_latency, broker_slow)."
    )
    jitter_ms: StrictInt = Field(default=0, ge=0, le=60_000, description="Uniform jitter around latency_ms.")
    error_rate: StrictFloat | StrictInt = Field(
        default=0, ge=0, le=1, description="Share of requests failed (error_rate)."
    )
    error_status: StrictInt = Field(default=503, ge=400, le=599, description="Status of injected errors.")
    actor: str = Field(default="admin", max_length=100, description="Who set the fault (for the audit log).")
    reason: str | None = Field(default=None, max_length=500)


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
