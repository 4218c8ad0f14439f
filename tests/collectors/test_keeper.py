"""Which traces the collector keeps, and within what: each slice-minute's first bad events and slowest
events (a slower one displaces the fastest), their spans and log lines from any export, hostile log
records refused one by one, a size bound that holds under ten minutes of load, and a retention."""

from __future__ import annotations

import random
import time
from collections import defaultdict
from datetime import timedelta

import httpx
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from sqlalchemy import func, select

from collectors import otlp
from collectors.exemplars import ExemplarLimits
from collectors.ingest import ItemLimits, aggregate_spans, commit_batch, content_digest, minute_of
from collectors.keeper import TraceKeeper
from controlplane.clock import as_utc, utcnow
from controlplane.slices import load_slices
from controlplane.traces.store import prune, read_trace, stored_bytes
from controlplane.traces.tables import kept_logs_t, kept_spans_t, kept_traces_t
from tests.collectors.otlp_samples import BASE_NANOS, _kv, trace_request
from tests.conftest import SLICES_PATH

PB = {"Content-Type": otlp.PROTOBUF}
SLICE_OF = {"POST /v1/bets": "bet-placement", "POST /v1/login": "login"}


def _with_children(request: ExportTraceServiceRequest) -> ExportTraceServiceRequest:
    """Each server span gets a child in a second export, as a real exporter's batches would split them."""
    children = ExportTraceServiceRequest()
    scope = children.resource_spans.add().scope_spans.add()
    for span in request.resource_spans[0].scope_spans[0].spans:
        child = scope.spans.add()
        child.trace_id, child.parent_span_id = span.trace_id, span.span_id
        child.span_id = bytes(reversed(span.span_id))
        child.name = "ledger commit"
        child.start_time_unix_nano, child.end_time_unix_nano = span.start_time_unix_nano, span.end_time_unix_nano
    return children


def _expected(request: ExportTraceServiceRequest, limits: ExemplarLimits) -> dict[str, set[str]]:
    bad: dict[tuple, list[str]] = defaultdict(list)
    durations: dict[tuple, list[tuple[float, str]]] = defaultdict(list)
    for span in request.resource_spans[0].scope_spans[0].spans:
        key = (SLICE_OF[span.name], minute_of(span.end_time_unix_nano))
        seconds = (span.end_time_unix_nano - span.start_time_unix_nano) / 1e9
        durations[key].append((seconds, span.trace_id.hex()))
        if span.status.code == 2 or any(a.value.int_value >= 500 for a in span.attributes):
            bad[key].append(span.trace_id.hex())
    out = {"bad": {t for ids in bad.values() for t in ids[: limits.bad]}}
    out["slow"] = {t for found in durations.values() for _, t in sorted(found, reverse=True)[: limits.slow]}
    return out


def _kept(store) -> dict[str, str]:  # type: ignore[no-untyped-def]
    with store.connect() as conn:
        return dict(conn.execute(select(kept_traces_t.c.trace_id, kept_traces_t.c.reason)).all())


def test_bad_and_slowest_traces_are_kept_whole(start_receiver, store) -> None:
    receiver = start_receiver(collector_keep_errors=2, collector_keep_slowest=2)
    limits = ExemplarLimits(bad=2, slow=2)
    request = trace_request(spans=300, seed=7, minutes=2)
    children = _with_children(request)
    with httpx.Client(base_url=receiver.url) as http:
        assert http.post("/v1/traces", content=children.SerializeToString(), headers=PB).status_code == 200
        assert http.post("/v1/traces", content=request.SerializeToString(), headers=PB).status_code == 200
    expected = _expected(request, limits)
    kept = _kept(store)
    assert set(kept) == expected["bad"] | expected["slow"]
    assert {t for t, why in kept.items() if why == "bad"} == expected["bad"]
    whole = read_trace(store, sorted(expected["slow"])[0])
    assert whole is not None and len(whole.spans) == 2
    server, child = sorted(whole.spans, key=lambda s: s["name"] == "ledger commit")
    assert server["name"] in SLICE_OF and child["name"] == "ledger commit"
    assert child["parent_span_id"] == server["span_id"]

    # A slower event in the same minute displaces the fastest kept slow trace (unless it is also bad).
    slower = ExportTraceServiceRequest()
    slower.CopyFrom(request)
    spans = slower.resource_spans[0].scope_spans[0].spans
    del spans[1:]
    span = spans[0]
    span.trace_id = b"\x01" * 16
    span.status.code = 0
    span.attributes[0].value.int_value = 200
    span.start_time_unix_nano = span.end_time_unix_nano - 30 * 10**9  # slower than any sampled span (< 2 s)
    with httpx.Client(base_url=receiver.url) as http:
        assert http.post("/v1/traces", content=slower.SerializeToString(), headers=PB).status_code == 200
    after = _kept(store)
    assert after[(b"\x01" * 16).hex()] == "slow"
    assert set(after) - set(kept) == {(b"\x01" * 16).hex()}
    assert len(set(kept) - set(after)) <= 1 and not (set(kept) - set(after)) & expected["bad"]


