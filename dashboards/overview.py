"""The overview page: every SLO with its SLI, error budget left and alert state, read from the store."""

from __future__ import annotations

import streamlit as st

from controlplane.clock import utcnow
from controlplane.settings import Settings
from controlplane.slices import load_slices
from controlplane.slo_rollups import evaluate_all_from_rollups
from controlplane.slo_spec import load_events, load_slos
from controlplane.storage import make_engine
from controlplane.store import migrate_store


def render(settings: Settings) -> None:
    st.title("Betting control plane")
    try:
        events = load_events(settings.events_path)
        specs = load_slos(settings.slos_path, events=events)
        slices = load_slices(settings.slices_path)
        engine = make_engine(settings.store_url, **settings.engine_options())
        try:
            migrate_store(engine)
            report = evaluate_all_from_rollups(engine, specs, events=events, boundaries=slices.boundaries, at=utcnow())
        finally:
            engine.dispose()
    except Exception as exc:  # the page reports, it does not crash
        st.error(
            f"Cannot evaluate the SLOs: {exc}. Check CONTROLPLANE_STORE_URL and the files under config/, "
            "or run `make demo` to fill a store."
        )
        return
    st.caption(f"SLOs as of {report.at:%Y-%m-%d %H:%M} UTC")
    rows = [
        {
            "SLO": s.name,
            "slice": s.slice,
            "objective": f"{100 * s.objective:.2f}%",
            "SLI": "no data" if s.no_data else f"{100 * s.sli:.3f}%",
            "budget left": f"{100 * s.budget_remaining:.1f}%",
            "alert": "PAGE" if s.alerts.page else ("ticket" if s.alerts.ticket else "-"),
            "policy": s.policy,
        }
        for s in report.slos
    ]
    st.dataframe(rows, hide_index=True, use_container_width=True)
