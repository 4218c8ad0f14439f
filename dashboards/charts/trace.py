"""A kept trace as a waterfall: one bar per span in tree order, from its start offset for its duration,
errors in the page colour; hovering a bar shows the span's service, kind, id and first attributes."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go

from dashboards.charts.common import PAGE_COLOUR, layout

SPAN_COLOUR = "#1f77b4"
ROW_PX = 26


def tree_order(spans: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
    """(depth, span) parents before children, siblings by start; a span whose parent was not kept is a root."""
    ids = {s["span_id"] for s in spans}
    children: dict[str, list[dict[str, Any]]] = {}
    roots = []
    for span in sorted(spans, key=lambda s: s["start_unix_nano"]):
        if span["parent_span_id"] in ids:
            children.setdefault(span["parent_span_id"], []).append(span)
        else:
            roots.append(span)
    out: list[tuple[int, dict[str, Any]]] = []

    def walk(span: dict[str, Any], depth: int) -> None:
        out.append((depth, span))
        for child in children.get(span["span_id"], []):
            walk(child, depth + 1)

    for root in roots:
        walk(root, 0)
    return out


def waterfall(spans: list[dict[str, Any]]) -> go.Figure:
    ordered = tree_order(spans)
    start = min((s["start_unix_nano"] for s in spans), default=0)
    labels = [f"{i + 1:>2}. {'  ' * depth}{span['name']}" for i, (depth, span) in enumerate(ordered)]
    hover = [
        f"{span['name']}<br>{span['service']} {span['kind']} span {span['span_id']}<br>"
        f"{span['duration_ms']:.1f} ms from +{(span['start_unix_nano'] - start) / 1e6:.1f} ms"
        + "".join(f"<br>{k} = {v}" for k, v in list(span["attributes"].items())[:8])
        for _, span in ordered
    ]
    figure = go.Figure(
        go.Bar(
            y=labels,
            x=[max(span["duration_ms"], 0.05) for _, span in ordered],
            base=[(span["start_unix_nano"] - start) / 1e6 for _, span in ordered],
            orientation="h",
            marker_color=[PAGE_COLOUR if span["status_code"] == 2 else SPAN_COLOUR for _, span in ordered],
            hovertext=hover,
            hoverinfo="text",
            name="span (red: error)",
        )
    )
    layout(figure, "Spans of this trace (red: error)", "", x_title="milliseconds from the trace's start")
    figure.update_yaxes(autorange="reversed", tickfont={"family": "monospace"})
    figure.update_layout(height=max(200, 80 + ROW_PX * len(ordered)), showlegend=False)
    return figure
