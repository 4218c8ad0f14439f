"""The denominator of unit cost: bets settled and voided in a window, read from the audit log alone
(the platform's ledger is never read).

Usage:

    bets = settled_bets(audit_engine, start, end)
    bets.settled, bets.voided, bets.by_hour[hour_index]   # (settled, voided) by hour of first settlement
    bets.by_minute[minute_index]                          # the same by minute (for minute buckets)

A bet counts in the window that holds its first settlement entry (`payout`, `bet_lost` or `void`,
by the time the entry was appended to the log); a later resettlement never counts it again. Whether
it counts as settled or voided is its last settlement entry before the window's end (`void` is
voided; `payout`, `bet_lost` and the sink's fallback `bet_settled` are settled). Bets marked
`synthetic` (readiness probes) are left out and counted apart.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Connection, Engine, select

from audit.schema import entries
from controlplane.clock import as_utc

SETTLEMENT_TYPES = ("payout", "bet_lost", "void", "bet_settled")  # bet_settled: an outcome the sink did not know
CHUNK = 500


@dataclass
class SettledBets:
    settled: int = 0
    voided: int = 0
    by_hour: dict[int, list[int]] = field(default_factory=dict)  # hour index -> [settled, voided]
    by_minute: dict[int, list[int]] = field(default_factory=dict)  # minute index -> [settled, voided]
    probes_excluded: int = 0
    resettled: int = 0  # counted bets with more than one settlement entry so far


@dataclass
class _Bet:
    first: datetime
    last_type: str
    entries: int = 1
    synthetic: bool = False


def hour_index(moment: datetime) -> int:
    return int(as_utc(moment).timestamp()) // 3600


def minute_index(moment: datetime) -> int:
    return int(as_utc(moment).timestamp()) // 60


def settled_bets(audit_engine: Engine, start: datetime, end: datetime) -> SettledBets:
    start, end = as_utc(start), as_utc(end)
    bets: dict[str, _Bet] = {}
    with audit_engine.connect() as conn:
        rows = conn.execute(
            select(entries.c.created_at, entries.c.subject, entries.c.entry)
            .where(entries.c.kind == "money", entries.c.created_at >= start, entries.c.created_at < end)
            .order_by(entries.c.seq)
        )
        for created_at, subject, text in rows:
            payload = json.loads(text)["payload"]
            if payload.get("type") not in SETTLEMENT_TYPES:
                continue
            bet = bets.get(subject)
            if bet is None:
                bets[subject] = _Bet(as_utc(created_at), payload["type"], synthetic=payload.get("synthetic") is True)
            else:
                bet.last_type = payload["type"]
                bet.entries += 1
        earlier = _settled_before(conn, bets, start)
    result = SettledBets()
    for subject, bet in bets.items():
        if subject in earlier:
            continue  # first settled in an earlier window
        if bet.synthetic:
            result.probes_excluded += 1
            continue
        slots = (
            result.by_hour.setdefault(hour_index(bet.first), [0, 0]),
            result.by_minute.setdefault(minute_index(bet.first), [0, 0]),
        )
        voided = bet.last_type == "void"
        result.voided += voided
        result.settled += not voided
        for slot in slots:
            slot[1 if voided else 0] += 1
        result.resettled += bet.entries > 1
    return result


def _settled_before(conn: Connection, subjects: Iterable[str], start: datetime) -> set[str]:
    """Which of `subjects` already had a settlement entry before `start`."""
    found: set[str] = set()
    pending = list(subjects)
    for i in range(0, len(pending), CHUNK):
        rows = conn.execute(
            select(entries.c.subject, entries.c.entry).where(
                entries.c.kind == "money",
                entries.c.subject.in_(pending[i : i + CHUNK]),
                entries.c.created_at < start,
            )
        )
        for subject, text in rows:
            if json.loads(text)["payload"].get("type") in SETTLEMENT_TYPES:
                found.add(subject)
    return found
