"""The SLO engine's rollup tables in the control plane's store: hour and day sums of the per-minute SLI
buckets (`controlplane.store`), timeslice series of freshness SLIs, and the marks of what changed.

Written by `controlplane.slo.rollups.refresh_rollups`, read by `controlplane.slo.rolled` and
`controlplane.slo.curves`; the marks are written by a database trigger on every minute write.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Column, DateTime, Float
from sqlmodel import Field

from controlplane.store import SliBucket, SliLatencyBucket, StoreModel, table


def _utc(*, primary_key: bool = False) -> Column:
    return Column(DateTime(timezone=True), nullable=False, primary_key=primary_key)


def _count() -> Column:
    return Column(BigInteger(), nullable=False)


class SliRollup(StoreModel, table=True):
    """A slice's events and bad events over one hour or one UTC day (`period`), from its minutes."""

    __tablename__ = "sli_rollups"

    slice: str = Field(primary_key=True, max_length=64)
    period: str = Field(primary_key=True, max_length=4)  # hour | day
    start: datetime = Field(sa_column=_utc(primary_key=True))
    total: int = Field(sa_column=_count())
    bad: int = Field(sa_column=_count())


class SliLatencyRollup(StoreModel, table=True):
    """Per-bucket latency counts of a slice over one hour or day (not cumulative, as the minutes)."""

    __tablename__ = "sli_latency_rollups"

    slice: str = Field(primary_key=True, max_length=64)
    period: str = Field(primary_key=True, max_length=4)
    start: datetime = Field(sa_column=_utc(primary_key=True))
    le: str = Field(primary_key=True, max_length=16)
    count: int = Field(sa_column=_count())


class SliTimesliceSeries(StoreModel, table=True):
    """A freshness SLI whose timeslices are rolled up: built once, then kept with the other rollups."""

    __tablename__ = "sli_timeslice_series"

    slice: str = Field(primary_key=True, max_length=64)
    threshold_seconds: float = Field(sa_column=Column(Float(), primary_key=True))
    percentile: float = Field(sa_column=Column(Float(), primary_key=True))
    built_at: datetime = Field(sa_column=_utc())


class SliTimesliceRollup(StoreModel, table=True):
    """Of one series, over one hour or day: minutes with data, and how many of them were bad."""

    __tablename__ = "sli_timeslice_rollups"

    slice: str = Field(primary_key=True, max_length=64)
    threshold_seconds: float = Field(sa_column=Column(Float(), primary_key=True))
    percentile: float = Field(sa_column=Column(Float(), primary_key=True))
    period: str = Field(primary_key=True, max_length=4)
    start: datetime = Field(sa_column=_utc(primary_key=True))
    minutes: int = Field(sa_column=_count())
    bad_minutes: int = Field(sa_column=_count())


class SliRollupChange(StoreModel, table=True):
    """An hour whose minutes changed, or a day whose hours did, since they were last rolled up."""

    __tablename__ = "sli_rollup_changes"

    slice: str = Field(primary_key=True, max_length=64)
    period: str = Field(primary_key=True, max_length=4)
    start: datetime = Field(sa_column=_utc(primary_key=True))
    version: int = Field(sa_column=_count())


rollups_t, latency_t, series_t = table(SliRollup), table(SliLatencyRollup), table(SliTimesliceSeries)
slices_t, changes_t = table(SliTimesliceRollup), table(SliRollupChange)
buckets_t, minutes_lat_t = table(SliBucket), table(SliLatencyBucket)
Series = tuple[str, float, float]  # a freshness series: slice, threshold_seconds, percentile
