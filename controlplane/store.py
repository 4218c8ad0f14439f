"""The control plane's own store: per-minute SLI buckets, ingest bookkeeping, scraped series.

The store is a different database from the platform's (`CONTROLPLANE_STORE_URL`). Schema changes go
through the Alembic migrations in `controlplane/migrations/` (`migrate_store(engine)`).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import cast

from sqlalchemy import BigInteger, Column, DateTime, Engine, Float, Index, Integer, LargeBinary, Table, Text, inspect
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from controlplane.storage import upgrade


class StoreModel(SQLModel, registry=registry()):
    """Base of the store's tables: their own metadata, apart from the platform's."""


BigId = BigInteger().with_variant(Integer(), "sqlite")


def _utc(*, index: bool = False, primary_key: bool = False) -> Column:
    return Column(DateTime(timezone=True), nullable=False, index=index, primary_key=primary_key)


class SliBucket(StoreModel, table=True):
    """One slice, one minute (keyed by the events' own time): how many events, how many bad."""

    __tablename__ = "sli_buckets"

    slice: str = Field(primary_key=True, max_length=64)
    minute: datetime = Field(sa_column=_utc(primary_key=True))
    total: int = Field(default=0, sa_column=Column(BigInteger(), nullable=False, server_default="0"))
    bad: int = Field(default=0, sa_column=Column(BigInteger(), nullable=False, server_default="0"))


class SliLatencyBucket(StoreModel, table=True):
    """Latency histogram counts of one slice-minute on fixed boundaries; `le` is a boundary in seconds
    ("0.25") or "+Inf". Counts are per bucket, not cumulative."""

    __tablename__ = "sli_latency_buckets"

    slice: str = Field(primary_key=True, max_length=64)
    minute: datetime = Field(sa_column=_utc(primary_key=True))
    le: str = Field(primary_key=True, max_length=16)
    count: int = Field(default=0, sa_column=Column(BigInteger(), nullable=False, server_default="0"))


class SliMinuteBlock(StoreModel, table=True):
    """The minutes of one slice-hour packed in one row (`controlplane.slo.minute_store`): what
    `sli_buckets` and `sli_latency_buckets` held for that hour, moved here once the hour is past."""

    __tablename__ = "sli_minute_blocks"
    __table_args__ = {"sqlite_with_rowid": False}

    slice: str = Field(primary_key=True, max_length=64)
    hour: datetime = Field(sa_column=_utc(primary_key=True))
    minutes: bytes = Field(sa_column=Column(LargeBinary(), nullable=False))


class SliExemplar(StoreModel, table=True):
    """A few trace ids of bad and of slow events per slice-minute, to jump from a burn to a trace."""

    __tablename__ = "sli_exemplars"
    __table_args__ = (Index("ix_sli_exemplars_slice_minute", "slice", "minute"),)

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    slice: str = Field(max_length=64)
    minute: datetime = Field(sa_column=_utc())
    kind: str = Field(max_length=8)  # bad | slow
    trace_id: str = Field(max_length=32)
    span_id: str = Field(max_length=16)
    value_seconds: float = Field(sa_column=Column(Float(), nullable=False))


class IngestedBatch(StoreModel, table=True):
    """Digest of every export request's content already counted: a re-sent export is skipped whole."""

    __tablename__ = "ingested_batches"

    digest: str = Field(primary_key=True, max_length=64)
    signal: str = Field(max_length=8)
    received_at: datetime = Field(sa_column=_utc(index=True))


class MetricSeriesState(StoreModel, table=True):
    """The last cumulative point seen per metric series, so re-exported cumulative points add nothing."""

    __tablename__ = "metric_series_state"

    series_key: str = Field(primary_key=True, max_length=64)
    start_time_unix_nano: int = Field(sa_column=Column(BigInteger(), nullable=False))
    time_unix_nano: int = Field(sa_column=Column(BigInteger(), nullable=False))
    count: int = Field(sa_column=Column(BigInteger(), nullable=False))
    bucket_counts: str = Field(sa_column=Column(Text(), nullable=False))  # JSON list of ints


class ScrapeTarget(StoreModel, table=True):
    __tablename__ = "scrape_targets"

    target: str = Field(primary_key=True, max_length=500)
    up: int = Field(default=0)
    last_scrape: datetime = Field(sa_column=_utc())
    last_error: str | None = Field(default=None, sa_column=Column(Text(), nullable=True))
    scrape_seconds: float = Field(default=0.0, sa_column=Column(Float(), nullable=False))


class ScrapedSample(StoreModel, table=True):
    """Selected series scraped from a target's /metrics, for checklists and dashboards."""

    __tablename__ = "scraped_samples"
    __table_args__ = (Index("ix_scraped_samples_target_name_time", "target", "name", "scraped_at"),)

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    target: str = Field(max_length=500)
    name: str = Field(max_length=200)
    labels: str = Field(sa_column=Column(Text(), nullable=False))  # canonical JSON
    value: float = Field(sa_column=Column(Float(), nullable=False))
    scraped_at: datetime = Field(sa_column=_utc())


MIGRATIONS = Path(__file__).with_name("migrations")


def migrate_store(engine: Engine, revision: str = "head") -> None:
    """Bring the store's schema to `revision` (default: the newest). Safe to run on every start."""

    upgrade(engine, MIGRATIONS, revision)


def table(model: type[SQLModel]) -> Table:
    """The table behind a table model, typed (SQLModel sets `__table__` without declaring it)."""
    return cast(Table, inspect(model).local_table)