def _log(scope, trace_id: bytes, span_id: bytes, body: str, when: int) -> None:  # type: ignore[no-untyped-def]
    record = scope.log_records.add()
    record.trace_id, record.span_id, record.time_unix_nano = trace_id, span_id, when
    record.body.string_value = body
    record.severity_text = "WARN"


def test_log_lines_join_their_kept_trace_once_and_hostile_ones_are_refused(start_receiver, store) -> None:
    receiver = start_receiver(collector_keep_errors=1, collector_keep_slowest=1)
    request = trace_request(spans=1, seed=3, minutes=1)
    span = request.resource_spans[0].scope_spans[0].spans[0]
    now = time.time_ns()
    logs = logs_service_pb2.ExportLogsServiceRequest()
    scope = logs.resource_logs.add().scope_logs.add()
    _log(scope, span.trace_id, span.span_id, "request refused: database busy", now)
    _log(scope, b"", b"", "a line outside any trace", now)
    _log(scope, span.trace_id, span.span_id, "x" * 20_000, now)  # body too large
    _log(scope, span.trace_id, span.span_id, "from the future", now + 3600 * 10**9)
    _log(scope, span.trace_id, span.span_id, "no time", 0)
    _log(scope, b"\x01" * 5, span.span_id, "short trace id", now)
    deep = scope.log_records.add()
    deep.trace_id, deep.time_unix_nano = span.trace_id, now
    value = deep.attributes.add(key="deep").value
    for _ in range(10):
        value = value.kvlist_value.values.add(key="k").value
    value.string_value = "bottom"
    secret = scope.log_records.add()
    secret.trace_id, secret.span_id, secret.time_unix_nano = span.trace_id, span.span_id, now
    secret.body.string_value = "login"
    secret.attributes.add(key="account_id").value.int_value = 424242
    with httpx.Client(base_url=receiver.url) as http:
        first = http.post("/v1/logs", content=logs.SerializeToString(), headers=PB)
        retry = http.post("/v1/logs", content=logs.SerializeToString(), headers=PB)  # nothing is kept twice
        assert http.post("/v1/traces", content=request.SerializeToString(), headers=PB).status_code == 200
        for body in (b"{" * 100_000, b'{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"traceId": "zz"}]}]}]}'):
            refused = http.post("/v1/logs", content=body, headers={"Content-Type": otlp.JSON})
            assert refused.status_code == 400, refused.text
    assert first.status_code == 200 and retry.status_code == 200
    partial = logs_service_pb2.ExportLogsServiceResponse.FromString(first.content).partial_success
    assert partial.rejected_log_records == 5, partial  # body, future, no time, short trace id, deep attributes
    assert partial.error_message.startswith("a log record")
    view = read_trace(store, span.trace_id.hex())
    assert view is not None
    bodies = [line["body"] for line in view.logs]
    assert sorted(bodies) == ["login", "request refused: database busy"]
    assert next(line for line in view.logs if line["body"] == "login")["attributes"] == {"account_id": "[redacted]"}


