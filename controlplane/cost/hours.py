"""Hourly cost rollups: each component's cost and allocation per whole UTC hour, with the bets first
settled in it, written by the scheduler's `cost-rollups` job and read back for charts.

Usage:

    refresh_cost_hours(inputs, now=utcnow(), hours=3)      # the last 3 complete hours, recomputed
    history = cost_history(store_engine, since=utcnow() - timedelta(days=7))   # [HourCost]

Recomputing the last few hours each run picks up bills imported and audit entries relayed late; the
report (`controlplane.cost.report`) is always computed from the sources, never from these rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, delete, select

from controlplane.clock import as_utc, utc_text
from controlplane.cost.bets import hour_index, settled_bets
from controlplane.cost.report import CostInputs, price_window
from controlplane.cost.results import per_settled_bet
from controlplane.cost.tables import hours_t
from controlplane.storage import reader

HOUR = timedelta(hours=1)


def refresh_cost_hours(inputs: CostInputs, *, now: datetime, hours: int = 3) -> dict[str, Any]:
    end = as_utc(now).replace(minute=0, second=0, microsecond=0)
    start = end - hours * HOUR
    priced = price_window(inputs, start, end)
    bets = settled_bets(inputs.audit, start, end)
    rows = []
    for i, (a, _b) in enumerate(priced.pieces):
        settled, voided = bets.by_hour.get(hour_index(a), [0, 0])
        for name, pieces in priced.costs.items():
            rows.append(
                {
                    "hour": a,
                    "component": name,
                    "cost": str(pieces[i].cost),
                    "allocated": str(pieces[i].allocated),
                    "settled_bets": settled,
                    "voided_bets": voided,
                    "computed_at": as_utc(now),
                }
            )
    with inputs.store.begin() as conn:
        conn.execute(delete(hours_t).where(hours_t.c.hour >= start, hours_t.c.hour < end))
        if rows:
            conn.execute(hours_t.insert(), rows)
    return {"from": utc_text(start), "to": utc_text(end), "rows": len(rows)}


@dataclass(frozen=True)
class HourCost:
    """One rolled-up hour: the cost and allocated cost of every component, the bets first settled in it,
    and per settled bet the cost and the allocated cost, as the report has them (None if none settled)."""

    hour: datetime
    total_cost: Decimal
    allocated_cost: Decimal
    settled_bets: int
    voided_bets: int

    @property
    def cost_per_settled_bet(self) -> Decimal | None:
        return per_settled_bet(self.total_cost, self.settled_bets)

    @property
    def allocated_cost_per_settled_bet(self) -> Decimal | None:
        return per_settled_bet(self.allocated_cost, self.settled_bets)


def cost_history(engine: Engine, *, since: datetime, until: datetime | None = None) -> list[HourCost]:
    """Per rolled-up hour, oldest first."""
    query = select(hours_t).where(hours_t.c.hour >= as_utc(since)).order_by(hours_t.c.hour, hours_t.c.component)
    if until is not None:
        query = query.where(hours_t.c.hour < as_utc(until))
    sums: dict[datetime, list[Any]] = {}  # hour -> [cost, allocated, settled, voided]
    with reader(engine).connect() as conn:
        for row in conn.execute(query):
            entry = sums.setdefault(as_utc(row.hour), [Decimal(0), Decimal(0), row.settled_bets, row.voided_bets])
            entry[0] += Decimal(row.cost)
            entry[1] += Decimal(row.allocated)
    return [HourCost(hour, *figures) for hour, figures in sums.items()]
