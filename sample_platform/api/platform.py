"""The `Platform`: everything the routes share (engine, metrics, faults, risk, odds broker, relay),
built once per app and kept on `app.state.platform`."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Engine, event

from sample_platform.faults import FaultRegistry
from sample_platform.login import LoginPolicy, SlidingWindowLimiter
from sample_platform.metrics import PlatformMetrics
from sample_platform.odds_feed import OddsBroker
from sample_platform.odds_stream import OddsStreamServer
from sample_platform.outbox import JsonlSink, OutboxRelay, OutboxSink
from sample_platform.risk import FeatureCache, RiskEngine, RiskLimits
from sample_platform.settings import PlatformSettings


@dataclass
class Platform:
    """Everything the routes share, built once per app."""

    settings: PlatformSettings
    engine: Engine
    metrics: PlatformMetrics
    faults: FaultRegistry
    risk: RiskEngine
    broker: OddsBroker
    relay: OutboxRelay
    login_policy: LoginPolicy
    stream: OddsStreamServer

    @property
    def idempotency_ttl(self) -> timedelta:
        return timedelta(seconds=self.settings.idempotency_ttl_seconds)

    @property
    def idempotency_lock(self) -> timedelta:
        return timedelta(seconds=self.settings.idempotency_lock_seconds)


def default_sink(settings: PlatformSettings) -> OutboxSink:
    """The sink PLATFORM_OUTBOX_SINK names: the JSON-lines file, or NATS JetStream."""
    if settings.outbox_sink == "nats":
        # local: only a platform that publishes to NATS loads its client
        from sample_platform.nats_sink import NatsSink

        return NatsSink(settings.nats_url)
    return JsonlSink(settings.outbox_sink_path)


def build_platform(settings: PlatformSettings, engine: Engine, outbox_sink: OutboxSink | None = None) -> Platform:
    metrics = PlatformMetrics()
    faults = FaultRegistry(engine, max_ttl_seconds=settings.fault_max_ttl_seconds)
    limits = RiskLimits(
        max_stake_minor=settings.max_stake_minor,
        max_liability_minor=settings.max_liability_minor,
        max_exposure_minor=settings.max_exposure_minor,
        max_bets_per_minute=settings.max_bets_per_minute,
    )
    risk = RiskEngine(
        limits,
        FeatureCache(ttl=settings.risk_cache_ttl_seconds, metrics=metrics),
        cache_enabled=lambda: not faults.cache_off,
    )
    relay = OutboxRelay(engine, outbox_sink or default_sink(settings), delay=faults.broker_delay)
    metrics.watch_outbox(relay.backlog)
    policy = LoginPolicy(
        session_ttl=timedelta(seconds=settings.session_ttl_seconds),
        max_failures=settings.login_max_failures,
        lockout=timedelta(seconds=settings.login_lockout_seconds),
        per_account=SlidingWindowLimiter(settings.login_attempts_per_minute_account),
        per_address=SlidingWindowLimiter(settings.login_attempts_per_minute_address),
        scrypt_log2_n=settings.password_scrypt_log2_n,
    )
    broker = OddsBroker(metrics, queue_size=settings.odds_subscriber_queue)
    if settings.odds_bus == "nats":
        # local: only a platform whose odds go through NATS loads its client
        from sample_platform.odds_bus import OddsBus

        broker.bus = OddsBus(settings.nats_url, broker)

    @event.listens_for(engine, "before_cursor_execute")
    def _slow_database(*_args: object) -> None:
        delay = faults.db_delay()
        if delay:
            time.sleep(delay)

    stream = OddsStreamServer(broker, host=settings.odds_stream_host, port=settings.odds_stream_port)
    return Platform(settings, engine, metrics, faults, risk, broker, relay, policy, stream)
