"""Player accounts: creation with a bearer token, token lookup, deposits."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import Connection, Engine, select
from sqlalchemy.exc import IntegrityError

from sample_platform import ledger
from sample_platform.clock import utcnow
from sample_platform.models import Account, LedgerAccountKind, table
from sample_platform.outbox import synthetic_mark, write_event
from sample_platform.problems import Problem

accounts_t = table(Account)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_account(
    engine: Engine, *, username: str, password_hash: str | None = None, synthetic: bool = False
) -> tuple[int, str]:
    """Returns (account id, bearer token). The token is shown once; only its hash is stored.
    A `synthetic` account is a probe's: its money events are marked `"synthetic": true`."""
    token = secrets.token_urlsafe(32)
    try:
        with engine.begin() as conn:
            account_id = conn.execute(
                accounts_t.insert()
                .values(
                    username=username,
                    token_hash=token_hash(token),
                    created_at=utcnow(),
                    password_hash=password_hash,
                    synthetic=synthetic,
                )
                .returning(accounts_t.c.id)
            ).scalar_one()
            ledger.open_player_accounts(conn, account_id)
    except IntegrityError as exc:
        raise Problem(
            409, "username-taken", "Username taken", f"an account named {username!r} exists; pick another username"
        ) from exc
    return account_id, token


def account_for_token(conn: Connection, token: str) -> int | None:
    return conn.execute(select(accounts_t.c.id).where(accounts_t.c.token_hash == token_hash(token))).scalar()


def require_account(conn: Connection, account_id: int) -> bool:
    """Whether the account is synthetic; 404 `unknown-account` if there is none."""
    synthetic = conn.execute(select(accounts_t.c.synthetic).where(accounts_t.c.id == account_id)).scalar()
    if synthetic is None:
        raise Problem(404, "unknown-account", "Unknown account", f"no account has id {account_id}")
    return bool(synthetic)


def synthetic_accounts(conn: Connection, account_ids: set[int]) -> set[int]:
    """Those of `account_ids` that are synthetic (probes')."""
    if not account_ids:
        return set()
    rows = conn.execute(select(accounts_t.c.id).where(accounts_t.c.id.in_(account_ids), accounts_t.c.synthetic))
    return set(rows.scalars())


def deposit(engine: Engine, *, account_id: int, amount_minor: int, reference: str | None = None) -> dict:
    with engine.begin() as conn:
        synthetic = require_account(conn, account_id)
        wallet = ledger.player_accounts(conn, account_id).wallet
        external = ledger.system_account(conn, LedgerAccountKind.EXTERNAL)
        txn_id = ledger.post(conn, kind="deposit", postings=[(external, -amount_minor), (wallet, amount_minor)])
        write_event(
            conn,
            aggregate_type="account",
            aggregate_id=account_id,
            event_type="money.deposit",
            payload={
                "account_id": account_id,
                "amount_minor": amount_minor,
                "transaction_id": txn_id,
                "reference": reference,
                **synthetic_mark(synthetic),
            },
        )
        balances = ledger.balances(conn, account_id)
    return {"account_id": account_id, "transaction_id": txn_id, "balance_minor": balances["wallet"]}


def wallet(conn: Connection, account_id: int) -> dict:
    balances = ledger.balances(conn, account_id)
    return {
        "balance_minor": balances["wallet"],
        "held_minor": balances["held"],
        "owed_minor": -balances["receivable"],
    }
