"""The unit-cost report: total cost, settled and voided bets, cost per settled bet, per component and
per bucket, beside each SLO's budget and alerts in the window (`controlplane cost report`).

Usage:

    inputs = CostInputs.from_config(load_config(settings), store=store_engine, audit=audit_engine)
    report = cost_report(inputs, start, end, by="hour", event=None, now=utcnow())   # a CostReport
    json.dumps(report.to_dict())
    fitting_bucketing(start, end)   # "minute" up to a few hours, "hour" up to a week, "day" beyond

The cost per settled bet is the total cost ÷ the settled bets, and beside it the allocated cost per
settled bet: the part the betting product used by the allocation rules; the rest is idle headroom and
others' shares, shown apart. The denominator is `controlplane.cost.bets`. Amounts are exact decimals
(`controlplane.cost.results`), printed rounded to 6 places; a cost per settled bet is None, with the
reason, when nothing settled. The rules allocate hour by hour, so the figures of a window are the same
whichever buckets are asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Literal

from sqlalchemy import Engine

from controlplane.clock import as_utc
from controlplane.config import ControlPlaneConfig
from controlplane.cost.bets import SettledBets, hour_index, minute_index, settled_bets
from controlplane.cost.compute import Charge, PieceCost, component_piece_costs, split_piece_costs
from controlplane.cost.focus import charges_by_component
from controlplane.cost.model import CostModel
from controlplane.cost.results import (
    AlertState,
    Bucketing,
    ComponentCost,
    CostBucket,
    CostFigures,
    CostReport,
    CostWindow,
    EventCost,
    SloBeside,
    per_settled_bet,
)
from controlplane.cost.usage import CPU_METRIC, cpu_seconds_by_piece, hour_pieces, minute_pieces, requests_by_piece
from controlplane.scheduler.history import alerts_fired
from controlplane.slo.engine import budget
from controlplane.slo.rolled import evaluate_all_from_rollups, load_rolled_counts, rolled_series, snapshot
from controlplane.slo.spec import EventSpec, SloSpec

MINUTE_LIMIT = timedelta(hours=24)  # minute buckets for windows up to this long (1,440 of them)
FEW_HOURS = timedelta(hours=6)  # a window this short (an event's, typically) is read by the minute
WEEK = timedelta(days=7)


class BucketingError(ValueError):
    """Buckets too fine for the window; the message says what to ask for instead."""


def fitting_bucketing(start: datetime, end: datetime, *, event: bool = False) -> Literal["minute", "hour", "day"]:
    """The buckets that fit a window: minutes for an event's window (up to MINUTE_LIMIT) and for windows
    of a few hours, hours up to a week, days beyond."""
    span = end - start
    if span <= FEW_HOURS or (event and span <= MINUTE_LIMIT):
        return "minute"
    return "hour" if span <= WEEK else "day"


@dataclass(frozen=True)
class CostInputs:
    model: CostModel
    store: Engine
    audit: Engine
    slices: Sequence[str]
    specs: Sequence[SloSpec]
    events: dict[str, EventSpec]
    boundaries: tuple[float, ...]

    @classmethod
    def from_config(
        cls, config: ControlPlaneConfig, *, store: Engine, audit: Engine, model: CostModel | None = None
    ) -> CostInputs:
        """Inputs for the files of `config` (its cost model unless `model` is given), on these databases."""
        return cls(
            model or config.cost_model(),
            store,
            audit,
            config.slice_names,
            config.specs,
            config.events,
            config.boundaries,
        )


def _figures(pieces: list[PieceCost], settled: int, voided: int) -> CostFigures:
    cost = sum((p.cost for p in pieces), Decimal(0))
    allocated = sum((p.allocated for p in pieces), Decimal(0))
    return CostFigures(cost, allocated, settled, voided)


@dataclass(frozen=True)
class PricedWindow:
    """Each component's cost and allocation in each piece (hour) of a window, with what drove it."""

    pieces: list[tuple[datetime, datetime]]
    costs: dict[str, list[PieceCost]]
    charges: dict[str, list[Charge]]  # of each component priced from imported bills
    requests: dict[str, list[int]]
    unmapped: dict[str, Decimal]  # by currency: imported bills no component matches
    warnings: list[str]


