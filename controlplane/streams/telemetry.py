"""The stream slice's events: each ingester sends the age of every event it appends (commit in the
platform to ack after the audit append) as the OTLP histogram `audit.ingest.lag` of service
`controlplane-ingest`, on the slices' latency boundaries, so the collector counts it like any other
slice and the `stream-lag` SLO reads it.

    histogram, provider = lag_histogram("http://127.0.0.1:4318", "", boundaries=(0.005, ..., 10.0))
    histogram.record(0.42)
    provider.shutdown()   # flushes
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

SERVICE = "controlplane-ingest"
METRIC = "audit.ingest.lag"


def lag_histogram(
    endpoint: str, headers: str, *, boundaries: Sequence[float], interval_seconds: float = 10.0
) -> tuple[Any, Any]:
    # local: the metrics SDK and its exporter are needed only by an ingester that exports
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.util.re import parse_env_headers

    exporter = OTLPMetricExporter(
        endpoint=f"{endpoint.rstrip('/')}/v1/metrics",
        headers=parse_env_headers(headers, liberal=True) if headers else None,
    )
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=int(interval_seconds * 1000))
    view = View(instrument_name=METRIC, aggregation=ExplicitBucketHistogramAggregation(boundaries=list(boundaries)))
    provider = MeterProvider(resource=Resource.create({"service.name": SERVICE}), metric_readers=[reader], views=[view])
    histogram = provider.get_meter("controlplane.streams").create_histogram(
        METRIC, unit="s", description="From an outbox event's commit in the platform to its audit append."
    )
    return histogram, provider
