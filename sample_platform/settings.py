"""The sample platform's own settings, read from `PLATFORM_*` environment variables.

Usage:

    settings = PlatformSettings(database_url="sqlite:///./var/platform.db")
    engine = make_engine(settings.database_url, **settings.engine_options())
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_ADMIN_TOKEN = "changethis"


class PlatformSettings(BaseSettings):
    """Every knob of the sample platform. Each field is the variable `PLATFORM_<FIELD>`."""

    model_config = SettingsConfigDict(env_prefix="PLATFORM_", extra="ignore")

    environment: Literal["development", "test", "production"] = Field(
        "development",
        description="Anything but `development` refuses development defaults such as the admin token 'changethis'.",
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
    body_read_timeout_seconds: float = Field(
        10.0,
        gt=0,
        description="A request body not whole within this is refused with 408, before the request takes a place in "
        "any in-flight bound: slow senders cannot fill them.",
    )
    max_body_bytes: int = Field(65_536, ge=1024, description="Largest request body the platform reads.")
    outbox_sink: Literal["jsonl", "nats"] = Field(
        "jsonl",
        description="Where the outbox relay delivers: the JSON-lines file (PLATFORM_OUTBOX_SINK_PATH), or the "
        "NATS JetStream stream PLATFORM_EVENTS at PLATFORM_NATS_URL (a row is delivered once the server acks it).",
    )
    nats_url: str = Field(
        "nats://127.0.0.1:4222", description="The NATS server (with JetStream) of the outbox sink and the odds bus."
    )
    odds_bus: Literal["local", "nats"] = Field(
        "local",
        description="How price changes reach the odds stream's subscribers: local (this process only) or nats "
        "(published on odds.<market_id> at PLATFORM_NATS_URL, so every replica's subscribers get every change).",
    )
    outbox_sink_path: Path = Field(
        Path("var/outbox.jsonl"), description="JSON-lines file the outbox relay delivers to."
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
    write_max_in_flight: int = Field(
        16,
        ge=1,
        description="Other writes (logins, admin calls) processed at once; more are shed with 503 and Retry-After.",
    )
    read_max_in_flight: int = Field(
        64, ge=1, description="Reads that touch the database processed at once; more are shed with 503 and Retry-After."
    )
    client_max_in_flight: int = Field(
        16,
        ge=1,
        description="Requests of one player (by token) in progress at once, body reading included; more get 429 "
        "with Retry-After. The admin token is not limited per client.",
    )
    client_bets_per_second: float = Field(
        20.0, gt=0, description="Bet requests one player may start per second (a token bucket); more get 429."
    )
    client_writes_per_second: float = Field(
        10.0, gt=0, description="Other writes one player may start per second (a token bucket); more get 429."
    )
    client_reads_per_second: float = Field(
        50.0, gt=0, description="Reads one player may start per second (a token bucket); more get 429."
    )
    client_burst_seconds: float = Field(
        5.0, gt=0, description="A player's token buckets hold this many seconds of their rate (at least 1 request)."
    )
    anonymous_max_in_flight: int = Field(
        64,
        ge=1,
        description="Requests without a valid token (logins, sign-ups, market reads) in progress at once, from all "
        "addresses together, body reading included; more are shed with 503 and Retry-After.",
    )
    anonymous_max_in_flight_per_address: int = Field(
        32,
        ge=1,
        description="Requests without a valid token in progress at once from one client address; more get 429 with "
        "Retry-After. Behind a reverse proxy, set PLATFORM_TRUSTED_PROXIES so the address is the client's.",
    )
    trusted_proxies: str = Field(
        "",
        description="Comma-separated addresses of reverse proxies whose X-Forwarded-For and X-Forwarded-Proto are "
        "believed (uvicorn's forwarded_allow_ips; '*' for any); empty: the peer address is the client's.",
    )
    header_timeout_seconds: float = Field(
        10.0,
        gt=0,
        description="A connection must send a request's whole header within this from its first byte (or from "
        "being opened); otherwise it is closed. Slow senders of headers hold no connection for long.",
    )
    keep_alive_seconds: int = Field(
        5, ge=1, description="An idle keep-alive connection is closed after this many seconds."
    )
    probe_tokens: SecretStr | None = Field(
        None,
        description="Comma-separated tokens with which a request's X-Synthetic header counts, sent as X-Probe-Token "
        "(the admin token counts too); from anyone else the header is ignored, and counted.",
    )
    synthetic_max_in_flight: int = Field(
        2,
        ge=1,
        description="Synthetic requests (header X-Synthetic) processed at once on any bounded route, in a pool "
        "of their own so probes never take players' slots; more are shed with 503 and Retry-After.",
    )
    request_timeout_seconds: float = Field(
        10.0,
        gt=0,
        description="A request not answered within this gets 504 `timeout` (retryable; bets with the same "
        "Idempotency-Key); its work still finishes and keeps its admission slot until then. Not applied to "
        "/metrics, the fault routes or the odds stream.",
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
    odds_stream_host: str = Field(
        "127.0.0.1",
        description="Address the odds stream's own server binds (GET /v1/odds/stream redirects to it); "
        "0.0.0.0 to accept remote subscribers.",
    )
    odds_stream_port: int = Field(
        0,
        ge=0,
        le=65535,
        description="Port of the odds stream's own server; 0 picks a free one (`platform serve` uses its port + 1).",
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
    otlp_headers: SecretStr | None = Field(
        None,
        description="Headers the OTLP exporter sends, in OTEL_EXPORTER_OTLP_HEADERS form, e.g. "
        "'Authorization=Bearer%20TOKEN' for a collector that wants a token; unset: OTEL_EXPORTER_OTLP_HEADERS.",
    )
    otlp_metric_interval_seconds: float = Field(
        10.0, gt=0, description="How often the platform exports its OpenTelemetry metrics."
    )

    def engine_options(self) -> dict[str, int]:
        """Keyword arguments for `make_engine` from these settings."""
        return {"lock_timeout_ms": self.db_lock_timeout_ms, "statement_timeout_ms": self.db_statement_timeout_ms}

    @model_validator(mode="after")
    def _refuse_development_secrets(self) -> PlatformSettings:
        if self.environment != "development" and self.admin_token.get_secret_value() == DEFAULT_ADMIN_TOKEN:
            raise ValueError(
                f"PLATFORM_ADMIN_TOKEN is still 'changethis' with PLATFORM_ENVIRONMENT={self.environment}; set a long "
                "random token (e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`), or run with "
                "PLATFORM_ENVIRONMENT=development on a machine of your own"
            )
        return self
