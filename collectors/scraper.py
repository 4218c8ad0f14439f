"""The Prometheus scraper: reads each target's /metrics on an interval and keeps selected series.

Usage:

    scraper = Scraper(store_engine, ["http://127.0.0.1:8080/metrics"], ["platform_outbox_depth"])
    scraper.run(stop=threading.Event(), interval=15.0)

Exposition text is parsed with prometheus-client's own parser. Only samples whose name is selected
(sample names, so a counter is `platform_shed_requests_total`) are stored, plus a synthetic `up`
sample per target and round (1 or 0), so history shows outages. A target that cannot be read or
parsed is recorded as down with the reason in `scrape_targets.last_error`; it never stops the round.
The read side (`latest`, `history`, `target_status`) is in `controlplane.scraped`.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Connection, Engine, delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError

from controlplane.clock import as_utc, utcnow
from controlplane.scraped import history, latest, target_status
from controlplane.settings import Settings
from controlplane.storage import make_engine, reader
from controlplane.store import ScrapedSample, ScrapeTarget, table

__all__ = ["ScrapeError", "Scraper", "history", "latest", "target_status"]

log = logging.getLogger(__name__)

UP = "up"
DEFAULT_TIMEOUT_SECONDS = 10.0  # Prometheus' own default scrape_timeout
MAX_BODY_BYTES = 16 * 2**20
MAX_ERROR_CHARS = 500
MAX_PARALLEL_FETCHES = 8
PRUNE_BATCH_ROWS = 5_000
PRUNE_EVERY_SECONDS = 600.0
# The parser used here reads the classic text format, not OpenMetrics, so ask for that.
ACCEPT = "text/plain;version=0.0.4;q=1.0,*/*;q=0.1"


class ScrapeError(Exception):
    """A target could not be read or understood; the message is what `last_error` records."""


@dataclass(frozen=True)
class Sample:
    name: str
    labels: str  # canonical JSON, see canonical_labels
    value: float


@dataclass(frozen=True)
class ScrapeResult:
    target: str
    up: bool
    scraped_at: datetime
    seconds: float
    samples: tuple[Sample, ...] = ()  # the kept samples; the synthetic `up` is not among them
    error: str | None = None
    stored: bool = True  # False when the store refused the write (logged; the next round writes again)


def canonical_labels(labels: dict[str, str]) -> str:
    """One spelling per label set (sorted keys, no spaces), so equal series compare equal as text."""
    return json.dumps(labels, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def split_list(value: str) -> list[str]:
    """A comma-separated setting as a list, blanks dropped."""
    return [item.strip() for item in value.split(",") if item.strip()]


def parse_samples(text: str, keep: frozenset[str]) -> list[Sample]:
    """The samples of exposition `text` named in `keep`. Raises ScrapeError if any line is unparseable."""
    try:
        # The whole text is parsed, not only the kept lines: like Prometheus, a target that serves
        # a broken exposition is down, rather than silently half-read.
        parsed = [sample for family in text_string_to_metric_families(text) for sample in family.samples]
    except Exception as exc:  # mostly ValueError, but odd input can trip the parser in other ways
        raise ScrapeError(_clip(f"unparseable exposition: {type(exc).__name__}: {exc}")) from exc
    return [
        Sample(sample.name, canonical_labels(sample.labels), float(sample.value))
        for sample in parsed
        # NaN (a summary with no observations, a staleness marker) cannot be stored: SQLite turns it
        # into NULL, which the NOT NULL value column refuses, and the whole target's write would fail.
        if sample.name in keep and not math.isnan(sample.value)
    ]


class Scraper:
    """Scrapes `targets` (URLs of /metrics) and stores the samples named in `metrics`.

    `client` is the HTTP seam (an `httpx.Client`, e.g. with `transport=`); by default the scraper
    makes and closes its own. `clock` stamps samples (UTC); `timeout` bounds one target's scrape.
    """

    def __init__(
        self,
        engine: Engine,
        targets: Sequence[str],
        metrics: Iterable[str],
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        client: httpx.Client | None = None,
        clock: Callable[[], datetime] = utcnow,
        retention: timedelta | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be above 0 seconds, not {timeout}")
        self.engine = engine
        self.targets = list(dict.fromkeys(targets))  # a target listed twice is scraped once a round
        # The synthetic `up` is ours; a target's own `up` series would be a second, conflicting one.
        self.metrics = frozenset(metrics) - {UP}
        self.timeout = timeout
        self.clock = clock
        self.retention = retention
        self.max_body_bytes = max_body_bytes
        self._owns_client = client is None
        # Targets are internal: a proxy picked up from the environment would only make them look down.
        self.client = client if client is not None else httpx.Client(trust_env=False)
        self._down: set[str] = set()
        self._next_prune = 0.0

    @classmethod
    def from_settings(cls, settings: Settings, engine: Engine | None = None, **options: Any) -> Scraper:
        """A scraper of `scrape_targets` keeping `scrape_metrics`, writing to `store_url` (or `engine`)."""
        engine = engine if engine is not None else make_engine(settings.store_url, **settings.engine_options())
        # Prometheus refuses a scrape timeout longer than the interval; there is no setting of its own.
        options.setdefault("timeout", min(DEFAULT_TIMEOUT_SECONDS, settings.scrape_interval_seconds))
        return cls(engine, split_list(settings.scrape_targets), split_list(settings.scrape_metrics), **options)

    def close(self) -> None:
        if self._owns_client:
            self.client.close()

    def __enter__(self) -> Scraper:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- one round ---------------------------------------------------------------------------------

    def scrape_once(self) -> list[ScrapeResult]:
        """Scrape every target once and store what was read; a down target is a result, not an error."""
        if not self.targets:
            return []
        # Fetch in parallel so a target that hangs until its timeout does not delay the others;
        # write one target at a time (SQLite has a single writer anyway).
        workers = min(MAX_PARALLEL_FETCHES, len(self.targets))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="scrape") as pool:
            observed = list(pool.map(self._observe, self.targets))
        results = [self._store(result) for result in observed]
        self._log_changes(results)
        return results

    def _observe(self, target: str) -> ScrapeResult:
        scraped_at = as_utc(self.clock())
        started = time.monotonic()
        try:
            samples, error = parse_samples(self._fetch(target), self.metrics), None
        except ScrapeError as exc:
            samples, error = [], str(exc)
        except Exception as exc:  # a surprise from one target must not end the round for the others
            log.exception("scraping %s failed unexpectedly", target)
            samples, error = [], _clip(f"unexpected {type(exc).__name__}: {exc}")
        return ScrapeResult(
            target=target,
            up=error is None,
            scraped_at=scraped_at,
            seconds=time.monotonic() - started,
            samples=tuple(samples),
            error=error,
        )

    def _fetch(self, url: str) -> str:
        """The body of one /metrics. `timeout` bounds connecting and each read, and the body as a whole
        is checked against it between chunks, so a trickling target overruns by at most one read."""
        deadline = time.monotonic() + self.timeout
        try:
            with self.client.stream("GET", url, headers={"Accept": ACCEPT}, timeout=self.timeout) as response:
                if response.status_code != 200:
                    raise ScrapeError(f"HTTP {response.status_code} {response.reason_phrase}".rstrip())
                body = self._read_body(response, deadline)
        except httpx.TimeoutException as exc:
            raise ScrapeError(f"timed out after {self.timeout:g} s ({type(exc).__name__})") from exc
        except httpx.ConnectError as exc:
            raise ScrapeError(_clip(f"cannot connect: {exc}")) from exc
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise ScrapeError(_clip(f"{type(exc).__name__}: {exc}")) from exc
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ScrapeError(_clip(f"unparseable exposition: not UTF-8 ({exc})")) from exc

    def _read_body(self, response: httpx.Response, deadline: float) -> bytes:
        chunks, size = [], 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > self.max_body_bytes:
                raise ScrapeError(f"body is over the limit of {self.max_body_bytes} bytes")
            if time.monotonic() > deadline:
                raise ScrapeError(f"timed out after {self.timeout:g} s reading the body")
            chunks.append(chunk)
        return b"".join(chunks)

    def _store(self, result: ScrapeResult) -> ScrapeResult:
        try:
            write_scrape(self.engine, result)
        except SQLAlchemyError as exc:
            # The store is the problem, not the target: keep going, the next round writes afresh.
            log.warning("could not store the scrape of %s: %s", result.target, _clip(str(exc)))
            return replace(result, stored=False)
        return result

    def _log_changes(self, results: list[ScrapeResult]) -> None:
        """Log a target going down and coming back, not every round it stays down."""
        for result in results:
            if not result.up and result.target not in self._down:
                log.warning("scrape target %s is down: %s", result.target, result.error)
                self._down.add(result.target)
            elif result.up and result.target in self._down:
                log.info("scrape target %s is up again", result.target)
                self._down.discard(result.target)

    # -- the loop and retention --------------------------------------------------------------------

    def run(self, stop: threading.Event, interval: float) -> None:
        """Scrape every `interval` seconds until `stop` is set. A failing round is logged and the next
        interval tries again; setting `stop` ends the wait at once (a round in progress finishes)."""
        if interval <= 0:
            raise ValueError(f"interval must be above 0 seconds, not {interval}")
        while not stop.is_set():
            started = time.monotonic()
            self._round()
            # Rounds start on a fixed rate, not a fixed gap, so a slow round does not shift them all.
            stop.wait(max(0.0, interval - (time.monotonic() - started)))

    def _round(self) -> None:
        try:
            self.scrape_once()
        except Exception:
            log.exception("scrape round failed; trying again next interval")
        if self.retention is not None and time.monotonic() >= self._next_prune:
            self._next_prune = time.monotonic() + PRUNE_EVERY_SECONDS
            try:
                self.prune(self.retention)
            except Exception:
                log.exception("pruning scraped samples failed; trying again later")

    def prune(self, older_than: timedelta) -> int:
        """Delete samples scraped more than `older_than` ago (by this scraper's clock); returns how many."""
        return prune_samples(self.engine, as_utc(self.clock()) - older_than)


# -- the store ---------------------------------------------------------------------------------------


def _dialect_insert(conn: Connection):
    return pg_insert if conn.dialect.name == "postgresql" else sqlite_insert


def write_scrape(engine: Engine, result: ScrapeResult) -> None:
    """One transaction per target: its status, its `up` sample and its kept samples, or nothing."""
    rows = [_row(result, UP, "{}", 1.0 if result.up else 0.0)]
    rows += [_row(result, sample.name, sample.labels, sample.value) for sample in result.samples]
    with engine.begin() as conn:
        _upsert_target(conn, result)
        conn.execute(table(ScrapedSample).insert(), rows)


def _row(result: ScrapeResult, name: str, labels: str, value: float) -> dict[str, Any]:
    return {"target": result.target, "name": name, "labels": labels, "value": value, "scraped_at": result.scraped_at}


def _upsert_target(conn: Connection, result: ScrapeResult) -> None:
    targets_t = table(ScrapeTarget)
    stmt = _dialect_insert(conn)(targets_t).values(
        target=result.target,
        up=int(result.up),
        last_scrape=result.scraped_at,
        last_error=result.error,
        scrape_seconds=result.seconds,
    )
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=["target"],
            set_={col: stmt.excluded[col] for col in ("up", "last_scrape", "last_error", "scrape_seconds")},
            # Two scrapers sharing a store (or a late write) must not move a target's status back in time.
            where=targets_t.c.last_scrape <= stmt.excluded.last_scrape,
        )
    )


