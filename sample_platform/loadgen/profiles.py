"""The load generator's traffic model: profiles, request mix, arrival rate curves and open-model arrival times."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass

PROFILES = ("derby-night", "steady", "spike")
PEAK_FACTOR = 15.0  # peak arrival rate as a multiple of the baseline
DERBY_RAMP_SECONDS = 10.0
MIX = (("login", 0.10), ("odds", 0.40), ("wallet", 0.10), ("bet", 0.40))
MIXES = ("betting", "health")
SLIP_LIMIT = 0.1  # an arrival launched this much after its time means the generator is falling behind
ACCEPT_PRICE_CHANGE = (("better", 0.45), ("any", 0.35), ("none", 0.20))
STAKES_MINOR = (100, 200, 500, 1000, 2000, 5000)
DEPOSIT_MINOR = 10**9
BET_RETRIES = 3
ODDS_MOVE_INTERVAL = 1.0  # seconds between the house's price moves (gives re-quotes and SSE events)
SETUP_CONCURRENCY = 8
STOP_POLL = 0.25  # seconds: the most a set stop signal goes unnoticed while the schedule waits for an arrival

BETS = "POST /v1/bets"
ODDS = "GET /v1/markets/{id}"
MARKETS = "GET /v1/markets"
LOGIN = "POST /v1/login"
WALLET = "GET /v1/wallet"
ODDS_CHANGE = "POST /v1/admin/markets/{id}/odds"
RESULT = "POST /v1/admin/markets/{id}/result"
SSE = "SSE /v1/odds/stream"
HEALTH = "GET /v1/health"


class LoadSetupError(RuntimeError):
    """The run could not start: target unreachable, admin token refused, setup calls failing."""


@dataclass
class LoadConfig:
    target: str  # base URL, e.g. http://127.0.0.1:8080
    profile: str  # "derby-night" | "steady" | "spike"
    duration: float  # seconds
    rate: float  # baseline requests/s (all routes together)
    admin_token: str | None  # when given, create own accounts and markets via the admin API
    players: int = 20
    markets: int = 4
    sse_subscribers: int = 5
    seed: int = 1
    request_timeout: float = 10.0
    max_connections: int = 256  # also the most arrivals in flight: one more is dropped, never queued
    settle_timeout: float = 60.0  # after the load: re-sending unknown bets and settling markets, at most
    mix: str = "betting"  # "betting" (logins, odds, wallet, bets) or "health" (GET /v1/health only)
    extend_seconds: float = 0.0  # arrivals go on this long past `duration`, at the rate the curve has reached
    lead_in_seconds: float = 0.0  # arrivals at the baseline this long before the curve's own t = 0
    curve_at: float | None = None  # or: the wall-clock time (epoch s) of the curve's t = 0, whatever setup takes
    replicas: tuple[str, ...] = ()  # more base URLs of the same platform: requests go round-robin over all

    def __post_init__(self) -> None:
        _check_curve(self.profile, self.duration, self.rate)
        _check_extension(self.extend_seconds)
        _check_extension(self.lead_in_seconds, "lead_in_seconds")
        if self.curve_at is not None and not math.isfinite(self.curve_at):
            raise ValueError(f"curve_at must be a time in epoch seconds, not {self.curve_at}")
        self.replicas = tuple(self.replicas)
        for url in self.targets:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"target must be an http(s) URL such as http://127.0.0.1:8080, not {url!r}")
        if len(set(self.targets)) != len(self.targets):
            raise ValueError(f"each target may be given once: {', '.join(self.targets)}")
        if self.mix not in MIXES:
            raise ValueError(f"unknown mix {self.mix!r}; choose one of {', '.join(MIXES)}")
        if not self.settle_timeout > 0:
            raise ValueError(f"settle_timeout must be positive seconds, not {self.settle_timeout}")
        for name in ("players", "markets", "max_connections"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")
        if self.sse_subscribers < 0:
            raise ValueError(f"sse_subscribers must be 0 or more, not {self.sse_subscribers}")
        if not self.request_timeout > 0:
            raise ValueError(f"request_timeout must be positive seconds, not {self.request_timeout}")

    @property
    def targets(self) -> tuple[str, ...]:
        """Every base URL the load is spread over: `target`, then `replicas`."""
        return (self.target, *self.replicas)

    @property
    def arrival_seconds(self) -> float:
        """How long arrivals run: `lead_in_seconds`, the profile's `duration`, then `extend_seconds`."""
        return self.lead_in_seconds + self.duration + self.extend_seconds

    def offered_rate(self, t: float) -> float:
        """The arrival rate `t` seconds into the run: the baseline during the lead-in, then the curve."""
        if t < self.lead_in_seconds:
            return self.rate
        return rate_at(self.profile, t - self.lead_in_seconds, self.duration, self.rate)


