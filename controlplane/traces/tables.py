"""The kept traces in the control plane's store.

- `kept_traces`: one row per kept trace, why it was kept (`bad`, `slow`, `probe`), the slice-minute of
  the event that chose it, and its size so far (the bound is on the sum of sizes);
- `kept_spans`: its spans as the exporter sent them (attributes, events and links as JSON);
- `kept_logs`: the log lines written inside its spans (OTLP logs with its trace id).

Migration: `controlplane/migrations/versions/s0009_kept_traces.py`.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Column, DateTime, Index, Integer, Text
from sqlmodel import Field

from controlplane.store import BigId, StoreModel, table


def _utc(*, index: bool = False) -> Column:
    return Column(DateTime(timezone=True), nullable=False, index=index)


class KeptTrace(StoreModel, table=True):
    __tablename__ = "kept_traces"
    __table_args__ = (Index("ix_kept_traces_slice_minute", "slice", "minute"),)

    trace_id: str = Field(primary_key=True, max_length=32)
    slice: str = Field(max_length=64)
    minute: datetime = Field(sa_column=_utc())
    reason: str = Field(max_length=8)  # bad | slow | probe
    seconds: float = Field(default=0.0)  # the choosing span's duration
    kept_at: datetime = Field(sa_column=_utc(index=True))
    size_bytes: int = Field(default=0, sa_column=Column(BigInteger(), nullable=False, server_default="0"))


class KeptSpan(StoreModel, table=True):
    __tablename__ = "kept_spans"

    trace_id: str = Field(primary_key=True, max_length=32)
    span_id: str = Field(primary_key=True, max_length=16)
    parent_span_id: str = Field(default="", max_length=16)
    name: str = Field(max_length=200)
    service: str = Field(default="", max_length=100)
    kind: str = Field(default="", max_length=16)
    start_unix_nano: int = Field(sa_column=Column(BigInteger(), nullable=False))
    end_unix_nano: int = Field(sa_column=Column(BigInteger(), nullable=False))
    status_code: int = Field(default=0, sa_column=Column(Integer(), nullable=False))  # 0 unset, 1 ok, 2 error
    status_message: str = Field(default="", sa_column=Column(Text(), nullable=False))
    attributes: str = Field(default="{}", sa_column=Column(Text(), nullable=False))  # JSON object
    events: str = Field(default="[]", sa_column=Column(Text(), nullable=False))  # JSON [{name, time, attributes}]
    links: str = Field(default="[]", sa_column=Column(Text(), nullable=False))  # JSON [{trace_id, span_id, attributes}]


class KeptLog(StoreModel, table=True):
    __tablename__ = "kept_logs"
    __table_args__ = (Index("ix_kept_logs_trace", "trace_id", "time_unix_nano"),)

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    trace_id: str = Field(max_length=32)
    span_id: str = Field(default="", max_length=16)
    time_unix_nano: int = Field(sa_column=Column(BigInteger(), nullable=False))
    severity: str = Field(default="", max_length=16)
    service: str = Field(default="", max_length=100)
    body: str = Field(sa_column=Column(Text(), nullable=False))
    attributes: str = Field(default="{}", sa_column=Column(Text(), nullable=False))  # JSON object


kept_traces_t = table(KeptTrace)
kept_spans_t = table(KeptSpan)
kept_logs_t = table(KeptLog)
