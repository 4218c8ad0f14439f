"""The real OpenTelemetry SDK exporters, over HTTP, into our receiver: every event counted once."""

from __future__ import annotations

import random
from collections import Counter

from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode
from sqlalchemy import func, select

from controlplane.slices import DEFAULT_BOUNDARIES
from controlplane.storage import reader
from controlplane.store import SliBucket, SliExemplar, SliLatencyBucket

SLICES_YAML = """
slices:
  - name: bet-placement
    signal: traces
    service: sample-platform
    spans: ["POST /v1/bets"]
  - name: login
    signal: traces
    service: sample-platform
    spans: ["POST /v1/login"]
  - name: bets-by-metrics
    signal: metrics
    service: sample-platform
    metric: http.server.request.duration
    routes: ["POST /v1/bets"]
"""
RESOURCE = Resource.create({"service.name": "sample-platform"})


def totals(store) -> dict[str, tuple[int, int]]:  # type: ignore[no-untyped-def]
    t = SliBucket.__table__
    with reader(store).connect() as conn:
        rows = conn.execute(select(t.c.slice, func.sum(t.c.total), func.sum(t.c.bad)).group_by(t.c.slice)).all()
    return {r[0]: (int(r[1]), int(r[2])) for r in rows}


def test_sdk_span_exporter(start_receiver, store, tmp_path) -> None:
    slices = tmp_path / "slices.yaml"
    slices.write_text(SLICES_YAML)
    receiver = start_receiver(slices)
    provider = TracerProvider(resource=RESOURCE)
    provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{receiver.url}/v1/traces"), max_export_batch_size=64)
    )
    tracer = provider.get_tracer("test")
    rng = random.Random(5)
    sent, bad = Counter(), Counter()
    for _ in range(400):
        name = rng.choice(["POST /v1/bets", "POST /v1/login", "GET /v1/markets/{market_id}"])
        status = rng.choice([200, 201, 201, 422, 500, 503])
        kind = SpanKind.SERVER
        with tracer.start_as_current_span(name, kind=kind, attributes={"http.response.status_code": status}) as span:
            if status >= 500:
                span.set_status(Status(StatusCode.ERROR))
            with tracer.start_as_current_span("ledger commit"):  # internal spans are not counted
                pass
        sent[name] += 1
        bad[name] += status >= 500
    assert provider.force_flush(30_000)
    provider.shutdown()
    assert totals(store) == {
        "bet-placement": (sent["POST /v1/bets"], bad["POST /v1/bets"]),
        "login": (sent["POST /v1/login"], bad["POST /v1/login"]),
    }
    with reader(store).connect() as conn:
        latency = conn.execute(select(func.sum(SliLatencyBucket.__table__.c.count))).scalar_one()
        exemplars = conn.execute(select(SliExemplar.__table__.c.kind, SliExemplar.__table__.c.trace_id)).all()
    assert latency == sent["POST /v1/bets"] + sent["POST /v1/login"]
    assert {kind for kind, _ in exemplars} == {"bad", "slow"}
    assert all(len(trace_id) == 32 for _, trace_id in exemplars)


def test_sdk_metric_exporter_cumulative_reexports_count_once(start_receiver, store, tmp_path) -> None:
    slices = tmp_path / "slices.yaml"
    slices.write_text(SLICES_YAML)
    receiver = start_receiver(slices)
    reader_ = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=f"{receiver.url}/v1/metrics"), export_interval_millis=3_600_000
    )
    view = View(
        instrument_name="http.server.request.duration",
        aggregation=ExplicitBucketHistogramAggregation(boundaries=DEFAULT_BOUNDARIES),
    )
    provider = MeterProvider(resource=RESOURCE, metric_readers=[reader_], views=[view])
    histogram = provider.get_meter("test").create_histogram("http.server.request.duration", unit="s")
    rng = random.Random(9)
    sent = bad = 0
    for round_ in range(3):
        for _ in range(150):
            status = rng.choice([201, 201, 422, 500])
            route = rng.choice(["/v1/bets", "/v1/login"])
            histogram.record(
                rng.uniform(0.001, 0.4),
                {"http.request.method": "POST", "http.route": route, "http.response.status_code": status},
            )
            if route == "/v1/bets":
                sent += 1
                bad += status >= 500
        assert reader_.force_flush(30_000)  # cumulative: each export repeats every earlier count
        assert reader_.force_flush(30_000)  # and an export with nothing new adds nothing
        assert totals(store).get("bets-by-metrics") == (sent, bad), f"after round {round_}"
    provider.shutdown()
    assert totals(store)["bets-by-metrics"] == (sent, bad)
