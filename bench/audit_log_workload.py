"""What the audit log benchmark writes: money entries, the plain tables beside the log, statement counts
and timings, and the backends (a database with its engine, log and counter).
"""

from __future__ import annotations

import hashlib
import random
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import BigInteger, Column, DateTime, Engine, Index, MetaData, String, Table, Text, event, select

from audit.log import AuditLog
from audit.note import NoteSigner
from audit.schema import entries, migrate_audit
from bench.support import Clock
from controlplane.storage import make_engine

ORIGIN = "bench.example/betting-audit"

# ---------------------------------------------------------------------------------------- data

MARKETS = ("football.epl.ars-che", "football.laliga.rma-bar", "tennis.wimbledon.r16-3", "basketball.nba.bos-lal")
SELECTIONS = ("home", "draw", "away", "over_2.5", "under_2.5", "player_a", "player_b")
ODDS = tuple(f"{Decimal(n) / 1000:.3f}" for n in range(1_050, 15_000, 25))


class MoneyEntries:
    """Endless money entries (bet placed / settled) with unique outbox event ids, from one seed."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.made = 0
        self.run = secrets.token_hex(3)  # event ids unique across runs too

    def one(self, event_id: bool = True) -> dict[str, Any]:
        rng = self.rng
        self.made += 1
        bet_id = f"bet_{rng.getrandbits(80):020x}"
        stake = rng.choice((100, 200, 500, 1_000, 2_000, 2_500, 5_000, 10_000, rng.randrange(100, 250_000)))
        odds = rng.choice(ODDS)
        potential = int((Decimal(stake) * Decimal(odds)).to_integral_value(ROUND_DOWN))
        payload: dict[str, Any] = {
            "bet_id": bet_id,
            "account": hashlib.sha256(f"acct-{rng.randrange(2_000_000)}".encode()).hexdigest(),
            "stake_minor": stake,
            "currency": "EUR",
            "odds": odds,
            "market_id": rng.choice(MARKETS),
            "selection": rng.choice(SELECTIONS),
        }
        if rng.random() < 0.6:
            payload["event"] = "bet.placed"
            payload["potential_payout_minor"] = potential
        else:
            payload["event"] = "bet.settled"
            payload["result"] = rng.choice(("won", "lost", "lost", "void"))
            payload["payout_minor"] = {"won": potential, "lost": 0, "void": stake}[payload["result"]]
        item = {"kind": "money", "actor": "wallet-relay", "subject": f"bet:{bet_id}", "payload": payload}
        if event_id:
            item["event_id"] = f"outbox:{self.run}:{self.made:010d}"
        return item

    def batch(self, n: int, event_ids: bool = True) -> list[dict[str, Any]]:
        return [self.one(event_ids) for _ in range(n)]


# ------------------------------------------------------------------------------------ plain table

plain_metadata = MetaData()


def _plain_table(name: str) -> Table:
    """A table with the same columns and indexes as audit_entries, and no log behind it."""
    return Table(
        name,
        plain_metadata,
        Column("seq", BigInteger, primary_key=True, autoincrement=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("kind", String(32), nullable=False),
        Column("actor", String(200), nullable=False),
        Column("subject", String(200), nullable=False),
        Column("event_id", String(64), nullable=True, unique=True),
        Column("entry", Text, nullable=False),
        Column("leaf_hash", String(64), nullable=False),
        Index(f"ix_{name}_subject", "subject"),
    )


plain = _plain_table("plain_entries")  # executemany per transaction (or one row per transaction)
plain_rowwise = _plain_table("plain_entries_rowwise")  # one INSERT statement per row, same transactions
COLUMNS = [c.name for c in plain.columns]


def audit_rows(engine: Engine, first: int, last: int) -> list[dict[str, Any]]:
    """The rows the log stored for seqs [first, last], as plain-table rows."""
    with engine.connect() as conn:
        result = conn.execute(select(*entries.c).where(entries.c.seq.between(first, last)).order_by(entries.c.seq))
        return [dict(r._mapping) for r in result]


# --------------------------------------------------------------------------------------- counting


class Statements:
    """Counts statements the engine executes (an executemany counts once)."""

    def __init__(self, engine: Engine) -> None:
        self.count = 0

        @event.listens_for(engine, "before_cursor_execute")
        def _count(*_args: Any) -> None:
            self.count += 1


@dataclass
class Timing:
    """Entries, calls, statements and time of the calls measured with `timed`."""

    entries: int = 0
    calls: int = 0
    statements: int = 0
    clock: Clock = field(default_factory=Clock)

    @property
    def wall(self) -> float:
        return self.clock.wall

    @contextmanager
    def timed(self, counter: Statements, n: int) -> Iterator[None]:
        s0 = counter.count
        with self.clock.measure():
            yield
        self.statements += counter.count - s0
        self.entries += n
        self.calls += 1

    def summary(self) -> dict[str, Any]:
        wall, cpu = self.clock.wall, self.clock.cpu
        return {
            "entries": self.entries,
            "calls": self.calls,
            "wall_s": round(wall, 4),
            "cpu_s": round(cpu, 4),
            "per_s": round(self.entries / wall) if wall else None,
            "cpu_us_per_entry": round(cpu / self.entries * 1e6, 1) if self.entries else None,
            "statements_per_entry": round(self.statements / self.entries, 3) if self.entries else None,
        }


# ------------------------------------------------------------------------------------- backends


@dataclass
class Backend:
    name: str
    engine: Engine
    counter: Statements
    log: AuditLog
    description: str


def prepare(name: str, engine: Engine, signer: NoteSigner, description: str) -> Backend:
    migrate_audit(engine)
    plain_metadata.create_all(engine)
    return Backend(name, engine, Statements(engine), AuditLog(engine, origin=ORIGIN, signer=signer), description)


def sqlite_engine(path: Path, synchronous: str | None = None) -> Engine:
    engine = make_engine(f"sqlite:///{path}")
    if synchronous is not None:

        @event.listens_for(engine, "connect")
        def _sync(dbapi_connection, _record):
            dbapi_connection.execute(f"PRAGMA synchronous={synchronous}")  # after make_engine's NORMAL

    return engine


def sqlite_pragma(engine: Engine, name: str) -> str:
    with engine.connect() as conn:
        return str(conn.exec_driver_sql(f"PRAGMA {name}").scalar())
