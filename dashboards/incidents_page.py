"""The Incidents page (`/incidents?incident=ID&at=...`; on-call and admin, compliance reads only): the
open incidents first with their live figures, then one incident's timeline and what changed around it,
then the history, with time to detect and to mitigate per incident and slice over time.

Every figure is the record `controlplane incidents show ID` prints (computed live while open, kept at
close); a person declares an incident here or with `controlplane incidents declare`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import plotly.graph_objects as go
import streamlit as st

from controlplane.clock import utcnow
from controlplane.formatting import duration, percent, utc, utc_minute
from controlplane.incidents.record import IncidentRecord
from controlplane.incidents.render import render_markdown
from controlplane.incidents.tracker import IncidentError
from dashboards import data
from dashboards.charts.common import CHART_CONFIG, layout
from dashboards.handoff_page import offer_export
from dashboards.links import at_caption, pinned_at, trace_link
from dashboards.shell import problem, require

ROLES = ("oncall", "compliance", "admin")

HISTORY = timedelta(days=90)
SLICE_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


def _spent(record: IncidentRecord) -> str:
    parts = []
    for slo, value in record.budget_spent.items():
        if value:
            parts.append(f"{slo} {percent(value) if value < 1 else f'{value:,.1f}x'}")
    return ", ".join(parts) or "none"


def _figures(record: IncidentRecord, at: datetime) -> None:
    k = record.kpis
    a, b, c, d = st.columns(4)
    a.metric("Detected in", duration(k.time_to_detect_s), help="impact started -> first page")
    b.metric(
        "Mitigated in",
        duration(k.time_to_mitigate_s) if k.mitigated_at else "not yet",
        help="first page -> the SLI back within objective for the quiet period",
    )
    c.metric("User-impact minutes", f"{k.user_impact_minutes:,}")
    d.metric(
        "Bad events", f"{sum(k.bad_events.values()):,}", help=", ".join(f"{s}: {n:,}" for s, n in k.bad_events.items())
    )
    st.caption(f"Budget spent: {_spent(record)}. Figures as of {utc(record.as_of)}.")


def _open_banner(record: IncidentRecord, at: datetime) -> None:
    k = record.kpis
    since = duration((at - k.impact_started_at).total_seconds())
    firing = [f"{a.severity} {a.slo}" for a in record.alerts if a.resolved_at is None]
    st.error(
        f"**OPEN: {record.title}** ({record.slice}) · incident `{record.id}`  \n"
        f"Impact started {utc_minute(k.impact_started_at)} ({since} ago), detected {utc_minute(k.detected_at)}; "
        + (f"mitigated {utc_minute(k.mitigated_at)}" if k.mitigated_at else "not mitigated yet")
        + (f"; firing: {', '.join(firing)}" if firing else "; every alert resolved")
        + f". [Open](incidents?incident={record.id})",
        icon=":material/emergency:",
    )


def _detail(record: IncidentRecord) -> None:
    st.subheader(f"{record.title}")
    state = "open" if record.closed_at is None else f"closed {utc(record.closed_at)}"
    st.caption(
        f"Incident `{record.id}` on {record.slice} ({', '.join(record.slos)}), opened {utc(record.opened_at)} "
        f"by {record.opened_by}, {state}. The same figures: `controlplane incidents show {record.id}`."
    )
    _figures(record, record.as_of)
    detected = record.kpis.detected_at
    first = record.slos[0] if record.slos else ""
    st.markdown(f"[The SLO at the minute of detection](oncall?slo={first}&range=1h&at={detected:%Y-%m-%dT%H:%MZ})")
    st.markdown("**What changed**, nearest to the impact's start first")
    if record.changes:
        st.dataframe(
            [{"From impact start": f"{'-' if c.offset_s < 0 else '+'}{duration(abs(c.offset_s))}", "Time": utc(c.at),
              "Change": c.what, "By": c.actor, "Reason": c.reason or "-", "Audit seq": c.seq} for c in record.changes],
            hide_index=True,
        )  # fmt: skip
    else:
        st.caption("No change recorded from 30 minutes before the impact to its mitigation.")
    end = record.kpis.mitigated_at or record.as_of
    failing = data.kept_traces(
        record.slice, record.kpis.impact_started_at.isoformat(), (end + timedelta(minutes=1)).isoformat(), 10
    )
    st.markdown("**Failing requests kept during the impact**, newest first")
    if failing:
        st.markdown(" · ".join(f"{utc_minute(t.minute)} {trace_link(t.trace_id)}" for t in failing))
    else:
        st.caption("The collector kept no trace of a bad event of this slice during the impact.")
    st.markdown("**Timeline**")
    st.table([{"Time": utc(t.at), "Source": t.source, "What": t.text} for t in record.timeline], hide_index=True)
    offer_export(
        "Post-incident review (Markdown)",
        render_markdown(record),
        file_name=f"incident-{record.id}-review.md",
        mime="text/markdown",
        what="incident-review",
        roles=ROLES,
        detail={"incident": record.id},
    )


def _history_chart(records: list[IncidentRecord]) -> go.Figure:
    figure = go.Figure()
    slices = sorted({r.slice for r in records})
    for i, name in enumerate(slices):
        mine = sorted((r for r in records if r.slice == name), key=lambda r: r.opened_at)
        colour = SLICE_COLOURS[i % len(SLICE_COLOURS)]
        figure.add_trace(go.Scatter(
            x=[r.opened_at for r in mine], y=[r.kpis.time_to_detect_s / 60 for r in mine], mode="lines+markers",
            name=f"{name}: time to detect", line={"color": colour}, text=[r.id for r in mine],
            hovertemplate="%{text}: detected in %{y:.1f} min<extra></extra>",
        ))  # fmt: skip
        mitigated = [r for r in mine if r.kpis.time_to_mitigate_s is not None]
        figure.add_trace(go.Scatter(
            x=[r.opened_at for r in mitigated], y=[(r.kpis.time_to_mitigate_s or 0) / 60 for r in mitigated],
            mode="lines+markers", name=f"{name}: time to mitigate", line={"color": colour, "dash": "dot"},
            marker={"symbol": "diamond"}, text=[r.id for r in mitigated],
            hovertemplate="%{text}: mitigated in %{y:.1f} min<extra></extra>",
        ))  # fmt: skip
    return layout(figure, "Time to detect and to mitigate, per incident and slice", "minutes")


def _declare(slices: list[str], username: str) -> None:
    with st.expander("Declare an incident"), st.form("declare", clear_on_submit=True):
        slice_name = st.selectbox("Slice", slices)
        title = st.text_input("What users see", max_chars=200, placeholder="bets refused with 503 since 21:04")
        if st.form_submit_button("Declare"):
            try:
                ident = data.tracker().declare(slice_name, by=username, title=title, now=utcnow())
            except (IncidentError, ValueError) as exc:
                st.error(str(exc))
                return
            data.incidents.clear()
            st.success(f"Incident {ident} opened on {slice_name}; recorded in the audit log as you.")


def render() -> None:
    user = require(*ROLES)
    st.title("Incidents")
    at, pinned = pinned_at()
    st.caption(at_caption(at, pinned))
    try:
        records = data.incidents((at - HISTORY).isoformat(), at.isoformat())
    except ValueError as exc:
        problem(f"The incidents cannot be read: {exc}.", "Check config/slos.yaml and the store.")
        return
    for record in (r for r in records if r.closed_at is None):
        _open_banner(record, at)
    if user.role != "compliance":
        try:
            slices = sorted(data.tracker().slices)
        except ValueError as exc:
            problem(f"Incidents cannot be declared now: {exc}.", "Check the audit log's settings.")
        else:
            _declare(slices, user.username)
    if not records:
        st.info(
            "No incident in the last 90 days. A page alert opens one on its slice; "
            "`controlplane incidents declare` opens one by hand."
        )
        return
    ids = [r.id for r in records]
    wanted = st.query_params.get("incident", ids[0])
    if wanted not in ids:
        st.caption(f"No incident {wanted!r} in the last 90 days; showing the newest.")
        wanted = ids[0]
    chosen = st.selectbox(
        "Incident", ids, index=ids.index(wanted), format_func=lambda i: f"{i}: {records[ids.index(i)].title}"
    )
    st.query_params["incident"] = chosen
    _detail(records[ids.index(chosen)])
    st.subheader("History (90 days)")
    st.plotly_chart(_history_chart(records), key="chart-incident-history", config=CHART_CONFIG)
    st.dataframe(
        [{"Incident": r.id, "Slice": r.slice, "State": r.state, "Opened": utc(r.opened_at),
          "Detected in": duration(r.kpis.time_to_detect_s),
          "Mitigated in": duration(r.kpis.time_to_mitigate_s) if r.kpis.mitigated_at else "not yet",
          "Impact min": r.kpis.user_impact_minutes, "Title": r.title} for r in records],
        hide_index=True,
    )  # fmt: skip
