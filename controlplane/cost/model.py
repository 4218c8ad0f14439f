"""The cost model file (`config/costs.yaml`, `CONTROLPLANE_COSTS_PATH`), validated with errors that name
the file, the component and the field.

Usage:

    model = load_cost_model(Path("config/costs.yaml"))
    for component in model.components: component.name, component.rate, component.focus, component.allocation

The simplest valid file:

    {currency: EUR, components: [{name: database, rate: {per_hour: "1.20"}, allocation: direct}]}

Money is `Decimal`, written as a string in the file ("1.20"); a float such as 1.2 is refused, since
it cannot say which decimal it means.
"""

from __future__ import annotations

import hashlib
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from controlplane.config_files import explain, read_yaml

NAME = r"^[a-z0-9][a-z0-9_-]{0,63}$"
MAX_AMOUNT = Decimal("1e15")  # far above any real price; keeps every sum exact in 28 digits
MAX_PLACES = 10
CURRENCY = r"^[A-Z]{3}$"


class CostConfigError(ValueError):
    """The cost model file is wrong; the message names the file, the component, the field and the fix."""


def _money(value: Any) -> Decimal:
    if isinstance(value, bool) or isinstance(value, float):
        raise ValueError(f'write amounts as strings, e.g. "1.20", not {value!r}: a float is not an exact decimal')
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f'{value!r} is not a decimal amount; write e.g. "1.20"') from None
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"{value!r} must be a finite amount, zero or more")
    if amount >= MAX_AMOUNT or amount.as_tuple().exponent < -MAX_PLACES:  # type: ignore[operator]
        raise ValueError(f"{value!r} must be under 10^15 with at most {MAX_PLACES} decimal places")
    return amount


def _fraction(value: Any) -> Decimal:
    amount = _money(value)
    if not 0 < amount <= 1:
        raise ValueError(f'{value!r} must be a fraction in (0, 1], e.g. "0.6"')
    return amount


