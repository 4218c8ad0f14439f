"""The platform's Prometheus metrics, on a registry of their own (one per app, so tests stay apart).

Usage:

    metrics = PlatformMetrics()
    metrics.shed_requests.labels(route="POST /v1/bets").inc()
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

# OpenTelemetry's semantic-convention buckets for http.server.request.duration, in seconds.
HTTP_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class PlatformMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        # process_cpu_seconds_total and friends, as every Prometheus client exposes them (the control
        # plane allocates CPU-priced cost by them).
        ProcessCollector(registry=r)
        self.requests_in_flight = Gauge(
            "platform_http_requests_in_flight", "HTTP requests being served.", ["route"], registry=r
        )
        self.admitted_in_flight = Gauge(
            "platform_admitted_in_flight",
            "Requests admitted past the load-shedding bound and still being worked on.",
            ["route"],
            registry=r,
        )
        self.requests = Counter(
            "platform_http_requests", "HTTP requests answered.", ["method", "route", "code"], registry=r
        )
        self.request_duration = Histogram(
            "platform_http_request_duration_seconds",
            "Time to answer an HTTP request.",
            ["method", "route", "code"],
            buckets=HTTP_DURATION_BUCKETS,
            registry=r,
        )
        self.synthetic_requests = Counter(
            "platform_synthetic_requests",
            "Synthetic HTTP requests answered (header X-Synthetic); left out of the request counter and "
            "histogram above, which feed the SLOs.",
            ["method", "route", "code"],
            registry=r,
        )
        self.synthetic_ignored = Counter(
            "platform_synthetic_header_ignored",
            "Requests whose X-Synthetic header was ignored: sent without the admin token or a probe token "
            "(PLATFORM_PROBE_TOKENS) in X-Probe-Token, so served and measured as players' requests.",
            registry=r,
        )
        self.idempotency_replays = Counter(
            "platform_idempotency_replays", "Bet requests answered from a stored Idempotency-Key response.", registry=r
        )
        self.risk_cache_lookups = Counter(
            "platform_risk_cache_lookups",
            "Risk feature lookups, by result (hit, miss, bypass).",
            ["result"],
            registry=r,
        )
        self.db_lock_waits = Counter(
            "platform_db_lock_timeouts",
            "Database calls that gave up waiting for a lock (answered 503, retryable).",
            registry=r,
        )
        self.rate_limited = Counter(
            "platform_rate_limited", "Requests refused with 429, by limit.", ["limit"], registry=r
        )
        self.shed_requests = Counter(
            "platform_shed_requests",
            "Requests shed with 503 because in-flight work was at its bound (synthetic requests not counted).",
            ["route"],
            registry=r,
        )
        self.odds_publish_lag = Histogram(
            "platform_odds_publish_lag_seconds",
            "From a price change's commit until every SSE subscriber's connection has it (one per change).",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.odds_subscribers = Gauge("platform_odds_subscribers", "Connected odds SSE subscribers.", registry=r)
        self.odds_subscribers_dropped = Counter(
            "platform_odds_subscribers_dropped",
            "SSE subscribers disconnected because they fell too far behind.",
            registry=r,
        )
        self.odds_updates = Counter("platform_odds_updates", "Price changes published to the odds feed.", registry=r)
        self.odds_bus_unsent = Counter(
            "platform_odds_bus_unsent",
            "Price changes the odds bus (NATS) could not take; sent to this replica's subscribers only.",
            registry=r,
        )
        self.login_attempts = Counter("platform_login_attempts", "Login attempts, by outcome.", ["outcome"], registry=r)
        self.faults_active = Gauge("platform_faults_active", "Game-day faults in force, by kind.", ["kind"], registry=r)

    def watch_outbox(self, depth_and_lag: Callable[[], tuple[int, float]]) -> None:
        """Outbox depth and relay lag are read from the database at scrape time."""
        self.registry.register(_OutboxCollector(depth_and_lag))


class _OutboxCollector(Collector):
    def __init__(self, depth_and_lag: Callable[[], tuple[int, float]]) -> None:
        self.depth_and_lag = depth_and_lag

    def collect(self):
        try:
            depth, lag = self.depth_and_lag()
        except Exception:  # a scrape must not fail because the database is busy
            return
        yield GaugeMetricFamily("platform_outbox_depth", "Outbox events committed but not yet delivered.", value=depth)
        yield GaugeMetricFamily(
            "platform_outbox_relay_lag_seconds",
            "Age of the oldest undelivered outbox event (0 when none is waiting).",
            value=lag,
        )

    def describe(self):
        return []
