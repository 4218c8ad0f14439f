"""The cost page (`/cost`): cost per settled bet (total cost ÷ settled bets, the allocated part beside it)
in buckets that fit the window and per component, beside each SLO's budget for the same window; per event
(kickoff-1h to settlement+1h) with the idle headroom paid.

The URL holds the view: `?window=24h|7d|30d|event: NAME`, `?by=minute|hour|day` (only when not the
buckets that fit the window) and `?at=ISO`, where the window ends (default now). The page at
`?at=T&window=24h` shows what `controlplane cost report --window 24h --at T` (the same as
`--from T-24h --to T`) prints: the same figures, labels and rows (`controlplane.cost.render`).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import NamedTuple, cast

import streamlit as st
from sqlalchemy.exc import SQLAlchemyError

from controlplane.clock import utc_text
from controlplane.cost.render import (
    bucket_rows,
    component_rows,
    event_rows,
    explanation,
    headline,
    notes,
    render_csv,
    slo_rows,
    window_title,
)
from controlplane.cost.report import MINUTE_LIMIT, CostInputs, cost_report, fitting_bucketing
from controlplane.cost.results import Bucketing, CostReport
from controlplane.formatting import money, utc
from dashboards import data
from dashboards.charts import cost as charts
from dashboards.charts.common import CHART_CONFIG
from dashboards.handoff_page import offer_export
from dashboards.links import at_caption, pinned_at
from dashboards.shell import audit_store, problem, require, settings, store

ROLES = ("oncall", "admin")

WINDOWS = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}
BUCKETINGS = ("minute", "hour", "day")
TILES_PER_ROW = 3  # wide enough that every amount shows whole


@st.cache_data(ttl=60, show_spinner="Pricing the window ...")
def _report(start: str, end: str, by: str, event: str | None, at: str) -> CostReport:
    config = data.config()
    inputs = CostInputs.from_config(config, store=store(), audit=audit_store())
    chosen = config.events.get(event) if event else None
    return cost_report(
        inputs,
        datetime.fromisoformat(start),
        datetime.fromisoformat(end),
        by=cast(Bucketing, by),
        event=chosen,
        now=datetime.fromisoformat(at),
    )


class View(NamedTuple):
    """What the URL asks for: the window's choice (`24h`, `event: NAME`), its start and end, the buckets."""

    choice: str
    start: datetime
    end: datetime
    by: str
    event: str | None


def _view(at: datetime) -> View | None:
    """The window and buckets from the URL (unknown values fall back, with a note), kept in the URL."""
    try:
        events = data.config().events
    except ValueError as exc:
        problem(f"The SLO or events file cannot be read: {exc}.", "Fix config/slos.yaml and config/events.yaml.")
        return None
    choices = list(WINDOWS) + [f"event: {name}" for name in events]
    wanted = st.query_params.get("window", "24h")
    if wanted not in choices:
        st.caption(f"The link's window is not one this page offers ({', '.join(choices)}); showing 24h.")
        wanted = "24h"
    left, right = st.columns([3, 1])
    chosen = left.selectbox("Window", choices, index=choices.index(wanted))
    st.query_params["window"] = chosen
    event = None
    if chosen.startswith("event: "):
        event = chosen.removeprefix("event: ")
        start, end = events[event].window()
        if start >= at:
            st.info(f"{event} starts at {utc(start)}, after {utc(at)}; its cost report opens then.")
            return None
    else:
        start, end = at - WINDOWS[chosen], at
    priced_end = min(end, at)  # a window not over by `at` is priced up to `at`
    fitting = fitting_bucketing(start, priced_end, event=event is not None)
    options = [b for b in BUCKETINGS if b != "minute" or priced_end - start <= MINUTE_LIMIT]
    wanted_by = st.query_params.get("by", fitting)
    if wanted_by not in options:
        st.caption(f"The link's buckets do not fit this window ({', '.join(options)}); showing {fitting}.")
        wanted_by = fitting
    by = right.segmented_control("Buckets", options, default=wanted_by) or wanted_by
    if by == fitting:
        st.query_params.pop("by", None)
    else:
        st.query_params["by"] = by
    return View(chosen, start, end, by, event)


def _command(view: View, at: datetime) -> str:
    """The command line that prints the same report."""
    which = f"--event {view.event}" if view.event else f"--window {view.choice}"
    return f"controlplane cost report {which} --at {utc_text(at)} --by {view.by}"


def _headline(report: CostReport) -> None:
    tiles = headline(report)
    for row in range(0, len(tiles), TILES_PER_ROW):
        for column, (label, text) in zip(st.columns(TILES_PER_ROW), tiles[row : row + TILES_PER_ROW], strict=False):
            column.metric(label, text)  # short texts (controlplane.formatting), so none is cut off
    st.caption(explanation(report))
    st.caption(notes(report))
    for warning in report.warnings:
        st.warning(warning)


def render() -> None:
    require(*ROLES)
    st.title("Cost per settled bet")
    at, pinned = pinned_at()
    st.caption(at_caption(at, pinned))
    if not settings().costs_path.exists():
        problem(f"No cost model at {settings().costs_path}.", "Copy config/costs.yaml and set CONTROLPLANE_COSTS_PATH.")
        return
    view = _view(at)
    if view is None:
        return
    try:
        report = _report(view.start.isoformat(), view.end.isoformat(), view.by, view.event, at.isoformat())
    except (ValueError, SQLAlchemyError) as exc:  # a bad cost model, bills in another currency, no store
        problem(f"The cost report cannot be made: {exc}.", "Fix the cost model or the imported bills.")
        return
    cur = report.currency
    st.caption(f"{window_title(report)}. The same report from the command line: `{_command(view, at)}`")
    _headline(report)
    left, right = st.columns(2)
    left.plotly_chart(charts.cost_per_bet(report.buckets, cur, report.window), config=CHART_CONFIG)
    right.plotly_chart(charts.cost_by_component(report.components, cur), config=CHART_CONFIG)
    st.subheader("Components")
    st.dataframe(component_rows(report), hide_index=True)
    with st.expander(f"Each {view.by} of the window"):
        st.dataframe(bucket_rows(report), hide_index=True)
    st.subheader("Beside the error budget")
    st.dataframe(slo_rows(report), hide_index=True)
    if report.event is not None:
        st.subheader(f"Event {report.event.name}")
        st.markdown(f"Idle headroom paid: **{money(report.event.headroom_cost, cur)}**")
        st.dataframe(event_rows(report), hide_index=True)
    left, right = st.columns(2)
    window = {"window": report.window.to_dict()}
    offer_export(
        "Download report (JSON)", json.dumps(report.to_dict(), indent=2), file_name="cost-report.json",
        mime="application/json", what="cost-report", roles=ROLES, detail=window, where=left,
    )  # fmt: skip
    offer_export(
        "Download report (CSV)", render_csv(report), file_name="cost-report.csv", mime="text/csv",
        what="cost-report-csv", roles=ROLES, detail=window, where=right,
    )  # fmt: skip