def price_window(inputs: CostInputs, start: datetime, end: datetime) -> PricedWindow:
    model = inputs.model
    pieces = hour_pieces(start, end)
    requests = requests_by_piece(inputs.store, list(inputs.slices), pieces)
    targets = sorted(
        {t for c in model.components if c.allocation.by_cpu_seconds for t in c.allocation.by_cpu_seconds.targets}
    )
    cpu, sampled = cpu_seconds_by_piece(inputs.store, targets, pieces)
    warnings = [
        f"no {CPU_METRIC} scraped from {target} in the window, so what runs there counts as idle: add the metric "
        "to CONTROLPLANE_SCRAPE_METRICS and the target to CONTROLPLANE_SCRAPE_TARGETS of the collector"
        for target in targets
        if target not in sampled
    ]
    charges, unmapped = charges_by_component(inputs.store, model, start, end)
    costs = {
        c.name: component_piece_costs(
            c, pieces, charges=charges.get(c.name, []), requests=requests, cpu=cpu, slices=inputs.slices
        )
        for c in model.components
    }
    return PricedWindow(pieces, costs, charges, requests, unmapped, warnings)


def cost_report(
    inputs: CostInputs,
    start: datetime,
    end: datetime,
    *,
    by: Bucketing = None,
    event: EventSpec | None = None,
    now: datetime,
) -> CostReport:
    """The report of [start, end), cut at `now` when the window is not over; `by` adds buckets (minute
    buckets for windows up to MINUTE_LIMIT, else BucketingError)."""
    model = inputs.model
    start, requested_end = as_utc(start), as_utc(end)
    end = max(start, min(requested_end, as_utc(now)))
    if by == "minute" and end - start > MINUTE_LIMIT:
        raise BucketingError(
            f"minute buckets cover windows of up to {MINUTE_LIMIT.total_seconds() / 3600:.0f} hours; "
            "ask for hour or day buckets"
        )
    priced = price_window(inputs, start, end)
    costs, requests, unmapped = priced.costs, priced.requests, priced.unmapped
    bets = settled_bets(inputs.audit, start, end)
    everything = [p for pc in costs.values() for p in pc]
    return CostReport(
        window=CostWindow(start, end, complete=end == requested_end, event=event.name if event else None, by=by),
        currency=model.currency,
        unallocated_policy=model.unallocated,
        figures=_figures(everything, bets.settled, bets.voided),
        warnings=tuple(priced.warnings),
        probe_bets_excluded=bets.probes_excluded,
        resettled_bets=bets.resettled,
        unmapped_billing_cost=unmapped.get(model.currency, Decimal(0)),
        unmapped_billing_other_currencies={c: a for c, a in sorted(unmapped.items()) if c != model.currency},
        components=_components(inputs, costs, bets.settled),
        buckets=_buckets(inputs.model, priced, bets, by) if by else (),
        slos=_slos(inputs, costs, requests, start, end),
        event=_event(inputs, event, costs, start, end) if event is not None else None,
    )


def _components(inputs: CostInputs, costs: dict[str, list[PieceCost]], settled: int) -> tuple[ComponentCost, ...]:
    model = inputs.model
    cost = {name: sum((p.cost for p in pieces), Decimal(0)) for name, pieces in costs.items()}
    allocated = {name: sum((p.allocated for p in pieces), Decimal(0)) for name, pieces in costs.items()}
    whole = sum(cost.values(), Decimal(0))
    return tuple(
        ComponentCost(
            name=component.name,
            cost=cost[component.name],
            allocated=allocated[component.name],
            share=cost[component.name] / whole if whole else None,
            cost_per_settled_bet=per_settled_bet(cost[component.name], settled),
            allocated_cost_per_settled_bet=per_settled_bet(allocated[component.name], settled),
            source=component.source(),
            allocation=component.allocation.describe(),
        )
        for component in model.components
    )


