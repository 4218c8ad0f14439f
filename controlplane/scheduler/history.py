"""Alert history: the transitions of a time range, each with how its delivery to every receiver went
(`controlplane alerts history`).

Usage:

    for item in alert_history(engine, since=utcnow() - timedelta(days=7)):
        print(item.transition.slo, item.transition.state, [d.status for d in item.deliveries])
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Engine, func, select

from controlplane import formatting
from controlplane.clock import as_utc
from controlplane.scheduler.delivery import GAVE_UP
from controlplane.scheduler.receivers import Transition, utc_text
from controlplane.scheduler.tables import deliveries_t, transitions_t
from controlplane.storage import reader

DeliveryState = Literal["delivered", "pending", "failed"]


@dataclass(frozen=True)
class DeliveryStatus:
    """One transition's delivery to one receiver: delivered, pending (retrying) or failed (given up)."""

    receiver: str
    status: DeliveryState
    attempts: int
    delivered_at: datetime | None
    next_attempt_at: datetime | None  # None once delivered or given up
    last_error: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "receiver": self.receiver,
            "status": self.status,
            "attempts": self.attempts,
            "delivered_at": utc_text(self.delivered_at) if self.delivered_at else None,
            "next_attempt_at": utc_text(self.next_attempt_at) if self.next_attempt_at else None,
            "last_error": self.last_error,
        }


@dataclass(frozen=True)
class TransitionHistory:
    transition: Transition
    deliveries: tuple[DeliveryStatus, ...]

    def to_dict(self) -> dict[str, Any]:
        t = self.transition
        return {
            "id": t.id,
            "slo": t.slo,
            "slice": t.slice,
            "severity": t.severity,
            "alertname": t.alertname,
            "state": t.state,
            "at": utc_text(t.at),
            "started_at": utc_text(t.started_at),
            "burn_rates": t.burn_rates,
            "exemplars": list(t.detail.get("exemplars") or []),
            "deliveries": [d.to_dict() for d in self.deliveries],
        }


def _status(row: Any) -> DeliveryStatus:
    if row.delivered_at is not None:
        status: DeliveryState = "delivered"
    elif row.last_error is not None and row.last_error.startswith(GAVE_UP):
        status = "failed"
    else:
        status = "pending"
    return DeliveryStatus(
        receiver=row.receiver,
        status=status,
        attempts=row.attempts,
        delivered_at=as_utc(row.delivered_at) if row.delivered_at is not None else None,
        next_attempt_at=as_utc(row.next_attempt_at) if status == "pending" else None,
        last_error=row.last_error,
    )


def alert_history(
    engine: Engine, *, since: datetime, slo: str | None = None, limit: int = 1000
) -> list[TransitionHistory]:
    """Transitions at or after `since` (of one SLO if `slo` is given), newest first, with their deliveries."""
    t, d = transitions_t, deliveries_t
    query = select(t).where(t.c.at >= as_utc(since)).order_by(t.c.at.desc(), t.c.id).limit(limit)
    if slo is not None:
        query = query.where(t.c.slo == slo)
    with reader(engine).connect() as conn:
        rows = conn.execute(query).all()
        ids = [row.id for row in rows]
        deliveries: dict[str, list[DeliveryStatus]] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            for row in conn.execute(select(d).where(d.c.transition_id.in_(chunk)).order_by(d.c.receiver)):
                deliveries.setdefault(row.transition_id, []).append(_status(row))
    return [TransitionHistory(Transition.from_row(row), tuple(deliveries.get(row.id, ()))) for row in rows]


def alerts_fired(engine: Engine, start: datetime, end: datetime) -> dict[str, int]:
    """How many alerts started firing for each SLO in [start, end) (SLOs that fired none are left out)."""
    t = transitions_t
    query = (
        select(t.c.slo, func.count())
        .where(t.c.state == "firing", t.c.at >= as_utc(start), t.c.at < as_utc(end))
        .group_by(t.c.slo)
    )
    with reader(engine).connect() as conn:
        return {slo: int(n) for slo, n in conn.execute(query).all()}


def render_history_table(items: list[TransitionHistory]) -> str:
    """The history for people: one line per transition, its deliveries as receiver=status(attempts)."""
    if not items:
        return "no alert transitions in that range"
    lines = [f"{'at':<21} {'slo':<28} {'severity':<8} {'state':<8} {'burn 1h':>8}  deliveries"]
    for item in items:
        t = item.transition
        rate = t.burn_rates.get("1h")
        sent = ", ".join(f"{d.receiver}={d.status}({d.attempts})" for d in item.deliveries) or "-"
        lines.append(
            f"{formatting.utc(t.at):<21} {t.slo:<28} {t.severity:<8} {t.state:<8} "
            f"{'-' if rate is None else formatting.burn(rate):>8}  {sent}"
        )
        failing = [d for d in item.deliveries if d.status != "delivered" and d.last_error]
        lines.extend(f"{'':<20} ! {d.receiver}: {d.last_error}" for d in failing)
    return "\n".join(lines)
