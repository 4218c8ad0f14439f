"""The one settings object, read from `CONTROLPLANE_*` environment variables.

Usage:

    settings = get_settings()
    engine = make_engine(settings.database_url)
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_ADMIN_TOKEN = "changethis"


class Settings(BaseSettings):
    """Every knob of the product. Each field is the variable `CONTROLPLANE_<FIELD>`."""

    model_config = SettingsConfigDict(env_prefix="CONTROLPLANE_", extra="ignore")

    environment: Literal["development", "test", "production"] = Field(
        "development",
        description="`production` refuses development defaults such as the admin token 'changethis'.",
    )
    database_url: str = Field(
        "sqlite:///./var/platform.db",
        description="Sample platform database: sqlite:///path or postgresql+psycopg://user@host/db.",
    )
    admin_token: SecretStr = Field(
        SecretStr(DEFAULT_ADMIN_TOKEN),
        description="Bearer token for the platform's admin API.",
    )
    db_lock_timeout_ms: int = Field(
        2000,
        ge=1,
        description="How long a database call waits for a lock before failing with a retryable 503 "
        "(SQLite busy_timeout, PostgreSQL lock_timeout).",
    )
    db_statement_timeout_ms: int = Field(
        5000, ge=1, description="Longest a single database statement may run before it is cancelled."
    )
    idempotency_ttl_seconds: int = Field(
        86400, ge=60, description="How long an Idempotency-Key is remembered (default 24 h)."
    )
    idempotency_lock_seconds: int = Field(
        30,
        ge=1,
        description="After this long an in-flight Idempotency-Key whose request died may be taken over.",
    )
    max_stake_minor: int = Field(100_000, ge=1, description="Largest stake of one bet, minor units.")
    max_liability_minor: int = Field(
        5_000_000, ge=1, description="Largest total liability (payout minus stake) per selection, minor units."
    )
    max_body_bytes: int = Field(65_536, ge=1024, description="Largest request body the platform reads.")
    outbox_sink_path: Path = Field(
        Path("var/outbox.jsonl"), description="JSON-lines file the outbox relay delivers to."
    )
    outbox_sink: Literal["jsonl", "audit"] = Field(
        "jsonl",
        description="Where the platform's outbox relay delivers: the JSON-lines file, or the audit log at "
        "CONTROLPLANE_AUDIT_URL (typed money and change entries, each event once).",
    )
    outbox_relay_interval_seconds: float = Field(
        0.2, gt=0, description="How often the outbox relay polls for new events."
    )
    settlement_batch_size: int = Field(100, ge=1, le=10_000, description="Bets settled per database transaction.")
    session_ttl_seconds: int = Field(900, ge=30, description="Lifetime of a token issued by POST /v1/login.")
    login_max_failures: int = Field(
        5, ge=1, description="Consecutive wrong passwords after which an account is locked."
    )
    login_lockout_seconds: int = Field(300, ge=1, description="How long a locked account refuses logins.")
    login_attempts_per_minute_account: int = Field(
        10, ge=1, description="Login attempts allowed per account per minute (429 beyond)."
    )
    login_attempts_per_minute_address: int = Field(
        120,
        ge=1,
        description="Login attempts allowed per client address per minute (429 beyond); many players can share "
        "one address behind a carrier's NAT.",
    )
    password_scrypt_log2_n: int = Field(
        14, ge=10, le=20, description="scrypt cost: N = 2**this (memory about 128 * N * 8 bytes)."
    )
    bet_max_in_flight: int = Field(
        32, ge=1, description="Bet requests processed at once; more are shed with 503 and Retry-After."
    )
    max_exposure_minor: int = Field(
        1_000_000, ge=1, description="Largest total stake of one account's open bets, minor units."
    )
    max_bets_per_minute: int = Field(120, ge=1, description="Bets one account may place per minute.")
    risk_cache_ttl_seconds: float = Field(
        5.0, ge=0, description="How long the risk engine trusts a cached feature before re-reading it."
    )
    odds_subscriber_queue: int = Field(
        256,
        ge=1,
        description="Odds updates buffered per SSE subscriber; one that falls this far behind is disconnected.",
    )
    price_mover_interval_seconds: float = Field(
        2.0, ge=0, description="How often the background price mover changes a price (0 turns it off)."
    )
    fault_max_ttl_seconds: int = Field(3600, ge=1, description="Longest TTL a fault may be given.")
    otlp_endpoint: str | None = Field(
        None,
        description="Where the platform sends OpenTelemetry traces and metrics (OTLP/HTTP), e.g. "
        "http://127.0.0.1:4318; unset: no telemetry export.",
    )
    otlp_metric_interval_seconds: float = Field(
        10.0, gt=0, description="How often the platform exports its OpenTelemetry metrics."
    )
    store_url: str = Field(
        "sqlite:///./var/controlplane.db",
        description="The control plane's own database (SLI buckets, scraped series): sqlite:/// or postgresql+psycopg://.",
    )
    slices_path: Path = Field(Path("config/slices.yaml"), description="Which telemetry belongs to which SLI slice.")
    slos_path: Path = Field(
        Path("config/slos.yaml"), description="The service level objectives, one or more per slice."
    )
    audit_url: str = Field(
        "sqlite:///./var/audit.db", description="The audit log's database: sqlite:/// or postgresql+psycopg://."
    )
    audit_origin: str = Field(
        "controlplane.local/audit", description="The log's name in its checkpoints and verifier key (no spaces)."
    )
    audit_key_dir: Path = Field(Path("var/audit-keys"), description="Where the encrypted audit signing keys live.")
    audit_key_passphrase: SecretStr | None = Field(
        None, description="Encrypts the audit signing keys at rest; required outside development."
    )
    change_log_path: Path = Field(
        Path("var/changes.jsonl"), description="Where configuration changes (SLO specs) are recorded for the audit log."
    )
    events_path: Path = Field(
        Path("config/events.yaml"), description="Sporting events that SLOs can use as their window."
    )
    collector_max_body_bytes: int = Field(
        20 * 2**20, ge=1024, description="Largest OTLP request body, after decompression (413 above)."
    )
    collector_max_pending_writes: int = Field(
        8, ge=1, description="OTLP requests written to the store at once; more get 503 with Retry-After."
    )
    scrape_targets: str = Field(
        "", description="Comma-separated /metrics URLs the collector scrapes, e.g. http://127.0.0.1:8080/metrics."
    )
    scrape_interval_seconds: float = Field(15.0, gt=0, description="How often each scrape target is read.")
    scrape_metrics: str = Field(
        "platform_outbox_depth,platform_outbox_relay_lag_seconds,platform_http_requests_in_flight,"
        "platform_admitted_in_flight,platform_odds_subscribers,platform_faults_active,"
        "platform_shed_requests_total,platform_db_lock_timeouts_total,platform_rate_limited_total",
        description="Comma-separated metric names (samples) the scraper keeps.",
    )

    def engine_options(self) -> dict[str, int]:
        """Keyword arguments for `make_engine` from these settings."""
        return {"lock_timeout_ms": self.db_lock_timeout_ms, "statement_timeout_ms": self.db_statement_timeout_ms}

    @model_validator(mode="after")
    def _refuse_development_secrets(self) -> Settings:
        if self.environment == "production" and self.admin_token.get_secret_value() == DEFAULT_ADMIN_TOKEN:
            raise ValueError(
                "CONTROLPLANE_ADMIN_TOKEN is still 'changethis'; set a long random token "
                "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`) before running in production"
            )
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
