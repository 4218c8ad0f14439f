"""The on-call page (`/oncall`), incident first: a banner naming every paging SLO (red) and ticketing SLO
(amber) with how long it has fired and its runbook; a tile per SLO in its state's colour, in words; then
one SLO in depth (`dashboards.slo_detail`), the worst one unless the link names another.

The URL holds the SLO, the range and the instant (`?slo=bet-placement&range=1h&at=2026-12-04T21:07:00Z`),
so a link reproduces the numbers; without `at` the page follows now and refreshes every 30 s.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import streamlit as st

from controlplane.formatting import budget_left, burn, duration, percent, utc
from controlplane.slo.results import SloReport, SloStatus
from dashboards import data, slo_detail
from dashboards.links import at_caption, pinned_at
from dashboards.shell import problem, require

TRACE_LOOKBACK = timedelta(minutes=15)  # the banner links the newest failing request kept this recently
ONE_MINUTE = timedelta(minutes=1)

RANGES = {"1h": timedelta(hours=1), "6h": timedelta(hours=6), "24h": timedelta(hours=24),
          "7d": timedelta(days=7), "30d": timedelta(days=30)}  # fmt: skip
DEFAULT_RANGE = "24h"
SEVERITY_ORDER = {"PAGE": 0, "ticket": 1, "ok": 2, "no data": 3}


def alert_state(status: SloStatus) -> str:
    if status.alerts.page:
        return "PAGE"
    if status.alerts.ticket:
        return "ticket"
    return "no data" if status.no_data else "ok"


def worst_first(slos: list[SloStatus]) -> list[SloStatus]:
    """Paging, then ticketing, then the rest; each by budget left, least first."""
    return sorted(slos, key=lambda s: (SEVERITY_ORDER[alert_state(s)], s.budget_remaining))


def budget_text(status: SloStatus, at: datetime) -> str:
    if status.no_data or status.budget_remaining > 0:
        return "no data" if status.no_data else budget_left(status.budget_remaining, status.budget_consumed)
    ran_out = data.ran_out(status.name, at.isoformat())
    return budget_left(status.budget_remaining, status.budget_consumed, ran_out=ran_out)


def _link(slo: str, at: datetime, pinned: bool) -> str:
    query = f"?slo={slo}&range={st.query_params.get('range', DEFAULT_RANGE)}"
    return f"oncall{query}" + (f"&at={at:%Y-%m-%dT%H:%MZ}" if pinned else "")


def _banner(report: SloReport, at: datetime, pinned: bool) -> None:
    firing = data.firing_since(at.isoformat())
    alerting = [s for s in worst_first(report.slos) if alert_state(s) in ("PAGE", "ticket")]
    if not alerting:
        st.success("**No SLO is paging or ticketing.** Every burn rate is under its thresholds.")
        return
    for status in alerting:
        severity = "page" if status.alerts.page else "ticket"
        since = firing.get((status.name, severity))
        fired = f"firing for {duration((at - since).total_seconds())} (since {since:%H:%MZ})" if since else "firing"
        runbook = slo_detail.runbook_link(status.name)
        recent = ((at - TRACE_LOOKBACK).isoformat(), (at + ONE_MINUTE).isoformat())
        failing = data.kept_traces(status.slice, *recent, 1)
        text = (
            f"**{severity.upper()}: {status.name}** ({status.slice}) — {fired}; "
            f"burn {burn(status.burn_rates.get('1h'))} over 1h, {burn(status.burn_rates.get('5m'))} over 5m; "
            f"budget {budget_text(status, at)}. "
            f"[Open]({_link(status.name, at, pinned)})"
            + (f" · [Runbook]({runbook})" if runbook else "")
            + (f" · [A failing request](trace?id={failing[0].trace_id})" if failing else "")
        )
        if status.alerts.page:
            st.error(text, icon=":material/notifications_active:")
        else:
            st.warning(text, icon=":material/warning:")


def _tiles(report: SloReport, at: datetime) -> None:
    slos = worst_first(report.slos)
    for row in range(0, len(slos), 4):
        for column, status in zip(st.columns(4), slos[row : row + 4], strict=False):
            state = alert_state(status)
            sli = "no data" if status.no_data else percent(status.sli, 3)
            text = (
                f"**{status.name}** · {state.upper() if state == 'PAGE' else state}  \n"
                f"budget {budget_text(status, at)}  \nSLI {sli} of {percent(status.objective, 2)}"
            )
            with column:
                if state == "PAGE":
                    st.error(text)
                elif state == "ticket" or (state == "ok" and status.budget_remaining <= 0):
                    st.warning(text)  # amber: ticketing, or no alert but the budget is spent (freeze)
                elif state == "no data":
                    st.info(text)
                else:
                    st.success(text)


def _policy(at: datetime) -> None:
    """The error budget policy per slice, in a line: what may ship now."""
    try:
        states = data.policy(at.isoformat())
    except ValueError as exc:
        problem(f"The error budget policy cannot be read: {exc}.", "Fix config/budget_policy.yaml.")
        return
    words = {"ship": "ship", "caution": "CAUTION", "freeze": "FREEZE"}
    parts = [f"**{s.slice}** {words[s.state]}" + ("" if s.state == "ship" else f" ({s.reason})") for s in states.slices]
    text = "Error budget policy: " + " · ".join(parts)
    if states.frozen:
        st.warning(text + ". Frozen: emergency changes only.", icon=":material/ac_unit:")
    elif any(s.state == "caution" for s in states.slices):
        st.info(text + ". Caution: every change needs a second approver.")
    else:
        st.caption(text + ".")


def _choose(names: list[str], default: str, events: list[str]) -> tuple[str, str]:
    """The SLO and range from the URL (unknown values fall back, with a note), written back to it."""
    params = st.query_params
    ranges = list(RANGES) + [f"event: {e}" for e in events]
    wanted_slo, wanted_range = params.get("slo", default), params.get("range", DEFAULT_RANGE)
    left, right = st.columns([1, 2])
    if wanted_slo not in names:
        left.caption(f"The link names an SLO that does not exist; showing {default}.")
        wanted_slo = default
    if wanted_range not in ranges:
        right.caption(f"The link's range is not one of {', '.join(ranges)}; showing {DEFAULT_RANGE}.")
        wanted_range = DEFAULT_RANGE
    slo = left.selectbox("SLO", names, index=names.index(wanted_slo))
    chosen = right.segmented_control("Range", ranges, default=wanted_range) or wanted_range
    st.query_params.update({"slo": slo, "range": chosen})
    return slo, chosen


def _span(chosen: str, at: datetime) -> tuple[datetime, datetime] | None:
    if chosen in RANGES:
        return at - RANGES[chosen], at
    event = data.config().events[chosen.removeprefix("event: ")]
    start, end = event.window()
    if start >= at:
        st.info(f"{event.name} starts at {utc(start)}; its window has no data yet. Choose another range.")
        return None
    return start, min(end, at)


@st.fragment(run_every=timedelta(seconds=30))
def _page() -> None:
    require("oncall", "admin")  # a fragment reruns alone: check the session again each time
    at, pinned = pinned_at()
    config = data.config()
    report = data.slo_report(at.isoformat())
    st.caption(at_caption(at, pinned) + (" Refreshes every 30 s." if not pinned else ""))
    if not report.slos or all(s.no_data for s in report.slos):
        problem("No SLI data yet.", "Run `make demo`, or point your platform's OpenTelemetry exporter here.")
    _banner(report, at, pinned)
    _tiles(report, at)
    _policy(at)
    names = [s.name for s in config.specs]
    slo, chosen = _choose(names, worst_first(report.slos)[0].name, list(config.events))
    span = _span(chosen, at)
    if span is None:
        return
    status = next(s for s in report.slos if s.name == slo)
    slo_detail.render(status, span, at, budget_text(status, at))


def render() -> None:
    require("oncall", "admin")
    st.title("On-call")
    try:
        specs = data.config().specs
    except ValueError as exc:
        problem(f"The SLO files cannot be read: {exc}.", "Fix config/slos.yaml (or CONTROLPLANE_SLOS_PATH).")
        return
    if not specs:
        problem("No SLO is defined.", "Add one to config/slos.yaml (or CONTROLPLANE_SLOS_PATH).")
        return
    _page()
