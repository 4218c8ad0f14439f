"""One SLO in depth, below the on-call page's banner: its figures, the charts over the chosen range with
the audit log's changes marked, each alert rule's state, the alert history, the worst minutes with their
exemplar trace ids (whole, copyable), the changes, and the platform's scraped gauges and faults."""

from __future__ import annotations

from datetime import datetime, timedelta
from urllib.parse import quote

import streamlit as st

from controlplane.formatting import burn, count, duration, percent, utc, utc_minute
from controlplane.markers import ChangeMarker
from controlplane.runbooks import PAGE as RUNBOOK_PAGE
from controlplane.runbooks import is_url
from controlplane.slo.results import AlertThreshold, SloStatus
from dashboards import data
from dashboards.charts import slo as charts
from dashboards.charts.common import CHART_CONFIG
from dashboards.links import trace_link


def runbook_link(slo: str) -> str | None:
    """Where the SLO's runbook opens: its URL, or the dashboard's runbook page for a file of config/runbooks."""
    runbook = data.spec_named(slo).runbook
    if not runbook:
        return None
    return runbook if is_url(runbook) else f"{RUNBOOK_PAGE}?name={quote(runbook, safe='')}"  # this dashboard's page


def _rule_rows(status: SloStatus, at: datetime) -> list[dict[str, str]]:
    """A row per rule: its windows and threshold, both burn rates now, and whether (and since when) it fires."""
    firing = data.firing_since(at.isoformat())
    rows = []
    tiers: tuple[tuple[str, tuple[AlertThreshold, ...], bool], ...] = (
        ("page", status.alert_thresholds.page, status.alerts.page),
        ("ticket", status.alert_thresholds.ticket, status.alerts.ticket),
    )
    for severity, rules, tier_fires in tiers:
        for rule in rules:
            long, short = status.burn_rates.get(rule.long, 0.0), status.burn_rates.get(rule.short, 0.0)
            fires = tier_fires and long > rule.burn and short > rule.burn
            since = firing.get((status.name, severity)) if fires else None
            rows.append(
                {
                    "Severity": severity,
                    "Windows": f"{rule.long} and {rule.short}",
                    "Threshold": burn(rule.burn),
                    "Burn over long window": f"{burn(long)} over {rule.long}",
                    "Burn over short window": f"{burn(short)} over {rule.short}",
                    "State": ("FIRING" if fires else "ok"),
                    "Since": utc(since) if since else ("-" if not fires else "not yet recorded by the scheduler"),
                }
            )
    return rows


def _figures(status: SloStatus, budget: str) -> None:
    a, b, c, d = st.columns(4)
    sli = "no data" if status.no_data else percent(status.sli, 3)
    a.metric("SLI", sli, help=f"objective {percent(status.objective, 3)}")
    b.markdown(f"**Budget left**  \n### {budget}")
    c.metric("burn 1h / 5m", f"{burn(status.burn_rates.get('1h'))} / {burn(status.burn_rates.get('5m'))}")
    left = status.time_to_exhaustion_seconds
    d.metric("budget gone in", "spent" if left == 0 else "-" if left is None else duration(left),
             help="at the last hour's rate of bad events")  # fmt: skip


def _charts(status: SloStatus, span: tuple[datetime, datetime], markers: list[ChangeMarker]) -> None:
    start, end = (t.isoformat() for t in span)
    series = data.series(status.name, start, end)
    left, right = st.columns(2)
    left.plotly_chart(charts.error_ratio(series, markers), key="chart-error-ratio", config=CHART_CONFIG)
    right.plotly_chart(
        charts.burn_rate(series, status.alert_thresholds, markers), key="chart-burn-rate", config=CHART_CONFIG
    )
    left, right = st.columns(2)
    left.plotly_chart(charts.sli(series, markers), key="chart-sli", config=CHART_CONFIG)
    right.plotly_chart(
        charts.budget_burndown(data.budget_points(status.name, start, end), status.name, markers),
        key="chart-budget",
        config=CHART_CONFIG,
    )


def _history(status: SloStatus, span: tuple[datetime, datetime]) -> None:
    st.subheader("Alert history")
    history = [
        h for h in data.alert_history(span[0].isoformat(), status.name) if datetime.fromisoformat(h["at"]) <= span[1]
    ]
    if not history:
        st.caption("No alert fired or resolved in this range (the scheduler records them: `controlplane scheduler`).")
        return
    st.dataframe(
        [
            {
                "At": utc(datetime.fromisoformat(h["at"])),
                "Severity": h["severity"],
                "State": h["state"],
                "Firing since": utc(datetime.fromisoformat(h["started_at"])),
                "Burn rates at that moment": ", ".join(f"{w} {burn(r)}" for w, r in h["burn_rates"].items()),
            }
            for h in history
        ],
        hide_index=True,
    )


def _worst(status: SloStatus, span: tuple[datetime, datetime]) -> None:
    st.subheader("Worst minutes")
    worst = data.worst(status.slice, *(t.isoformat() for t in span))
    if not worst:
        st.caption("No bad minute in this range.")
        return
    for w in worst:
        share = percent(w.bad / w.events, 1)
        st.markdown(f"**{utc_minute(w.minute)}**: {count(w.bad)} bad of {count(w.events)} ({share})")
        if w.trace_ids:
            st.markdown("Traces: " + " · ".join(trace_link(t) for t in w.trace_ids))
        else:
            st.caption("no exemplar trace kept for this minute")


def _changes(markers: list[ChangeMarker]) -> None:
    st.subheader("Changes in this range")
    if not markers:
        st.caption("No change recorded in the audit log in this range.")
        return
    st.dataframe(
        [{"At": utc(m.time), "What": m.what, "By": m.actor, "Reason": m.reason or "-", "Audit seq": m.seq}
         for m in reversed(markers)],
        hide_index=True,
    )  # fmt: skip


def _platform() -> None:
    st.subheader("Platform")
    latest = data.scraped_latest()
    if not latest:
        st.caption("Nothing scraped yet: set CONTROLPLANE_SCRAPE_TARGETS for the collector.")
        return
    faults = [s for s in latest if s.name == "platform_faults_active" and s.value]
    if faults:
        st.error("Active faults: " + ", ".join(f"{s.labels.get('kind', '?')}" for s in faults))
    else:
        st.caption("No active fault.")
    st.dataframe(
        [{"Target": s.target, "Series": s.name, "Labels": ", ".join(f"{k}={v}" for k, v in sorted(s.labels.items())),
          "Value": f"{s.value:g}", "Scraped at": utc(s.time)} for s in latest],
        hide_index=True,
    )  # fmt: skip


def render(status: SloStatus, span: tuple[datetime, datetime], at: datetime, budget: str) -> None:
    st.subheader(f"{status.name} ({status.slice}) · {utc_minute(span[0])} to {utc_minute(span[1])}")
    _figures(status, budget)
    markers = data.markers(span[0].isoformat(), (span[1] + timedelta(minutes=1)).isoformat())
    _charts(status, span, markers)
    st.subheader("Alert rules")
    st.dataframe(_rule_rows(status, at), hide_index=True)
    _history(status, span)
    _worst(status, span)
    _changes(markers)
    _platform()