def test_kept_traces_stay_within_their_bound_for_ten_minutes_and_retention_removes_them(store) -> None:
    bound = 48 * 1024  # about half of what ten minutes choose
    keeper = TraceKeeper(store, max_bytes=bound, prune_every=0)
    config = load_slices(SLICES_PATH)
    limits = ExemplarLimits(bad=5, slow=3)
    for minute in range(10):
        for part in range(4):
            request = trace_request(spans=150, seed=minute * 10 + part, minutes=1)
            for span in request.resource_spans[0].scope_spans[0].spans:
                span.start_time_unix_nano += minute * 60 * 10**9
                span.end_time_unix_nano += minute * 60 * 10**9
            children = _with_children(request)
            for message in (children, request):
                batch = aggregate_spans(message, config, ItemLimits.now(), limits)
                assert commit_batch(store, digest=content_digest(message), signal="traces", batch=batch)
                keeper.on_spans(message, batch)
            assert 0 < stored_bytes(store) <= bound
    with store.connect() as conn:
        kept = conn.execute(select(func.count()).select_from(kept_traces_t)).scalar_one()
        oldest, newest = conn.execute(select(func.min(kept_traces_t.c.minute), func.max(kept_traces_t.c.minute))).one()
    # The bound was reached: the first minutes' traces went, the last minute's stayed.
    assert kept > 10 and as_utc(oldest) > minute_of(BASE_NANOS)
    assert as_utc(newest) >= minute_of(BASE_NANOS + 9 * 60 * 10**9)
    assert prune(store, max_bytes=bound, older_than=utcnow() + timedelta(seconds=1))["kept_traces_expired"] == kept
    with store.connect() as conn:
        for t in (kept_traces_t, kept_spans_t, kept_logs_t):
            assert conn.execute(select(func.count()).select_from(t)).scalar_one() == 0


def _spread_request(trace_id: bytes, seed: int, *, others: int) -> ExportTraceServiceRequest:
    """Two services with two scopes each; the trace's internal spans sit one in every scope, among
    `others` spans of other traces."""
    rng = random.Random(seed)
    request = ExportTraceServiceRequest()
    for service in ("edge", "ledger"):
        resource = request.resource_spans.add()
        resource.resource.attributes.append(_kv("service.name", service))
        for scope_no in range(2):
            scope = resource.scope_spans.add()
            for n in range(others // 4):
                other = scope.spans.add(trace_id=rng.randbytes(16), span_id=rng.randbytes(8), name="GET /other")
                other.start_time_unix_nano, other.end_time_unix_nano = BASE_NANOS, BASE_NANOS + 10**6 * (n + 1)
            span = scope.spans.add(trace_id=trace_id, span_id=rng.randbytes(8), name=f"{service} step {scope_no}")
            span.kind = 1  # internal: in no slice
            span.start_time_unix_nano, span.end_time_unix_nano = BASE_NANOS, BASE_NANOS + 10**6
    return request


def test_spans_that_waited_join_their_trace_from_every_service_and_scope_and_the_wait_is_bounded(store) -> None:
    config = load_slices(SLICES_PATH)
    keeper = TraceKeeper(store, max_bytes=2**20, buffer_items=60, prune_every=0)
    chosen, evicted = bytes(range(16)), bytes(range(16, 32))

    def export(request: ExportTraceServiceRequest) -> None:
        batch = aggregate_spans(request, config, ItemLimits.now())
        assert commit_batch(store, digest=content_digest(request), signal="traces", batch=batch)
        keeper.on_spans(request, batch)

    export(_spread_request(evicted, 1, others=8))  # waits, then falls out of the bounded buffer
    export(_spread_request(chosen, 2, others=40))  # 44 spans wait: with the 12 before, 56 of 60
    export(_spread_request(bytes(range(32, 48)), 3, others=8))  # 12 more: the oldest request's go
    assert keeper._waiting_items <= 60
    # Each trace then chosen by a failed bet of its own: the waiting spans come with it, from their places.
    for trace_id, seed in ((chosen, 4), (evicted, 5)):
        bet = trace_request(spans=1, seed=seed, names=("POST /v1/bets",))
        span = bet.resource_spans[0].scope_spans[0].spans[0]
        span.trace_id, span.status.code = trace_id, 2
        export(bet)
    view = read_trace(store, chosen.hex())
    assert view is not None and view.reason == "bad"
    assert sorted((s["service"], s["name"]) for s in view.spans) == [
        ("edge", "edge step 0"), ("edge", "edge step 1"), ("ledger", "ledger step 0"), ("ledger", "ledger step 1"),
        ("sample-platform", "POST /v1/bets"),
    ]  # fmt: skip
    gone = read_trace(store, evicted.hex())
    assert gone is not None and [s["name"] for s in gone.spans] == ["POST /v1/bets"]
