"""Double-entry ledger: balanced, immutable transactions of postings in integer minor units.

    txn_id = post(conn, kind="deposit", postings=[(external_id, -500), (wallet_id, 500)])

Corrections are reversing transactions (`reverse`), never edits. Each account keeps a running balance
that always equals the sum of its postings; `check_ledger` proves it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal

from sqlalchemy import Connection, func, select, update

from sample_platform.clock import utcnow
from sample_platform.models import Bet, LedgerAccount, LedgerAccountKind, LedgerTransaction, Posting, table
from sample_platform.problems import Problem

accounts_t = table(LedgerAccount)
txns_t = table(LedgerTransaction)
postings_t = table(Posting)
bets_t = table(Bet)

NON_NEGATIVE_KINDS = (LedgerAccountKind.WALLET.value, LedgerAccountKind.HELD.value)


class UnbalancedTransaction(ValueError):
    pass


def payout_for(stake_minor: int, odds: Decimal) -> int:
    """What a winning bet pays back, stake included, rounded down to the minor unit."""
    return int((Decimal(stake_minor) * odds).to_integral_value(rounding=ROUND_DOWN))


@dataclass(frozen=True)
class PlayerAccounts:
    wallet: int
    held: int
    receivable: int


def system_account(conn: Connection, kind: LedgerAccountKind) -> int:
    account_id = conn.execute(
        select(accounts_t.c.id).where(accounts_t.c.owner_account_id.is_(None), accounts_t.c.kind == kind.value)
    ).scalar_one_or_none()
    if account_id is None:
        raise RuntimeError(f"ledger account {kind.value!r} is missing; run `controlplane platform migrate`")
    return account_id


def open_player_accounts(conn: Connection, owner_account_id: int) -> PlayerAccounts:
    ids = {}
    for kind in (LedgerAccountKind.WALLET, LedgerAccountKind.HELD, LedgerAccountKind.RECEIVABLE):
        ids[kind] = conn.execute(
            accounts_t.insert()
            .values(owner_account_id=owner_account_id, kind=kind.value, balance_minor=0)
            .returning(accounts_t.c.id)
        ).scalar_one()
    return PlayerAccounts(ids[LedgerAccountKind.WALLET], ids[LedgerAccountKind.HELD], ids[LedgerAccountKind.RECEIVABLE])


def player_accounts(conn: Connection, owner_account_id: int) -> PlayerAccounts:
    rows = dict(
        conn.execute(
            select(accounts_t.c.kind, accounts_t.c.id).where(accounts_t.c.owner_account_id == owner_account_id)
        ).all()
    )
    return PlayerAccounts(rows["wallet"], rows["held"], rows["receivable"])


def balances(conn: Connection, owner_account_id: int) -> dict[str, int]:
    return dict(
        conn.execute(
            select(accounts_t.c.kind, accounts_t.c.balance_minor).where(
                accounts_t.c.owner_account_id == owner_account_id
            )
        ).all()
    )


def post(
    conn: Connection,
    *,
    kind: str,
    postings: list[tuple[int, int]],
    bet_id: int | None = None,
    reverses_id: int | None = None,
) -> int:
    """Write one balanced transaction and move the running balances; returns its id.

    Raises `Problem(422, "insufficient-funds")` if a wallet or held account would go below zero,
    in which case the caller's database transaction must roll back (it does, leaving the block).
    """
    merged: dict[int, int] = {}
    for account_id, amount in postings:
        merged[account_id] = merged.get(account_id, 0) + amount
    if sum(merged.values()) != 0:
        raise UnbalancedTransaction(f"{kind}: postings sum to {sum(merged.values())}, not 0")
    txn_id = conn.execute(
        txns_t.insert()
        .values(kind=kind, bet_id=bet_id, reverses_id=reverses_id, created_at=utcnow())
        .returning(txns_t.c.id)
    ).scalar_one()
    lines = [(a, amt) for a, amt in sorted(merged.items()) if amt != 0]
    conn.execute(
        postings_t.insert(),
        [{"transaction_id": txn_id, "ledger_account_id": a, "amount_minor": amt} for a, amt in lines],
    )
    # Ascending account id: concurrent transactions lock rows in one order and never deadlock.
    for account_id, amount in lines:
        changed = conn.execute(
            update(accounts_t)
            .where(
                accounts_t.c.id == account_id,
                (accounts_t.c.kind.not_in(NON_NEGATIVE_KINDS)) | (accounts_t.c.balance_minor + amount >= 0),
            )
            .values(balance_minor=accounts_t.c.balance_minor + amount)
        ).rowcount
        if changed != 1:
            raise Problem(
                422,
                "insufficient-funds",
                "Insufficient funds",
                f"the {kind} needs {-amount} minor units that the account does not have",
            )
    return txn_id


def reverse(conn: Connection, txn_id: int, *, kind: str = "reversal") -> int:
    """Post the mirror image of transaction `txn_id`.

    If taking money back would leave a player's wallet below zero, the shortfall is booked to the
    player's receivable account (the player owes it) so the wallet itself never goes negative.
    """
    original = conn.execute(select(txns_t.c.bet_id).where(txns_t.c.id == txn_id)).one()
    lines = conn.execute(
        select(
            postings_t.c.ledger_account_id, postings_t.c.amount_minor, accounts_t.c.kind, accounts_t.c.owner_account_id
        )
        .join(accounts_t, accounts_t.c.id == postings_t.c.ledger_account_id)
        .where(postings_t.c.transaction_id == txn_id)
    ).all()
    mirrored: list[tuple[int, int]] = []
    for account_id, amount, account_kind, owner in lines:
        take = -amount
        if account_kind == LedgerAccountKind.WALLET.value and take < 0:
            balance = conn.execute(
                select(accounts_t.c.balance_minor).where(accounts_t.c.id == account_id).with_for_update()
            ).scalar_one()
            if balance < -take:
                shortfall = -take - balance
                take = -balance
                mirrored.append((player_accounts(conn, owner).receivable, -shortfall))
        mirrored.append((account_id, take))
    return post(conn, kind=kind, postings=mirrored, bet_id=original.bet_id, reverses_id=txn_id)


@dataclass
class LedgerCheck:
    """The ledger's invariants, evaluated in one consistent read."""

    transactions: int = 0
    total_minor: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_ledger(conn: Connection) -> LedgerCheck:
    result = LedgerCheck()
    result.transactions = conn.execute(select(func.count()).select_from(txns_t)).scalar_one()
    unbalanced = conn.execute(
        select(postings_t.c.transaction_id, func.sum(postings_t.c.amount_minor))
        .group_by(postings_t.c.transaction_id)
        .having(func.sum(postings_t.c.amount_minor) != 0)
    ).all()
    for txn_id, total in unbalanced:
        result.problems.append(f"transaction {txn_id} does not balance: postings sum to {total}")
    posted = dict(
        conn.execute(
            select(postings_t.c.ledger_account_id, func.sum(postings_t.c.amount_minor)).group_by(
                postings_t.c.ledger_account_id
            )
        ).all()
    )
    for account_id, kind, balance in conn.execute(
        select(accounts_t.c.id, accounts_t.c.kind, accounts_t.c.balance_minor)
    ).all():
        result.total_minor += balance
        if balance != posted.get(account_id, 0):
            result.problems.append(
                f"ledger account {account_id} ({kind}) balance {balance} != sum of postings {posted.get(account_id, 0)}"
            )
        if kind in NON_NEGATIVE_KINDS and balance < 0:
            result.problems.append(f"ledger account {account_id} ({kind}) is negative: {balance}")
    if result.total_minor != 0:
        result.problems.append(f"balances sum to {result.total_minor}, not 0")
    result.problems.extend(_check_bets(conn))
    return result


