"""The incidents table in the control plane's store: one row per incident, open until the tracker
closes it; the record computed at close is kept with it (and in the audit log's closing entry), so the
figures survive the retention of the minutes they came from.

Migration: `controlplane/migrations/versions/s0007_incidents.py`.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Column, DateTime, Index, Text
from sqlmodel import Field

from controlplane.store import StoreModel, table


def _utc(*, nullable: bool = False) -> Column:
    return Column(DateTime(timezone=True), nullable=nullable)


class IncidentRow(StoreModel, table=True):
    """An incident on one slice: opened by a page alert (or declared by a person), closed by the tracker."""

    __tablename__ = "incidents"
    __table_args__ = (Index("ix_incidents_slice_opened", "slice", "opened_at"),)

    id: str = Field(primary_key=True, max_length=96)
    slice: str = Field(max_length=64)
    title: str = Field(max_length=200)
    opened_at: datetime = Field(sa_column=_utc())
    opened_by: str = Field(max_length=64)  # the person who declared it, or "controlplane" for a page alert
    opened_seq: int | None = Field(default=None, sa_column=Column(BigInteger(), nullable=True))
    closed_at: datetime | None = Field(default=None, sa_column=_utc(nullable=True))
    closed_seq: int | None = Field(default=None, sa_column=Column(BigInteger(), nullable=True))
    record: str | None = Field(default=None, sa_column=Column(Text(), nullable=True))  # JSON, set at close


incidents_t = table(IncidentRow)
