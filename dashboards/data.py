"""The dashboard's reads, cached for a short time (the store is the source; a page refresh within the
TTL shares one read). Each goes through the control plane's or the audit log's own API.

Keys are plain values (instants as ISO text, names), so Streamlit can hash them; results that differ
by role take the role as an argument.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import streamlit as st

from controlplane.clock import utcnow
from controlplane.slo.results import SloReport
from controlplane.slo.spec import EventSpec, SloSpec
from dashboards.shell import settings, store

LIVE_TTL = 30  # seconds: a live page refreshes every 30 s


@dataclass(frozen=True)
class SloConfig:
    specs: tuple[SloSpec, ...]
    events: dict[str, EventSpec]
    boundaries: tuple[float, ...]
    slices: tuple[str, ...]


@st.cache_data(ttl=LIVE_TTL, show_spinner=False)
def slo_config() -> SloConfig:
    from controlplane.slices import load_slices
    from controlplane.slo.spec import load_events, load_slos

    s = settings()
    events = load_events(s.events_path)
    specs = load_slos(s.slos_path, events=events)
    slices = load_slices(s.slices_path)
    return SloConfig(tuple(specs), events, slices.boundaries, tuple(x.name for x in slices.slices))


def minute_now() -> str:
    return utcnow().replace(second=0, microsecond=0).isoformat()


@st.cache_data(ttl=LIVE_TTL, show_spinner=False)
def slo_report(at: str) -> SloReport:
    from controlplane.slo.rolled import evaluate_all_from_rollups

    config = slo_config()
    return evaluate_all_from_rollups(
        store(), list(config.specs), events=config.events, boundaries=config.boundaries, at=datetime.fromisoformat(at)
    )


def spec_named(name: str) -> SloSpec:
    return next(s for s in slo_config().specs if s.name == name)


@st.cache_data(ttl=LIVE_TTL, show_spinner=False)
def budget_points(slo: str, at: str, days: int) -> list[Any]:
    from controlplane.slo.curves import hourly_budget_curve

    config = slo_config()
    return hourly_budget_curve(
        store(),
        spec_named(slo),
        events=config.events,
        boundaries=config.boundaries,
        at=datetime.fromisoformat(at),
        days=days,
    )


@st.cache_data(ttl=LIVE_TTL, show_spinner=False)
def sli_points(slo: str, at: str, days: int) -> list[Any]:
    from controlplane.slo.minutes import hourly_sli

    end = datetime.fromisoformat(at)
    return hourly_sli(
        store(), spec_named(slo), start=end - timedelta(days=days), end=end, boundaries=slo_config().boundaries
    )


@st.cache_data(ttl=LIVE_TTL, show_spinner=False)
def worst(slice_name: str, at: str, days: int) -> list[Any]:
    from controlplane.slo.minutes import worst_minutes

    end = datetime.fromisoformat(at)
    return worst_minutes(store(), slice_name, end - timedelta(days=days), end)


@st.cache_data(ttl=LIVE_TTL, show_spinner=False)
def alert_history(since: str, slo: str | None) -> list[dict[str, Any]]:
    from controlplane.scheduler.history import alert_history as history

    return [item.to_dict() for item in history(store(), since=datetime.fromisoformat(since), slo=slo, limit=200)]


@st.cache_data(ttl=LIVE_TTL, show_spinner=False)
def scraped_latest() -> list[dict[str, Any]]:
    from controlplane.scraped import latest

    return latest(store())
