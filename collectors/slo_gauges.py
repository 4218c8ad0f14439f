"""SLO gauges on the collector's /metrics, computed from the store at scrape time (cached briefly).

Usage:

    registry.register(SloGauges(engine, specs, events=events, boundaries=slices.boundaries))
"""

from __future__ import annotations

import logging
import threading
import time

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Engine

from controlplane.clock import utcnow
from controlplane.slo.results import SloReport
from controlplane.slo.rolled import evaluate_all_from_rollups
from controlplane.slo.spec import EventSpec, SloSpec

log = logging.getLogger(__name__)


class SloGauges(Collector):
    def __init__(
        self,
        engine: Engine,
        specs: list[SloSpec],
        *,
        events: dict[str, EventSpec],
        boundaries: tuple[float, ...],
        cache_seconds: float = 15.0,
    ) -> None:
        self.engine = engine
        self.specs = specs
        self.events = events
        self.boundaries = boundaries
        self.cache_seconds = cache_seconds
        self._cached: tuple[float, SloReport] | None = None
        self._lock = threading.Lock()

    def report(self) -> SloReport:
        with self._lock:
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] > self.cache_seconds:
                report = evaluate_all_from_rollups(
                    self.engine, self.specs, events=self.events, boundaries=self.boundaries, at=utcnow()
                )
                self._cached = (now, report)
            return self._cached[1]

    def collect(self):
        try:
            report = self.report()
        except Exception as exc:  # a scrape must not fail because the store is busy
            log.warning("SLO gauges unavailable: %s", exc)
            return
        labels = ["slo", "slice"]
        sli = GaugeMetricFamily("slo_sli", "SLI over the SLO window (1 with no events).", labels=labels)
        objective = GaugeMetricFamily("slo_objective", "The SLO's objective.", labels=labels)
        remaining = GaugeMetricFamily(
            "slo_error_budget_remaining", "Share of the error budget left (negative once overspent).", labels=labels
        )
        burn = GaugeMetricFamily(
            "slo_burn_rate", "Error ratio / (1 - objective) over a window.", labels=[*labels, "window"]
        )
        alert = GaugeMetricFamily("slo_alert", "1 while a burn-rate alert tier fires.", labels=[*labels, "severity"])
        for s in report.slos:
            ids = [s.name, s.slice]
            sli.add_metric(ids, s.sli)
            objective.add_metric(ids, s.objective)
            remaining.add_metric(ids, s.budget_remaining)
            for window, rate in s.burn_rates.items():
                burn.add_metric([*ids, window], rate)
            for tier, firing in (("page", s.alerts.page), ("ticket", s.alerts.ticket)):
                alert.add_metric([*ids, tier], 1.0 if firing else 0.0)
        yield from (sli, objective, remaining, burn, alert)

    def describe(self):
        return []

    def register_on(self, registry) -> None:
        registry.register(self)
