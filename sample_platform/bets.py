"""Bet placement: price binding, risk limits, the stake hold and its outbox event, in one transaction.

Price binding: the bet is bound to the selection's odds at commit. The market row is share-locked
for the transaction, so no price change can slip in between the check and the commit. If the
client's `price_version` is not current, or its `odds` differ from the current odds, the bet is
refused with 409 unless the client opted in: `accept_price_change="better"` takes the current price
when it is at least the requested one, `"any"` takes whatever is current.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import Connection, select, update

from sample_platform import ledger
from sample_platform.accounts import require_account
from sample_platform.clock import as_utc, utcnow
from sample_platform.markets import format_odds
from sample_platform.models import Bet, BetStatus, LedgerTransaction, Market, MarketStatus, Selection, table
from sample_platform.outbox import synthetic_mark, write_event
from sample_platform.problems import Problem
from sample_platform.risk import RiskEngine, limit_problem
from sample_platform.telemetry import tracer
from sample_platform.tracecontext import current_traceparent

markets_t = table(Market)
selections_t = table(Selection)
bets_t = table(Bet)
txns_t = table(LedgerTransaction)
postings_t = ledger.postings_t


@dataclass(frozen=True)
class BetOrder:
    market_id: int
    selection_id: int
    stake_minor: int
    odds: Decimal
    price_version: int
    accept_price_change: Literal["none", "better", "any"] = "none"


def place_bet(
    conn: Connection,
    *,
    account_id: int,
    order: BetOrder,
    risk: RiskEngine,
    before_outbox: Callable[[dict], None] | None = None,
) -> dict:
    """Place a bet inside the caller's transaction; raises Problem (and the caller rolls back) on refusal.

    `before_outbox(view)` runs in the same transaction, after the bet is written and before its
    outbox event: the API stores the idempotent response there, so both commit (or not) together.
    """
    market = conn.execute(
        select(markets_t).where(markets_t.c.id == order.market_id).with_for_update(read=True)
    ).one_or_none()
    if market is None:
        raise Problem(
            422, "unknown-market", "Unknown market", f"no market has id {order.market_id}; list them at GET /v1/markets"
        )
    if market.status != MarketStatus.OPEN.value:
        raise Problem(
            409, "market-closed", "Market closed", f"market {market.id} is {market.status} and takes no more bets"
        )
    selection = conn.execute(
        select(selections_t).where(selections_t.c.id == order.selection_id, selections_t.c.market_id == market.id)
    ).one_or_none()
    if selection is None:
        raise Problem(
            422, "unknown-selection", "Unknown selection", f"market {market.id} has no selection {order.selection_id}"
        )
    current = Decimal(selection.odds)
    moved = order.price_version != market.price_version or order.odds != current
    if moved and not (
        order.accept_price_change == "any" or (order.accept_price_change == "better" and current >= order.odds)
    ):
        raise Problem(
            409,
            "price-changed",
            "Price changed",
            f"selection {selection.id} is now {selection.odds} at price version {market.price_version} "
            f"(you asked for {format_odds(order.odds)} at version {order.price_version}); resubmit with the "
            'current price, or set accept_price_change to "better" or "any"',
            current_odds=selection.odds,
            current_price_version=market.price_version,
        )
    payout = ledger.payout_for(order.stake_minor, current)
    liability = payout - order.stake_minor
    with tracer.start_as_current_span("risk check"):
        risk.precheck(
            conn,
            account_id=account_id,
            selection_id=selection.id,
            stake_minor=order.stake_minor,
            liability_minor=liability,
        )
    limits = risk.limits
    # The authoritative checks, under row locks: the cache above may lag other processes.
    within_limit = conn.execute(
        update(selections_t)
        .where(
            selections_t.c.id == selection.id,
            selections_t.c.liability_minor + liability <= limits.max_liability_minor,
        )
        .values(liability_minor=selections_t.c.liability_minor + liability)
    ).rowcount
    if not within_limit:
        raise limit_problem(
            "max_liability_minor",
            limits.max_liability_minor,
            f"this bet would take selection {selection.id}'s liability beyond the maximum liability per selection",
        )
    accounts = ledger.player_accounts(conn, account_id)
    # Lock wallet and held in ascending id order (the order every ledger writer uses), then read.
    held = dict(
        conn.execute(
            select(ledger.accounts_t.c.id, ledger.accounts_t.c.balance_minor)
            .where(ledger.accounts_t.c.id.in_((accounts.wallet, accounts.held)))
            .order_by(ledger.accounts_t.c.id)
            .with_for_update()
        ).all()
    )[accounts.held]
    if held + order.stake_minor > limits.max_exposure_minor:
        raise limit_problem(
            "max_exposure_minor",
            limits.max_exposure_minor,
            "this bet would take your open stakes beyond the maximum exposure per account",
        )
    now = utcnow()
    bet_id = conn.execute(
        bets_t.insert()
        .values(
            account_id=account_id,
            market_id=market.id,
            selection_id=selection.id,
            stake_minor=order.stake_minor,
            odds=selection.odds,
            requested_odds=format_odds(order.odds),
            price_version=market.price_version,
            potential_payout_minor=payout,
            status=BetStatus.OPEN.value,
            settlement_version=0,
            placed_at=now,
            placement_traceparent=current_traceparent(),
        )
        .returning(bets_t.c.id)
    ).scalar_one()
    txn_id = ledger.post(
        conn,
        kind="bet_hold",
        postings=[(accounts.wallet, -order.stake_minor), (accounts.held, order.stake_minor)],
        bet_id=bet_id,
    )
    view = {
        "id": bet_id,
        "status": BetStatus.OPEN.value,
        "market_id": market.id,
        "selection_id": selection.id,
        "stake_minor": order.stake_minor,
        "odds": selection.odds,
        "requested_odds": format_odds(order.odds),
        "price_version": market.price_version,
        "potential_payout_minor": payout,
        "placed_at": now.isoformat(),
        "settled_at": None,
    }
    if before_outbox is not None:
        before_outbox(view)
    synthetic = market.synthetic or require_account(conn, account_id)
    with tracer.start_as_current_span("outbox write", attributes={"bet.id": bet_id, "bet.market_id": market.id}):
        _write_placed(conn, bet_id, account_id, market, selection, order, payout, txn_id, synthetic)
    return view


def _write_placed(
    conn: Connection,
    bet_id: int,
    account_id: int,
    market: Any,
    selection: Any,
    order: BetOrder,
    payout: int,
    txn_id: int,
    synthetic: bool,
) -> None:
    write_event(
        conn,
        aggregate_type="bet",
        aggregate_id=bet_id,
        event_type="bet.placed",
        payload={
            "bet_id": bet_id,
            "account_id": account_id,
            "market_id": market.id,
            "selection_id": selection.id,
            "stake_minor": order.stake_minor,
            "odds": selection.odds,
            "price_version": market.price_version,
            "potential_payout_minor": payout,
            "transaction_id": txn_id,
            **synthetic_mark(synthetic),
        },
    )


def bet_view(conn: Connection, bet_id: int, *, account_id: int, with_ledger: bool = True) -> dict:
    bet = conn.execute(select(bets_t).where(bets_t.c.id == bet_id)).one_or_none()
    if bet is None or bet.account_id != account_id:
        # Someone else's bet looks exactly like a missing one.
        raise Problem(404, "unknown-bet", "Unknown bet", f"you have no bet with id {bet_id}")
    view = {
        "id": bet.id,
        "status": bet.status,
        "market_id": bet.market_id,
        "selection_id": bet.selection_id,
        "stake_minor": bet.stake_minor,
        "odds": bet.odds,
        "requested_odds": bet.requested_odds,
        "price_version": bet.price_version,
        "potential_payout_minor": bet.potential_payout_minor,
        "placed_at": as_utc(bet.placed_at).isoformat(),
        "settled_at": as_utc(bet.settled_at).isoformat() if bet.settled_at else None,
    }
    if with_ledger:
        view["ledger"] = _ledger_entries(conn, bet_id)
    return view


def _ledger_entries(conn: Connection, bet_id: int) -> list[dict]:
    rows = conn.execute(
        select(
            txns_t.c.id,
            txns_t.c.kind,
            txns_t.c.reverses_id,
            txns_t.c.created_at,
            ledger.accounts_t.c.kind.label("account"),
            postings_t.c.amount_minor,
        )
        .join(postings_t, postings_t.c.transaction_id == txns_t.c.id)
        .join(ledger.accounts_t, ledger.accounts_t.c.id == postings_t.c.ledger_account_id)
        .where(txns_t.c.bet_id == bet_id)
        .order_by(txns_t.c.id, postings_t.c.id)
    ).all()
    entries: dict[int, dict] = {}
    for row in rows:
        entry = entries.setdefault(
            row.id,
            {
                "transaction_id": row.id,
                "kind": row.kind,
                "reverses_transaction_id": row.reverses_id,
                "created_at": as_utc(row.created_at).isoformat(),
                "postings": [],
            },
        )
        entry["postings"].append({"account": row.account, "amount_minor": row.amount_minor})
    return list(entries.values())
