"""Request and response bodies of the platform's API. Requests are validated strictly (no silent type
coercion of money); responses describe exactly the JSON the routes send."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import Path
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonDict

# Decimal odds above 1 and at most 1000, up to 3 decimals, no leading zero: what _check_odds accepts, in
# the document too (1.xxx but not 1.000; 2 to 999.999; 1000 with zeros only).
ODDS_PATTERN = (
    r"^(1\.([1-9][0-9]{0,2}|0[1-9][0-9]?|00[1-9])|[2-9](\.[0-9]{1,3})?|[1-9][0-9]{1,2}(\.[0-9]{1,3})?"
    r"|1000(\.0{1,3})?)$"
)
MAX_ODDS = Decimal("1000")
USERNAME_PATTERN = r"^[A-Za-z0-9_.\-]+$"
MAX_ID = 2**63 - 1  # every id column is a signed 64-bit integer (BIGINT, SQLite INTEGER)
MAX_VERSION = 2**31 - 1  # price versions are 32-bit
MAX_MINOR = 2**63 - 1  # money columns are BIGINT minor units


def _whole(value: object) -> object:
    """A number with no fraction, such as 100.0, is the integer it equals: JSON does not tell 100.0 from
    100, and the document's "integer" admits both. Anything else goes on to strict validation (a
    string, a boolean or 2.5 is still refused)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Decimal) and value.is_finite() and abs(value) <= MAX_ID and value == value.to_integral_value():
        return int(value)  # the API reads JSON numbers with a fraction part as Decimal
    return value


# An integer field is Annotated[StrictInt, Field(bounds), Whole]: the bounds before the validator, so
# that they reach the document as minimum and maximum.
Whole = BeforeValidator(_whole)
Id = Annotated[StrictInt, Field(ge=1, le=MAX_ID, description=f"An id: 1 to {MAX_ID}."), Whole]
PathId = Annotated[int, Path(ge=1, le=MAX_ID, description=f"An id: 1 to {MAX_ID}.")]


def _check_odds(value: str) -> str:
    odds = Decimal(value)
    if not Decimal("1") < odds <= MAX_ODDS:
        raise ValueError(f"odds must be decimal odds above 1.00 and at most {MAX_ODDS}, e.g. '2.50'")
    return value


NO_NUL = "^[^\\u0000]*$"  # JSON Schema (ECMA-262) for: no NUL character


def _document_no_nul(schema: JsonDict) -> None:
    """Say in the document what StrictModel enforces: no string field holds a NUL character."""
    properties: Any = schema.get("properties", {})
    for prop in properties.values():
        for branch in [prop, *prop.get("anyOf", [])]:
            if isinstance(branch, dict) and branch.get("type") == "string" and "pattern" not in branch:
                branch["pattern"] = NO_NUL


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra=_document_no_nul)

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: object) -> object:
        # PostgreSQL cannot store NUL in text; no name, password or reason needs one.
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("must not contain the NUL character (\\u0000)")
        return value


class AccountCreate(StrictModel):
    username: str = Field(min_length=1, max_length=64, pattern=USERNAME_PATTERN)
    password: str | None = Field(default=None, min_length=8, max_length=256)
    synthetic: StrictBool = Field(
        default=False,
        description='A probe\'s account: its money events carry `"synthetic": true`, so audit and cost reports '
        "can leave them out.",
    )


class PasswordReset(StrictModel):
    password: str = Field(min_length=8, max_length=256)


