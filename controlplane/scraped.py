"""The read side of the scraped Prometheus series: the newest value per series, history, target health.

Usage:

    [depth] = latest(store_engine, name="platform_outbox_depth")          # depth.value, depth.time
    points = history(store_engine, "platform_db_lock_timeouts_total", since=utcnow() - timedelta(minutes=5))

The collector's scraper (`collectors.scraper`) writes these rows; checklists and dashboards read them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, select

from controlplane.clock import as_utc
from controlplane.storage import reader
from controlplane.store import ScrapedSample, ScrapeTarget, table


@dataclass(frozen=True)
class Sample:
    """One scraped value of one series (target, name, labels) and when it was scraped (aware UTC)."""

    time: datetime
    target: str
    name: str
    labels: dict[str, str]
    value: float


@dataclass(frozen=True)
class TargetHealth:
    """A scrape target's last scrape: whether it answered, its error if not, and how long it took."""

    target: str
    up: bool
    last_scrape: datetime
    last_error: str | None
    scrape_seconds: float


def latest(engine: Engine, target: str | None = None, name: str | None = None) -> list[Sample]:
    """The newest sample of each series (target, name, labels), optionally of one target or name,
    ordered by target, name, labels."""
    samples_t = table(ScrapedSample)
    newest_first = (samples_t.c.scraped_at.desc(), samples_t.c.id.desc())
    rank = func.row_number().over(
        partition_by=(samples_t.c.target, samples_t.c.name, samples_t.c.labels), order_by=newest_first
    )
    ranked = select(samples_t, rank.label("rank"))
    if target is not None:
        ranked = ranked.where(samples_t.c.target == target)
    if name is not None:
        ranked = ranked.where(samples_t.c.name == name)
    sub = ranked.subquery()
    query = select(sub).where(sub.c.rank == 1).order_by(sub.c.target, sub.c.name, sub.c.labels)
    with reader(engine).connect() as conn:
        return [_sample(row) for row in conn.execute(query).mappings()]


def history(
    engine: Engine, name: str, since: datetime, target: str | None = None, until: datetime | None = None
) -> list[Sample]:
    """Every sample of `name` scraped at or after `since` (and at or before `until`), oldest first."""
    samples_t = table(ScrapedSample)
    query = select(samples_t).where(samples_t.c.name == name, samples_t.c.scraped_at >= as_utc(since))
    if until is not None:
        query = query.where(samples_t.c.scraped_at <= as_utc(until))
    if target is not None:
        query = query.where(samples_t.c.target == target)
    query = query.order_by(samples_t.c.scraped_at, samples_t.c.target, samples_t.c.labels, samples_t.c.id)
    with reader(engine).connect() as conn:
        return [_sample(row) for row in conn.execute(query).mappings()]


def target_status(engine: Engine) -> list[TargetHealth]:
    """Each target's last scrape, by target."""
    targets_t = table(ScrapeTarget)
    with reader(engine).connect() as conn:
        rows = conn.execute(select(targets_t).order_by(targets_t.c.target)).mappings().all()
    return [
        TargetHealth(
            target=row["target"],
            up=bool(row["up"]),
            last_scrape=as_utc(row["last_scrape"]),
            last_error=row["last_error"],
            scrape_seconds=row["scrape_seconds"],
        )
        for row in rows
    ]


def _sample(row: Any) -> Sample:
    return Sample(
        time=as_utc(row["scraped_at"]),
        target=row["target"],
        name=row["name"],
        labels=json.loads(row["labels"]),
        value=row["value"],
    )
