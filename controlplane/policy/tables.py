"""The policy state in force per slice, as the scheduler last recorded it (with the audit entry that
recorded the change), so the platform's changes can be flagged while a slice is frozen.

Migration: `controlplane/migrations/versions/s0008_budget_policy.py`.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Column, DateTime, Text
from sqlmodel import Field

from controlplane.store import StoreModel, table


class PolicyStateRow(StoreModel, table=True):
    __tablename__ = "budget_policy_states"

    slice: str = Field(primary_key=True, max_length=64)
    state: str = Field(max_length=8)  # ship | caution | freeze
    reason: str = Field(sa_column=Column(Text(), nullable=False))
    since: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    audit_seq: int | None = Field(default=None, sa_column=Column(BigInteger(), nullable=True))


policy_states_t = table(PolicyStateRow)
