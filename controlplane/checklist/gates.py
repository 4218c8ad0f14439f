"""Error-budget gates: enough budget left, and no page-level burn alert in the last hours.

The alert history is replayed from the stored per-minute SLI counts with the SLO engine's own rules,
so the gate needs no alert store and gives the same answer `controlplane slo status --at` would
have given at each of those minutes.
"""

from __future__ import annotations

from datetime import timedelta

from controlplane.checklist.context import CheckContext
from controlplane.checklist.results import Outcome, utc_text
from controlplane.checklist.spec import ErrorBudget, NoPageAlert
from controlplane.slo import BURN_WINDOWS, PAGE_RULES, floor_minute, load_counts, slo_window
from controlplane.slo_rollups import evaluate_all_from_rollups


def _boundaries(ctx: CheckContext) -> tuple[float, ...]:
    return ctx.slices.boundaries if ctx.slices is not None else ()


def error_budget(params: ErrorBudget, ctx: CheckContext) -> Outcome:
    spec = ctx.slo(params.slo)
    report = evaluate_all_from_rollups(ctx.store, [spec], events=ctx.events, boundaries=_boundaries(ctx), at=ctx.at)
    status = report.slos[0]
    evidence = {
        "slo": spec.name,
        "at": utc_text(report.at),
        "window": status.window.to_dict(),
        "events": status.events,
        "bad_events": status.bad_events,
        "budget_remaining": round(status.budget_remaining, 6),
        "threshold": params.min_remaining,
    }
    if status.no_data:
        return Outcome.unknown(
            f"{spec.name} has no events in its window ({status.window.kind}); the collector may not be receiving",
            **evidence,
        )
    left = f"{100 * status.budget_remaining:.1f}%"
    if status.budget_remaining >= params.min_remaining:
        return Outcome.passed(
            f"{spec.name} has {left} of its error budget left (at least {100 * params.min_remaining:g}%)", **evidence
        )
    return Outcome.failed(
        f"{spec.name} has only {left} of its error budget left (needs {100 * params.min_remaining:g}%)", **evidence
    )


def no_page_alert(params: NoPageAlert, ctx: CheckContext) -> Outcome:
    spec = ctx.slo(params.slo)
    end = floor_minute(ctx.at)
    start = end - timedelta(hours=params.hours)
    longest = max(BURN_WINDOWS[long] for long, _short, _burn in PAGE_RULES)
    counts = load_counts(ctx.store, spec, start=start - longest, end=end, boundaries=_boundaries(ctx))
    _kind, _s, _e, period_days = slo_window(spec, end, ctx.events)
    scale = period_days / 30.0
    budget = 1.0 - spec.objective
    firing: list[str] = []
    worst = 0.0
    minute = start + timedelta(minutes=1)
    while minute <= end:

        def burn(window: str, at=minute) -> float:
            total, bad = counts.window(at - BURN_WINDOWS[window], at)
            return (bad / total if total else 0.0) / budget

        for long_w, short_w, threshold in PAGE_RULES:
            long_burn, short_burn = burn(long_w), burn(short_w)
            worst = max(worst, min(long_burn, short_burn) / (threshold * scale))
            if long_burn > threshold * scale and short_burn > threshold * scale:
                firing.append(utc_text(minute))
                break
        minute += timedelta(minutes=1)
    events_seen, _bad = counts.window(start, end)
    evidence = {
        "slo": spec.name,
        "from": utc_text(start),
        "to": utc_text(end),
        "page_alerting": spec.alerting.page,
        "events": events_seen,
        "minutes_firing": len(firing),
        "first_firing": firing[0] if firing else None,
        "last_firing": firing[-1] if firing else None,
        "thresholds": [{"long": lw, "short": sw, "burn": round(t * scale, 6)} for lw, sw, t in PAGE_RULES],
        "worst_fraction_of_threshold": round(worst, 6),
    }
    if not spec.alerting.page:
        return Outcome.unknown(f"{spec.name} has page alerts switched off, so none could fire", **evidence)
    if firing:
        return Outcome.failed(
            f"{spec.name} paged for {len(firing)} minute(s) in the last {params.hours}h, last at {firing[-1]}",
            **evidence,
        )
    if events_seen == 0:
        return Outcome.unknown(
            f"{spec.name} had no events in the last {params.hours}h: no data to clear it", **evidence
        )
    return Outcome.passed(f"{spec.name} did not page in the last {params.hours}h", **evidence)
