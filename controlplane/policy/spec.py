"""The error budget policy file (`config/budget_policy.yaml`, `CONTROLPLANE_BUDGET_POLICY_PATH`): rules
from an SLO's budget and burn rate to a state, `ship`, `caution` or `freeze`, each with its reason in
words. A missing file means the default rules below, which the shipped file repeats.

Usage:

    policy = load_policy(Path("config/budget_policy.yaml"))
    policy.rules_for("bet-placement-availability", "bet-placement")   # the SLO's, its slice's, or the defaults
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from controlplane.config_files import read_yaml
from controlplane.slo.engine import BURN_WINDOWS

State = Literal["ship", "caution", "freeze"]
STATES: tuple[State, ...] = ("ship", "caution", "freeze")  # in order of strictness


class BudgetPolicyError(ValueError):
    """The policy file is wrong; the message names the file, the rule and the fix."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class When(_Strict):
    budget_spent: bool | None = None
    budget_left_below: float | None = Field(None, gt=0, le=1, description="a fraction of the budget")
    burn_above: float | None = Field(None, gt=0)
    window: str | None = None

    @model_validator(mode="after")
    def _complete(self) -> When:
        if self.budget_spent is None and self.budget_left_below is None and self.burn_above is None:
            raise ValueError("give at least one of budget_spent, budget_left_below, burn_above")
        if (self.burn_above is None) != (self.window is None):
            raise ValueError("burn_above and window go together (e.g. burn_above: 14.4, window: 1h)")
        if self.window is not None and self.window not in BURN_WINDOWS:
            raise ValueError(f"window {self.window!r} is not one of {', '.join(BURN_WINDOWS)}")
        return self

    def holds(self, budget_remaining: float, burn_rates: dict[str, float] | Any) -> bool:
        if self.budget_spent is not None and (budget_remaining <= 0) != self.budget_spent:
            return False
        if self.budget_left_below is not None and not budget_remaining < self.budget_left_below:
            return False
        if self.burn_above is not None and self.window is not None:
            return bool(burn_rates[self.window] > self.burn_above)
        return True


class Rule(_Strict):
    state: State
    when: When
    reason: str = Field(min_length=1, max_length=300)


class BudgetPolicy(_Strict):
    rules: list[Rule] = Field(default_factory=list)
    overrides: dict[str, list[Rule]] = Field(default_factory=dict)  # slice or SLO name -> its own rules
    path: str = ""

    def rules_for(self, slo: str, slice_name: str) -> list[Rule]:
        if slo in self.overrides:
            return self.overrides[slo]
        return self.overrides.get(slice_name, self.rules)


DEFAULT_RULES = [
    Rule(state="freeze", when=When(budget_spent=True),
         reason="the error budget is spent; only fixes and reliability work ship until it recovers"),
    Rule(state="caution", when=When(burn_above=14.4, window="1h"),
         reason="the budget burns at the paging rate; every change needs a second approver"),
    Rule(state="caution", when=When(budget_left_below=0.25),
         reason="under a quarter of the error budget is left; every change needs a second approver"),
]  # fmt: skip


def load_policy(path: Path) -> BudgetPolicy:
    if not Path(path).exists():
        return BudgetPolicy(rules=DEFAULT_RULES, path=f"{path} (missing: the default rules)")
    raw = read_yaml(path, error=BudgetPolicyError, missing_hint="copy config/budget_policy.yaml")
    if not isinstance(raw, dict):
        raise BudgetPolicyError(
            f"{path}: expected a mapping with `rules` (and `overrides`); see config/budget_policy.yaml"
        )
    try:
        policy = BudgetPolicy.model_validate({**raw, "overrides": raw.get("overrides") or {}, "path": str(path)})
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"])
            problems.append(f"{path}: {where}: {err['msg']}")
        raise BudgetPolicyError("; ".join(problems) + " (see the comments in config/budget_policy.yaml)") from None
    if not policy.rules:
        raise BudgetPolicyError(
            f"{path}: `rules` is empty; give at least one rule, or delete the file for the defaults"
        )
    return policy
