"""The control plane's one settings object, read from `CONTROLPLANE_*` environment variables.

Usage:

    settings = get_settings()
    engine = make_engine(settings.store_url, **settings.engine_options())
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of the control plane. Each field is the variable `CONTROLPLANE_<FIELD>`.

    The watched platform has its own settings (`PLATFORM_*`, `sample_platform.settings`)."""

    model_config = SettingsConfigDict(env_prefix="CONTROLPLANE_", extra="ignore")

    environment: Literal["development", "test", "production"] = Field(
        "development",
        description="`production` refuses development defaults, such as audit signing keys without a passphrase.",
    )
    db_lock_timeout_ms: int = Field(
        2000,
        ge=1,
        description="How long a store call waits for a lock before failing "
        "(SQLite busy_timeout, PostgreSQL lock_timeout).",
    )
    db_statement_timeout_ms: int = Field(
        5000, ge=1, description="Longest a single database statement may run before it is cancelled."
    )
    outbox_sink: Literal["jsonl", "audit"] = Field(
        "jsonl",
        description="Where `controlplane platform serve` makes the platform's outbox relay deliver: the platform's "
        "own JSON-lines file (PLATFORM_OUTBOX_SINK_PATH), or the audit log at CONTROLPLANE_AUDIT_URL (typed money "
        "and change entries, each event once).",
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
    checklist_path: Path = Field(
        Path("config/checklist.yaml"),
        description="The pre-event readiness checklist that `controlplane checklist run` evaluates.",
    )
    runbooks_path: Path = Field(
        Path("config/runbooks"),
        description="Runbooks as Markdown files `NAME.md`, which an SLO or a checklist check names as "
        "`runbook: NAME`; alerts link to them on the dashboard (`/runbook?name=NAME`).",
    )
    costs_path: Path = Field(
        Path("config/costs.yaml"),
        description="The cost model: components, their rates or FOCUS bills, and how each is allocated.",
    )
    scheduler_path: Path = Field(
        Path("config/scheduler.yaml"),
        description="`controlplane scheduler`'s jobs (crontab expressions or intervals), SLO evaluation delay, "
        "checklist offsets, retention and alert receivers; missing: the defaults.",
    )
    budget_policy_path: Path = Field(
        Path("config/budget_policy.yaml"),
        description="The error budget policy: rules from an SLO's budget and burn rate to ship, caution or freeze; "
        "missing: the default rules.",
    )
    incident_quiet_minutes: int = Field(
        10,
        ge=1,
        le=1440,
        description="An incident is mitigated once its slice's SLI has stayed within objective this many minutes, "
        "and closes then if its alerts have resolved.",
    )
    collector_max_body_bytes: int = Field(
        20 * 2**20, ge=1024, description="Largest OTLP request body, after decompression (413 above)."
    )
    collector_max_pending_writes: int = Field(
        8, ge=1, description="OTLP requests written to the store at once; more get 503 with Retry-After."
    )
    collector_max_large_requests: int = Field(
        2, ge=1, description="OTLP requests over 1 MiB decoded at once; more get 503 with Retry-After."
    )
    collector_max_items_per_request: int = Field(
        50_000, ge=1, description="Spans, metric data points or log records in one OTLP request (413 above)."
    )
    collector_max_resources_per_request: int = Field(
        1_000, ge=1, description="Resources in one OTLP request (413 above)."
    )
    collector_max_attributes_per_request: int = Field(
        1_000_000, ge=1, description="Attributes of resources, scopes and items in one OTLP request (413 above)."
    )
    collector_max_clock_skew_seconds: float = Field(
        300.0,
        gt=0,
        description="A span or point timed further ahead of the collector's clock is refused (partial success).",
    )
    collector_tokens: SecretStr | None = Field(
        None,
        description="Comma-separated bearer tokens the OTLP receiver accepts on /v1/traces, /v1/metrics and "
        "/v1/logs (several while rotating); unset: no authentication (only on a trusted network).",
    )
    collector_keep_traces: bool = Field(
        True,
        description="Keep whole traces (spans and log lines) of each slice-minute's bad and slowest events and of "
        "readiness probes, for `controlplane trace show` and the dashboard's trace view.",
    )
    collector_keep_errors: int = Field(
        5, ge=0, le=100, description="Traces of bad events kept per slice and minute (the first ones)."
    )
    collector_keep_slowest: int = Field(
        3, ge=0, le=100, description="Traces of the slowest events kept per slice and minute."
    )
    collector_trace_max_bytes: int = Field(
        256 * 2**20,
        ge=2**20,
        description="Size bound of the kept traces in the store; the oldest go first when it is reached.",
    )
    trace_retention_days: float = Field(
        7.0, gt=0, description="Kept traces older than this are deleted by the collector and the retention job."
    )
    otlp_endpoint: str = Field(
        "",
        description="Where the collector and the scheduler also send their own log lines as OTLP logs "
        "(`{endpoint}/v1/logs`, e.g. an OpenTelemetry Collector); unset: standard error only.",
    )
    otlp_headers: SecretStr | None = Field(
        None, description="Headers for that export, as OTEL_EXPORTER_OTLP_HEADERS (Authorization=Bearer%20<token>)."
    )
    nats_url: str = Field(
        "",
        description="The NATS server (JetStream) carrying the platform's events (nats://host:4222), when the "
        "platform's outbox publishes there; set, the checklist reads the audit consumer group's lag and dead "
        "letters from it. Unset: the audit log is fed in-process and those checks say so.",
    )
    scrape_targets: str = Field(
        "", description="Comma-separated /metrics URLs the collector scrapes, e.g. http://127.0.0.1:8080/metrics."
    )
    scrape_interval_seconds: float = Field(15.0, gt=0, description="How often each scrape target is read.")
    scrape_metrics: str = Field(
        "platform_outbox_depth,platform_outbox_relay_lag_seconds,platform_http_requests_in_flight,"
        "platform_admitted_in_flight,platform_odds_subscribers,platform_faults_active,"
        "platform_shed_requests_total,platform_db_lock_timeouts_total,platform_rate_limited_total,"
        "platform_risk_cache_lookups_total,process_cpu_seconds_total",
        description="Comma-separated metric names (samples) the scraper keeps.",
    )

    platform_url: str = Field(
        "http://127.0.0.1:8080",
        description="Base URL of the betting platform the control plane watches, probes and drives load against.",
    )
    platform_admin_token: SecretStr | None = Field(
        None,
        description="That platform's admin bearer token (for load, faults and checklist probes); unset: no admin "
        "calls, and probes report unknown.",
    )
    platform_probe_token: SecretStr | None = Field(
        None,
        description="One of the platform's PLATFORM_PROBE_TOKENS, sent as X-Probe-Token so that its probes count "
        "as synthetic; unset: the admin token is sent instead.",
    )

    alertmanager_url: str = Field(
        "",
        description="Alertmanager to deliver SLO alert transitions to (its v2 API, e.g. http://127.0.0.1:9093); "
        "unset: none, unless the scheduler's config file names receivers.",
    )
    alert_webhook_url: str = Field(
        "",
        description="URL that receives each SLO alert transition as a JSON POST with an Idempotency-Key header; "
        "unset: none.",
    )
    dashboard_url: str = Field(
        "http://127.0.0.1:8501",
        description="The dashboard's base URL as on-call engineers reach it; alerts link to its on-call page. An "
        "https URL also marks the dashboard's session cookie Secure (as does a request that arrives over https).",
    )
    dashboard_role_claim: str = Field(
        "roles",
        description="With single sign-on (OIDC, `[auth]` in the dashboard's secrets): the ID token claim holding "
        "the user's roles (a list or one string; oncall, compliance, admin).",
    )

    def engine_options(self) -> dict[str, int]:
        """Keyword arguments for `make_engine` from these settings."""
        return {"lock_timeout_ms": self.db_lock_timeout_ms, "statement_timeout_ms": self.db_statement_timeout_ms}


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
