"""What the SLO engine reports, typed, and its JSON form (`controlplane slo status --format json`).

Usage:

    report = evaluate_all(store_engine, specs, events=events, boundaries=slices.boundaries, at=utcnow())
    paging = [s.name for s in report.slos if s.alerts.page]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from controlplane import formatting
from controlplane.clock import utc_text

SliKind = Literal["ratio", "latency", "freshness"]
WindowKind = Literal["rolling", "calendar-month", "event"]


def _require_utc(moment: datetime, what: str) -> None:
    # The JSON renders these with a trailing Z; a naive or other-zone time would make that a lie.
    if moment.utcoffset() != timedelta(0):
        raise ValueError(f"{what} must be a timezone-aware UTC datetime, got {moment.isoformat()}")


@dataclass(frozen=True)
class SloWindow:
    """The budgeting window an SLO was evaluated over: complete minutes of [start, end)."""

    kind: WindowKind
    start: datetime
    end: datetime
    period_days: float  # the whole period's length (a month's days, an event's span), rounded to 6 places

    def __post_init__(self) -> None:
        _require_utc(self.start, "window start")
        _require_utc(self.end, "window end")

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "start": utc_text(self.start),
            "end": utc_text(self.end),
            "period_days": self.period_days,
        }


@dataclass(frozen=True)
class AlertThreshold:
    """One multi-window rule: fires when the burn rate over both `long` and `short` exceeds `burn`."""

    long: str
    short: str
    burn: float  # already scaled to the SLO's period, rounded to 6 places

    def to_dict(self) -> dict[str, Any]:
        return {"long": self.long, "short": self.short, "burn": self.burn}


@dataclass(frozen=True)
class AlertThresholds:
    page: tuple[AlertThreshold, ...]
    ticket: tuple[AlertThreshold, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"page": [t.to_dict() for t in self.page], "ticket": [t.to_dict() for t in self.ticket]}


@dataclass(frozen=True)
class SloAlerts:
    """Which burn-rate tiers fire; a tier switched off in the spec never does."""

    page: bool
    ticket: bool

    def to_dict(self) -> dict[str, Any]:
        return {"page": self.page, "ticket": self.ticket}


@dataclass(frozen=True)
class SloStatus:
    """One SLO as of an instant: SLI, error budget, burn rates, alerts and the budget policy."""

    name: str
    slice: str
    sli_kind: SliKind
    objective: float
    window: SloWindow
    sli: float  # 1.0 when no_data
    no_data: bool
    events: int
    bad_events: int
    budget_total_events: float
    budget_remaining_events: float  # negative once overspent
    budget_consumed: float
    budget_remaining: float  # 1 - consumed, negative once overspent
    # Mapping, not dict: reports are cached and shared (the collector's gauges), so readers must not write.
    burn_rates: Mapping[str, float]  # window name ("5m" ... "3d") -> burn rate
    alerts: SloAlerts
    alert_thresholds: AlertThresholds
    time_to_exhaustion_seconds: float | None  # 0 once spent; None if the last hour had no bad events

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "slice": self.slice,
            "sli_kind": self.sli_kind,
            "objective": self.objective,
            "window": self.window.to_dict(),
            "sli": self.sli,
            "no_data": self.no_data,
            "events": self.events,
            "bad_events": self.bad_events,
            "budget_total_events": self.budget_total_events,
            "budget_remaining_events": self.budget_remaining_events,
            "budget_consumed": self.budget_consumed,
            "budget_remaining": self.budget_remaining,
            "burn_rates": dict(self.burn_rates),
            "alerts": self.alerts.to_dict(),
            "alert_thresholds": self.alert_thresholds.to_dict(),
            "time_to_exhaustion_seconds": self.time_to_exhaustion_seconds,
        }


@dataclass(frozen=True)
class SloReport:
    """Every SLO as of `at`; `exit_code` is what `slo status` exits with (0 healthy, 1 ticket, 2 page)."""

    at: datetime
    slos: list[SloStatus]

    def __post_init__(self) -> None:
        _require_utc(self.at, "report time")

    @property
    def exit_code(self) -> int:
        if any(s.alerts.page for s in self.slos):
            return 2
        if any(s.alerts.ticket for s in self.slos):
            return 1
        return 0

    def to_dict(self) -> dict[str, Any]:
        return {"at": utc_text(self.at), "slos": [s.to_dict() for s in self.slos]}


def render_slo_table(
    report: SloReport,
    ran_out: Mapping[str, datetime | None] | None = None,
    policy: Mapping[str, str] | None = None,
) -> str:
    """The report as a table for people: one line per SLO. A spent budget reads "exhausted", with when it
    ran out (`ran_out`, by SLO name, if known) and how many times over it is spent; `policy` is each
    SLO's error budget policy state (by SLO name; "-" if not given)."""
    ran_out, policy = ran_out or {}, policy or {}
    lines = [
        f"SLOs as of {formatting.utc(report.at)}",
        f"{'slo':<28} {'objective':>9} {'sli':>9} {'budget left':>22} {'burn 1h':>8} {'burn 6h':>8} "
        f"{'alert':<7} policy",
    ]
    for s in report.slos:
        alert = "PAGE" if s.alerts.page else ("ticket" if s.alerts.ticket else "-")
        sli = "no data" if s.no_data else formatting.percent(s.sli, 3)
        budget = formatting.budget_left(s.budget_remaining, s.budget_consumed, ran_out=ran_out.get(s.name))
        burns = f"{formatting.burn(s.burn_rates['1h']):>8} {formatting.burn(s.burn_rates['6h']):>8}"
        lines.append(
            f"{s.name:<28} {formatting.percent(s.objective, 2):>9} {sli:>9} {budget:>22} "
            f"{burns} {alert:<7} {policy.get(s.name, '-')}"
        )
    return "\n".join(lines)