def _check_curve(profile: str, duration: float, baseline: float) -> None:
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    if not (math.isfinite(duration) and duration > 0):
        raise ValueError(f"duration must be a positive number of seconds, not {duration}")
    if not (math.isfinite(baseline) and baseline > 0):
        raise ValueError(f"rate must be a positive number of requests/s, not {baseline}")


def _check_extension(extend: float, name: str = "extend_seconds") -> None:
    if not (math.isfinite(extend) and extend >= 0):
        raise ValueError(
            f"{name} must be 0 or a positive number of seconds, not {extend}"
            + (
                "; to run until told, give a generous extension and set the stop signal"
                if name.startswith("extend")
                else ""
            )
        )


def rate_at(profile: str, t: float, duration: float, baseline: float) -> float:
    """Offered arrival rate (req/s) at `t` seconds into a run whose profile lasts `duration` seconds.

    Defined for every t >= 0. Past `duration` the curve goes on as it was going (an extended run):
    derby-night keeps decaying toward the baseline, steady and spike stay at the baseline."""
    _check_curve(profile, duration, baseline)
    peak = PEAK_FACTOR * baseline
    if profile == "steady":
        return baseline
    if profile == "spike":
        return peak if 0.4 * duration <= t < 0.6 * duration else baseline
    # derby-night: quiet build-up, the off (a linear ramp), the race (hold), then the crowd drifts away.
    ramp_start = 0.25 * duration
    ramp = min(DERBY_RAMP_SECONDS, 0.1 * duration)
    hold_end = ramp_start + ramp + 0.2 * duration
    if t < ramp_start:
        return baseline
    if t < ramp_start + ramp:
        return baseline + (peak - baseline) * (t - ramp_start) / ramp
    if t < hold_end:
        return peak
    tau = (duration - hold_end) / 4  # ~98% of the way back to the baseline by the end
    return baseline + (peak - baseline) * math.exp(-(t - hold_end) / tau)


def arrival_offsets(
    profile: str,
    duration: float,
    baseline: float,
    rng: random.Random,
    step: float = 0.01,
    *,
    extend: float = 0.0,
    lead_in: float = 0.0,
) -> Iterator[float]:
    """Arrival times (seconds from the start) of a Poisson process following `rate_at`, for `duration`
    seconds and then `extend` more on the curve beyond it (the first `duration` seconds are the same
    arrivals either way). With a `lead_in`, arrivals come at the baseline for that long first and the
    curve starts after it.

    Each gap is an Exp(1) amount of *integrated* rate (time rescaling), so the arrivals track the
    curve even where it jumps, instead of lagging a whole baseline gap behind a spike."""
    _check_curve(profile, duration, baseline)
    _check_extension(extend)
    _check_extension(lead_in, "lead_in")
    end = lead_in + duration + extend
    t = 0.0
    while True:
        need = rng.expovariate(1.0)
        while need > 0:
            if t >= end:
                return
            dt = min(step, end - t)
            r = baseline if t < lead_in else rate_at(profile, t - lead_in, duration, baseline)
            if t < lead_in:
                dt = min(dt, lead_in - t)
            if r * dt >= need:
                t, need = t + need / r, 0.0
            else:
                t, need = t + dt, need - r * dt
        if t >= end:
            return
        yield t
