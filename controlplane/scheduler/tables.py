"""The scheduler's tables in the control plane's store: SLO snapshots, alert transitions and their
deliveries, the leader lease, and the record of scheduled runs that must happen once.

Migration: `controlplane/migrations/versions/s0003_scheduler.py`.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Column, DateTime, Float, Index, Integer, Text
from sqlmodel import Field

from controlplane.store import BigId, StoreModel, table


def _utc(*, index: bool = False, nullable: bool = False) -> Column:
    return Column(DateTime(timezone=True), nullable=nullable, index=index)


class SloSnapshot(StoreModel, table=True):
    """One SLO as evaluated at one instant (every minute by the scheduler)."""

    __tablename__ = "slo_snapshots"
    __table_args__ = (Index("ix_slo_snapshots_slo_at", "slo", "at", unique=True),)

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    slo: str = Field(max_length=64)
    slice: str = Field(max_length=64)
    at: datetime = Field(sa_column=_utc())
    sli: float = Field(sa_column=Column(Float(), nullable=False))
    events: int = Field(sa_column=Column(BigInteger(), nullable=False))
    bad_events: int = Field(sa_column=Column(BigInteger(), nullable=False))
    budget_remaining: float = Field(sa_column=Column(Float(), nullable=False))
    page: bool = Field(default=False)
    ticket: bool = Field(default=False)
    status: str = Field(sa_column=Column(Text(), nullable=False))  # the SloStatus as JSON


class AlertTransition(StoreModel, table=True):
    """An alert of one SLO and severity starting to fire or resolving; `id` is derived from
    (slo, severity, state, at), so the same transition found twice is stored once."""

    __tablename__ = "alert_transitions"

    id: str = Field(primary_key=True, max_length=32)
    slo: str = Field(max_length=64, index=True)
    slice: str = Field(max_length=64)
    severity: str = Field(max_length=8)  # page | ticket
    state: str = Field(max_length=8)  # firing | resolved
    at: datetime = Field(sa_column=_utc(index=True))
    started_at: datetime = Field(sa_column=_utc())  # when this firing began (for a resolved one too)
    detail: str = Field(sa_column=Column(Text(), nullable=False))  # burn rates, thresholds, exemplars (JSON)


class AlertDelivery(StoreModel, table=True):
    """Delivery of one transition to one receiver: attempts until delivered (at least once)."""

    __tablename__ = "alert_deliveries"
    __table_args__ = (Index("ix_alert_deliveries_pending", "delivered_at", "next_attempt_at"),)

    transition_id: str = Field(primary_key=True, max_length=32)
    receiver: str = Field(primary_key=True, max_length=64)
    attempts: int = Field(default=0, sa_column=Column(Integer(), nullable=False, server_default="0"))
    next_attempt_at: datetime = Field(sa_column=_utc())
    delivered_at: datetime | None = Field(default=None, sa_column=_utc(nullable=True))
    last_error: str | None = Field(default=None, sa_column=Column(Text(), nullable=True))


class SchedulerLease(StoreModel, table=True):
    """Who leads the store's scheduling (SQLite; PostgreSQL uses an advisory lock) until when."""

    __tablename__ = "scheduler_lease"

    name: str = Field(primary_key=True, max_length=64)
    holder: str = Field(max_length=200)
    acquired_at: datetime = Field(sa_column=_utc())
    expires_at: datetime = Field(sa_column=_utc())


class ScheduledRun(StoreModel, table=True):
    """A run that must happen once, whatever restarts: e.g. `checklist:cup-final:T-1h`."""

    __tablename__ = "scheduled_runs"

    key: str = Field(primary_key=True, max_length=200)
    job: str = Field(max_length=64)
    due_at: datetime = Field(sa_column=_utc())
    ran_at: datetime = Field(sa_column=_utc())
    outcome: str = Field(sa_column=Column(Text(), nullable=False))


snapshots_t, transitions_t = table(SloSnapshot), table(AlertTransition)
deliveries_t, lease_t, scheduled_t = table(AlertDelivery), table(SchedulerLease), table(ScheduledRun)
