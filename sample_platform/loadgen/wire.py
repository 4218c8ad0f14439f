"""The load generator's view of the platform: players, markets, and reading problem+json answers."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sample_platform.loadgen.client import Reply


@dataclass
class Player:
    id: int
    username: str
    password: str | None
    token: str  # the account token from POST /v1/accounts
    session: str | None = None  # short-lived token from POST /v1/login, preferred while it works

    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.session or self.token}"}


@dataclass
class Market:
    id: int
    price_version: int
    odds: dict[int, str]  # selection id -> decimal odds string
    status: str = "open"


def pick(rng: random.Random, weighted: tuple[tuple[str, float], ...]) -> str:
    return rng.choices([k for k, _ in weighted], weights=[w for _, w in weighted])[0]


def problem_slug(response: Reply) -> str | None:
    if not response.headers.get("content-type", "").startswith("application/problem+json"):
        return None
    try:
        kind = response.json().get("type", "")
    except (ValueError, AttributeError):
        return None
    return kind.rsplit("/", 1)[-1] if kind.startswith("/problems/") else None


def retry_after(response: Reply | None) -> float | None:
    try:
        return float(response.headers["retry-after"]) if response is not None else None
    except (KeyError, ValueError):
        return None  # absent, or an HTTP date: fall back to our own backoff


def epoch(value: Any) -> float | None:
    """`published_at` as epoch seconds: a number (s or ms) or an ISO 8601 string."""
    if isinstance(value, int | float):
        return value / 1000 if value > 1e12 else float(value)
    if isinstance(value, str):
        try:
            stamp = datetime.fromisoformat(value)
        except ValueError:
            return None
        return (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).timestamp()
    return None
