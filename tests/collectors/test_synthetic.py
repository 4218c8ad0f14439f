"""Spans and points marked synthetic (`user_agent.synthetic.type`, any value) describe probes, not
players: they reach no SLI bucket, latency count or exemplar, and the receiver counts them apart."""

from __future__ import annotations

import copy

import httpx
from opentelemetry.proto.common.v1 import common_pb2
from sqlalchemy import select

from collectors import otlp
from collectors.ingest import aggregate_spans
from controlplane.slices import load_slices
from controlplane.storage import reader
from controlplane.store import SliExemplar
from tests.collectors.conftest import SLICES
from tests.collectors.otlp_samples import metric_request, trace_request
from tests.collectors.test_otlp_sdk import SLICES_YAML, totals
from tests.collectors.test_receiver import snapshot

PB = {"Content-Type": otlp.PROTOBUF}
MARK = "user_agent.synthetic.type"


def _marks() -> list[common_pb2.KeyValue]:
    """The attribute with values of several types: the key alone decides."""
    marks = [common_pb2.KeyValue(key=MARK) for _ in range(3)]
    marks[0].value.string_value = "test"
    marks[1].value.string_value = "bot"
    marks[2].value.array_value.values.add().string_value = "odd but present"
    return marks


def split_request(spans: int, seed: int):  # type: ignore[no-untyped-def]
    """A request with every third span marked synthetic (and made bad and slow, the likeliest exemplars),
    the same request without those spans, and their trace ids."""
    mixed = trace_request(spans=spans, seed=seed)
    players = copy.deepcopy(mixed)
    del players.resource_spans[0].scope_spans[0].spans[:]
    marks, probes = _marks(), set()
    for i, span in enumerate(mixed.resource_spans[0].scope_spans[0].spans):
        if i % 3:
            players.resource_spans[0].scope_spans[0].spans.append(span)
            continue
        span.attributes.append(marks[i % len(marks)])
        span.status.code = 2
        span.end_time_unix_nano = span.start_time_unix_nano + 9 * 10**9
        probes.add(span.trace_id.hex())
    return mixed, players, probes


def test_synthetic_spans_are_left_out_of_buckets_latency_and_exemplars() -> None:
    config = load_slices(SLICES)
    mixed, players, probes = split_request(300, seed=11)
    batch = aggregate_spans(mixed, config)
    assert batch.buckets == aggregate_spans(players, config).buckets
    assert batch.synthetic == len(probes) == 100
    assert batch.events == 200 and batch.rejected == 0


def test_the_receiver_counts_what_it_left_out(receiver, store) -> None:
    mixed, _players, probes = split_request(300, seed=12)
    with httpx.Client(base_url=receiver.url) as http:
        assert http.post("/v1/traces", content=mixed.SerializeToString(), headers=PB).status_code == 200
        again = http.post("/v1/traces", content=mixed.SerializeToString(), headers=PB)  # a retry: counted once
        assert again.status_code == 200
    buckets, latency = snapshot(store)
    assert sum(row[2] for row in buckets) == 200
    assert sum(row[-1] for row in latency) == 200
    with reader(store).connect() as conn:
        exemplars = set(conn.execute(select(SliExemplar.__table__.c.trace_id)).scalars())
    assert exemplars and not exemplars & probes
    registry = receiver.app.state.metrics.registry
    assert registry.get_sample_value("collector_synthetic_items_total", {"signal": "traces"}) == 100
    assert registry.get_sample_value("collector_sli_events_total", {"signal": "traces"}) == 200


def test_synthetic_histogram_points_are_left_out(start_receiver, store, tmp_path) -> None:
    slices = tmp_path / "slices.yaml"
    slices.write_text(SLICES_YAML)
    receiver = start_receiver(slices)
    request = metric_request(cumulative_total=40)
    metric = request.resource_metrics[0].scope_metrics[0].metrics[0]
    probe = metric.histogram.data_points.add()
    probe.CopyFrom(metric.histogram.data_points[0])
    probe.attributes.append(_marks()[0])
    probe.count = 1000
    del probe.bucket_counts[:]
    probe.bucket_counts.extend([250, 250, 250, 250])
    with httpx.Client(base_url=receiver.url) as http:
        assert http.post("/v1/metrics", content=request.SerializeToString(), headers=PB).status_code == 200
    assert totals(store) == {"bets-by-metrics": (40, 0)}
    registry = receiver.app.state.metrics.registry
    assert registry.get_sample_value("collector_synthetic_items_total", {"signal": "metrics"}) == 1
