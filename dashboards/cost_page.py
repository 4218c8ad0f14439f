"""The cost page (`/cost`): cost per settled bet over time and per component, beside each SLO's budget
for the same window; per event (kickoff-1h to settlement+1h) with the idle headroom paid."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Literal

import streamlit as st
from sqlalchemy.exc import SQLAlchemyError

from controlplane.clock import utc_text, utcnow
from controlplane.cost.compute import rounded
from controlplane.cost.report import CostInputs, cost_report
from controlplane.cost.results import CostReport
from dashboards import charts, data
from dashboards.shell import audit_store, problem, record_export, require, settings, store

WINDOWS = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}


@st.cache_data(ttl=60, show_spinner="Pricing the window ...")
def _report(start: str, end: str, by: str, event: str | None) -> CostReport:
    config = data.config()
    inputs = CostInputs.from_config(config, store=store(), audit=audit_store())
    chosen = config.events.get(event) if event else None
    bucketing: Literal["hour", "day"] = "day" if by == "day" else "hour"
    return cost_report(
        inputs, datetime.fromisoformat(start), datetime.fromisoformat(end), by=bucketing, event=chosen, now=utcnow()
    )


def _window() -> tuple[datetime, datetime, str, str | None] | None:
    try:
        events = data.config().events
    except ValueError as exc:
        problem(f"The SLO or events file cannot be read: {exc}.", "Fix config/slos.yaml and config/events.yaml.")
        return None
    choices = list(WINDOWS) + [f"event: {name}" for name in events]
    wanted = st.query_params.get("window", "24h")
    left, right = st.columns([3, 1])
    if wanted not in choices:
        st.caption("The link's window is not one this page offers; showing 24h.")
    chosen = left.selectbox("Window", choices, index=choices.index(wanted) if wanted in choices else 0)
    by = right.segmented_control("Buckets", ["hour", "day"], default="hour") or "hour"
    st.query_params["window"] = chosen
    now = utcnow().replace(microsecond=0)  # up to now: the bets settled a moment ago count
    if chosen.startswith("event: "):
        name = chosen.removeprefix("event: ")
        start, end = events[name].window()
        if start >= now:
            st.info(f"{name} starts at {utc_text(start)}; its cost report opens then.")
            return None
        return start, min(end, now), by, name
    return now - WINDOWS[chosen], now, by, None


def render() -> None:
    require("oncall", "admin")
    st.title("Cost per settled bet")
    if not settings().costs_path.exists():
        problem(f"No cost model at {settings().costs_path}.", "Copy config/costs.yaml and set CONTROLPLANE_COSTS_PATH.")
        return
    window = _window()
    if window is None:
        return
    start, end, by, event = window
    try:
        report = _report(start.isoformat(), end.isoformat(), by, event)
    except (ValueError, SQLAlchemyError) as exc:  # a bad cost model, bills in another currency, no store
        problem(f"The cost report cannot be made: {exc}.", "Fix the cost model or the imported bills.")
        return
    cur, figures = report.currency, report.figures
    a, b, c, d = st.columns(4)
    per_bet = figures.cost_per_settled_bet
    a.metric("cost per settled bet", f"{rounded(per_bet)} {cur}" if per_bet is not None else "none")
    b.metric("total cost", f"{rounded(figures.total_cost)} {cur}")
    c.metric("settled bets", figures.settled_bets)
    d.metric("voided bets", figures.voided_bets)
    if figures.cost_per_settled_bet_reason is not None:
        st.caption(figures.cost_per_settled_bet_reason)
    for warning in report.warnings:
        st.warning(warning)
    # The charts and tables take rows as the JSON shows them: amounts as rounded decimal text.
    buckets = [
        {"hour": utc_text(b.start), "cost_per_settled_bet": rounded(b.figures.cost_per_settled_bet)}
        for b in report.buckets
    ]
    components = [c.to_dict() for c in report.components]
    left, right = st.columns(2)
    left.plotly_chart(charts.cost_per_bet(buckets, cur, by))
    right.plotly_chart(charts.cost_by_component(components, cur))
    st.subheader("Components")
    st.dataframe(components, hide_index=True)
    st.subheader("Beside the error budget")
    st.dataframe([s.to_dict() for s in report.slos], hide_index=True)
    if report.event is not None:
        e = report.event
        st.subheader(f"Event {e.name}")
        st.write(f"Idle headroom paid: **{rounded(e.headroom_cost)} {cur}**")
        st.dataframe([{"slo": k, "budget burned": v} for k, v in e.budget_consumed.items()], hide_index=True)
    st.download_button(
        "Download report (JSON)", data=_json(report), file_name="cost-report.json",
        on_click=record_export, args=("cost-report",), kwargs={"window": report.window.to_dict()},
    )  # fmt: skip


def _json(report: CostReport) -> str:
    return json.dumps(report.to_dict(), indent=2)
