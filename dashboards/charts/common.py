"""What every chart shares: the layout (full titles, axis units, room for the legend) and the colours
that carry meaning (page red, ticket amber). Other colours come from the Streamlit theme
(st.plotly_chart's default), so the charts follow light and dark."""

from __future__ import annotations

import plotly.graph_objects as go

PAGE_COLOUR, TICKET_COLOUR, OK_COLOUR = "#d62728", "#ff7f0e", "#2ca02c"
BAD_COLOUR = "rgba(214, 39, 40, 0.15)"
CHANGE_COLOUR = "#7f7f7f"
# Every st.plotly_chart takes this: no "Download plot as png" in the chart's toolbar, which would be an
# export of the page's data with no `access` entry (exports go through dashboards.handoff_page.offer_export).
CHART_CONFIG = {"modeBarButtonsToRemove": ["toImage"], "displaylogo": False}


def layout(
    figure: go.Figure, title: str, y_title: str, *, percent: bool = False, x_title: str = "time (UTC)"
) -> go.Figure:
    figure.update_layout(
        title={"text": title, "x": 0, "xanchor": "left", "font": {"size": 15}},
        margin={"l": 10, "r": 10, "t": 50, "b": 10},
        height=320,
        xaxis_title=x_title,
        yaxis_title=y_title,
        showlegend=True,
        legend={"orientation": "h", "y": -0.25},
    )
    if percent:
        figure.update_yaxes(tickformat=".2%")
    return figure
