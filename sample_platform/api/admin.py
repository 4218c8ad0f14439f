"""Admin routes: accounts and passwords, deposits, markets, prices and results (the admin bearer token)."""

from __future__ import annotations

from decimal import Decimal

from fastapi import APIRouter

from sample_platform import accounts, markets
from sample_platform.api.deps import AdminOnly, PlatformDep
from sample_platform.api.openapi import problems
from sample_platform.api.routing import JsonBodyRoute
from sample_platform.login import hash_password, set_password
from sample_platform.odds_feed import change_and_publish
from sample_platform.schemas import (
    AccountCreate,
    AccountCreated,
    DepositCreate,
    DepositReceipt,
    MarketCreate,
    MarketSettled,
    MarketView,
    OddsChange,
    PasswordReset,
    PasswordResetDone,
    PathId,
    ResultCreate,
)

router = APIRouter(route_class=JsonBodyRoute, tags=["admin"], dependencies=[AdminOnly])
# Every admin route reads a JSON body behind the admin token.
ADMIN_PROBLEMS = (400, 401, 403, 413, 422, 503)
UNKNOWN_MARKET = {404: "No market has this id (`unknown-market`)."}


@router.post(
    "/v1/accounts",
    status_code=201,
    responses=problems(*ADMIN_PROBLEMS, 409, descriptions={409: "An account has this username (`username-taken`)."}),
)
def create_account(body: AccountCreate, platform: PlatformDep) -> AccountCreated:
    """Open a player account (wallet and ledger accounts) and return its bearer token, shown once."""
    settings = platform.settings
    hashed = hash_password(body.password, log2_n=settings.password_scrypt_log2_n) if body.password else None
    account_id, token = accounts.create_account(
        platform.engine, username=body.username, password_hash=hashed, synthetic=body.synthetic
    )
    return AccountCreated(id=account_id, username=body.username, token=token, synthetic=body.synthetic)


@router.post(
    "/v1/admin/accounts/{account_id}/password",
    responses=problems(*ADMIN_PROBLEMS, 404, descriptions={404: "No account has this id (`unknown-account`)."}),
)
def reset_password(account_id: PathId, body: PasswordReset, platform: PlatformDep) -> PasswordResetDone:
    """Set a new password, lift any lockout and revoke the account's login sessions."""
    set_password(
        platform.engine,
        account_id=account_id,
        password=body.password,
        log2_n=platform.settings.password_scrypt_log2_n,
    )
    return PasswordResetDone(id=account_id, password_reset=True)


@router.post(
    "/v1/admin/deposit",
    responses=problems(*ADMIN_PROBLEMS, 404, descriptions={404: "No account has this id (`unknown-account`)."}),
)
def deposit(body: DepositCreate, platform: PlatformDep) -> DepositReceipt:
    """Credit a player's wallet from outside (a ledger transaction and an outbox event)."""
    receipt = accounts.deposit(
        platform.engine, account_id=body.account_id, amount_minor=body.amount_minor, reference=body.reference
    )
    return DepositReceipt.model_validate(receipt)


@router.post("/v1/admin/markets", status_code=201, responses=problems(*ADMIN_PROBLEMS))
def create_market(body: MarketCreate, platform: PlatformDep) -> MarketView:
    """Open a market at price version 1 (a `synthetic` one, for probes, is not listed to players)."""
    view = markets.create_market(
        platform.engine,
        name=body.name,
        selections=[(s.name, Decimal(s.odds)) for s in body.selections],
        synthetic=body.synthetic,
    )
    return MarketView.model_validate(view)


@router.post(
    "/v1/admin/markets/{market_id}/odds",
    responses=problems(
        *ADMIN_PROBLEMS, 404, 409, descriptions={**UNKNOWN_MARKET, 409: "The market is resulted; prices are final."}
    ),
)
def change_odds(market_id: PathId, body: OddsChange, platform: PlatformDep) -> MarketView:
    """Give one selection a new price; the market's price version goes up by one and the odds stream
    publishes the change once it is committed."""
    view = change_and_publish(
        platform.engine, platform.broker, market_id=market_id, selection_id=body.selection_id, odds=Decimal(body.odds)
    )
    return MarketView.model_validate(view)


@router.post(
    "/v1/admin/markets/{market_id}/result", responses=problems(*ADMIN_PROBLEMS, 404, descriptions=UNKNOWN_MARKET)
)
def result(market_id: PathId, body: ResultCreate, platform: PlatformDep) -> MarketSettled:
    """Record the result and settle every bet on the market, exactly once each.

    Repeating the same result finishes an interrupted settlement and changes nothing else;
    a different result resettles the market's bets through reversing entries."""
    engine = platform.engine
    markets.set_result(engine, market_id=market_id, winner_selection_id=body.winner_selection_id, void=body.void)
    try:
        report = markets.settle_market(engine, market_id=market_id, batch_size=platform.settings.settlement_batch_size)
    finally:
        platform.risk.settled()
    return MarketSettled.model_validate(
        {"market": markets.get_market(engine, market_id), "settlement": report.as_dict()}
    )