Money = Annotated[Decimal, BeforeValidator(_money)]
Fraction = Annotated[Decimal, BeforeValidator(_fraction)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Rate(Strict):
    """A list price: per hour, or per calendar month (prorated by the seconds of each month)."""

    per_hour: Money | None = None
    per_month: Money | None = None

    @model_validator(mode="after")
    def _one(self) -> Rate:
        if (self.per_hour is None) == (self.per_month is None):
            raise ValueError('give exactly one of per_hour or per_month, e.g. {per_hour: "1.20"}')
        return self

    def describe(self) -> str:
        return f"rate {self.per_hour} per hour" if self.per_hour is not None else f"rate {self.per_month} per month"


class FocusMatch(Strict):
    """Which imported FOCUS billing rows are this component's: by ServiceName, by a tag, or by ResourceId."""

    service: str | None = Field(None, min_length=1, max_length=200)
    tag: dict[str, str] | None = None
    resource_id: str | None = Field(None, min_length=1, max_length=500)
    cost_column: Literal["EffectiveCost", "BilledCost"] = "EffectiveCost"

    @model_validator(mode="after")
    def _one(self) -> FocusMatch:
        given = [k for k in ("service", "tag", "resource_id") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError('give exactly one of service, tag or resource_id, e.g. {tag: {component: "database"}}')
        if self.tag is not None and len(self.tag) != 1:
            raise ValueError("tag: give one key and its value, e.g. {component: database}")
        return self

    def describe(self) -> str:
        if self.service is not None:
            what = f"ServiceName={self.service}"
        elif self.tag is not None:
            ((key, value),) = self.tag.items()
            what = f"Tags.{key}={value}"
        else:
            what = f"ResourceId={self.resource_id}"
        return f"focus {what} ({self.cost_column})"


class ByRequests(Strict):
    slices: list[str] | None = Field(None, min_length=1, description="slices that share it (default: every slice)")


class ByCpuSeconds(Strict):
    targets: list[str] = Field(min_length=1, description="scrape targets (their /metrics URLs) that run on it")
    cores: Money | None = Field(None, gt=0, description="its capacity in CPU cores; the unused part is idle")


class FixedShare(Strict):
    share: Fraction


class Allocation(Strict):
    """How much of a component's cost the betting product uses, and how it splits over slices or targets."""

    rule: Literal["direct", "by_requests", "by_cpu_seconds", "fixed_share"]
    by_requests: ByRequests | None = None
    by_cpu_seconds: ByCpuSeconds | None = None
    fixed_share: FixedShare | None = None

    @model_validator(mode="after")
    def _parameters(self) -> Allocation:
        blocks = {name for name in ("by_requests", "by_cpu_seconds", "fixed_share") if getattr(self, name) is not None}
        needed = {self.rule} if self.rule in ("by_cpu_seconds", "fixed_share") else set()
        if self.rule == "by_requests":
            blocks.discard("by_requests")
        if not needed <= blocks:
            raise ValueError(f"{self.rule} needs parameters, e.g. " + ALLOCATION_EXAMPLES[self.rule])
        if blocks - needed:
            raise ValueError(f"{', '.join(sorted(blocks - needed))} does not go with rule {self.rule}")
        return self

    def describe(self) -> str:
        if self.rule == "fixed_share" and self.fixed_share is not None:
            return f"fixed_share {self.fixed_share.share}"
        if self.rule == "by_cpu_seconds" and self.by_cpu_seconds is not None and self.by_cpu_seconds.cores:
            return f"by_cpu_seconds of {self.by_cpu_seconds.cores} cores"
        return self.rule


def _allocation(value: Any) -> Any:
    """`direct` | `by_requests` | {by_requests: {slices: [...]}} | {by_cpu_seconds: {targets, cores}} |
    {fixed_share: "0.6"}, into one Allocation."""
    if isinstance(value, Allocation) or (isinstance(value, dict) and "rule" in value):
        return value
    if isinstance(value, str):
        if value in ("by_cpu_seconds", "fixed_share"):
            raise ValueError(f"{value} needs parameters, e.g. " + ALLOCATION_EXAMPLES[value])
        return {"rule": value, value: {}} if value == "by_requests" else {"rule": value}
    if isinstance(value, dict) and len(value) == 1:
        ((rule, params),) = value.items()
        if rule == "fixed_share" and not isinstance(params, dict):
            params = {"share": params}
        return {"rule": rule, rule: params if params is not None else {}}
    raise ValueError(
        "allocation is one of direct, by_requests, {by_requests: {slices: [...]}}, "
        + ", ".join(ALLOCATION_EXAMPLES.values())
    )


ALLOCATION_EXAMPLES = {
    "by_cpu_seconds": "{by_cpu_seconds: {targets: [http://127.0.0.1:8080/metrics], cores: 2}}",
    "fixed_share": '{fixed_share: "0.6"}',
}


class Component(Strict):
    name: str = Field(pattern=NAME)
    rate: Rate | None = None
    focus: FocusMatch | None = None
    allocation: Annotated[Allocation, BeforeValidator(_allocation)]
    owner: str | None = Field(None, max_length=200)

    @model_validator(mode="after")
    def _source(self) -> Component:
        if (self.rate is None) == (self.focus is None):
            raise ValueError('give one cost source: rate ({per_hour: "1.20"}) or focus ({service: "..."})')
        return self

    def source(self) -> str:
        return self.rate.describe() if self.rate is not None else self.focus.describe()  # type: ignore[union-attr]


class CostModelFile(Strict):
    currency: str = Field(pattern=CURRENCY, description="ISO 4217 code, e.g. EUR")
    unallocated: Literal["separate", "spread"] = Field(
        "separate",
        description=(
            "recorded with each report as `unallocated_policy`; either way a report shows the cost per settled "
            "bet (total cost ÷ settled bets) with the allocated cost per settled bet beside it"
        ),
    )
    components: list[Component] = Field(min_length=1)


class CostModel(CostModelFile):
    path: str = ""
    digest: str = ""


def load_cost_model(path: Path) -> CostModel:
    path = Path(path)
    raw = read_yaml(path, error=CostConfigError, missing_hint="copy config/costs.yaml from the project and edit it")
    try:
        parsed = CostModelFile.model_validate(raw)
    except ValidationError as exc:
        raise CostConfigError(explain(path, raw, exc, list_key="components", what="component")) from None
    names = [c.name for c in parsed.components]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise CostConfigError(f"{path}: component names must be unique; repeated: {', '.join(dupes)}")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return CostModel(
        currency=parsed.currency,
        unallocated=parsed.unallocated,
        components=parsed.components,
        path=str(path),
        digest=digest,
    )