def _check_bets(conn: Connection) -> list[str]:
    """Each bet has one hold and, once settled, exactly one standing settlement of the right size."""
    problems: list[str] = []
    counts: dict[int, dict[str, int]] = {}
    for bet_id, kind, reverses_id, n in conn.execute(
        select(txns_t.c.bet_id, txns_t.c.kind, txns_t.c.reverses_id.is_not(None), func.count())
        .where(txns_t.c.bet_id.is_not(None))
        .group_by(txns_t.c.bet_id, txns_t.c.kind, txns_t.c.reverses_id.is_not(None))
    ).all():
        per = counts.setdefault(bet_id, {"hold": 0, "settle": 0, "reversal": 0})
        if reverses_id:
            per["reversal"] += n
        elif kind == "bet_hold":
            per["hold"] += n
        else:
            per["settle"] += n
    house_net = dict(
        conn.execute(
            select(txns_t.c.bet_id, func.sum(postings_t.c.amount_minor))
            .join(postings_t, postings_t.c.transaction_id == txns_t.c.id)
            .join(accounts_t, accounts_t.c.id == postings_t.c.ledger_account_id)
            .where(txns_t.c.bet_id.is_not(None), accounts_t.c.kind == LedgerAccountKind.HOUSE.value)
            .group_by(txns_t.c.bet_id)
        ).all()
    )
    for bet in conn.execute(
        select(bets_t.c.id, bets_t.c.status, bets_t.c.stake_minor, bets_t.c.potential_payout_minor)
    ).all():
        per = counts.get(bet.id, {"hold": 0, "settle": 0, "reversal": 0})
        standing = per["settle"] - per["reversal"]
        if per["hold"] != 1:
            problems.append(f"bet {bet.id} has {per['hold']} holds, not 1")
        expected_standing = 0 if bet.status == "open" else 1
        if standing != expected_standing:
            problems.append(f"bet {bet.id} ({bet.status}) has {standing} standing settlements, not {expected_standing}")
        expected_house = {
            "open": 0,
            "void": 0,
            "lost": bet.stake_minor,
            "won": bet.stake_minor - bet.potential_payout_minor,
        }[bet.status]
        if house_net.get(bet.id, 0) != expected_house:
            problems.append(
                f"bet {bet.id} ({bet.status}) moved {house_net.get(bet.id, 0)} to the house, expected {expected_house}"
            )
    return problems
