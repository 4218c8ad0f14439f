"""The dashboard's reads, cached for a short time (the store is the source; a page refresh within the
TTL shares one read). Each goes through the control plane's or the audit log's own API.

Keys are plain values (instants as ISO text, names), so Streamlit can hash them; results that differ
by role take the role as an argument.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

import streamlit as st

from controlplane.clock import as_utc, utcnow
from controlplane.config import ControlPlaneConfig, load_config
from controlplane.incidents.record import IncidentRecord
from controlplane.incidents.tracker import Tracker
from controlplane.markers import ChangeMarker, change_markers
from controlplane.policy.evaluate import PolicyReport, policy_states
from controlplane.scheduler.history import alert_history as history
from controlplane.scraped import Sample, latest
from controlplane.slo.curves import BudgetPoint, budget_curve, hourly_budget_curve, ran_out_at
from controlplane.slo.minutes import WorstMinute, worst_minutes
from controlplane.slo.periods import HOUR, ONE_MINUTE
from controlplane.slo.results import SloReport
from controlplane.slo.rolled import evaluate_all_from_rollups
from controlplane.slo.series import SloSeries, slo_series, step_for
from controlplane.slo.spec import SloSpec
from controlplane.traces.store import KeptRef, kept_between
from dashboards.shell import audit_store, settings, store

LIVE_TTL = 30  # seconds: a live page refreshes every 30 s


@st.cache_data(ttl=LIVE_TTL, show_spinner=False)
def config() -> ControlPlaneConfig:
    """The SLO, event and slice files, read again at most every LIVE_TTL seconds."""
    return load_config(settings())


def minute_now() -> str:
    return utcnow().replace(second=0, microsecond=0).isoformat()


@st.cache_data(ttl=LIVE_TTL, show_spinner=False)
def slo_report(at: str) -> SloReport:
    files = config()
    return evaluate_all_from_rollups(
        store(), files.specs, events=files.events, boundaries=files.boundaries, at=datetime.fromisoformat(at)
    )


def spec_named(name: str) -> SloSpec:
    return config().spec_named(name)


@st.cache_data(ttl=LIVE_TTL, show_spinner=False)
def budget_points(slo: str, start: str, end: str) -> list[BudgetPoint]:
    """The budget left at each step of [start, end]: per minute up to a day; beyond, at each whole hour
    (cheap: only whole hours are read) and at `end`."""
    files = config()
    begin, finish = datetime.fromisoformat(start), datetime.fromisoformat(end)
    spec = spec_named(slo)
    if step_for(finish - begin) == HOUR:
        days = math.ceil((finish - begin) / timedelta(days=1))
        points = hourly_budget_curve(
            store(), spec, events=files.events, boundaries=files.boundaries, at=finish, days=days
        )
        return [p for p in points if p.at >= begin]
    return budget_curve(
        store(), spec, events=files.events, boundaries=files.boundaries, start=begin, end=finish, step=ONE_MINUTE
    )


@st.cache_data(ttl=LIVE_TTL, show_spinner=False)
def series(slo: str, start: str, end: str) -> SloSeries:
    return slo_series(
        store(), spec_named(slo), start=datetime.fromisoformat(start), end=datetime.fromisoformat(end),
        boundaries=config().boundaries,
    )  # fmt: skip


@st.cache_data(ttl=LIVE_TTL, show_spinner=False)
def ran_out(slo: str, at: str) -> datetime | None:
    files = config()
    return ran_out_at(
        store(), spec_named(slo), events=files.events, boundaries=files.boundaries, at=datetime.fromisoformat(at)
    )


@st.cache_data(ttl=LIVE_TTL, show_spinner=False)
def kept_traces(slice_name: str, start: str, end: str, limit: int = 5) -> list[KeptRef]:
    """Kept traces of bad events of a slice in [start, end), newest first."""
    return kept_between(store(), slice_name, datetime.fromisoformat(start), datetime.fromisoformat(end), limit=limit)


@st.cache_data(ttl=LIVE_TTL, show_spinner=False)
def markers(start: str, end: str) -> list[ChangeMarker]:
    return change_markers(audit_store(), datetime.fromisoformat(start), datetime.fromisoformat(end))


@st.cache_data(ttl=LIVE_TTL, show_spinner=False)
def firing_since(at: str) -> dict[tuple[str, str], datetime]:
    """(slo, severity) -> when the alert firing at `at` started, from the scheduler's transitions."""
    moment = datetime.fromisoformat(at)
    latest: dict[tuple[str, str], Any] = {}
    for item in history(store(), since=moment - timedelta(days=31), limit=5000):
        t = item.transition
        if t.at <= moment and (t.slo, t.severity) not in latest:  # newest first
            latest[(t.slo, t.severity)] = t
    return {key: t.started_at for key, t in latest.items() if t.state == "firing"}


@st.cache_data(ttl=LIVE_TTL, show_spinner=False)
def worst(slice_name: str, start: str, end: str) -> list[WorstMinute]:
    return worst_minutes(store(), slice_name, datetime.fromisoformat(start), datetime.fromisoformat(end))


@st.cache_data(ttl=LIVE_TTL, show_spinner=False)
def alert_history(since: str, slo: str | None) -> list[dict[str, Any]]:
    return [item.to_dict() for item in history(store(), since=datetime.fromisoformat(since), slo=slo, limit=200)]


@st.cache_data(ttl=LIVE_TTL, show_spinner=False)
def scraped_latest() -> list[Sample]:
    return latest(store())


@st.cache_data(ttl=LIVE_TTL, show_spinner=False)
def policy(at: str) -> PolicyReport:
    """Each slice's error budget policy state as of `at`, from the same report as the tiles."""
    return policy_states(config().budget_policy(), slo_report(at))


def tracker() -> Tracker:
    return Tracker(settings(), store(), config=config(), audit=audit_store())


@st.cache_data(ttl=LIVE_TTL, show_spinner=False)
def incidents(since: str, at: str) -> list[IncidentRecord]:
    """The incidents opened from `since` to the end of the minute `at`, newest first: kept records for
    closed ones, live ones (as of `at`) for those still open."""
    t = tracker()
    moment = datetime.fromisoformat(at)
    rows = t.rows(since=datetime.fromisoformat(since), until=moment + ONE_MINUTE)
    return [t.record(row, now=max(moment, as_utc(row.opened_at))) for row in rows]
