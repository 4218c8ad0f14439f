"""The on-call page (`/oncall`): every SLO sorted by budget left, then one SLO in depth: budget burndown,
burn rates against the alert thresholds, the SLI by hour with the bad hours shaded, the alert rules and
their history, the worst minutes with trace ids, and the platform's scraped gauges and faults.

The SLO and the time range live in the URL (`?slo=...&range=7d`), so a link restores the view.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta
from typing import Any

import streamlit as st

from controlplane.slo.results import SloStatus
from dashboards import charts, data
from dashboards.shell import problem, record_export, require

RANGES = {"24h": 1, "7d": 7, "30d": 30}
ALERT_BADGE = {"PAGE": ":red-badge[PAGE]", "ticket": ":orange-badge[ticket]", "ok": ":green-badge[ok]"}


def _alert(status: SloStatus) -> str:
    return "PAGE" if status.alerts.page else "ticket" if status.alerts.ticket else "ok"


def _tiles_rows(slos: list[SloStatus]) -> list[dict[str, Any]]:
    return [
        {
            "SLO": s.name,
            "slice": s.slice,
            "objective": f"{s.objective:.3%}",
            "SLI": "no data" if s.no_data else f"{s.sli:.4%}",
            "budget left": f"{s.budget_remaining:.1%}",
            "alert": _alert(s),
        }
        for s in slos
    ]


def _csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    if rows:
        writer = csv.DictWriter(out, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return out.getvalue()


def _choose(names: list[str]) -> tuple[str, str]:
    """The SLO and range from the URL (unknown values fall back, with a note), kept in the URL."""
    params = st.query_params
    wanted_slo, wanted_range = params.get("slo", names[0]), params.get("range", "7d")
    if wanted_slo not in names:
        st.caption(f"The link names an SLO that does not exist; showing {names[0]}.")
        wanted_slo = names[0]
    if wanted_range not in RANGES:
        st.caption(f"The link's range is not one of {', '.join(RANGES)}; showing 7d.")
        wanted_range = "7d"
    left, right = st.columns([3, 1])
    slo = left.selectbox("SLO", names, index=names.index(wanted_slo))
    chosen_range = right.segmented_control("Range", list(RANGES), default=wanted_range) or wanted_range
    st.query_params.update({"slo": slo, "range": chosen_range})
    return slo, chosen_range


@st.fragment(run_every=timedelta(seconds=30))
def _overview() -> list[SloStatus]:
    require("oncall", "admin")  # a fragment reruns alone: check the session again each time
    report = data.slo_report(data.minute_now())
    slos = sorted(report.slos, key=lambda s: s.budget_remaining)
    st.caption(f"As of {report.at:%Y-%m-%d %H:%M} UTC; refreshes every 30 s. Sorted by budget left.")
    for row in range(0, len(slos), 4):
        for column, status in zip(st.columns(4), slos[row : row + 4], strict=False):
            with column.container(border=True):
                st.markdown(f"**{status.name}**  \n{status.slice}")
                st.metric("budget left", f"{status.budget_remaining:.1%}")
                st.markdown(ALERT_BADGE[_alert(status)])
                st.caption(
                    f"SLI {'no data' if status.no_data else f'{status.sli:.4%}'} / objective {status.objective:.3%}"
                )
    rows = _tiles_rows(slos)
    st.download_button(
        "Download SLOs (CSV)", _csv(rows), file_name="slos.csv", mime="text/csv",
        on_click=record_export, args=("slo-table",), kwargs={"rows": len(rows)},
    )  # fmt: skip
    return slos


def _alert_table(status: SloStatus) -> list[dict[str, Any]]:
    rows = []
    for severity, rules in (("page", status.alert_thresholds.page), ("ticket", status.alert_thresholds.ticket)):
        for rule in rules:
            long, short = status.burn_rates.get(rule.long, 0.0), status.burn_rates.get(rule.short, 0.0)
            rows.append(
                {
                    "severity": severity,
                    "windows": f"{rule.long} and {rule.short}",
                    "threshold": f"{rule.burn:g}x",
                    "burn now": f"{long:.2f}x / {short:.2f}x",
                    "state": "firing" if getattr(status.alerts, severity) else "ok",
                }
            )
    return rows


def _detail(status: SloStatus, days: int, at: str) -> None:
    exhaustion = status.time_to_exhaustion_seconds
    a, b, c, d = st.columns(4)
    a.metric("SLI", "no data" if status.no_data else f"{status.sli:.4%}")
    b.metric("budget left", f"{status.budget_remaining:.1%}")
    c.metric("alert", _alert(status))
    d.metric("budget gone in", "-" if exhaustion is None else f"{exhaustion / 3600:.1f} h")
    st.plotly_chart(charts.budget_burndown(data.budget_points(status.name, at, days), status.name))
    left, right = st.columns(2)
    left.plotly_chart(charts.burn_rates(status))
    right.plotly_chart(charts.sli_over_time(data.sli_points(status.name, at, days), status.objective))
    st.subheader("Alert rules")
    st.dataframe(_alert_table(status), hide_index=True)
    st.subheader("Alert history")
    since = (datetime.fromisoformat(at) - timedelta(days=days)).isoformat()
    history = data.alert_history(since, status.name)
    if history:
        st.dataframe(
            [
                {k: h[k] for k in ("at", "severity", "state", "started_at")}
                | {"burn rates": ", ".join(f"{w} {rate:.2f}x" for w, rate in h["burn_rates"].items())}
                for h in history
            ],
            hide_index=True,
        )
    else:
        st.caption("No alert fired or resolved in this range (the scheduler records them: `controlplane scheduler`).")
    st.subheader("Worst minutes")
    worst = data.worst(status.slice, at, days)
    if worst:
        st.dataframe(
            [
                {"minute": w.minute, "events": w.events, "bad": w.bad, "trace ids": ", ".join(w.trace_ids)}
                for w in worst
            ],
            hide_index=True,
        )
    else:
        st.caption("No bad minute in this range.")


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
        [{"target": s.target, "series": s.name, "labels": s.labels, "value": s.value, "at": s.time}
         for s in latest],
        hide_index=True,
    )  # fmt: skip


def render() -> None:
    require("oncall", "admin")
    st.title("On-call")
    try:
        names = [s.name for s in data.config().specs]
    except ValueError as exc:
        problem(f"The SLO files cannot be read: {exc}.", "Fix config/slos.yaml (or CONTROLPLANE_SLOS_PATH).")
        return
    slos = _overview()
    if not slos or all(s.no_data for s in slos):
        problem(
            "No SLI data yet.", "Run `make demo`, or point your platform's OpenTelemetry exporter at the collector."
        )
    slo, chosen = _choose(names)
    at = data.minute_now()
    status = next(s for s in data.slo_report(at).slos if s.name == slo)
    _detail(status, RANGES[chosen], at)
    _platform()
