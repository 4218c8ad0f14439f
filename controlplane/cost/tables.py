"""The cost tables in the control plane's store: imported FOCUS billing rows, each import, and the hourly
cost rollups.

Migration: `controlplane/migrations/versions/s0005_cost.py`. Amounts are kept as decimal text, so no
database rounds them through a float.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, DateTime, Index, Integer, Text
from sqlmodel import Field

from controlplane.store import StoreModel, table


def _utc(*, index: bool = False) -> Column:
    return Column(DateTime(timezone=True), nullable=False, index=index)


class BillingRow(StoreModel, table=True):
    """One FOCUS charge row; `row_hash` (its content, and which repeat of that content in its file it
    is) makes importing the same rows again change nothing."""

    __tablename__ = "cost_billing_rows"
    __table_args__ = (Index("ix_cost_billing_rows_period", "charge_period_start", "charge_period_end"),)

    row_hash: str = Field(primary_key=True, max_length=64)
    file_sha256: str = Field(max_length=64, index=True)
    charge_period_start: datetime = Field(sa_column=_utc())
    charge_period_end: datetime = Field(sa_column=_utc())
    billed_cost: str = Field(max_length=64)
    effective_cost: str = Field(max_length=64)
    billing_currency: str = Field(max_length=3)
    service_name: str = Field(max_length=200)
    resource_id: str = Field(default="", max_length=500)
    tags: str = Field(sa_column=Column(Text(), nullable=False))  # canonical JSON object
    charge_category: str = Field(default="", max_length=32)


class BillingImport(StoreModel, table=True):
    """One imported file, by its SHA-256."""

    __tablename__ = "cost_imports"

    file_sha256: str = Field(primary_key=True, max_length=64)
    file_name: str = Field(max_length=500)
    rows: int = Field(sa_column=Column(Integer(), nullable=False))
    new_rows: int = Field(sa_column=Column(Integer(), nullable=False))
    imported_at: datetime = Field(sa_column=_utc())
    imported_by: str = Field(max_length=200)


class CostHour(StoreModel, table=True):
    """One component's cost in one whole UTC hour, and the bets first settled in that hour (the same on
    every component's row), kept by the scheduler's `cost-rollups` job for charts over long ranges."""

    __tablename__ = "cost_hours"

    hour: datetime = Field(sa_column=Column(DateTime(timezone=True), primary_key=True))
    component: str = Field(primary_key=True, max_length=64)
    cost: str = Field(max_length=64)
    allocated: str = Field(max_length=64)
    settled_bets: int = Field(sa_column=Column(Integer(), nullable=False))
    voided_bets: int = Field(sa_column=Column(Integer(), nullable=False))
    computed_at: datetime = Field(sa_column=_utc())


billing_t, imports_t, hours_t = table(BillingRow), table(BillingImport), table(CostHour)
