"""The collector bounds its work per request by counts, not only by bytes, and the large requests it
decodes at once; a status code no HTTP status can be is refused per item, never with a 500."""

from __future__ import annotations

import json
import threading

import httpx
import pytest
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

import collectors.receiver
from tests.collectors.otlp_samples import metric_request, to_otlp_json, trace_request
from tests.collectors.test_hostile_otlp import TRACE_SLICE
from tests.collectors.test_receiver import METRIC_SLICES, snapshot

PB = {"Content-Type": "application/x-protobuf"}
JS = {"Content-Type": "application/json"}


@pytest.mark.parametrize("status", [float("inf"), float("-inf"), float("nan"), 1e308, 2.5, -1.0, 1000.0])
@pytest.mark.parametrize("encoding", ["protobuf", "json"])
def test_a_status_code_no_http_status_can_be_is_refused_per_span(start_receiver, store, tmp_path, status, encoding):
    slices = tmp_path / "slices.yaml"
    slices.write_text(METRIC_SLICES + TRACE_SLICE)
    receiver = start_receiver(slices)
    request = trace_request(spans=6, seed=4, names=("POST /v1/bets",))
    spans = request.resource_spans[0].scope_spans[0].spans
    spans[0].attributes[0].value.double_value = status
    body, headers = (request.SerializeToString(), PB) if encoding == "protobuf" else (to_otlp_json(request), JS)
    response = httpx.post(f"{receiver.url}/v1/traces", content=body, headers=headers)
    assert response.status_code == 200, response.text
    if encoding == "protobuf":
        answer = trace_service_pb2.ExportTraceServiceResponse.FromString(response.content)
        rejected, message = answer.partial_success.rejected_spans, answer.partial_success.error_message
    else:
        rejected, message = int(response.json()["partialSuccess"]["rejectedSpans"]), ""
    assert rejected == 1
    assert encoding == "json" or "http.response.status_code" in message
    assert sum(row[2] for row in snapshot(store)[0]) == 5  # the other five are counted


def test_a_histogram_point_with_an_infinite_status_or_bound_is_refused_per_point(start_receiver, store, tmp_path):
    slices = tmp_path / "slices.yaml"
    slices.write_text(METRIC_SLICES)
    receiver = start_receiver(slices)
    for change in ("status", "bound"):
        request = metric_request(cumulative_total=8)
        point = request.resource_metrics[0].scope_metrics[0].metrics[0].histogram.data_points[0]
        if change == "status":
            point.attributes.add(key="http.response.status_code").value.double_value = float("inf")
        else:
            point.explicit_bounds[0] = float("nan")
        response = httpx.post(f"{receiver.url}/v1/metrics", content=request.SerializeToString(), headers=PB)
        assert response.status_code == 200, response.text
        answer = metrics_service_pb2.ExportMetricsServiceResponse.FromString(response.content)
        assert answer.partial_success.rejected_data_points == 1, change
    assert snapshot(store) == ([], [])


def test_more_resources_items_or_attributes_than_allowed_is_413_before_the_work(start_receiver) -> None:
    receiver = start_receiver(
        collector_max_resources_per_request=10,
        collector_max_items_per_request=100,
        collector_max_attributes_per_request=150,
    )
    with httpx.Client(base_url=receiver.url, timeout=60) as http:
        # Empty resources by the million in JSON: refused from a count of the body's objects, before parsing.
        bomb = b'{"resourceSpans":[' + b"{}," * 2_000_000 + b"{}]}"
        response = http.post("/v1/traces", content=bomb, headers=JS)
        assert response.status_code == 413 and "objects" in response.json()["message"], response.text[:300]
        eleven = json.dumps({"resourceSpans": [{} for _ in range(11)]}).encode()
        response = http.post("/v1/traces", content=eleven, headers=JS)
        assert response.status_code == 413 and "11 resources" in response.json()["message"]
        assert "CONTROLPLANE_COLLECTOR_MAX_RESOURCES_PER_REQUEST" in response.json()["message"]
        empty = trace_service_pb2.ExportTraceServiceRequest()
        for _ in range(11):
            empty.resource_spans.add()
        assert http.post("/v1/traces", content=empty.SerializeToString(), headers=PB).status_code == 413
        many = trace_request(spans=101, seed=1)
        response = http.post("/v1/traces", content=many.SerializeToString(), headers=PB)
        assert response.status_code == 413 and b"MAX_ITEMS_PER_REQUEST" in response.content
        response = http.post("/v1/traces", content=to_otlp_json(many), headers=JS)
        assert response.status_code == 413 and "MAX_ITEMS_PER_REQUEST" in response.json()["message"]
        wide = trace_request(spans=50, seed=1)
        for span in wide.resource_spans[0].scope_spans[0].spans:
            for i in range(3):
                span.attributes.add(key=f"extra.{i}").value.int_value = i
        response = http.post("/v1/traces", content=wide.SerializeToString(), headers=PB)
        assert response.status_code == 413 and b"MAX_ATTRIBUTES_PER_REQUEST" in response.content
        within = trace_request(spans=100, seed=1)
        assert http.post("/v1/traces", content=within.SerializeToString(), headers=PB).status_code == 200


def _in_flight(http: httpx.Client) -> float:
    for line in http.get("/metrics").text.splitlines():
        if line.startswith("collector_large_requests_in_flight "):
            return float(line.split()[1])
    raise AssertionError("collector_large_requests_in_flight is not exported")


def test_large_requests_beyond_the_bound_wait_their_turn_with_503(start_receiver, monkeypatch) -> None:
    receiver = start_receiver(collector_max_large_requests=1)
    release = threading.Event()
    real_commit = collectors.receiver.commit_batch

    holding = threading.Event()

    def held_commit(*args, **kwargs):  # type: ignore[no-untyped-def]
        if kwargs["batch"].events > 1000 and not holding.is_set():  # the first large one stays in flight
            holding.set()
            release.wait(timeout=120)
        return real_commit(*args, **kwargs)

    monkeypatch.setattr(collectors.receiver, "commit_batch", held_commit)
    large = trace_request(spans=12_000, seed=2).SerializeToString()
    assert len(large) > 2**20
    first: dict[str, httpx.Response] = {}
    sender = threading.Thread(
        target=lambda: first.setdefault(
            "r", httpx.post(f"{receiver.url}/v1/traces", content=large, headers=PB, timeout=180)
        )
    )
    sender.start()
    with httpx.Client(base_url=receiver.url, timeout=60) as http:
        assert holding.wait(timeout=120), "the first large request never got to its commit"
        assert _in_flight(http) == 1
        second = trace_request(spans=12_000, seed=3).SerializeToString()
        busy = http.post("/v1/traces", content=second, headers=PB)
        assert busy.status_code == 503 and busy.headers["Retry-After"] == "1"
        small = http.post("/v1/traces", content=trace_request(spans=5, seed=4).SerializeToString(), headers=PB)
        assert small.status_code == 200  # small requests are not held back by large ones
        release.set()
        sender.join(timeout=180)
        assert first["r"].status_code == 200
        assert _in_flight(http) == 0
        assert http.post("/v1/traces", content=second, headers=PB).status_code == 200  # its turn now
