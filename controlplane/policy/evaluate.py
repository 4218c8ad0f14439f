"""The policy's state of each SLO and slice as of an SLO report: the first rule that holds decides an
SLO's state (none: ship); a slice takes the strictest state of its SLOs, with that SLO's reason.

Usage:

    report = evaluate_all_from_rollups(store, specs, events=..., boundaries=..., at=at)
    states = policy_states(load_policy(path), report)
    states.slice("bet-placement").state       # "freeze"
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from controlplane.clock import utc_text
from controlplane.policy.spec import STATES, BudgetPolicy, BudgetPolicyError, State
from controlplane.slo.results import SloReport, SloStatus

SHIP_REASON = "the error budget allows normal change"


@dataclass(frozen=True)
class SloPolicy:
    slo: str
    slice: str
    state: State
    reason: str
    budget_remaining: float
    burn_1h: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "slo": self.slo,
            "slice": self.slice,
            "state": self.state,
            "reason": self.reason,
            "budget_remaining": self.budget_remaining,
            "burn_1h": self.burn_1h,
        }


@dataclass(frozen=True)
class SlicePolicy:
    slice: str
    state: State
    reason: str  # "<slo>: <the rule's reason>", or the ship reason
    slos: tuple[SloPolicy, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "slice": self.slice,
            "state": self.state,
            "reason": self.reason,
            "slos": [s.to_dict() for s in self.slos],
        }


@dataclass(frozen=True)
class PolicyReport:
    at: datetime
    slices: tuple[SlicePolicy, ...]

    def slice(self, name: str) -> SlicePolicy:
        return next(s for s in self.slices if s.slice == name)

    @property
    def frozen(self) -> list[str]:
        return [s.slice for s in self.slices if s.state == "freeze"]

    def to_dict(self) -> dict[str, Any]:
        return {"at": utc_text(self.at), "slices": [s.to_dict() for s in self.slices]}


def slo_policy(policy: BudgetPolicy, status: SloStatus) -> SloPolicy:
    state: State = "ship"
    reason = SHIP_REASON
    for rule in policy.rules_for(status.name, status.slice):
        if rule.when.holds(status.budget_remaining, status.burn_rates):
            state, reason = rule.state, rule.reason
            break
    return SloPolicy(status.name, status.slice, state, reason, status.budget_remaining, status.burn_rates["1h"])


def policy_states(policy: BudgetPolicy, report: SloReport) -> PolicyReport:
    per_slice: dict[str, list[SloPolicy]] = {}
    for status in report.slos:
        per_slice.setdefault(status.slice, []).append(slo_policy(policy, status))
    slices = []
    for name, slos in per_slice.items():
        worst = max(slos, key=lambda s: STATES.index(s.state))
        reason = SHIP_REASON if worst.state == "ship" else f"{worst.slo}: {worst.reason}"
        slices.append(SlicePolicy(name, worst.state, reason, tuple(slos)))
    return PolicyReport(report.at, tuple(slices))


def check_names(policy: BudgetPolicy, slices: set[str], slos: set[str]) -> None:
    unknown = sorted(set(policy.overrides) - slices - slos)
    if unknown:
        raise BudgetPolicyError(
            f"{policy.path}: overrides name {', '.join(unknown)}, neither a slice nor an SLO "
            f"(slices: {', '.join(sorted(slices))}; SLOs: {', '.join(sorted(slos))})"
        )
