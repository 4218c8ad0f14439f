"""The trace probe: a synthetic bet whose trace must reach the collector's kept traces (probes' traces
are always kept) with the platform's log line inside it (`expect: logs`: a bet refused on purpose, whose
refusal the platform logs; trace ids in logs, OTel end to end), or, for a bet placed and settled, with
the traces of its outbox relay and settlement linking to it (`expect: links`).

The bet's trace is named by its response's `traceparent`; the store is polled until `wait_seconds`,
as the platform's exporters send in batches (every few seconds)."""

from __future__ import annotations

import time
import uuid

from controlplane.checklist.context import CheckContext
from controlplane.checklist.probes import Platform, _send_bet, funded_bettor_and_market, probe
from controlplane.checklist.results import Outcome
from controlplane.checklist.spec import ProbeTrace
from controlplane.traces.store import TraceView, read_trace

POLL_SECONDS = 0.5


def _logs_inside(view: TraceView) -> list[dict]:
    spans = {s["span_id"] for s in view.spans}
    return [line for line in view.logs if line["trace_id"] == view.trace_id and line["span_id"] in spans]


@probe
def probe_trace(params: ProbeTrace, ctx: CheckContext, platform: Platform) -> Outcome:
    bettor, market = funded_bettor_and_market(platform, f"trace-{params.expect}", 1_000)
    selection = market["selections"][0]
    bet = {"market_id": market["id"], "selection_id": selection["id"], "stake_minor": 100,
           "odds": selection["odds"], "price_version": market["price_version"]}  # fmt: skip
    headers = {
        "Authorization": f"Bearer {bettor['token']}",
        "Idempotency-Key": f"{platform.label}-{uuid.uuid4().hex[:8]}",
    }
    try:
        if params.expect == "logs":
            # Refused on purpose (a selection of no market): the platform logs each refusal, in its trace.
            bet["selection_id"] = selection["id"] + 1_000_000
        placed = _send_bet(platform, bet, headers)
    finally:
        # Settling the market is what links its settlement to the bet.
        platform.call("POST", f"/v1/admin/markets/{market['id']}/result", admin=True, json={"void": True})
    traceparent = placed.headers.get("traceparent", "")
    evidence = {"market_id": market["id"], "status": placed.status_code, "traceparent": traceparent or None}
    wanted = 201 if params.expect == "links" else 422
    if placed.status_code != wanted:
        return Outcome.failed(
            f"the probe bet was answered {placed.status_code}, not {wanted}: {placed.text[:120]}", **evidence
        )
    parts = traceparent.split("-")
    if len(parts) != 4 or len(parts[1]) != 32:
        return Outcome.failed(
            "the bet's response names no trace (no traceparent header): set PLATFORM_OTLP_ENDPOINT to the collector",
            **evidence,
        )
    trace_id = parts[1]
    evidence["trace_id"] = trace_id
    deadline = time.monotonic() + params.wait_seconds
    view = None
    while True:
        view = read_trace(ctx.store, trace_id)
        if view is not None and (_logs_inside(view) if params.expect == "logs" else view.links_in):
            break
        if time.monotonic() > deadline:
            break
        time.sleep(POLL_SECONDS)
    if view is None:
        return Outcome.failed(
            f"the collector did not keep trace {trace_id} within {params.wait_seconds} s: does the platform export "
            "to it (PLATFORM_OTLP_ENDPOINT) and does it keep traces (CONTROLPLANE_COLLECTOR_KEEP_TRACES)?",
            **evidence,
        )
    evidence["spans"] = len(view.spans)
    if params.expect == "logs":
        inside = _logs_inside(view)
        evidence["log_lines"] = len(inside)
        if not inside:
            return Outcome.failed(
                f"trace {trace_id} was kept with {len(view.spans)} spans but no log line carries its ids: "
                "the platform's logs do not reach the collector as OTLP logs with trace context",
                **evidence,
            )
        return Outcome.passed(
            f"the probe bet's trace {trace_id} was kept with {len(view.spans)} spans and {len(inside)} log lines "
            "carrying its trace and span ids",
            **evidence,
        )
    evidence["linked_from"] = [f"{link['trace_id']} ({link['name']})" for link in view.links_in][:10]
    if not view.links_in:
        return Outcome.failed(
            f"no kept trace links to the probe bet's trace {trace_id} within {params.wait_seconds} s: the outbox "
            "relay and the settlement should link to the placement span",
            **evidence,
        )
    names = sorted({link["name"] for link in view.links_in})
    return Outcome.passed(f"the probe bet's trace {trace_id} is linked from {', '.join(names)}", **evidence)
