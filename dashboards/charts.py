"""Plotly figures for the pages. Colours come from the Streamlit theme (st.plotly_chart's default),
so the charts follow light and dark; only the meaning-bearing lines (thresholds, objective) are set."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go

from controlplane.slo.results import SloStatus

PAGE_COLOUR, TICKET_COLOUR, BAD_COLOUR = "#d62728", "#ff7f0e", "rgba(214, 39, 40, 0.15)"


def _layout(figure: go.Figure, title: str, y_title: str, *, percent: bool = False) -> go.Figure:
    figure.update_layout(
        title=title, margin={"l": 10, "r": 10, "t": 40, "b": 10}, height=300, yaxis_title=y_title, showlegend=True
    )
    if percent:
        figure.update_yaxes(tickformat=".1%")
    return figure


def budget_burndown(points: Sequence[Any], slo: str) -> go.Figure:
    """Error budget left at each hour: where it heads below zero the SLO is overspent."""
    figure = go.Figure(
        go.Scatter(x=[p.at for p in points], y=[p.budget_remaining for p in points], mode="lines", name="budget left")
    )
    figure.add_hline(y=0, line_dash="dot", line_color=PAGE_COLOUR, annotation_text="budget spent")
    return _layout(figure, f"Error budget left: {slo}", "budget left", percent=True)


def burn_rates(status: SloStatus) -> go.Figure:
    """The burn rate over each window beside the page and ticket thresholds that act on it."""
    windows = list(status.burn_rates)
    figure = go.Figure(go.Bar(x=windows, y=[status.burn_rates[w] for w in windows], name="burn rate"))
    for severity, rules, colour in (
        ("page", status.alert_thresholds.page, PAGE_COLOUR),
        ("ticket", status.alert_thresholds.ticket, TICKET_COLOUR),
    ):
        for rule in rules:
            figure.add_trace(
                go.Scatter(
                    x=[rule.long, rule.short],
                    y=[rule.burn, rule.burn],
                    mode="lines+markers",
                    line={"color": colour, "dash": "dash"},
                    name=f"{severity} {rule.long}/{rule.short} at {rule.burn:g}x",
                )
            )
    return _layout(figure, "Burn rate by window (1x spends the budget exactly over the SLO's window)", "burn rate")


def sli_over_time(points: Sequence[Any], objective: float) -> go.Figure:
    """The SLI hour by hour, the objective drawn, the hours below it shaded."""
    shown = [p for p in points if p.sli is not None]
    # Hours without events are gaps in the line, not a straight line across them.
    figure = go.Figure(go.Scatter(x=[p.start for p in points], y=[p.sli for p in points], mode="lines", name="SLI"))
    figure.add_hline(
        y=objective, line_dash="dash", line_color=PAGE_COLOUR, annotation_text=f"objective {objective:.2%}"
    )
    for p in shown:
        if p.sli < objective:
            figure.add_vrect(x0=p.start, x1=p.start.replace(minute=59, second=59), fillcolor=BAD_COLOUR, line_width=0)
    return _layout(figure, "SLI by hour", "SLI", percent=True)


def cost_per_bet(hours: Sequence[dict[str, Any]], currency: str, by: str = "hour") -> go.Figure:
    points = [h for h in hours if h["cost_per_settled_bet"] is not None]
    figure = go.Figure(
        go.Scatter(
            x=[h["hour"] for h in points],
            y=[float(h["cost_per_settled_bet"]) for h in points],
            mode="lines+markers",
            name="cost per settled bet",
        )
    )
    return _layout(figure, f"Cost per settled bet by {by}", currency)


def cost_by_component(components: Sequence[dict[str, Any]], currency: str) -> go.Figure:
    names = [c["name"] for c in components]
    figure = go.Figure(
        [
            go.Bar(x=names, y=[float(c["allocated"]) for c in components], name="allocated"),
            go.Bar(x=names, y=[float(c["unallocated"]) for c in components], name="idle or others'"),
        ]
    )
    figure.update_layout(barmode="stack")
    return _layout(figure, "Cost by component", currency)
