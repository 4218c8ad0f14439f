"""Tables of the sample platform. Money is integer minor units; odds are decimal strings; times are UTC.

Schema changes go through the Alembic migrations in `sample_platform/migrations/`.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    inspect,
)
from sqlmodel import Field, SQLModel

# BIGINT on PostgreSQL; INTEGER on SQLite, where only INTEGER PRIMARY KEY is an autoincrementing rowid.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def _utc_column(*, nullable: bool = False, index: bool = False) -> Column:
    return Column(DateTime(timezone=True), nullable=nullable, index=index)


def _flag_column() -> Column:
    return Column(Boolean(), nullable=False, server_default=false())


def _money_column(*, default: int | None = None) -> Column:
    return Column(BigInteger(), nullable=False, server_default=None if default is None else str(default))


class LedgerAccountKind(StrEnum):
    WALLET = "wallet"  # what the player can bet with; never below zero
    HELD = "held"  # stakes of the player's open bets; never below zero
    RECEIVABLE = "receivable"  # what the player owes after a resettlement took back more than the wallet held
    HOUSE = "house"  # the operator's book: takes lost stakes, pays winnings
    EXTERNAL = "external"  # the world outside: deposits come from here


class BetStatus(StrEnum):
    OPEN = "open"
    WON = "won"
    LOST = "lost"
    VOID = "void"


class MarketStatus(StrEnum):
    OPEN = "open"
    SETTLING = "settling"
    SETTLED = "settled"


class Account(SQLModel, table=True):
    __tablename__ = "accounts"

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    username: str = Field(max_length=64, unique=True, index=True)
    token_hash: str = Field(max_length=64, unique=True, index=True)
    created_at: datetime = Field(sa_column=_utc_column())
    # scrypt$<log2 n>$<r>$<p>$<salt b64>$<hash b64>; NULL: the account cannot log in with a password.
    password_hash: str | None = Field(default=None, max_length=200)
    failed_logins: int = Field(default=0, sa_column=Column(Integer(), nullable=False, server_default="0"))
    locked_until: datetime | None = Field(default=None, sa_column=_utc_column(nullable=True))
    # A probe's account (readiness checks): its money events are marked, so reports can leave them out.
    synthetic: bool = Field(default=False, sa_column=_flag_column())


class LoginFailure(SQLModel, table=True):
    """Consecutive failed logins for a submitted username, whether an account has it or not (so a
    lockout says nothing of which names exist), keyed by a hash of the name folded to lower case.
    Supersedes the `failed_logins` and `locked_until` columns of accounts, no longer written."""

    __tablename__ = "login_failures"

    name_key: str = Field(max_length=64, primary_key=True)
    failures: int = Field(default=0, sa_column=Column(Integer(), nullable=False, server_default="0"))
    locked_until: datetime | None = Field(default=None, sa_column=_utc_column(nullable=True))


class LoginSession(SQLModel, table=True):
    """A short-lived bearer token issued by POST /v1/login; only its hash is stored."""

    __tablename__ = "login_sessions"

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    account_id: int = Field(sa_column=Column(BigId, ForeignKey("accounts.id"), nullable=False, index=True))
    token_hash: str = Field(max_length=64, unique=True, index=True)
    created_at: datetime = Field(sa_column=_utc_column())
    expires_at: datetime = Field(sa_column=_utc_column(index=True))


class LedgerAccount(SQLModel, table=True):
    __tablename__ = "ledger_accounts"
    __table_args__ = (
        UniqueConstraint("owner_account_id", "kind", name="uq_ledger_accounts_owner_kind"),
        CheckConstraint(
            "kind NOT IN ('wallet', 'held') OR balance_minor >= 0", name="ck_ledger_accounts_player_non_negative"
        ),
    )

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    owner_account_id: int | None = Field(
        default=None, sa_column=Column(BigId, ForeignKey("accounts.id"), nullable=True, index=True)
    )
    kind: str = Field(max_length=16)
    # A cached running balance, always equal to the sum of this account's postings (checked by
    # `ledger.check_invariants`); kept so that the non-negative rule is one guarded UPDATE.
    balance_minor: int = Field(default=0, sa_column=_money_column(default=0))


class LedgerTransaction(SQLModel, table=True):
    __tablename__ = "ledger_transactions"

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    kind: str = Field(max_length=32)
    bet_id: int | None = Field(default=None, sa_column=Column(BigId, ForeignKey("bets.id"), nullable=True, index=True))
    reverses_id: int | None = Field(default=None, sa_column=Column(BigInteger(), ForeignKey("ledger_transactions.id")))
    created_at: datetime = Field(sa_column=_utc_column())


class Posting(SQLModel, table=True):
    __tablename__ = "postings"

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    transaction_id: int = Field(
        sa_column=Column(BigInteger(), ForeignKey("ledger_transactions.id"), nullable=False, index=True)
    )
    ledger_account_id: int = Field(
        sa_column=Column(BigId, ForeignKey("ledger_accounts.id"), nullable=False, index=True)
    )
    amount_minor: int = Field(sa_column=_money_column())


class Market(SQLModel, table=True):
    __tablename__ = "markets"

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    name: str = Field(max_length=200)
    status: str = Field(default=MarketStatus.OPEN, max_length=16)
    price_version: int = Field(default=1)
    # Bumped each time the result changes; a bet settled under an older version is resettled.
    result_version: int = Field(default=0)
    winner_selection_id: int | None = Field(default=None, sa_column=Column(BigId, nullable=True))
    void: bool = Field(default=False)
    created_at: datetime = Field(sa_column=_utc_column())
    # A probe's market: not listed to players, and the money events of its bets are marked.
    synthetic: bool = Field(default=False, sa_column=_flag_column())


class Selection(SQLModel, table=True):
    __tablename__ = "selections"

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    market_id: int = Field(sa_column=Column(BigId, ForeignKey("markets.id"), nullable=False, index=True))
    name: str = Field(max_length=200)
    odds: str = Field(max_length=16)
    # Sum over open bets of (potential payout - stake): what the house loses if this selection wins.
    liability_minor: int = Field(default=0, sa_column=_money_column(default=0))


class PriceChange(SQLModel, table=True):
    __tablename__ = "price_changes"

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    market_id: int = Field(sa_column=Column(BigId, ForeignKey("markets.id"), nullable=False, index=True))
    price_version: int
    selection_id: int = Field(sa_column=Column(BigId, ForeignKey("selections.id"), nullable=False))
    odds: str = Field(max_length=16)
    changed_at: datetime = Field(sa_column=_utc_column())


class Bet(SQLModel, table=True):
    __tablename__ = "bets"
    __table_args__ = (
        CheckConstraint("stake_minor > 0", name="ck_bets_stake_positive"),
        Index("ix_bets_market_status", "market_id", "status"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    account_id: int = Field(sa_column=Column(BigId, ForeignKey("accounts.id"), nullable=False, index=True))
    market_id: int = Field(sa_column=Column(BigId, ForeignKey("markets.id"), nullable=False))
    selection_id: int = Field(sa_column=Column(BigId, ForeignKey("selections.id"), nullable=False))
    stake_minor: int = Field(sa_column=_money_column())
    odds: str = Field(max_length=16)  # bound at commit
    requested_odds: str = Field(max_length=16)
    price_version: int  # the market's price version at commit
    potential_payout_minor: int = Field(sa_column=_money_column())
    status: str = Field(default=BetStatus.OPEN, max_length=8)
    settlement_version: int = Field(default=0)  # the market result version this bet is settled under
    settlement_transaction_id: int | None = Field(default=None, sa_column=Column(BigInteger(), nullable=True))
    placed_at: datetime = Field(sa_column=_utc_column())
    settled_at: datetime | None = Field(default=None, sa_column=_utc_column(nullable=True))
    # W3C traceparent of the placement (while tracing): settlement's spans link to it.
    placement_traceparent: str | None = Field(default=None, sa_column=Column(String(55), nullable=True))


class IdempotencyKey(SQLModel, table=True):
    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("account_id", "key", name="uq_idempotency_keys_account_key"),)

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    account_id: int = Field(sa_column=Column(BigId, ForeignKey("accounts.id"), nullable=False))
    key: str = Field(max_length=255)
    request_hash: str = Field(max_length=64)
    state: str = Field(max_length=16)  # in_flight | completed
    owner: str = Field(max_length=36)  # the attempt holding the key while in flight
    response_status: int | None = None
    response_body: str | None = Field(default=None, sa_column=Column(Text(), nullable=True))
    created_at: datetime = Field(sa_column=_utc_column())
    locked_until: datetime = Field(sa_column=_utc_column())
    expires_at: datetime = Field(sa_column=_utc_column(index=True))


class OutboxEvent(SQLModel, table=True):
    __tablename__ = "outbox_events"

    seq: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    # Delivery order = commit order. Set by a database trigger as the writing transaction commits
    # (PostgreSQL: a deferred constraint trigger under a commit-time lock; SQLite: writers are
    # serialised, so it equals `seq`). See migration 0003.
    commit_seq: int | None = Field(default=None, sa_column=Column(BigInteger(), nullable=True, unique=True))
    event_id: str = Field(max_length=36, unique=True)
    aggregate_type: str = Field(max_length=32)
    aggregate_id: str = Field(max_length=64)
    event_type: str = Field(max_length=64)
    payload: str = Field(sa_column=Column(Text(), nullable=False))
    created_at: datetime = Field(sa_column=_utc_column())
    # W3C traceparent of the request that wrote it (while tracing): the relay's span links to it.
    traceparent: str | None = Field(default=None, sa_column=Column(String(55), nullable=True))


class OutboxCursor(SQLModel, table=True):
    __tablename__ = "outbox_cursors"

    name: str = Field(primary_key=True, max_length=64)
    last_seq: int = Field(default=0, sa_column=Column(BigInteger(), nullable=False, server_default="0"))


def table(model: type[SQLModel]) -> Table:
    """The table behind a table model, typed (SQLModel sets `__table__` without declaring it)."""
    return cast(Table, inspect(model).local_table)
