"""Plotly figures of the on-call page: an SLO over time (error ratio, burn rate on a log axis against each
rule's threshold, SLI against the objective, the budget left), with the audit log's changes marked.

Every time chart takes the same markers, so a fault set at 21:03 shows on each where its effect shows."""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go

from controlplane.formatting import budget_left, burn, percent, utc
from controlplane.markers import ChangeMarker
from controlplane.slo.curves import BudgetPoint
from controlplane.slo.periods import ONE_MINUTE
from controlplane.slo.results import AlertThreshold, AlertThresholds
from controlplane.slo.series import SloSeries
from dashboards.charts.common import BAD_COLOUR, CHANGE_COLOUR, PAGE_COLOUR, TICKET_COLOUR, layout

DENSE = 120  # above this many points, markers shrink so the line stays readable
RULE_COLOURS = ("#d62728", "#9467bd", "#ff7f0e", "#8c564b")


def _mode(count: int) -> dict[str, object]:
    return {"mode": "lines+markers", "marker": {"size": 7 if count <= DENSE else 3}}


def _resolution(series: SloSeries) -> str:
    return "per minute" if series.step == ONE_MINUTE else "per hour"


OVERLAY = {"overlaying": "y", "range": [0, 1.05], "visible": False, "fixedrange": True}  # 0..1: bottom to top


def add_markers(figure: go.Figure, markers: Sequence[ChangeMarker]) -> go.Figure:
    """A dotted line at each change and a hoverable triangle above the plot: who, what, why. Drawn as two
    traces on an overlaid 0..1 axis, not as a shape per change: plotly re-validates every shape already
    there as each is added, which made a busy day's chart take seconds."""
    if not markers:
        return figure
    xs: list[object] = []
    ys: list[float | None] = []
    for m in markers:
        xs += [m.time, m.time, None]
        ys += [0.0, 1.0, None]
    figure.add_trace(
        go.Scatter(
            x=xs, y=ys, yaxis="y2", mode="lines", line={"dash": "dot", "color": CHANGE_COLOUR, "width": 1},
            hoverinfo="skip", showlegend=False,
        )
    )  # fmt: skip
    figure.add_trace(
        go.Scatter(
            x=[m.time for m in markers],
            y=[1.0] * len(markers),
            yaxis="y2",
            mode="markers",
            marker={"symbol": "triangle-down", "size": 11, "color": CHANGE_COLOUR},
            name="changes (audit log)",
            hovertext=[
                f"{m.what}<br>by {m.actor} at {utc(m.time)}" + (f"<br>{m.reason}" if m.reason else "") for m in markers
            ],
            hoverinfo="text",
        )
    )
    figure.update_layout(yaxis2=OVERLAY)
    return figure


def error_ratio(series: SloSeries, markers: Sequence[ChangeMarker]) -> go.Figure:
    """Bad events ÷ events at each step, beside the budget's ratio (1 - objective)."""
    points = series.points
    figure = go.Figure(
        go.Scatter(
            x=[p.start for p in points],
            y=[p.error_ratio for p in points],
            name="error ratio",
            hovertemplate="%{y:.3%} at %{x|%H:%M}Z<extra></extra>",
            **_mode(len(points)),
        )
    )
    allowed = 1.0 - series.objective
    figure.add_hline(
        y=allowed, line_dash="dash", line_color=PAGE_COLOUR, annotation_text=f"budget {percent(allowed, 2)}"
    )
    add_markers(figure, markers)
    return layout(figure, f"Error ratio {_resolution(series)}: {series.slo}", "bad events ÷ events", percent=True)


def burn_rate(series: SloSeries, thresholds: AlertThresholds, markers: Sequence[ChangeMarker]) -> go.Figure:
    """The burn rate over each rule's long window, on a log axis, with that rule's threshold in the same
    colour: where a line crosses its dashed threshold (and the short window's too) the rule fires."""
    rules: list[tuple[str, AlertThreshold]] = [("page", r) for r in thresholds.page] + [
        ("ticket", r) for r in thresholds.ticket
    ]
    figure = go.Figure()
    x = [p.end for p in series.points]
    for i, (severity, rule) in enumerate(rules):
        colour = RULE_COLOURS[i % len(RULE_COLOURS)]
        values = series.burn.get(rule.long)
        if values is None:
            continue  # a window shorter than the chart's step
        figure.add_trace(
            go.Scatter(
                x=x,
                y=[v if v else None for v in values],  # 0 has no place on a log axis: a gap
                name=f"burn over {rule.long}",
                line={"color": colour},
                hovertemplate=f"%{{y:.2f}}x over {rule.long} at %{{x|%H:%M}}Z<extra></extra>",
                **_mode(len(x)),
            )
        )
        figure.add_hline(
            y=rule.burn,
            line_dash="dash",
            line_color=colour,
            annotation_text=f"{severity} {rule.long}/{rule.short} at {burn(rule.burn)}",
            annotation_position="top left",
        )
    add_markers(figure, markers)
    figure.update_yaxes(type="log")
    return layout(figure, f"Burn rate {_resolution(series)} (log scale; 1x spends the budget over the window)",
                  "burn rate (x budget)")  # fmt: skip


def sli(series: SloSeries, markers: Sequence[ChangeMarker]) -> go.Figure:
    """The SLI at each step against the objective; steps below it shaded."""
    points = series.points
    figure = go.Figure(
        go.Scatter(
            x=[p.start for p in points],
            y=[p.sli for p in points],
            name="SLI",
            hovertemplate="%{y:.3%} at %{x|%H:%M}Z<extra></extra>",
            **_mode(len(points)),
        )
    )
    figure.add_hline(
        y=series.objective, line_dash="dash", line_color=PAGE_COLOUR,
        annotation_text=f"objective {percent(series.objective, 2)}",
    )  # fmt: skip
    below = [p for p in points if p.sli is not None and p.sli < series.objective]
    if below:  # one bar trace spanning each step below the objective, full height behind the line
        figure.add_trace(
            go.Bar(
                x=[p.start + (p.end - p.start) / 2 for p in below],
                y=[1.05] * len(below),
                width=[(p.end - p.start).total_seconds() * 1000 for p in below],
                yaxis="y2", marker={"color": BAD_COLOUR, "line": {"width": 0}}, name="below objective",
                hoverinfo="skip",
            )
        )  # fmt: skip
        figure.update_layout(yaxis2=OVERLAY, barmode="overlay")
    add_markers(figure, markers)
    return layout(figure, f"SLI {_resolution(series)} against the objective", "good events ÷ events", percent=True)


def budget_burndown(points: Sequence[BudgetPoint], slo: str, markers: Sequence[ChangeMarker]) -> go.Figure:
    """The error budget left at each instant; a budget spent beyond its total is drawn at -100% and reads
    "exhausted" on hover, so one bad hour does not flatten the rest into the top of the chart."""
    figure = go.Figure(
        go.Scatter(
            x=[p.at for p in points],
            y=[max(p.budget_remaining, -1.0) for p in points],
            name="budget left",
            hovertext=[f"{budget_left(p.budget_remaining, p.budget_consumed)} at {utc(p.at)}" for p in points],
            hoverinfo="text",
            **_mode(len(points)),
        )
    )
    figure.add_hline(y=0, line_dash="dot", line_color=TICKET_COLOUR, annotation_text="budget spent")
    add_markers(figure, markers)
    figure.update_yaxes(range=[-1.05, 1.05])
    return layout(figure, f"Error budget left: {slo} (spent beyond it drawn at -100%)", "budget left", percent=True)
