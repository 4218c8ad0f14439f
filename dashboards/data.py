"""The dashboard's reads, cached for a short time (the store is the source; a page refresh within the
TTL shares one read). Each goes through the control plane's or the audit log's own API.

Keys are plain values (instants as ISO text, names), so Streamlit can hash them; results that differ
by role take the role as an argument.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import streamlit as st

from controlplane.clock import utcnow
from controlplane.config import ControlPlaneConfig, load_config
from controlplane.scheduler.history import alert_history as history
from controlplane.scraped import Sample, latest
from controlplane.slo.curves import hourly_budget_curve
from controlplane.slo.minutes import hourly_sli, worst_minutes
from controlplane.slo.results import SloReport
from controlplane.slo.rolled import evaluate_all_from_rollups
from controlplane.slo.spec import SloSpec
from dashboards.shell import settings, store

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
def budget_points(slo: str, at: str, days: int) -> list[Any]:
    files = config()
    return hourly_budget_curve(
        store(),
        spec_named(slo),
        events=files.events,
        boundaries=files.boundaries,
        at=datetime.fromisoformat(at),
        days=days,
    )


@st.cache_data(ttl=LIVE_TTL, show_spinner=False)
def sli_points(slo: str, at: str, days: int) -> list[Any]:
    end = datetime.fromisoformat(at)
    return hourly_sli(
        store(), spec_named(slo), start=end - timedelta(days=days), end=end, boundaries=config().boundaries
    )


@st.cache_data(ttl=LIVE_TTL, show_spinner=False)
def worst(slice_name: str, at: str, days: int) -> list[Any]:
    end = datetime.fromisoformat(at)
    return worst_minutes(store(), slice_name, end - timedelta(days=days), end)


@st.cache_data(ttl=LIVE_TTL, show_spinner=False)
def alert_history(since: str, slo: str | None) -> list[dict[str, Any]]:
    return [item.to_dict() for item in history(store(), since=datetime.fromisoformat(since), slo=slo, limit=200)]


@st.cache_data(ttl=LIVE_TTL, show_spinner=False)
def scraped_latest() -> list[Sample]:
    return latest(store())