class LoginRequest(StrictModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class DepositCreate(StrictModel):
    account_id: Id
    amount_minor: Annotated[StrictInt, Field(ge=1, le=10**12), Whole] = Field(
        description="Integer minor units (pence/cents)."
    )
    reference: str | None = Field(default=None, max_length=200)


class SelectionCreate(StrictModel):
    name: str = Field(min_length=1, max_length=200)
    odds: str = Field(pattern=ODDS_PATTERN, description="Decimal odds as a string, e.g. '2.50'.")
    _odds = field_validator("odds")(_check_odds)


class MarketCreate(StrictModel):
    name: str = Field(min_length=1, max_length=200)
    selections: list[SelectionCreate] = Field(min_length=2, max_length=100)
    synthetic: StrictBool = Field(
        default=False,
        description="A probe's market: left out of GET /v1/markets (GET by id finds it); the money events of its "
        'bets carry `"synthetic": true`.',
    )


class OddsChange(StrictModel):
    selection_id: Id
    odds: str = Field(pattern=ODDS_PATTERN)
    _odds = field_validator("odds")(_check_odds)


# The two shapes of a result, for the document (ResultCreate._winner_or_void enforces them).
_WINNER_ONLY: JsonDict = {"winner_selection_id": {"type": "integer"}, "void": {"const": False}}
_VOID_ONLY: JsonDict = {"void": {"const": True}, "winner_selection_id": {"type": "null"}}
WINNER: JsonDict = {"required": ["winner_selection_id"], "properties": _WINNER_ONLY}
VOID: JsonDict = {"required": ["void"], "properties": _VOID_ONLY}


class ResultCreate(StrictModel):
    """A winner, or void: exactly one of the two (the document says so with oneOf)."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"oneOf": [WINNER, VOID]})

    winner_selection_id: Id | None = None
    void: StrictBool = False

    @model_validator(mode="after")
    def _winner_or_void(self) -> ResultCreate:
        if (self.winner_selection_id is not None) == self.void:
            raise ValueError('send either {"winner_selection_id": <id>} or {"void": true}, not both and not neither')
        return self


class BetCreate(StrictModel):
    market_id: Id
    selection_id: Id
    stake_minor: Annotated[StrictInt, Field(ge=1, le=MAX_MINOR), Whole] = Field(
        description="Integer minor units; must be above zero."
    )
    odds: str = Field(pattern=ODDS_PATTERN, description="The odds the client saw, e.g. '2.50'.")
    price_version: Annotated[StrictInt, Field(ge=1, le=MAX_VERSION), Whole]
    accept_price_change: Literal["none", "better", "any"] = "none"
    _odds = field_validator("odds")(_check_odds)


class FaultCreate(StrictModel):
    kind: Literal["latency", "error_rate", "db_latency", "cache_off", "broker_slow", "lock_wait"]
    ttl_seconds: Annotated[StrictInt, Field(ge=1)] | Annotated[StrictFloat, Field(gt=0, allow_inf_nan=False)] = Field(
        description="The fault ends by itself after this long."
    )
    route: str = Field(
        default="*",
        max_length=200,
        description='For latency and error_rate: "POST /v1/bets", "/v1/bets" (every method) or "*".',
    )
    latency_ms: Annotated[StrictInt, Field(ge=0, le=60_000), Whole] = Field(
        default=0, description="Added delay (latency, db_latency, broker_slow)."
    )
    jitter_ms: Annotated[StrictInt, Field(ge=0, le=60_000), Whole] = Field(
        default=0, description="Uniform jitter around latency_ms."
    )
    error_rate: Annotated[StrictFloat, Field(ge=0, le=1)] | Annotated[StrictInt, Field(ge=0, le=1)] = Field(
        default=0, description="Share of requests failed (error_rate)."
    )
    error_status: Annotated[StrictInt, Field(ge=400, le=599), Whole] = Field(
        default=503, description="Status of injected errors."
    )
    actor: str = Field(default="admin", max_length=100, description="Who set the fault (for the audit log).")
    reason: str | None = Field(default=None, max_length=500)
    synthetic_only: StrictBool = Field(
        default=False,
        description="Act only on synthetic requests (header X-Synthetic); latency and error_rate only.",
    )


# -- responses ------------------------------------------------------------------------------------
# Fields are declared in the order the JSON has them, and strings the domain formats (timestamps,
# odds) stay strings here, so a response serialised through these models is the domain's JSON.

Timestamp = Annotated[
    str, Field(description="UTC timestamp, ISO 8601 with offset.", json_schema_extra={"format": "date-time"})
]


class ResponseModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServiceIndex(ResponseModel):
    service: str
    docs: str
    request_timeout_seconds: float = Field(description="PLATFORM_REQUEST_TIMEOUT_SECONDS: later, 504 `timeout`.")
    synthetic_max_in_flight: int = Field(
        description="PLATFORM_SYNTHETIC_MAX_IN_FLIGHT: synthetic requests admitted at once, apart from players'."
    )


class Health(ResponseModel):
    status: Literal["ok"]


class AccountCreated(ResponseModel):
    id: int
    username: str
    token: str = Field(description="The account's bearer token; shown once, only its hash is stored.")
    synthetic: bool


class PasswordResetDone(ResponseModel):
    id: int
    password_reset: Literal[True]


class LoginSession(ResponseModel):
    token: str = Field(description="A bearer token for the player routes.")
    expires_at: Timestamp
    token_type: Literal["Bearer"]


class DepositReceipt(ResponseModel):
    account_id: int
    transaction_id: int
    balance_minor: int = Field(description="Wallet balance after the deposit, integer minor units.")


class WalletView(ResponseModel):
    account_id: int
    balance_minor: int = Field(description="What the player can bet with, integer minor units.")
    held_minor: int = Field(description="Stakes of open bets, integer minor units.")
    owed_minor: int = Field(description="What the player owes after a resettlement, integer minor units.")


class SelectionView(ResponseModel):
    id: int
    name: str
    odds: str = Field(description="Decimal odds as a string, e.g. '2.50'.", pattern=ODDS_PATTERN)


class ResultView(ResponseModel):
    version: int
    void: bool
    winner_selection_id: int | None


class MarketView(ResponseModel):
    id: int
    name: str
    status: Literal["open", "settling", "settled"]
    price_version: int = Field(description="Goes up by one with every price change; send it with a bet.")
    result: ResultView | None
    selections: list[SelectionView]
    synthetic: bool = Field(description="A probe's market, left out of GET /v1/markets.")


class MarketList(ResponseModel):
    markets: list[MarketView]


class SettlementView(ResponseModel):
    market_id: int
    result_version: int
    settled: int
    resettled: int
    won: int
    lost: int
    void: int
    complete: bool


class MarketSettled(ResponseModel):
    market: MarketView
    settlement: SettlementView


class BetView(ResponseModel):
    id: int
    status: Literal["open", "won", "lost", "void"]
    market_id: int
    selection_id: int
    stake_minor: int
    odds: str = Field(description="The price the bet was accepted at (current at commit).", pattern=ODDS_PATTERN)
    requested_odds: str = Field(description="The price the client asked for.", pattern=ODDS_PATTERN)
    price_version: int
    potential_payout_minor: int
    placed_at: Timestamp
    settled_at: str | None = Field(description="UTC timestamp of settlement, or null while the bet is open.")


class PostingView(ResponseModel):
    account: Literal["wallet", "held", "receivable", "house", "external"]
    amount_minor: int


class LedgerEntryView(ResponseModel):
    transaction_id: int
    kind: str
    reverses_transaction_id: int | None
    created_at: Timestamp
    postings: list[PostingView]


class BetDetail(BetView):
    ledger: list[LedgerEntryView] = Field(description="The bet's ledger transactions, oldest first.")


class FaultView(ResponseModel):
    id: str
    kind: Literal["latency", "error_rate", "db_latency", "cache_off", "broker_slow", "lock_wait"]
    expires_at: Timestamp
    created_at: Timestamp
    route: str
    latency_ms: int
    jitter_ms: int
    # int before float: a rate sent as 0 or 1 is echoed as an integer, as the client wrote it.
    error_rate: int | float
    error_status: int
    actor: str
    reason: str | None
    synthetic_only: bool
    ttl_remaining_seconds: float


class FaultList(ResponseModel):
    faults: list[FaultView]


class FaultsCleared(ResponseModel):
    cleared: list[FaultView]
