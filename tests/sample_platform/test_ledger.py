"""Invariants 1-3 at the ledger level: balanced transactions, no negative wallet, checks that can fail."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import text

from sample_platform import ledger
from sample_platform.accounts import create_account, deposit
from sample_platform.db import reader
from sample_platform.models import LedgerAccountKind
from sample_platform.problems import Problem


def test_unbalanced_transaction_is_refused(engine) -> None:
    account_id, _ = create_account(engine, username="u1")
    with pytest.raises(ledger.UnbalancedTransaction), engine.begin() as conn:
        wallet = ledger.player_accounts(conn, account_id).wallet
        ledger.post(conn, kind="deposit", postings=[(wallet, 100)])


def test_wallet_cannot_go_negative(engine) -> None:
    account_id, _ = create_account(engine, username="u2")
    deposit(engine, account_id=account_id, amount_minor=100)
    with pytest.raises(Problem) as refused, engine.begin() as conn:
        accounts = ledger.player_accounts(conn, account_id)
        ledger.post(conn, kind="bet_hold", postings=[(accounts.wallet, -101), (accounts.held, 101)])
    assert refused.value.slug == "insufficient-funds"
    with reader(engine).connect() as conn:
        assert ledger.balances(conn, account_id)["wallet"] == 100


def test_reversal_mirrors_the_original(engine) -> None:
    account_id, _ = create_account(engine, username="u3")
    result = deposit(engine, account_id=account_id, amount_minor=250)
    with engine.begin() as conn:
        ledger.reverse(conn, result["transaction_id"])
    with reader(engine).begin() as conn:
        assert ledger.balances(conn, account_id)["wallet"] == 0
        assert ledger.check_ledger(conn).ok


@pytest.mark.parametrize(
    ("stake", "odds", "payout"),
    [(100, "2.50", 250), (333, "1.33", 442), (1, "1.01", 1), (999, "3.333", 3329)],
)
def test_payout_rounds_down_to_the_minor_unit(stake: int, odds: str, payout: int) -> None:
    assert ledger.payout_for(stake, Decimal(odds)) == payout


@pytest.mark.parametrize(
    ("tamper", "finding"),
    [
        ("UPDATE ledger_accounts SET balance_minor = balance_minor + 1 WHERE kind = 'wallet'", "sum of postings"),
        ("UPDATE postings SET amount_minor = amount_minor + 5 WHERE amount_minor > 0", "does not balance"),
    ],
)
def test_check_ledger_finds_tampering(engine, tamper: str, finding: str) -> None:
    account_id, _ = create_account(engine, username="u4")
    deposit(engine, account_id=account_id, amount_minor=500)
    with reader(engine).begin() as conn:
        assert ledger.check_ledger(conn).ok
    with engine.begin() as conn:
        conn.execute(text(tamper))
    with reader(engine).begin() as conn:
        check = ledger.check_ledger(conn)
    assert not check.ok
    assert any(finding in problem for problem in check.problems), check.problems


def test_system_accounts_exist_after_migration(engine) -> None:
    with reader(engine).connect() as conn:
        assert ledger.system_account(conn, LedgerAccountKind.HOUSE) != ledger.system_account(
            conn, LedgerAccountKind.EXTERNAL
        )
