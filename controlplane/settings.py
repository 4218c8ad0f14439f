"""The one settings object, read from `CONTROLPLANE_*` environment variables.

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
    db_busy_timeout_ms: int = Field(
        5000, ge=0, description="How long a SQLite writer waits for the write lock before failing."
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
    outbox_relay_interval_seconds: float = Field(
        0.2, gt=0, description="How often the outbox relay polls for new events."
    )
    settlement_batch_size: int = Field(100, ge=1, le=10_000, description="Bets settled per database transaction.")

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
