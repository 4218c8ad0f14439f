"""Minutes, hours and days: the one vocabulary of time the SLO engine, its rollups and its readers share.

A minute, hour or day is numbered from the Unix epoch in UTC (`minute_index`), stored as the instant it
starts (`minute_start`); a rollup row names its length by `HOURLY` or `DAILY`.

Usage:

    m = minute_index(moment)              # naive times (SQLite) are UTC, as the store wrote them
    minute_start(m // MINUTES_PER_HOUR * MINUTES_PER_HOUR) == floor_minute(moment).replace(minute=0)
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import and_, or_

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH = EPOCH.replace(tzinfo=None)
ONE_MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
MINUTES_PER_HOUR = 60
MINUTES_PER_DAY = 1440

Period = Literal["hour", "day"]
HOURLY: Period = "hour"  # the `period` column of a rollup that covers one hour
DAILY: Period = "day"  # ... one UTC day
PERIOD_MINUTES: dict[str, int] = {HOURLY: MINUTES_PER_HOUR, DAILY: MINUTES_PER_DAY}


def minute_index(moment: datetime) -> int:
    """Minutes since the epoch of the minute holding `moment`; a naive time is taken as UTC (SQLite hands
    back naive UTC, PostgreSQL aware times; subtracting is cheaper than `timestamp()`)."""
    return (moment - (_NAIVE_EPOCH if moment.tzinfo is None else EPOCH)) // ONE_MINUTE


def minute_start(index: int) -> datetime:
    """The instant minute number `index` starts (aware UTC)."""
    return EPOCH + index * ONE_MINUTE


def floor_minute(moment: datetime) -> datetime:
    """The start of the minute holding `moment`, as aware UTC."""
    return minute_start(minute_index(moment))


def runs_of(indexes: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted indexes as half-open runs of consecutive ones: [3, 4, 5, 9] -> [(3, 6), (9, 10)]."""
    runs: list[tuple[int, int]] = []
    for i in sorted(set(indexes)):
        if runs and runs[-1][1] == i:
            runs[-1] = (runs[-1][0], i + 1)
        else:
            runs.append((i, i + 1))
    return runs


def in_runs(column: Any, indexes: Iterable[int], unit: int) -> Any:
    """`column` within any of the periods of `unit` minutes numbered `indexes` (one range per run of them)."""
    return or_(*(and_(column >= minute_start(a * unit), column < minute_start(b * unit)) for a, b in runs_of(indexes)))
