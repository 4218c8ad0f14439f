"""Scraped signals against thresholds, with a freshness bound: a value older than `max_age` is unknown,
never a pass.

Gauges take each target's newest sample (the worst target decides). Counters are read over `window`
as the sum of the increases between consecutive samples of each series (a drop is a restart, counted
from zero), summed over targets: the risk-cache hit ratio is hits / all lookups, the lock-timeout
rate is per minute. A target (or series) seen lately but not within `max_age` makes the signal
unknown: a stale target is never left out quietly.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from itertools import pairwise
from typing import Any

from controlplane.checklist.context import CheckContext
from controlplane.checklist.results import Outcome, utc_text
from controlplane.checklist.spec import ScrapedSignal
from controlplane.clock import parse_duration
from controlplane.scraped import Sample, history

GAUGES = {"outbox_depth": "platform_outbox_depth", "relay_lag_seconds": "platform_outbox_relay_lag_seconds"}
COUNTERS = {
    "risk_cache_hit_ratio": "platform_risk_cache_lookups_total",
    "lock_timeout_rate": "platform_db_lock_timeouts_total",
}
LOOKBACK_FACTOR = 10  # how far back (in max_ages) a target counts as "seen lately"


def _compare(params: ScrapedSignal, value: float) -> bool:
    if params.at_least is not None:
        return value >= params.at_least
    return value <= params.at_most  # type: ignore[operator]


def _bound(params: ScrapedSignal) -> str:
    return f"at least {params.at_least:g}" if params.at_least is not None else f"at most {params.at_most:g}"


def _samples(params: ScrapedSignal, ctx: CheckContext, name: str, since: datetime) -> list[Sample]:
    return history(ctx.store, name, since, target=params.target, until=ctx.at)


def _increase(points: list[Sample]) -> float:
    total = 0.0
    for before, after in pairwise(points):
        step = after.value - before.value
        total += step if step >= 0 else after.value  # a restart: the counter began again at zero
    return total


def scraped_signal(params: ScrapedSignal, ctx: CheckContext) -> Outcome:
    max_age = parse_duration(params.max_age)
    evidence: dict[str, Any] = {
        "signal": params.signal,
        "threshold": {"at_least": params.at_least, "at_most": params.at_most},
        "max_age_seconds": max_age.total_seconds(),
        "at": utc_text(ctx.at),
    }
    if params.signal in GAUGES:
        name = GAUGES[params.signal]
        newest: dict[str, Sample] = {}
        for row in _samples(params, ctx, name, ctx.at - max_age * LOOKBACK_FACTOR):
            newest[row.target] = row
        evidence["metric"] = name
        evidence["samples"] = [
            {"target": t, "value": r.value, "time": utc_text(r.time)} for t, r in sorted(newest.items())
        ]
        stale = sorted(t for t, r in newest.items() if ctx.at - r.time > max_age)
        if not newest or stale:
            evidence["stale_targets"] = stale
            where = f"from {', '.join(stale)} " if stale else ""
            return Outcome.unknown(
                f"no sample of {name} {where}in the last {params.max_age}: is the collector scraping the platform?",
                **evidence,
            )
        values = [r.value for r in newest.values()]
        value = min(values) if params.at_least is not None else max(values)
    else:
        name = COUNTERS[params.signal]
        window = parse_duration(params.window)
        series: dict[tuple[str, str], list[Sample]] = defaultdict(list)
        for row in _samples(params, ctx, name, ctx.at - max(window, max_age * LOOKBACK_FACTOR)):
            series[(row.target, str(sorted(row.labels.items())))].append(row)
        evidence["metric"] = name
        evidence["window_seconds"] = window.total_seconds()
        stale = sorted({t for (t, _labels), points in series.items() if ctx.at - points[-1].time > max_age})
        in_window = [[p for p in points if p.time >= ctx.at - window] for points in series.values()]
        in_window = [points for points in in_window if len(points) >= 2]
        if stale or not in_window:
            evidence["stale_targets"] = stale
            evidence["series"] = len(series)
            return Outcome.unknown(
                f"not enough fresh samples of {name} (two in the last {params.window}, the newest within "
                f"{params.max_age}{'; stale: ' + ', '.join(stale) if stale else ''}): is the collector scraping "
                "the platform?",
                **evidence,
            )
        increases: dict[str, float] = defaultdict(float)
        for points in in_window:
            increases[str(points[0].labels.get("result", "all"))] += _increase(points)
        first_time = min(points[0].time for points in in_window)
        last_time = max(points[-1].time for points in in_window)
        evidence["increase"] = dict(sorted(increases.items()))
        evidence["from"], evidence["to"] = utc_text(first_time), utc_text(last_time)
        if params.signal == "risk_cache_hit_ratio":
            total = sum(increases.values())
            if total <= 0:
                return Outcome.unknown(
                    f"no risk-cache lookups in the last {params.window}: no traffic to judge by", **evidence
                )
            value = increases.get("hit", 0.0) / total
        else:
            minutes = max((last_time - first_time).total_seconds() / 60, 1 / 60)
            value = sum(increases.values()) / minutes
    evidence["value"] = round(value, 6)
    shown = f"{value:.3g}"
    if _compare(params, value):
        return Outcome.passed(f"{params.signal} is {shown} ({_bound(params)})", **evidence)
    return Outcome.failed(f"{params.signal} is {shown}, needs to be {_bound(params)}", **evidence)