def _bucket_key(moment: datetime, by: str) -> datetime:
    if by == "minute":
        return moment.replace(second=0, microsecond=0)
    hour = moment.replace(minute=0, second=0, microsecond=0)
    return hour if by == "hour" else hour.replace(hour=0)


def _buckets(model: CostModel, priced: PricedWindow, bets: SettledBets, by: str) -> tuple[CostBucket, ...]:
    pieces, costs, counts, index = priced.pieces, priced.costs, bets.by_hour, hour_index
    if by == "minute":
        parts = [(i, part) for i, piece in enumerate(pieces) for part in minute_pieces(*piece)]
        pieces = [part for _i, part in parts]
        costs = {
            c.name: split_piece_costs(c, costs[c.name], parts, charges=priced.charges.get(c.name, []))
            for c in model.components
        }
        counts, index = bets.by_minute, minute_index
    groups: dict[datetime, list[int]] = {}
    for i, (a, _b) in enumerate(pieces):
        groups.setdefault(_bucket_key(a, by), []).append(i)
    rows = []
    for key, indexes in groups.items():
        slots = {index(pieces[i][0]) for i in indexes}
        settled = sum(counts.get(slot, [0, 0])[0] for slot in slots)
        voided = sum(counts.get(slot, [0, 0])[1] for slot in slots)
        chosen = [pc[i] for pc in costs.values() for i in indexes]
        rows.append(
            CostBucket(
                start=pieces[indexes[0]][0],
                end=pieces[indexes[-1]][1],
                bucket=key,
                figures=_figures(chosen, settled, voided),
            )
        )
    return tuple(rows)


def _slos(
    inputs: CostInputs,
    costs: dict[str, list[PieceCost]],
    requests: dict[str, list[int]],
    start: datetime,
    end: datetime,
) -> tuple[SloBeside, ...]:
    if not inputs.specs:
        return ()
    status = {
        s.name: s
        for s in evaluate_all_from_rollups(
            inputs.store, list(inputs.specs), events=inputs.events, boundaries=inputs.boundaries, at=end
        ).slos
    }
    fired = alerts_fired(inputs.store, start, end)
    rows = []
    for spec in inputs.specs:
        slice_cost = sum(
            (p.by_slice.get(spec.slice, Decimal(0)) for pieces in costs.values() for p in pieces), Decimal(0)
        )
        s = status[spec.name]
        alert: AlertState = "page" if s.alerts.page else "ticket" if s.alerts.ticket else "ok"
        rows.append(
            SloBeside(
                name=spec.name,
                slice=spec.slice,
                objective=spec.objective,
                budget_remaining=s.budget_remaining,
                alert_state=alert,
                alerts_fired=int(fired.get(spec.name, 0)),
                requests=sum(requests.get(spec.slice, [])),
                slice_cost=slice_cost,
            )
        )
    return tuple(rows)


def _event(
    inputs: CostInputs, event: EventSpec, costs: dict[str, list[PieceCost]], start: datetime, end: datetime
) -> EventCost:
    """The idle headroom paid for during the event (unallocated cost of CPU-allocated components)
    beside the error budget each SLO burned in the event's window."""
    headroom = sum(
        (
            p.unallocated
            for c in inputs.model.components
            if c.allocation.rule == "by_cpu_seconds"
            for p in costs[c.name]
        ),
        Decimal(0),
    )
    burned: dict[str, float | None] = {}
    with snapshot(inputs.store) as conn:
        series = rolled_series(conn)
        for spec in inputs.specs:
            counts = load_rolled_counts(
                conn, spec, earliest=start, at=end, windows=[(start, end)], boundaries=inputs.boundaries, series=series
            )
            total, bad = counts.window(start, end)
            burned[spec.name] = budget(spec.objective, total, bad)[1] if total else None
    return EventCost(event.name, event.kickoff, event.settlement_expected, headroom, burned)
