"""Plotly figures of the cost page: the cost per settled bet in each bucket of the window (with the
allocated part beside it), and the cost of each component. Amounts stay `Decimal` until handed to plotly;
hover texts are the page's own formatted money."""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go

from controlplane.cost.render import ALLOCATED_PER_BET, IDLE, PER_BET
from controlplane.cost.results import ComponentCost, CostBucket, CostWindow
from controlplane.formatting import count, money, utc_minute
from dashboards.charts.common import layout

DENSE = 120  # above this many points, markers shrink so the line stays readable
HEADROOM = 1.15  # the y axis runs from 0 to this much above the highest point


def _marker_size(points: int) -> int:
    return 3 if points > DENSE else 6 if points > 1 else 10  # a lone point is drawn large enough to see


def _bucket_text(bucket: CostBucket, currency: str) -> str:
    f = bucket.figures
    return (
        f"{utc_minute(bucket.start)} to {utc_minute(bucket.end)}: total cost {money(f.total_cost, currency)}, "
        f"settled bets {count(f.settled_bets)}"
    )


def cost_per_bet(buckets: Sequence[CostBucket], currency: str, window: CostWindow) -> go.Figure:
    """Cost per settled bet (total cost ÷ settled bets) and allocated cost per settled bet in each bucket,
    drawn at the bucket's middle over the whole window; a bucket without a settled bet is a gap, so a lone
    bucket with bets is a marker of its own."""
    by = window.by or "hour"
    middles = [b.start + (b.end - b.start) / 2 for b in buckets]
    figure = go.Figure()
    series = (
        (PER_BET, [b.figures.cost_per_settled_bet for b in buckets], "solid"),
        (ALLOCATED_PER_BET, [b.figures.allocated_cost_per_settled_bet for b in buckets], "dot"),
    )
    highest = 0.0
    for name, amounts, dash in series:
        values = [float(a) if a is not None else None for a in amounts]
        drawn = [v for v in values if v is not None]
        highest = max([highest, *drawn])
        figure.add_trace(
            go.Scatter(
                x=middles,
                y=values,
                name=name,
                mode="lines+markers",
                marker={"size": _marker_size(len(drawn))},
                line={"dash": dash},
                cliponaxis=False,
                hovertext=[
                    f"{name}: {money(a, currency)}<br>{_bucket_text(b, currency)}"
                    for b, a in zip(buckets, amounts, strict=True)
                ],
                hoverinfo="text",
            )
        )
    if not any(b.figures.settled_bets for b in buckets):
        figure.add_annotation(
            text="no bet was settled in this window", x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False
        )
    figure.update_xaxes(range=[window.start, window.end])
    figure.update_yaxes(range=[0, highest * HEADROOM if highest > 0 else 1], rangemode="tozero")
    title = f"Cost per settled bet, per {by}, {utc_minute(window.start)} to {utc_minute(window.end)}"
    return layout(figure, title, f"{currency} per settled bet")


def cost_by_component(components: Sequence[ComponentCost], currency: str) -> go.Figure:
    """Each component's cost in the window: the allocated part, and the idle or others' part on top."""
    names = [c.name for c in components]
    figure = go.Figure(
        [
            go.Bar(
                x=names,
                y=[float(c.allocated) for c in components],
                name="Allocated",
                hovertext=[money(c.allocated, currency) for c in components],
                hoverinfo="text+name",
            ),
            go.Bar(
                x=names,
                y=[float(c.unallocated) for c in components],
                name=IDLE,
                hovertext=[money(c.unallocated, currency) for c in components],
                hoverinfo="text+name",
            ),
        ]
    )
    figure.update_layout(barmode="stack")
    return layout(figure, "Cost by component in the window", currency, x_title="component")
