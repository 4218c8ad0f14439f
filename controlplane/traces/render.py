"""A kept trace as text: the span tree with offsets and durations, each span's log lines under it,
errors marked, and the trace's links both ways.

    print(render_tree(read_trace(engine, trace_id)))
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from controlplane.formatting import utc, utc_minute
from controlplane.traces.store import TraceView

STATUS = {0: "", 1: "ok", 2: "ERROR"}
SHOWN_ATTRIBUTES = 8


def _when(unix_nano: int) -> str:
    moment = datetime.fromtimestamp(unix_nano / 1e9, UTC)
    return moment.strftime("%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _children(view: TraceView) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    ids = {s["span_id"] for s in view.spans}
    roots: list[dict[str, Any]] = []
    children: dict[str, list[dict[str, Any]]] = {}
    for span in view.spans:
        parent = span["parent_span_id"]
        if parent and parent in ids:
            children.setdefault(parent, []).append(span)
        else:
            roots.append(span)  # a root, or a span whose parent was not kept
    return roots, children


def render_tree(view: TraceView) -> str:
    start = min((s["start_unix_nano"] for s in view.spans), default=0)
    lines = [
        f"trace {view.trace_id}: kept as a {view.reason} event of {view.slice} in minute {utc_minute(view.minute)}",
        f"{len(view.spans)} spans, {len(view.logs)} log lines" + (f", started {utc(_dt(start))}" if start else ""),
        "",
    ]
    logs_by_span: dict[str, list[dict[str, Any]]] = {}
    for line in view.logs:
        logs_by_span.setdefault(line["span_id"], []).append(line)
    roots, children = _children(view)

    def walk(span: dict[str, Any], prefix: str, last: bool, top: bool) -> None:
        branch = "" if top else ("└─ " if last else "├─ ")
        status = STATUS.get(span["status_code"], "")
        flag = f"  {status}" + (f" {span['status_message']}" if span["status_message"] else "") if status else ""
        offset = (span["start_unix_nano"] - start) / 1e6
        lines.append(
            f"{prefix}{branch}{span['name']}  +{offset:.1f} ms  {span['duration_ms']:.1f} ms"
            f"  [{span['service']} {span['kind']} {span['span_id']}]{flag}"
        )
        inner = prefix + ("" if top else ("   " if last else "│  "))
        attrs = list(span["attributes"].items())[:SHOWN_ATTRIBUTES]
        if attrs:
            lines.append(inner + "   " + "  ".join(f"{k}={v}" for k, v in attrs))
        for link in span["links"]:
            lines.append(f"{inner}   → link to trace {link['trace_id']} span {link['span_id']}")
        for line in logs_by_span.get(span["span_id"], []):
            attrs_text = " ".join(f"{k}={v}" for k, v in list(line["attributes"].items())[:SHOWN_ATTRIBUTES])
            lines.append(
                f"{inner}   log {_when(line['time_unix_nano'])} {line['severity']} {line['body']} {attrs_text}".rstrip()
            )
        kids = children.get(span["span_id"], [])
        for i, child in enumerate(kids):
            walk(child, inner, i == len(kids) - 1, False)

    for root in roots:
        walk(root, "", True, True)
    orphan_logs = [line for line in view.logs if line["span_id"] not in {s["span_id"] for s in view.spans}]
    for line in orphan_logs:
        lines.append(
            f"log {_when(line['time_unix_nano'])} {line['severity']} {line['body']} (span {line['span_id'] or '-'})"
        )
    if view.links_out:
        lines += ["", "links to:"]
        lines += [
            f"  span {link['span_id']} → trace {link['trace_id']} span {link['linked_span_id']}"
            + ("" if link["kept"] else " (not kept)")
            for link in view.links_out
        ]
    if view.links_in:
        lines += ["", "linked from:"]
        lines += [
            f"  trace {link['trace_id']} span {link['span_id']} ({link['name']}) → span {link['linked_span_id']}"
            for link in view.links_in
        ]
    return "\n".join(lines)


def _dt(unix_nano: int) -> datetime:
    return datetime.fromtimestamp(unix_nano / 1e9, UTC)
