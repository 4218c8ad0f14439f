"""Error-budget gates: enough budget left, and no page-level burn alert in the last hours.

The alert history is replayed from the stored per-minute SLI counts with the SLO engine's own rules,
so the gate needs no alert store and gives the same answer `controlplane slo status --at` would
have given at each of those minutes.
"""

from __future__ import annotations

from datetime import timedelta

from controlplane.checklist.context import CheckContext
from controlplane.checklist.results import Outcome, utc_text
from controlplane.checklist.spec import BudgetPolicyCheck, ErrorBudget, NoPageAlert
from controlplane.policy.evaluate import check_names, policy_states
from controlplane.policy.spec import STATES, load_policy
from controlplane.slo.engine import BURN_WINDOWS, PAGE_RULES, evaluate, load_counts
from controlplane.slo.periods import floor_minute
from controlplane.slo.rolled import evaluate_all_from_rollups


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
    # The SLO engine's own verdict at each minute, so the gate and `slo status --at` never disagree.
    firing: list[str] = []
    minute = start + timedelta(minutes=1)
    while minute <= end and spec.alerting.page:
        if evaluate(spec, counts, at=minute, events=ctx.events).alerts.page:
            firing.append(utc_text(minute))
        minute += timedelta(minutes=1)
    events_seen, _bad = counts.window(start, end)
    thresholds = evaluate(spec, counts, at=end, events=ctx.events).alert_thresholds.page
    evidence = {
        "slo": spec.name,
        "from": utc_text(start),
        "to": utc_text(end),
        "page_alerting": spec.alerting.page,
        "events": events_seen,
        "minutes_firing": len(firing),
        "first_firing": firing[0] if firing else None,
        "last_firing": firing[-1] if firing else None,
        "thresholds": [t.to_dict() for t in thresholds],
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


def budget_policy(params: BudgetPolicyCheck, ctx: CheckContext) -> Outcome:
    policy = load_policy(ctx.settings.budget_policy_path)
    known = {s.slice for s in ctx.slos} | ({s.name for s in ctx.slices.slices} if ctx.slices is not None else set())
    check_names(policy, known, {s.name for s in ctx.slos})
    unknown = sorted(set(params.slices or ()) - known)
    if unknown:
        return Outcome.unknown(
            f"no slice {', '.join(unknown)} (known: {', '.join(sorted(known))}); fix the check's slices"
        )
    report = evaluate_all_from_rollups(
        ctx.store, list(ctx.slos), events=ctx.events, boundaries=_boundaries(ctx), at=ctx.at
    )
    states = [s for s in policy_states(policy, report).slices if params.slices is None or s.slice in params.slices]
    evidence = {
        "at": utc_text(report.at),
        "policy": policy.path,
        "slices": {s.slice: {"state": s.state, "reason": s.reason} for s in states},
    }
    bar = STATES.index(params.fail_on)
    failing = [s for s in states if STATES.index(s.state) >= bar]
    if failing:
        words = "; ".join(f"{s.slice} is in {s.state.upper()}: {s.reason}" for s in failing)
        return Outcome.failed(f"{words} (the error budget policy, {policy.path})", **evidence)
    shown = ", ".join(f"{s.slice} {s.state}" for s in states) or "no slice with an SLO"
    return Outcome.passed(f"no slice in {params.fail_on} under the error budget policy: {shown}", **evidence)
