"""Running a checklist: every check at once, each within its timeout, waivers applied, the decision.

Usage:

    run = run_checklist(checklist, ctx)          # a ChecklistRun, not yet recorded
    run = save_run(settings, store, run)         # in the store and the audit log

Checks run concurrently, one thread each; probes of the platform take turns (they inject
synthetic-only faults and would disturb each other), and a probe's `timeout_seconds` counts from
when its turn comes. A check still running after its timeout is reported `unknown` and left to
finish in the background (a probe's faults carry a short TTL, so they end even if it cannot).
An evaluator that raises is `unknown` with the error as its reason, never a crash.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

from controlplane.checklist import evidence, facts, gates, probes, signals, stream_checks, trace_probes
from controlplane.checklist.context import CheckContext
from controlplane.checklist.records import active_waiver
from controlplane.checklist.results import ChecklistRun, CheckResult, Outcome
from controlplane.checklist.spec import Checklist, CheckSpec

Evaluator = Callable[[Any, CheckContext], Outcome]
EVALUATORS: dict[str, Evaluator] = {
    "error_budget": gates.error_budget,
    "no_page_alert": gates.no_page_alert,
    "probe_idempotency": probes.probe_idempotency,
    "probe_trace": trace_probes.probe_trace,
    "probe_login_limit": probes.probe_login_limit,
    "probe_latency": probes.probe_latency,
    "probe_shedding": probes.probe_shedding,
    "scraped_signal": signals.scraped_signal,
    "stream_lag": stream_checks.stream_lag,
    "dead_letters": stream_checks.dead_letters,
    "slo_coverage": facts.slo_coverage,
    "prometheus_rules": facts.prometheus_rules,
    "audit_evidence": evidence.audit_evidence,
    "budget_policy": gates.budget_policy,
}
POLL_SECONDS = 0.05


class _Job(threading.Thread):
    def __init__(self, check: CheckSpec, ctx: CheckContext) -> None:
        super().__init__(name=f"check-{check.id}", daemon=True)
        self.check = check
        self.ctx = ctx
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.outcome: Outcome | None = None
        self.attestation: dict[str, Any] | None = None
        self.cancelled = threading.Event()  # set when the run gave up on it before it started

    def run(self) -> None:
        # A probe's clock starts once it has the platform to itself, not while it waits its turn.
        with self.ctx.probe_lock if self.check.is_probe else nullcontext():
            if self.cancelled.is_set():
                return
            self.started_at = time.monotonic()
            try:
                if self.check.evaluator.type == "attestation":
                    self.outcome, self.attestation = evidence.attestation(self.check.id, self.ctx)
                else:
                    self.outcome = EVALUATORS[self.check.evaluator.type](self.check.evaluator, self.ctx)
            except Exception as exc:  # an evaluator's failure is this check's unknown, never the run's crash
                self.outcome = Outcome.unknown(f"could not evaluate: {type(exc).__name__}: {_clip(str(exc))}")
            finally:
                self.finished_at = time.monotonic()

    def overdue(self, now: float) -> bool:
        return (
            self.started_at is not None
            and self.finished_at is None
            and now - self.started_at > self.check.timeout_seconds
        )


def _clip(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def run_checklist(checklist: Checklist, ctx: CheckContext) -> ChecklistRun:
    jobs = [_Job(check, ctx) for check in checklist.checks]
    for job in jobs:
        job.start()
    timed_out: set[str] = set()
    # Probes wait for each other, so the run as a whole may take up to the sum of their timeouts.
    budget = sum(c.timeout_seconds for c in checklist.checks if c.is_probe) + max(
        c.timeout_seconds for c in checklist.checks
    )
    run_deadline = time.monotonic() + budget + 5.0
    while True:
        now = time.monotonic()
        pending = [j for j in jobs if j.finished_at is None and j.check.id not in timed_out]
        if not pending:
            break
        for job in pending:
            if job.overdue(now) or now > run_deadline:
                job.cancelled.set()
                timed_out.add(job.check.id)
        time.sleep(POLL_SECONDS)
    results = []
    for job in jobs:
        if job.check.id in timed_out:
            started = job.started_at is not None
            outcome = Outcome.unknown(
                f"timed out after {job.check.timeout_seconds:g}s"
                if started
                else "did not get its turn before the run's deadline (earlier probes took too long)"
            )
            duration = job.check.timeout_seconds if started else 0.0
        else:
            outcome = job.outcome or Outcome.unknown("the check produced no outcome")
            duration = (job.finished_at or 0.0) - (job.started_at or 0.0)
        results.append(_result(job.check, outcome, duration, job.attestation, ctx))
    return ChecklistRun(
        run_id=ctx.run_id,
        event=ctx.event.name if ctx.event else None,
        at=ctx.at,
        checks=results,
        spec_path=checklist.path,
        spec_digest=checklist.digest,
    )


def _result(
    check: CheckSpec, outcome: Outcome, seconds: float, attestation: dict[str, Any] | None, ctx: CheckContext
) -> CheckResult:
    found = active_waiver(ctx.store, check.id, at=ctx.at, event=ctx.event.name if ctx.event else None)
    status: Any = outcome.status
    reason = outcome.reason
    waiver = None
    if found is not None:
        waiver = {**found.to_dict(), "outcome": outcome.status}
        status = "waived"
        who = f"{found.requested_by}, approved by {found.approved_by}"
        reason = f"waived until {waiver['expires_at']} ({who}): {reason}"
    return CheckResult(
        id=check.id,
        title=check.title,
        severity=check.severity,
        owner=check.owner,
        runbook=check.runbook,
        status=status,
        reason=reason,
        evidence=outcome.evidence,
        duration_ms=round(seconds * 1000),
        waiver=waiver,
        attestation=attestation,
    )
