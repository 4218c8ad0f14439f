"""What the unit-cost report says, as types: the window, the headline figures, each component, each
bucket, each SLO beside its cost and the event section. Amounts are exact `Decimal`s; `rounded` is
their one formatter, and `CostReport.to_dict()` is the JSON `controlplane cost report` prints.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from controlplane.clock import utc_text
from controlplane.cost.compute import rounded

Bucketing = Literal["minute", "hour", "day"] | None
AlertState = Literal["page", "ticket", "ok"]
NOTHING_SETTLED = "no bet was settled in the window, so there is no cost per settled bet"


def per_settled_bet(amount: Decimal, settled: int) -> Decimal | None:
    """An amount per settled bet; None when nothing settled (never a division by zero)."""
    return amount / settled if settled else None


@dataclass(frozen=True)
class CostWindow:
    """The window priced: `end` is cut at now when the window asked for is not over (`complete` false)."""

    start: datetime
    end: datetime
    complete: bool
    event: str | None
    by: Bucketing

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": utc_text(self.start),
            "end": utc_text(self.end),
            "complete": self.complete,
            "event": self.event,
            "by": self.by,
        }


@dataclass(frozen=True)
class CostFigures:
    """Cost and settled bets of a window or a bucket. The cost per settled bet is the total cost ÷ the
    settled bets; the allocated cost per settled bet, beside it, is the part the betting product used
    (the rest is idle headroom and others' shares). Both are None, with the reason, when nothing settled."""

    total_cost: Decimal
    allocated_cost: Decimal
    settled_bets: int
    voided_bets: int

    @property
    def unallocated_cost(self) -> Decimal:
        return self.total_cost - self.allocated_cost

    @property
    def cost_per_settled_bet(self) -> Decimal | None:
        return per_settled_bet(self.total_cost, self.settled_bets)

    @property
    def allocated_cost_per_settled_bet(self) -> Decimal | None:
        return per_settled_bet(self.allocated_cost, self.settled_bets)

    @property
    def cost_per_settled_bet_reason(self) -> str | None:
        return None if self.settled_bets else NOTHING_SETTLED

    def to_dict(self) -> dict[str, Any]:
        return {
            "total_cost": rounded(self.total_cost),
            "allocated_cost": rounded(self.allocated_cost),
            "unallocated_cost": rounded(self.unallocated_cost),
            "settled_bets": self.settled_bets,
            "voided_bets": self.voided_bets,
            "cost_per_settled_bet": rounded(self.cost_per_settled_bet),
            "allocated_cost_per_settled_bet": rounded(self.allocated_cost_per_settled_bet),
            "cost_per_settled_bet_reason": self.cost_per_settled_bet_reason,
        }


@dataclass(frozen=True)
class ComponentCost:
    """One component of the cost model over the window: its `share` of the total cost (None when nothing
    cost anything), its cost and allocated cost per settled bet (these add up to the window's), and where
    its cost and allocation come from, in words."""

    name: str
    cost: Decimal
    allocated: Decimal
    share: Decimal | None
    cost_per_settled_bet: Decimal | None
    allocated_cost_per_settled_bet: Decimal | None
    source: str
    allocation: str

    @property
    def unallocated(self) -> Decimal:
        return self.cost - self.allocated

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "cost": rounded(self.cost),
            "allocated": rounded(self.allocated),
            "unallocated": rounded(self.unallocated),
            "share": rounded(self.share),
            "cost_per_settled_bet": rounded(self.cost_per_settled_bet),
            "allocated_cost_per_settled_bet": rounded(self.allocated_cost_per_settled_bet),
            "source": self.source,
            "allocation": self.allocation,
        }


@dataclass(frozen=True)
class CostBucket:
    """A minute, an hour or a day of the window (`bucket` is its UTC start; `start`/`end` are cut to the
    window)."""

    start: datetime
    end: datetime
    bucket: datetime
    figures: CostFigures

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": utc_text(self.start),
            "end": utc_text(self.end),
            **self.figures.to_dict(),
            "bucket": utc_text(self.bucket),
        }


@dataclass(frozen=True)
class SloBeside:
    """An SLO beside what its slice cost: budget left and the alert now (at the window's end), the alerts
    that fired in the window, and the slice's requests and share of the cost."""

    name: str
    slice: str
    objective: float
    budget_remaining: float
    alert_state: AlertState
    alerts_fired: int
    requests: int
    slice_cost: Decimal

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "slice": self.slice,
            "objective": self.objective,
            "budget_remaining": self.budget_remaining,
            "alert_state": self.alert_state,
            "alerts_fired": self.alerts_fired,
            "requests": self.requests,
            "slice_cost": rounded(self.slice_cost),
        }


@dataclass(frozen=True)
class EventCost:
    """The idle headroom paid for during an event beside the error budget each SLO burned in it (by SLO
    name, in the SLO file's order; None where the SLO saw no request)."""

    name: str
    kickoff: datetime
    settlement_expected: datetime
    headroom_cost: Decimal
    budget_consumed: Mapping[str, float | None]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kickoff": utc_text(self.kickoff),
            "settlement_expected": utc_text(self.settlement_expected),
            "headroom_cost": rounded(self.headroom_cost),
            "budget_consumed": dict(self.budget_consumed),
        }


@dataclass(frozen=True)
class CostReport:
    """The unit-cost report of a window (`controlplane.cost.report.cost_report`).

    report = cost_report(inputs, start, end, by="hour", now=utcnow())
    rounded(report.figures.cost_per_settled_bet), [c.name for c in report.components]
    """

    window: CostWindow
    currency: str
    unallocated_policy: Literal["separate", "spread"]
    figures: CostFigures
    warnings: tuple[str, ...]
    probe_bets_excluded: int
    resettled_bets: int
    unmapped_billing_cost: Decimal  # imported bills in the model's currency that no component matches
    unmapped_billing_other_currencies: Mapping[str, Decimal]  # the same in other currencies, by currency
    components: tuple[ComponentCost, ...]
    buckets: tuple[CostBucket, ...]
    slos: tuple[SloBeside, ...]
    event: EventCost | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON `controlplane cost report --format json` prints: amounts as decimal strings rounded to
        6 places, times as UTC text, `event` only for an event's window."""
        document: dict[str, Any] = {
            "window": self.window.to_dict(),
            "currency": self.currency,
            "unallocated_policy": self.unallocated_policy,
            **self.figures.to_dict(),
            "warnings": list(self.warnings),
            "probe_bets_excluded": self.probe_bets_excluded,
            "resettled_bets": self.resettled_bets,
            "unmapped_billing_cost": rounded(self.unmapped_billing_cost),
            "unmapped_billing_other_currencies": {
                currency: rounded(amount) for currency, amount in sorted(self.unmapped_billing_other_currencies.items())
            },
            "components": [c.to_dict() for c in self.components],
            "buckets": [b.to_dict() for b in self.buckets],
            "slos": [s.to_dict() for s in self.slos],
        }
        if self.event is not None:
            document["event"] = self.event.to_dict()
        return document
