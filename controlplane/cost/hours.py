"""Hourly cost rollups: each component's cost and allocation per whole UTC hour, with the bets first
settled in it, written by the scheduler's `cost-rollups` job and read back for charts.

Usage:

    refresh_cost_hours(inputs, now=utcnow(), hours=3)      # the last 3 complete hours, recomputed
    rows = cost_history(store_engine, model, since=utcnow() - timedelta(days=7))

Recomputing the last few hours each run picks up bills imported and audit entries relayed late; the
report (`controlplane.cost.report`) is always computed from the sources, never from these rows.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, delete, select

from controlplane.clock import as_utc, utc_text
from controlplane.cost.bets import hour_index, settled_bets
from controlplane.cost.compute import rounded
from controlplane.cost.model import CostModel
from controlplane.cost.report import CostInputs, price_window
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


def cost_history(
    engine: Engine, model: CostModel, *, since: datetime, until: datetime | None = None
) -> list[dict[str, Any]]:
    """Per rolled-up hour: cost, allocated, settled and voided bets, and cost per settled bet (the
    model's unallocated policy decides the numerator), oldest first."""
    query = select(hours_t).where(hours_t.c.hour >= as_utc(since)).order_by(hours_t.c.hour, hours_t.c.component)
    if until is not None:
        query = query.where(hours_t.c.hour < as_utc(until))
    by_hour: dict[datetime, dict[str, Any]] = {}
    with reader(engine).connect() as conn:
        for row in conn.execute(query):
            hour = as_utc(row.hour)
            entry = by_hour.setdefault(
                hour,
                {"cost": Decimal(0), "allocated": Decimal(0), "settled": row.settled_bets, "voided": row.voided_bets},
            )
            entry["cost"] += Decimal(row.cost)
            entry["allocated"] += Decimal(row.allocated)
    history = []
    for hour, e in by_hour.items():
        counted = e["cost"] if model.unallocated == "spread" else e["allocated"]
        history.append(
            {
                "hour": utc_text(hour),
                "total_cost": rounded(e["cost"]),
                "allocated_cost": rounded(e["allocated"]),
                "settled_bets": e["settled"],
                "voided_bets": e["voided"],
                "cost_per_settled_bet": rounded(counted / e["settled"]) if e["settled"] else None,
            }
        )
    return history
