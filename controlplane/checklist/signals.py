"""Scraped signals against thresholds, with a freshness bound: a value older than `max_age` is unknown,
never a pass.

Gauges take each target's newest sample (the worst target decides). Counters are read over `window`
as the increase between each series' first and last sample in it (a reset counts from zero), summed
over targets: the risk-cache hit ratio is hits / all lookups, the lock-timeout rate is per minute.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from controlplane.checklist.context import CheckContext
from controlplane.checklist.results import Outcome, utc_text
from controlplane.checklist.spec import ScrapedSignal, duration
from controlplane.scraped import history

GAUGES = {"outbox_depth": "platform_outbox_depth", "relay_lag_seconds": "platform_outbox_relay_lag_seconds"}
COUNTERS = {
    "risk_cache_hit_ratio": "platform_risk_cache_lookups_total",
    "lock_timeout_rate": "platform_db_lock_timeouts_total",
}


def _compare(params: ScrapedSignal, value: float) -> bool:
    if params.at_least is not None:
        return value >= params.at_least
    return value <= params.at_most  # type: ignore[operator]


def _bound(params: ScrapedSignal) -> str:
    return f"at least {params.at_least:g}" if params.at_least is not None else f"at most {params.at_most:g}"


def _samples(params: ScrapedSignal, ctx: CheckContext, name: str, since: datetime) -> list[dict[str, Any]]:
    rows = history(ctx.store, name, since, target=params.target)
    return [r for r in rows if r["time"] <= ctx.at]


def scraped_signal(params: ScrapedSignal, ctx: CheckContext) -> Outcome:
    max_age = duration(params.max_age)
    evidence: dict[str, Any] = {
        "signal": params.signal,
        "threshold": {"at_least": params.at_least, "at_most": params.at_most},
        "max_age_seconds": max_age.total_seconds(),
        "at": utc_text(ctx.at),
    }
    if params.signal in GAUGES:
        name = GAUGES[params.signal]
        rows = _samples(params, ctx, name, ctx.at - max_age)
        newest: dict[str, dict[str, Any]] = {}
        for row in rows:
            newest[row["target"]] = row
        evidence["metric"] = name
        evidence["samples"] = [
            {"target": t, "value": r["value"], "time": utc_text(r["time"])} for t, r in sorted(newest.items())
        ]
        if not newest:
            return Outcome.unknown(
                f"no sample of {name} in the last {params.max_age}: is the collector scraping the platform?", **evidence
            )
        values = [r["value"] for r in newest.values()]
        value = min(values) if params.at_least is not None else max(values)
    else:
        name = COUNTERS[params.signal]
        window = duration(params.window)
        rows = _samples(params, ctx, name, ctx.at - window)
        series: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            series[(row["target"], str(sorted(row["labels"].items())))].append(row)
        evidence["metric"] = name
        evidence["window_seconds"] = window.total_seconds()
        fresh = [points for points in series.values() if ctx.at - points[-1]["time"] <= max_age]
        if not fresh or all(len(points) < 2 for points in fresh):
            evidence["series"] = len(series)
            return Outcome.unknown(
                f"not enough fresh samples of {name} (two in the last {params.window}, the newest within "
                f"{params.max_age}): is the collector scraping the platform?",
                **evidence,
            )
        increases: dict[str, float] = defaultdict(float)
        first_time, last_time = min(p[0]["time"] for p in fresh), max(p[-1]["time"] for p in fresh)
        for points in fresh:
            first, last = points[0]["value"], points[-1]["value"]
            key = str(points[0]["labels"].get("result", "all"))
            increases[key] += last - first if last >= first else last
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
