"""Hostile OTLP values are refused one item at a time (partial success), never by failing the request: uint64
times and counts past what the store holds, times before 1970 or far ahead of the clock, absurd counts.
What the same request carries besides is stored, and no value can poison a minute for later exports."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from tests.collectors.otlp_samples import metric_request, to_otlp_json, trace_request
from tests.collectors.test_receiver import METRIC_SLICES, snapshot

PB = {"Content-Type": "application/x-protobuf"}
JS = {"Content-Type": "application/json"}
UINT64_MAX = 2**64 - 1
NOW = time.time_ns()
TRACE_SLICE = """
  - name: bets-by-spans
    signal: traces
    spans: ["POST /v1/bets"]
"""


def _two_point_request(**hostile: int) -> metrics_service_pb2.ExportMetricsServiceRequest:
    """A delta request with one sane point and one carrying the hostile values."""
    request = metric_request(cumulative_total=8)
    histogram = request.resource_metrics[0].scope_metrics[0].metrics[0].histogram
    histogram.aggregation_temporality = 1  # delta
    good = histogram.data_points[0]
    bad = histogram.data_points.add()
    bad.CopyFrom(good)
    bad.attributes[0].value.string_value = "POST"  # same series shape, its own values below
    for name, value in hostile.items():
        if name == "bucket_count":
            bad.bucket_counts[0] = value
            bad.count = sum(bad.bucket_counts)
        else:
            setattr(bad, name, value)
    return request


@pytest.mark.parametrize(
    "hostile",
    [
        {"time_unix_nano": UINT64_MAX},
        {"time_unix_nano": 2**63},
        {"start_time_unix_nano": UINT64_MAX},
        {"time_unix_nano": NOW + 3600 * 10**9},  # an hour ahead of the clock
        {"count": UINT64_MAX},
        {"bucket_count": 2**63 - 1},
        {"bucket_count": UINT64_MAX - 100},
    ],
    # Named without the clock's value, so every test run (and every xdist worker) collects the same ids.
    ids=lambda h: "-".join(f"{k}={'an-hour-ahead' if v == NOW + 3600 * 10**9 else v}" for k, v in h.items()),
)
@pytest.mark.parametrize("encoding", ["protobuf", "json"])
def test_hostile_points_are_refused_and_the_rest_stored(start_receiver, store, tmp_path, hostile, encoding) -> None:
    slices = tmp_path / "slices.yaml"
    slices.write_text(METRIC_SLICES)
    receiver = start_receiver(slices)
    request = _two_point_request(**hostile)
    body, headers = (request.SerializeToString(), PB) if encoding == "protobuf" else (to_otlp_json(request), JS)
    with httpx.Client(base_url=receiver.url) as http:
        response = http.post("/v1/metrics", content=body, headers=headers)
        assert response.status_code == 200, response.text
        if encoding == "protobuf":
            answer = metrics_service_pb2.ExportMetricsServiceResponse.FromString(response.content)
            assert answer.partial_success.rejected_data_points == 1
            assert answer.partial_success.error_message
        else:
            assert response.json()["partialSuccess"]["rejectedDataPoints"] in ("1", 1)
        # The connection is still good, and the minute takes later exports as before.
        again = http.post("/v1/metrics", content=metric_request(cumulative_total=8).SerializeToString(), headers=PB)
        assert again.status_code == 200
    buckets, _latency = snapshot(store)
    totals = [row[2] for row in buckets]
    assert all(isinstance(t, int) for t in totals)
    assert sum(totals) == 8 + 8  # the sane delta point, then the cumulative series' first point


@pytest.mark.parametrize("end", [UINT64_MAX, 2**63, NOW + 3600 * 10**9], ids=["uint64-max", "2**63", "an-hour-ahead"])
def test_hostile_span_times_are_refused_one_by_one(receiver, store, end: int) -> None:
    request = trace_request(spans=6, seed=4, names=("POST /v1/bets",))
    spans = request.resource_spans[0].scope_spans[0].spans
    spans[0].start_time_unix_nano = min(end, spans[0].start_time_unix_nano)
    spans[0].end_time_unix_nano = end
    response = httpx.post(f"{receiver.url}/v1/traces", content=request.SerializeToString(), headers=PB)
    assert response.status_code == 200
    answer = trace_service_pb2.ExportTraceServiceResponse.FromString(response.content)
    assert answer.partial_success.rejected_spans == 1
    assert sum(row[2] for row in snapshot(store)[0]) == 5


HOSTILE_TIMES = st.sampled_from([UINT64_MAX, 2**63, 2**63 - 1, NOW + 3600 * 10**9, UINT64_MAX - 1])


def _any_value(depth: int) -> dict:
    """An AnyValue nested `depth` levels deep (arrays of key-value lists of ...)."""
    value: dict = {"intValue": str(UINT64_MAX)}
    for level in range(depth):
        value = (
            {"arrayValue": {"values": [value]}}
            if level % 2
            else {"kvlistValue": {"values": [{"key": "k", "value": value}]}}
        )
    return value


@st.composite
def hostile_traces(draw: st.DrawFn) -> bytes:
    spans = []
    for _ in range(draw(st.integers(min_value=1, max_value=5))):
        end = draw(HOSTILE_TIMES)
        spans.append(
            {
                "traceId": "ab" * 16,
                "spanId": "cd" * 8,
                "name": "POST /v1/bets",
                "kind": 2,
                "startTimeUnixNano": str(draw(st.sampled_from([end, 1, NOW]))),
                "endTimeUnixNano": str(end),
                "attributes": [
                    {
                        "key": "http.response.status_code",
                        "value": draw(
                            st.sampled_from(
                                [
                                    {"intValue": str(2**63 - 1)},
                                    {"intValue": "-9223372036854775808"},
                                    {"doubleValue": 1e308},
                                    _any_value(draw(st.integers(min_value=1, max_value=120))),
                                ]
                            )
                        ),
                    },
                ],
            }
        )
    resource = {"attributes": [{"key": "service.name", "value": {"stringValue": "sample-platform"}}]}
    return json.dumps({"resourceSpans": [{"resource": resource, "scopeSpans": [{"spans": spans}]}]}).encode()


@st.composite
def hostile_points(draw: st.DrawFn) -> bytes:
    request = _two_point_request(
        **draw(
            st.sampled_from(
                [
                    {"time_unix_nano": UINT64_MAX},
                    {"start_time_unix_nano": UINT64_MAX},
                    {"count": UINT64_MAX},
                    {"bucket_count": 2**64 - 16},
                    {"time_unix_nano": NOW + 3600 * 10**9},
                ]
            )
        )
    )
    histogram = request.resource_metrics[0].scope_metrics[0].metrics[0].histogram
    del histogram.data_points[0]  # only the hostile point
    return request.SerializeToString() if draw(st.booleans()) else to_otlp_json(request)


def test_fuzzed_hostile_items_never_fail_a_request_nor_change_a_count(start_receiver, store, tmp_path) -> None:
    slices = tmp_path / "slices.yaml"
    slices.write_text(METRIC_SLICES + TRACE_SLICE)
    receiver = start_receiver(slices)
    statuses: dict[int, int] = {}
    with httpx.Client(base_url=receiver.url, timeout=30) as http:

        @hsettings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(
            case=st.one_of(
                hostile_traces().map(lambda b: ("/v1/traces", b)), hostile_points().map(lambda b: ("/v1/metrics", b))
            )
        )
        def check(case: tuple[str, bytes]) -> None:
            path, body = case
            headers = JS if body.startswith(b"{") else PB
            response = http.post(path, content=body, headers=headers)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            assert response.status_code < 500, response.text[:300]

        check()
        assert snapshot(store) == ([], [])  # every item was hostile: not one count changed
        sane = metric_request(cumulative_total=12)
        assert http.post("/v1/metrics", content=sane.SerializeToString(), headers=PB).status_code == 200
    assert [row[2] for row in snapshot(store)[0]] == [12]
    assert sum(statuses.values()) >= 300
