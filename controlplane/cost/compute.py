"""Cost of each component in each piece of a window (whole UTC hours, ragged at the ends), and how
much of it the betting product uses: the allocation rules of `controlplane.cost.model`.

Usage:

    costs = component_piece_costs(component, pieces, charges=charges, requests=requests, cpu=cpu, slices=slices)
    costs[i].cost, costs[i].allocated, costs[i].by_slice
    minutes = split_piece_costs(component, costs, parts, charges=charges)   # parts: (piece index, (start, end))

Rules, per piece:
- `direct`: the whole cost is the product's.
- `by_requests`: the whole cost, split over the slices by their requests; a piece without any
  request is idle (unallocated).
- `by_cpu_seconds`: split over the targets by the CPU seconds they used; with `cores`, only the used
  share of the capacity (cores x seconds) is allocated, the rest is idle headroom; without it, the
  whole cost once any CPU was used.
- `fixed_share`: that share; the rest belongs to other users of a shared component.

The rules decide per hour; a part of an hour (a minute bucket) costs what its source charges for it
and has its hour's allocated fraction, so the parts of an hour add up to the hour.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import overload

from controlplane.cost.model import Component, Rate

Piece = tuple[datetime, datetime]
HOUR_SECONDS = Decimal(3600)
AMOUNT = Decimal("0.000001")  # amounts and shares in reports are rounded to this, half to even


@overload
def rounded(value: Decimal) -> str: ...
@overload
def rounded(value: None) -> None: ...
@overload
def rounded(value: Decimal | None) -> str | None: ...
def rounded(value: Decimal | None) -> str | None:
    """The one text of an amount or a share in reports: 6 decimal places, half to even (None stays None)."""
    return None if value is None else str(value.quantize(AMOUNT, rounding=ROUND_HALF_EVEN))


def seconds(a: datetime, b: datetime) -> Decimal:
    return Decimal((b - a) // timedelta(microseconds=1)) / Decimal(1_000_000)


@dataclass(frozen=True)
class Charge:
    """An imported billing amount over [start, end), spread evenly over that period."""

    start: datetime
    end: datetime
    amount: Decimal


@dataclass
class PieceCost:
    cost: Decimal = Decimal(0)
    allocated: Decimal = Decimal(0)
    by_slice: dict[str, Decimal] = field(default_factory=dict)
    by_target: dict[str, Decimal] = field(default_factory=dict)

    @property
    def unallocated(self) -> Decimal:
        return self.cost - self.allocated


def _month_start(moment: datetime) -> datetime:
    return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _next_month(moment: datetime) -> datetime:
    start = _month_start(moment)
    return start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)


def rate_cost(rate: Rate, a: datetime, b: datetime) -> Decimal:
    """A list price over [a, b): per hour by the seconds, per month by the seconds of each calendar month."""
    if rate.per_hour is not None:
        return rate.per_hour * seconds(a, b) / HOUR_SECONDS
    assert rate.per_month is not None
    total = Decimal(0)
    moment = a.astimezone(UTC)
    while moment < b:
        month_end = _next_month(moment)
        part_end = min(month_end, b)
        total += rate.per_month * seconds(moment, part_end) / seconds(_month_start(moment), month_end)
        moment = part_end
    return total


def charges_cost(charges: Sequence[Charge], a: datetime, b: datetime) -> Decimal:
    total = Decimal(0)
    for charge in charges:
        overlap_start, overlap_end = max(a, charge.start), min(b, charge.end)
        if overlap_end > overlap_start:
            total += charge.amount * seconds(overlap_start, overlap_end) / seconds(charge.start, charge.end)
    return total


def source_cost(component: Component, charges: Sequence[Charge], a: datetime, b: datetime) -> Decimal:
    """What the component's source (its list price, or its imported charges) costs over [a, b)."""
    return rate_cost(component.rate, a, b) if component.rate is not None else charges_cost(charges, a, b)


def component_piece_costs(
    component: Component,
    pieces: Sequence[Piece],
    *,
    charges: Sequence[Charge],
    requests: dict[str, list[int]],
    cpu: dict[str, list[Decimal]],
    slices: Sequence[str],
) -> list[PieceCost]:
    """The component's cost and its allocation in each piece."""
    allocation = component.allocation
    result = []
    for i, (a, b) in enumerate(pieces):
        cost = source_cost(component, charges, a, b)
        piece = PieceCost(cost=cost)
        if allocation.rule == "direct":
            piece.allocated = cost
        elif allocation.rule == "fixed_share":
            assert allocation.fixed_share is not None
            piece.allocated = cost * allocation.fixed_share.share
        elif allocation.rule == "by_requests":
            chosen = (allocation.by_requests.slices if allocation.by_requests else None) or list(slices)
            used = {name: requests.get(name, [0] * len(pieces))[i] for name in chosen}
            total = sum(used.values())
            if total:
                piece.allocated = cost
                piece.by_slice = {name: cost * count / total for name, count in used.items()}
        else:
            params = allocation.by_cpu_seconds
            assert params is not None
            used_cpu = {target: cpu.get(target, [Decimal(0)] * len(pieces))[i] for target in params.targets}
            spent = sum(used_cpu.values(), Decimal(0))
            if spent > 0:
                if params.cores is not None:
                    capacity = params.cores * seconds(a, b)
                    piece.allocated = cost * min(Decimal(1), spent / capacity)
                else:
                    piece.allocated = cost
                piece.by_target = {t: piece.allocated * s / spent for t, s in used_cpu.items()}
        result.append(piece)
    return result


def split_piece_costs(
    component: Component,
    costs: Sequence[PieceCost],
    parts: Sequence[tuple[int, Piece]],
    *,
    charges: Sequence[Charge],
) -> list[PieceCost]:
    """The cost of each part of a piece (`parts`: the index of its piece, and its start and end), with the
    fraction of it allocated that its piece has."""
    result = []
    for i, (a, b) in parts:
        cost = source_cost(component, charges, a, b)
        whole = costs[i]
        result.append(PieceCost(cost=cost, allocated=cost * whole.allocated / whole.cost if whole.cost else Decimal(0)))
    return result
