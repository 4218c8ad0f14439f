"""The control plane's declarative files, loaded in one place: SLOs, events, slices, and on demand the
cost model and the readiness checklist. Each file is validated with errors that name the file, the
entry, the field and the fix; every such error is one of `CONFIG_ERRORS`.

Usage:

    config = load_config(settings)
    report = evaluate_all_from_rollups(store, config.specs, events=config.events,
                                       boundaries=config.boundaries, at=utcnow())
    model = config.cost_model()          # CostConfigError if config/costs.yaml is wrong
    checklist = config.checklist()       # ChecklistConfigError ...; checks may only name known SLOs
    policy = config.budget_policy()      # BudgetPolicyError ...; overrides may only name slices and SLOs
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from controlplane.checklist.spec import Checklist, ChecklistConfigError, load_checklist
from controlplane.cost.model import CostConfigError, CostModel, load_cost_model
from controlplane.policy.spec import BudgetPolicy, BudgetPolicyError, load_policy
from controlplane.settings import Settings
from controlplane.slices import SliceConfig, SliceConfigError, load_slices
from controlplane.slo.spec import EventSpec, SloConfigError, SloSpec, load_events, load_slos

CONFIG_ERRORS: tuple[type[ValueError], ...] = (
    SloConfigError,
    SliceConfigError,
    CostConfigError,
    ChecklistConfigError,
    BudgetPolicyError,
)


@dataclass(frozen=True)
class ControlPlaneConfig:
    """What the files say, as of when they were read."""

    specs: list[SloSpec]
    events: dict[str, EventSpec]
    slices: SliceConfig
    slices_path: Path
    costs_path: Path
    checklist_path: Path
    budget_policy_path: Path

    @property
    def boundaries(self) -> tuple[float, ...]:
        """The latency histogram's bucket boundaries (seconds), which latency thresholds must be."""
        return self.slices.boundaries

    @property
    def slice_names(self) -> list[str]:
        return [s.name for s in self.slices.slices]

    @property
    def slo_names(self) -> set[str]:
        return {s.name for s in self.specs}

    def spec_named(self, name: str) -> SloSpec:
        for spec in self.specs:
            if spec.name == name:
                return spec
        known = ", ".join(sorted(self.slo_names)) or "none defined"
        raise SloConfigError(f"no SLO named {name!r} (known: {known})")

    def cost_model(self) -> CostModel:
        """The cost model, its slices checked against the slice file."""
        model = load_cost_model(self.costs_path)
        names = set(self.slice_names)
        for component in model.components:
            wanted = component.allocation.by_requests.slices if component.allocation.by_requests else None
            unknown = sorted(set(wanted or ()) - names)
            if unknown:
                raise CostConfigError(
                    f"{self.costs_path}: component '{component.name}': allocation.by_requests.slices: "
                    f"no slice {', '.join(unknown)} in {self.slices_path} (known: {', '.join(sorted(names))})"
                )
        return model

    def budget_policy(self) -> BudgetPolicy:
        """The error budget policy (the default rules if the file is missing), its overrides checked
        against the slice and SLO names."""
        from controlplane.policy.evaluate import check_names

        policy = load_policy(self.budget_policy_path)
        check_names(policy, set(self.slice_names) | {s.slice for s in self.specs}, self.slo_names)
        return policy

    def checklist(self) -> Checklist:
        """The readiness checklist, the SLOs its checks name checked against the SLO file."""
        return load_checklist(self.checklist_path, slo_names=self.slo_names)


def load_config(settings: Settings) -> ControlPlaneConfig:
    """Read the SLO, event and slice files named by `settings`. Raises one of CONFIG_ERRORS naming the
    file and the fix."""
    events = load_events(settings.events_path)
    return ControlPlaneConfig(
        specs=load_slos(settings.slos_path, events=events),
        events=events,
        slices=load_slices(settings.slices_path),
        slices_path=settings.slices_path,
        costs_path=settings.costs_path,
        checklist_path=settings.checklist_path,
        budget_policy_path=settings.budget_policy_path,
    )
