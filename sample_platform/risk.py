"""Risk engine: pre-trade checks on features kept in a cache near compute.

    engine = RiskEngine(limits, FeatureCache(ttl=5.0, metrics=m), cache_enabled=lambda: True)
    engine.precheck(conn, account_id=7, selection_id=3, stake_minor=500, liability_minor=750)

Features: a selection's liability (potential winnings of its open bets), an account's exposure (stakes
of its open bets) and its betting velocity (bets in the last minute). From the cache they cost no
database work; with the cache off (or on a miss) they are computed from the bets table, which is
correct but slower. The cache may lag other processes by up to its TTL, so it is never the last word:
the bet transaction re-checks liability and exposure under row locks.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, func, select

from sample_platform.clock import as_utc, utcnow
from sample_platform.metrics import PlatformMetrics
from sample_platform.models import Bet, BetStatus, table
from sample_platform.problems import Problem

bets_t = table(Bet)
VELOCITY_WINDOW = 60.0


@dataclass(frozen=True)
class RiskLimits:
    max_stake_minor: int
    max_liability_minor: int
    max_exposure_minor: int = 10**12
    max_bets_per_minute: int = 10**9


LIMIT_SLUGS = {
    "max_stake_minor": "stake-limit",
    "max_liability_minor": "liability-limit",
    "max_exposure_minor": "exposure-limit",
    "max_bets_per_minute": "velocity-limit",
}


def limit_problem(limit: str, value: int, detail: str) -> Problem:
    """422 naming the limit (the setting is PLATFORM_<LIMIT>)."""
    return Problem(
        422, LIMIT_SLUGS[limit], "Risk limit reached", f"{detail} ({limit}={value})", limit=limit, limit_value=value
    )


class FeatureCache:
    """Per-key numbers with a time to live; thread-safe."""

    def __init__(self, *, ttl: float, metrics: PlatformMetrics, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.metrics = metrics
        self.clock = clock
        self._values: dict[tuple, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple) -> Any:
        with self._lock:
            entry = self._values.get(key)
            if entry is not None and self.clock() - entry[0] < self.ttl:
                self.metrics.risk_cache_lookups.labels(result="hit").inc()
                return entry[1]
        self.metrics.risk_cache_lookups.labels(result="miss").inc()
        return None

    def put(self, key: tuple, value: Any) -> None:
        with self._lock:
            self._values[key] = (self.clock(), value)
            if len(self._values) > 200_000:  # memory stays bounded under any number of keys
                self._values.clear()

    def update(self, key: tuple, change: Callable[[Any], Any]) -> None:
        """Apply a committed change to a cached value, keeping its age."""
        with self._lock:
            entry = self._values.get(key)
            if entry is not None:
                self._values[key] = (entry[0], change(entry[1]))

    def clear(self) -> None:
        with self._lock:
            self._values.clear()


class RiskEngine:
    def __init__(self, limits: RiskLimits, cache: FeatureCache, *, cache_enabled: Callable[[], bool]) -> None:
        self.limits = limits
        self.cache = cache
        self.cache_enabled = cache_enabled

    def precheck(
        self, conn: Connection, *, account_id: int, selection_id: int, stake_minor: int, liability_minor: int
    ) -> None:
        limits = self.limits
        if stake_minor > limits.max_stake_minor:
            raise limit_problem(
                "max_stake_minor", limits.max_stake_minor, f"stake {stake_minor} exceeds the maximum stake per bet"
            )
        liability = self._feature(
            conn, ("liability", selection_id), lambda: self._liability_from_db(conn, selection_id)
        )
        if liability + liability_minor > limits.max_liability_minor:
            raise limit_problem(
                "max_liability_minor",
                limits.max_liability_minor,
                f"this bet would take selection {selection_id}'s liability beyond the maximum liability per selection",
            )
        exposure = self._feature(conn, ("exposure", account_id), lambda: self._exposure_from_db(conn, account_id))
        if exposure + stake_minor > limits.max_exposure_minor:
            raise limit_problem(
                "max_exposure_minor",
                limits.max_exposure_minor,
                "this bet would take your open stakes beyond the maximum exposure per account",
            )
        recent = self._velocity(conn, account_id)
        if recent >= limits.max_bets_per_minute:
            raise limit_problem(
                "max_bets_per_minute", limits.max_bets_per_minute, "too many bets in the last minute; slow down"
            )

    def committed(self, *, account_id: int, selection_id: int, stake_minor: int, liability_minor: int) -> None:
        """A bet committed: move the cached features with it."""
        self.cache.update(("liability", selection_id), lambda v: v + liability_minor)
        self.cache.update(("exposure", account_id), lambda v: v + stake_minor)
        now = time.monotonic()
        self.cache.update(("velocity", account_id), lambda v: (v.append(now), v)[1])

    def settled(self) -> None:
        """Bets left the open book: cached liabilities and exposures are stale."""
        self.cache.clear()

    def _feature(self, conn: Connection, key: tuple, load: Callable[[], int]) -> int:
        if not self.cache_enabled():
            self.cache.metrics.risk_cache_lookups.labels(result="bypass").inc()
            return load()
        value = self.cache.get(key)
        if value is None:
            value = load()
            self.cache.put(key, value)
        return value

    def _velocity(self, conn: Connection, account_id: int) -> int:
        if not self.cache_enabled():
            self.cache.metrics.risk_cache_lookups.labels(result="bypass").inc()
            return self._velocity_from_db(conn, account_id)
        key = ("velocity", account_id)
        times = self.cache.get(key)
        if times is None:
            # Ages from the database, placed on this process's monotonic clock.
            age_now = time.monotonic()
            ages = self._recent_ages_from_db(conn, account_id)
            times = deque(sorted(age_now - age for age in ages))
            self.cache.put(key, times)
        horizon = time.monotonic() - VELOCITY_WINDOW
        while times and times[0] < horizon:
            times.popleft()
        return len(times)

    @staticmethod
    def _liability_from_db(conn: Connection, selection_id: int) -> int:
        return conn.execute(
            select(func.coalesce(func.sum(bets_t.c.potential_payout_minor - bets_t.c.stake_minor), 0)).where(
                bets_t.c.selection_id == selection_id, bets_t.c.status == BetStatus.OPEN.value
            )
        ).scalar_one()

    @staticmethod
    def _exposure_from_db(conn: Connection, account_id: int) -> int:
        return conn.execute(
            select(func.coalesce(func.sum(bets_t.c.stake_minor), 0)).where(
                bets_t.c.account_id == account_id, bets_t.c.status == BetStatus.OPEN.value
            )
        ).scalar_one()

    @staticmethod
    def _velocity_from_db(conn: Connection, account_id: int) -> int:
        since = utcnow() - timedelta(seconds=VELOCITY_WINDOW)
        return conn.execute(
            select(func.count()).where(bets_t.c.account_id == account_id, bets_t.c.placed_at > since)
        ).scalar_one()

    @staticmethod
    def _recent_ages_from_db(conn: Connection, account_id: int) -> list[float]:
        now = utcnow()
        since = now - timedelta(seconds=VELOCITY_WINDOW)
        rows = conn.execute(
            select(bets_t.c.placed_at).where(bets_t.c.account_id == account_id, bets_t.c.placed_at > since)
        ).scalars()
        return [(now - as_utc(placed)).total_seconds() for placed in rows]
