"""The one way each kind of number reads to a person: in the dashboard, the CLI's tables and the alert
history. Machine output (JSON, CSV) keeps exact values; what people read goes through here, so the same
figure reads the same on every surface.

Usage:

    budget_left(status.budget_remaining, status.budget_consumed, ran_out=when)  # "exhausted 21:04Z, 278x"
    percent(0.99912, places=3)                                                     # "99.912%"
    burn(14.4)                                                                     # "14.4x"
    money(Decimal("113.669677"), "EUR")                                            # "113.67 EUR"
    duration(5400)                                                                 # "1 h 30 min"
    utc(moment)                                                                    # "2026-12-04 21:07:30Z"
"""

from __future__ import annotations

from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal

from controlplane.clock import as_utc


def percent(ratio: float | None, places: int = 1) -> str:
    """A ratio as a percentage ("no data" for None)."""
    if ratio is None:
        return "no data"
    return f"{100 * ratio:.{places}f}%"


def burn(rate: float | None) -> str:
    """A burn rate (or a budget multiple): 3 significant figures below 100x, whole numbers above."""
    if rate is None:
        return "no data"
    if rate >= 100:
        return f"{rate:,.0f}x"
    if rate >= 10:
        return f"{rate:.1f}x"
    return f"{rate:.2f}x"


def budget_left(remaining: float, consumed: float, *, ran_out: datetime | None = None) -> str:
    """The error budget left: a percentage while some is left, "exhausted" (with how many times over it is
    spent, and when it ran out if known) once it is gone; never a percentage below zero."""
    if remaining > 0:
        return percent(remaining)
    when = f" {as_utc(ran_out):%H:%MZ}" if ran_out is not None else ""
    return f"exhausted{when}, {burn(consumed)}"


def is_exhausted(remaining: float) -> bool:
    return remaining <= 0


def money(amount: Decimal | None, currency: str, *, places: int | None = None) -> str:
    """An amount with its currency: cents for amounts of 1 or more, six decimals below (a cost per bet is
    a fraction of a cent)."""
    if amount is None:
        return "none"
    if places is None:
        places = 2 if abs(amount) >= 1 or amount == 0 else 6
    step = Decimal(1).scaleb(-places)
    text = f"{amount.quantize(step, rounding=ROUND_HALF_EVEN):,}"
    return f"{text} {currency}"


def duration(seconds: float | None) -> str:
    """A span of time for people: "45 s", "12 min", "3 h 5 min", "2 d 4 h"."""
    if seconds is None:
        return "-"
    whole = max(round(seconds), 0)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    if minutes:
        return f"{minutes} min"
    return f"{secs} s"


def utc(moment: datetime | None) -> str:
    """An instant as people read it: `2026-12-04 21:07:30Z` (a naive time is taken as UTC)."""
    if moment is None:
        return "-"
    return f"{as_utc(moment):%Y-%m-%d %H:%M:%S}Z"


def utc_minute(moment: datetime) -> str:
    """An instant to the minute: `2026-12-04 21:07Z`."""
    return f"{as_utc(moment):%Y-%m-%d %H:%M}Z"


def count(number: int) -> str:
    return f"{number:,}"
