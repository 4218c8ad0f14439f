"""Markets and their prices; results and settlement (exactly once per bet, resumable after a crash).

Settlement runs in batches, each batch one transaction that settles its bets, posts their ledger
transactions and writes their outbox events. A bet is settled only while its `settlement_version`
is behind the market's `result_version`, so repeating a settlement (after a crash, or twice at
once) settles each bet exactly once, and a changed result resettles through reversing entries.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Engine, false, select, update

from sample_platform import ledger
from sample_platform.accounts import synthetic_accounts
from sample_platform.clock import utcnow
from sample_platform.db import reader
from sample_platform.models import (
    Bet,
    BetStatus,
    LedgerAccountKind,
    Market,
    MarketStatus,
    PriceChange,
    Selection,
    table,
)
from sample_platform.outbox import PendingEvent, synthetic_mark, write_event, write_events
from sample_platform.problems import Problem
from sample_platform.telemetry import tracer
from sample_platform.tracecontext import MAX_LINKS, span_context_of

markets_t = table(Market)
selections_t = table(Selection)
prices_t = table(PriceChange)
bets_t = table(Bet)


def format_odds(odds: Decimal) -> str:
    return f"{odds:.2f}" if odds == odds.quantize(Decimal("0.01")) else format(odds.normalize(), "f")


def unknown_market(market_id: int) -> Problem:
    return Problem(
        404, "unknown-market", "Unknown market", f"no market has id {market_id}; list them at GET /v1/markets"
    )


def create_market(engine: Engine, *, name: str, selections: list[tuple[str, Decimal]], synthetic: bool = False) -> dict:
    """Open a market at price version 1. A `synthetic` one is a probe's: not listed, its bets' events marked."""
    now = utcnow()
    with engine.begin() as conn:
        market_id = conn.execute(
            markets_t.insert()
            .values(
                name=name,
                status=MarketStatus.OPEN.value,
                price_version=1,
                result_version=0,
                void=False,
                created_at=now,
                synthetic=synthetic,
            )
            .returning(markets_t.c.id)
        ).scalar_one()
        for sel_name, odds in selections:
            sel_id = conn.execute(
                selections_t.insert()
                .values(market_id=market_id, name=sel_name, odds=format_odds(odds), liability_minor=0)
                .returning(selections_t.c.id)
            ).scalar_one()
            conn.execute(
                prices_t.insert().values(
                    market_id=market_id, price_version=1, selection_id=sel_id, odds=format_odds(odds), changed_at=now
                )
            )
        view = market_view(conn, market_id)
        # The event keeps the shape it has always had; only a probe's market adds its mark.
        payload = {key: value for key, value in view.items() if key != "synthetic"} | synthetic_mark(synthetic)
        write_event(conn, aggregate_type="market", aggregate_id=market_id, event_type="market.created", payload=payload)
    return view


def market_view(conn: Connection, market_id: int) -> dict:
    market = conn.execute(select(markets_t).where(markets_t.c.id == market_id)).one_or_none()
    if market is None:
        raise unknown_market(market_id)
    sels = conn.execute(
        select(selections_t.c.id, selections_t.c.name, selections_t.c.odds)
        .where(selections_t.c.market_id == market_id)
        .order_by(selections_t.c.id)
    ).all()
    return {
        "id": market.id,
        "name": market.name,
        "status": market.status,
        "price_version": market.price_version,
        "result": _result_view(market),
        "selections": [{"id": s.id, "name": s.name, "odds": s.odds} for s in sels],
        "synthetic": bool(market.synthetic),
    }


def _result_view(market) -> dict | None:
    if market.result_version == 0:
        return None
    return {"version": market.result_version, "void": market.void, "winner_selection_id": market.winner_selection_id}


def list_markets(engine: Engine) -> list[dict]:
    """Every market but the synthetic ones (probes'), which players are never shown."""
    with reader(engine).begin() as conn:
        ids = (
            conn.execute(select(markets_t.c.id).where(markets_t.c.synthetic == false()).order_by(markets_t.c.id))
            .scalars()
            .all()
        )
        return [market_view(conn, market_id) for market_id in ids]


def get_market(engine: Engine, market_id: int) -> dict:
    with reader(engine).begin() as conn:
        return market_view(conn, market_id)


def change_odds(engine: Engine, *, market_id: int, selection_id: int, odds: Decimal) -> dict:
    """A new price for one selection: the market's price version goes up by one."""
    with engine.begin() as conn:
        market = conn.execute(select(markets_t).where(markets_t.c.id == market_id).with_for_update()).one_or_none()
        if market is None:
            raise unknown_market(market_id)
        if market.status != MarketStatus.OPEN.value:
            raise Problem(
                409, "market-closed", "Market closed", f"market {market_id} is {market.status}; prices are final"
            )
        found = conn.execute(
            update(selections_t)
            .where(selections_t.c.id == selection_id, selections_t.c.market_id == market_id)
            .values(odds=format_odds(odds))
        ).rowcount
        if not found:
            raise Problem(
                422, "unknown-selection", "Unknown selection", f"market {market_id} has no selection {selection_id}"
            )
        version = market.price_version + 1
        conn.execute(update(markets_t).where(markets_t.c.id == market_id).values(price_version=version))
        conn.execute(
            prices_t.insert().values(
                market_id=market_id,
                price_version=version,
                selection_id=selection_id,
                odds=format_odds(odds),
                changed_at=utcnow(),
            )
        )
        write_event(
            conn,
            aggregate_type="market",
            aggregate_id=market_id,
            event_type="market.odds_changed",
            payload={
                "market_id": market_id,
                "selection_id": selection_id,
                "odds": format_odds(odds),
                "price_version": version,
            },
        )
        return market_view(conn, market_id)


@dataclass
class SettlementReport:
    market_id: int
    result_version: int
    settled: int = 0
    resettled: int = 0
    won: int = 0
    lost: int = 0
    void: int = 0
    complete: bool = False

    def as_dict(self) -> dict:
        return asdict(self)


def set_result(engine: Engine, *, market_id: int, winner_selection_id: int | None, void: bool) -> int:
    """Record the result; returns the result version. The same result again changes nothing."""
    if void == (winner_selection_id is not None):
        raise Problem(
            422,
            "result-invalid",
            "Result invalid",
            'send either {"winner_selection_id": <id>} or {"void": true}, not both and not neither',
        )
    with engine.begin() as conn:
        market = conn.execute(select(markets_t).where(markets_t.c.id == market_id).with_for_update()).one_or_none()
        if market is None:
            raise unknown_market(market_id)
        if winner_selection_id is not None:
            owner = conn.execute(
                select(selections_t.c.market_id).where(selections_t.c.id == winner_selection_id)
            ).scalar()
            if owner != market_id:
                raise Problem(
                    422,
                    "unknown-selection",
                    "Unknown selection",
                    f"market {market_id} has no selection {winner_selection_id}",
                )
        same = market.result_version > 0 and market.void == void and market.winner_selection_id == winner_selection_id
        if same:
            return market.result_version
        version = market.result_version + 1
        conn.execute(
            update(markets_t)
            .where(markets_t.c.id == market_id)
            .values(
                result_version=version,
                winner_selection_id=winner_selection_id,
                void=void,
                status=MarketStatus.SETTLING.value,
            )
        )
        write_event(
            conn,
            aggregate_type="market",
            aggregate_id=market_id,
            event_type="market.resulted",
            payload={
                "market_id": market_id,
                "result_version": version,
                "winner_selection_id": winner_selection_id,
                "void": void,
            },
        )
        return version


def settle_market(engine: Engine, *, market_id: int, batch_size: int = 100) -> SettlementReport:
    """Settle (or resettle) every bet behind the market's result version; safe to repeat at any time."""
    with reader(engine).begin() as conn:
        market = conn.execute(select(markets_t).where(markets_t.c.id == market_id)).one_or_none()
    if market is None:
        raise unknown_market(market_id)
    if market.result_version == 0:
        raise Problem(409, "market-unresulted", "Market has no result", f"market {market_id} has no result to settle")
    report = SettlementReport(market_id=market_id, result_version=market.result_version)
    while _settle_batch(engine, market_id, batch_size, report):
        pass
    with engine.begin() as conn:
        current = conn.execute(select(markets_t).where(markets_t.c.id == market_id).with_for_update()).one()
        behind = conn.execute(
            select(bets_t.c.id)
            .where(bets_t.c.market_id == market_id, bets_t.c.settlement_version < current.result_version)
            .limit(1)
        ).first()
        if behind is None:
            conn.execute(update(markets_t).where(markets_t.c.id == market_id).values(status=MarketStatus.SETTLED.value))
            report.complete = current.result_version == report.result_version
    return report


def _settle_batch(engine: Engine, market_id: int, batch_size: int, report: SettlementReport) -> bool:
    """One batch of bets settled in one transaction; its span links to each bet's placement."""
    with tracer.start_as_current_span("settlement batch", attributes={"bet.market_id": market_id}) as span:
        return _settle_batch_in(span, engine, market_id, batch_size, report)


def _settle_batch_in(span: Any, engine: Engine, market_id: int, batch_size: int, report: SettlementReport) -> bool:
    with engine.begin() as conn:
        # Holding the market row keeps the result fixed for this batch (a new result waits for us).
        market = conn.execute(select(markets_t).where(markets_t.c.id == market_id).with_for_update()).one()
        report.result_version = market.result_version
        bets = conn.execute(
            select(bets_t)
            .where(bets_t.c.market_id == market_id, bets_t.c.settlement_version < market.result_version)
            .order_by(bets_t.c.id)
            .limit(batch_size)
            .with_for_update()
        ).all()
        if not bets:
            return False
        span.set_attribute("platform.settlement.bets", len(bets))
        for bet in bets[:MAX_LINKS]:
            placed = span_context_of(bet.placement_traceparent)
            if placed is not None:
                span.add_link(placed, {"bet.id": bet.id})
        house = ledger.system_account(conn, LedgerAccountKind.HOUSE)
        # Lock every ledger account the batch will touch up front, in ascending id order, the
        # order bet placement and deposits use too: otherwise a batch that reaches one player's
        # wallet after that player's held account can deadlock with a bet being placed.
        conn.execute(
            select(ledger.accounts_t.c.id)
            .where(
                ledger.accounts_t.c.owner_account_id.in_({bet.account_id for bet in bets})
                | (ledger.accounts_t.c.id == house)
            )
            .order_by(ledger.accounts_t.c.id)
            .with_for_update()
        ).all()
        now = utcnow()
        events: list[PendingEvent] = []
        probes = synthetic_accounts(conn, {bet.account_id for bet in bets})
        for bet in bets:
            mark = synthetic_mark(market.synthetic or bet.account_id in probes)
            _settle_bet(conn, bet, market, house, now, report, events, mark)
        write_events(conn, events)
        return True


def _settle_bet(
    conn: Connection,
    bet,
    market,
    house: int,
    now,
    report: SettlementReport,
    events: list[PendingEvent],
    mark: dict[str, bool],
) -> None:
    accounts = ledger.player_accounts(conn, bet.account_id)
    resettling = bet.status != BetStatus.OPEN.value
    if resettling:
        reversal_id = ledger.reverse(conn, bet.settlement_transaction_id)
        events.append(
            PendingEvent(
                aggregate_type="bet",
                aggregate_id=bet.id,
                event_type="bet.settlement_reversed",
                payload={
                    "bet_id": bet.id,
                    "account_id": bet.account_id,
                    "reversed_transaction_id": bet.settlement_transaction_id,
                    "transaction_id": reversal_id,
                    "previous_status": bet.status,
                    "result_version": market.result_version,
                    **mark,
                },
            )
        )
        report.resettled += 1
    else:
        # An open bet leaves the selection's liability once it is settled.
        conn.execute(
            update(selections_t)
            .where(selections_t.c.id == bet.selection_id)
            .values(liability_minor=selections_t.c.liability_minor - (bet.potential_payout_minor - bet.stake_minor))
        )
    stake, payout = bet.stake_minor, bet.potential_payout_minor
    if market.void:
        status, kind, lines, paid = (
            BetStatus.VOID,
            "bet_void",
            [(accounts.held, -stake), (accounts.wallet, stake)],
            stake,
        )
    elif market.winner_selection_id == bet.selection_id:
        status, kind, paid = BetStatus.WON, "bet_won", payout
        lines = [(accounts.held, -stake), (accounts.wallet, payout), (house, stake - payout)]
    else:
        status, kind, lines, paid = BetStatus.LOST, "bet_lost", [(accounts.held, -stake), (house, stake)], 0
    txn_id = ledger.post(conn, kind=kind, postings=lines, bet_id=bet.id)
    conn.execute(
        update(bets_t)
        .where(bets_t.c.id == bet.id)
        .values(
            status=status.value,
            settlement_version=market.result_version,
            settlement_transaction_id=txn_id,
            settled_at=now,
        )
    )
    events.append(
        PendingEvent(
            aggregate_type="bet",
            aggregate_id=bet.id,
            event_type="bet.settled",
            payload={
                "bet_id": bet.id,
                "account_id": bet.account_id,
                "market_id": market.id,
                "selection_id": bet.selection_id,
                "outcome": status.value,
                "stake_minor": stake,
                "odds": bet.odds,
                "payout_minor": paid,
                "transaction_id": txn_id,
                "result_version": market.result_version,
                **mark,
            },
        )
    )
    report.settled += 1
    setattr(report, status.value, getattr(report, status.value) + 1)
