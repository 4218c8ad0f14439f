"""Requests the client caused to be refused (401, 408, 413, 429 by default) are neither good nor bad
events of a slice: they reach no SLI bucket or latency count, the receiver counts them apart per slice,
and a slice may choose its own list. A genuine overload (503) still counts as bad."""

from __future__ import annotations

import copy

import httpx
import pytest
from pydantic import ValidationError

from collectors import otlp
from collectors.ingest import aggregate_spans
from controlplane.slices import BadRule, load_slices
from tests.collectors.conftest import SLICES
from tests.collectors.otlp_samples import _kv, metric_request, trace_request
from tests.collectors.test_otlp_sdk import SLICES_YAML, totals

PB = {"Content-Type": otlp.PROTOBUF}
STATUS = "http.response.status_code"


def _with_status(request, every: int, code: int):  # type: ignore[no-untyped-def]
    """A copy of `request` with every `every`-th span's status set to `code`, and the copy without them."""
    refused, kept = copy.deepcopy(request), copy.deepcopy(request)
    spans = refused.resource_spans[0].scope_spans[0].spans
    del kept.resource_spans[0].scope_spans[0].spans[:]
    changed = 0
    for i, span in enumerate(spans):
        if i % every:
            kept.resource_spans[0].scope_spans[0].spans.append(span)
            continue
        for kv in span.attributes:
            if kv.key == STATUS:
                kv.value.int_value = code
        span.status.code = 0
        changed += 1
    return refused, kept, changed


@pytest.mark.parametrize("code", [401, 408, 413, 429])
def test_client_refusals_are_left_out_of_the_sli(code: int) -> None:
    config = load_slices(SLICES)
    refused, kept, changed = _with_status(trace_request(spans=240, seed=code), 4, code)
    batch = aggregate_spans(refused, config)
    assert batch.buckets == aggregate_spans(kept, config).buckets
    assert sum(batch.client_refused.values()) == changed == 60
    assert set(batch.client_refused) <= {"bet-placement", "login"}
    assert batch.rejected == 0


def test_other_client_errors_and_overload_still_count() -> None:
    config = load_slices(SLICES)
    for code, bad in ((404, 0), (409, 0), (422, 0), (503, 1)):
        request, _kept, changed = _with_status(trace_request(spans=40, seed=code), 2, code)
        batch = aggregate_spans(request, config)
        assert not batch.client_refused
        assert sum(d.total for d in batch.buckets.values()) == 40
        if bad:
            assert sum(d.bad for d in batch.buckets.values()) >= changed


def test_a_slice_chooses_its_own_list() -> None:
    config = load_slices(SLICES)
    config.slices[0].bad.excluded_statuses = []  # bet-placement counts every status
    request, _kept, _changed = _with_status(trace_request(spans=200, seed=5, names=("POST /v1/bets",)), 2, 429)
    batch = aggregate_spans(request, config)
    assert not batch.client_refused
    assert sum(d.total for d in batch.buckets.values()) == 200


def test_only_client_errors_can_be_excluded() -> None:
    with pytest.raises(ValidationError, match="client error codes"):
        BadRule(excluded_statuses=[429, 503])


def test_the_receiver_counts_refusals_apart_for_metrics_too(start_receiver, store, tmp_path) -> None:
    slices = tmp_path / "slices.yaml"
    slices.write_text(SLICES_YAML)
    receiver = start_receiver(slices)
    request = metric_request(cumulative_total=40)
    metric = request.resource_metrics[0].scope_metrics[0].metrics[0]
    throttled = metric.histogram.data_points.add()
    throttled.CopyFrom(metric.histogram.data_points[0])
    del throttled.attributes[:]
    throttled.attributes.extend([_kv("http.request.method", "POST"), _kv("http.route", "/v1/bets"), _kv(STATUS, 429)])
    throttled.count = 1000
    del throttled.bucket_counts[:]
    throttled.bucket_counts.extend([250, 250, 250, 250])
    with httpx.Client(base_url=receiver.url) as http:
        assert http.post("/v1/metrics", content=request.SerializeToString(), headers=PB).status_code == 200
    assert totals(store) == {"bets-by-metrics": (40, 0)}
    registry = receiver.app.state.metrics.registry
    assert (
        registry.get_sample_value("collector_client_refusals_total", {"signal": "metrics", "slice": "bets-by-metrics"})
        == 1000
    )


def test_the_receiver_counts_span_refusals_per_slice(receiver) -> None:
    refused, _kept, changed = _with_status(trace_request(spans=120, seed=9, names=("POST /v1/login",)), 3, 401)
    with httpx.Client(base_url=receiver.url) as http:
        assert http.post("/v1/traces", content=refused.SerializeToString(), headers=PB).status_code == 200
    registry = receiver.app.state.metrics.registry
    assert (
        registry.get_sample_value("collector_client_refusals_total", {"signal": "traces", "slice": "login"}) == changed
    )
