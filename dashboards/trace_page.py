"""The trace page (`/trace?id=<32 hex digits>`), which worst minutes and incidents link to: a kept trace as
a waterfall, each span's attributes and log lines, the traces it links to and that link to it (relay →
bet, settlement → placements), and the changes the audit log recorded around its minute."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import streamlit as st

from controlplane.formatting import utc, utc_minute
from controlplane.traces.store import TraceView, read_trace
from dashboards import data
from dashboards.charts.common import CHART_CONFIG
from dashboards.charts.trace import tree_order, waterfall
from dashboards.links import trace_link
from dashboards.shell import require, store

TRACE_ID = re.compile(r"^[0-9a-f]{32}$")
CHANGES_BEFORE = timedelta(minutes=30)


@st.cache_data(ttl=30, show_spinner=False)
def _trace(trace_id: str) -> TraceView | None:
    return read_trace(store(), trace_id)


def render() -> None:
    require("oncall", "compliance", "admin")
    st.title("Trace")
    wanted = st.query_params.get("id", "").strip().lower()
    typed = st.text_input("Trace id", value=wanted, placeholder="32 hex digits, as in a response's traceparent")
    wanted = typed.strip().lower()
    if not wanted:
        st.info("Open a trace from a worst minute on the on-call page or an incident, or paste its id above.")
        return
    if not TRACE_ID.match(wanted):
        st.error(f"`{wanted[:80]}` is not a trace id: a trace id is 32 hex digits (traceparent 00-<trace id>-…).")
        return
    st.query_params["id"] = wanted
    view = _trace(wanted)
    if view is None:
        st.warning(
            f"Trace `{wanted}` was not kept. The collector keeps each slice-minute's bad and slowest events and "
            "readiness probes, for CONTROLPLANE_TRACE_RETENTION_DAYS days."
        )
        return
    errors = sum(1 for s in view.spans if s["status_code"] == 2)
    st.markdown(
        f"Kept as a **{view.reason}** event of **{view.slice}** in minute **{utc_minute(view.minute)}** · "
        f"{len(view.spans)} spans · {len(view.logs)} log lines · {errors} with an error"
    )
    if view.spans:
        st.plotly_chart(waterfall(view.spans), use_container_width=True, config=CHART_CONFIG)
    _spans(view)
    _links(view)
    _changes(view.minute)


def _when(unix_nano: int) -> str:
    return utc(datetime.fromtimestamp(unix_nano / 1e9, UTC))


def _spans(view: TraceView) -> None:
    st.subheader("Spans and their log lines")
    logs: dict[str, list[dict[str, Any]]] = {}
    for line in view.logs:
        logs.setdefault(line["span_id"], []).append(line)
    for i, (depth, span) in enumerate(tree_order(view.spans)):
        flag = " · ERROR" if span["status_code"] == 2 else ""
        lines = logs.get(span["span_id"], [])
        title = f"{i + 1}. {'↳ ' * min(depth, 1)}{span['name']} · {span['duration_ms']:.1f} ms{flag}"
        with st.expander(title + (f" · {len(lines)} log lines" if lines else ""), expanded=bool(flag or lines)):
            started = _when(span["start_unix_nano"])
            st.caption(f"{span['service']} · {span['kind']} · span `{span['span_id']}` · started {started}")
            if span["status_message"]:
                st.error(span["status_message"])
            if span["attributes"]:
                st.dataframe(
                    [{"Attribute": k, "Value": str(v)} for k, v in span["attributes"].items()], hide_index=True
                )
            for line in lines:
                extra = " ".join(f"{k}={v}" for k, v in line["attributes"].items())
                st.code(
                    f"{_when(line['time_unix_nano'])} {line['severity']} {line['body']} {extra}".rstrip(), language=None
                )
    orphans = [line for line in view.logs if line["span_id"] not in {s["span_id"] for s in view.spans}]
    if orphans:
        st.caption("Log lines of this trace whose span was not kept:")
        st.code("\n".join(f"{_when(x['time_unix_nano'])} {x['severity']} {x['body']}" for x in orphans), language=None)


def _links(view: TraceView) -> None:
    st.subheader("Linked traces")
    if not view.links_out and not view.links_in:
        st.caption("This trace links to no other trace, and no kept trace links to it.")
        return
    for out in view.links_out:
        target = trace_link(out["trace_id"]) if out["kept"] else f"`{out['trace_id']}` (not kept)"
        st.markdown(f"- span `{out['span_id']}` links to {target}, span `{out['linked_span_id']}`")
    for into in view.links_in:
        st.markdown(f"- {trace_link(into['trace_id'])} ({into['name']}) links to span `{into['linked_span_id']}` here")


def _changes(minute: datetime) -> None:
    start, end = minute - CHANGES_BEFORE, minute + timedelta(minutes=1)
    st.subheader("Changes around this minute")
    try:
        found = data.markers(start.isoformat(), end.isoformat())
    except Exception as exc:  # the audit log unreachable: the trace still shows
        st.warning(f"The audit log could not be read ({type(exc).__name__}); changes are not shown.")
        return
    if not found:
        st.caption(f"No change recorded in the audit log from {utc(start)} to {utc(end)}.")
        return
    st.dataframe(
        [{"At": utc(m.time), "What": m.what, "By": m.actor, "Reason": m.reason or "-", "Audit seq": m.seq}
         for m in reversed(found)],
        hide_index=True,
    )  # fmt: skip
