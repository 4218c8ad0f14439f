"""The checklist's tables in the control plane's store: runs, their results, attestations and waivers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column, DateTime, Index, Text
from sqlmodel import Field

from controlplane.clock import as_utc, utc_text
from controlplane.store import StoreModel, table


def _utc(*, index: bool = False, nullable: bool = False) -> Column:
    return Column(DateTime(timezone=True), nullable=nullable, index=index)


class ChecklistRunRow(StoreModel, table=True):
    __tablename__ = "checklist_runs"

    run_id: str = Field(primary_key=True, max_length=32)
    event: str | None = Field(default=None, max_length=64, index=True)
    at: datetime = Field(sa_column=_utc(index=True))
    decision: str = Field(max_length=16)
    spec_path: str = Field(sa_column=Column(Text(), nullable=False))
    spec_digest: str = Field(max_length=64)
    audit_seq: int | None = Field(default=None, sa_column=Column(BigInteger(), nullable=True))
    created_at: datetime = Field(sa_column=_utc())


class ChecklistResultRow(StoreModel, table=True):
    __tablename__ = "checklist_results"

    run_id: str = Field(primary_key=True, max_length=32)
    position: int = Field(primary_key=True)
    check_id: str = Field(max_length=64)
    severity: str = Field(max_length=16)
    status: str = Field(max_length=16)
    evidence_digest: str = Field(max_length=64)
    result: str = Field(sa_column=Column(Text(), nullable=False))  # the result's JSON, evidence included


class AttestationRow(StoreModel, table=True):
    __tablename__ = "checklist_attestations"
    __table_args__ = (Index("ix_checklist_attestations_check", "check_id", "expires_at"),)

    id: str = Field(primary_key=True, max_length=32)
    check_id: str = Field(max_length=64)
    event: str | None = Field(default=None, max_length=64)
    by: str = Field(max_length=200)
    note: str | None = Field(default=None, sa_column=Column(Text(), nullable=True))
    created_at: datetime = Field(sa_column=_utc())
    expires_at: datetime = Field(sa_column=_utc())
    audit_seq: int | None = Field(default=None, sa_column=Column(BigInteger(), nullable=True))

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "check_id": self.check_id,
            "event": self.event,
            "by": self.by,
            "note": self.note,
            "created_at": utc_text(as_utc(self.created_at)),
            "expires_at": utc_text(as_utc(self.expires_at)),
            "audit_seq": self.audit_seq,
        }


class WaiverRow(StoreModel, table=True):
    __tablename__ = "checklist_waivers"
    __table_args__ = (Index("ix_checklist_waivers_check", "check_id", "expires_at"),)

    id: str = Field(primary_key=True, max_length=32)
    check_id: str = Field(max_length=64)
    event: str | None = Field(default=None, max_length=64)
    requested_by: str = Field(max_length=200)
    approved_by: str = Field(max_length=200)
    reason: str = Field(sa_column=Column(Text(), nullable=False))
    created_at: datetime = Field(sa_column=_utc())
    expires_at: datetime = Field(sa_column=_utc())
    audit_seq: int | None = Field(default=None, sa_column=Column(BigInteger(), nullable=True))

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "check_id": self.check_id,
            "event": self.event,
            "requested_by": self.requested_by,
            "approved_by": self.approved_by,
            "reason": self.reason,
            "created_at": utc_text(as_utc(self.created_at)),
            "expires_at": utc_text(as_utc(self.expires_at)),
            "audit_seq": self.audit_seq,
        }


runs_t, results_t = table(ChecklistRunRow), table(ChecklistResultRow)
attestations_t, waivers_t = table(AttestationRow), table(WaiverRow)