def prune_samples(engine: Engine, before: datetime) -> int:
    """Delete samples scraped before `before`; returns how many."""
    samples_t = table(ScrapedSample)
    with reader(engine).connect() as conn:
        series = conn.execute(select(samples_t.c.target, samples_t.c.name).distinct()).all()
    return sum(_prune_series(engine, target, name, as_utc(before)) for target, name in series)


def _prune_series(engine: Engine, target: str, name: str, before: datetime) -> int:
    # By (target, name) so each delete walks the (target, name, scraped_at) index (there is none on
    # scraped_at alone), in small transactions so scrapes never wait long behind a prune.
    samples_t = table(ScrapedSample)
    old = (
        select(samples_t.c.id)
        .where(samples_t.c.target == target, samples_t.c.name == name, samples_t.c.scraped_at < before)
        .limit(PRUNE_BATCH_ROWS)
    )
    deleted = 0
    while True:
        with engine.begin() as conn:
            count = conn.execute(delete(samples_t).where(samples_t.c.id.in_(old.scalar_subquery()))).rowcount
        deleted += count
        if count < PRUNE_BATCH_ROWS:
            return deleted


def _clip(message: str) -> str:
    return message if len(message) <= MAX_ERROR_CHARS else message[: MAX_ERROR_CHARS - 3] + "..."
