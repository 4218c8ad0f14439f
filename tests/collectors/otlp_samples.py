"""Build OTLP export requests for tests: the same content as protobuf bytes or OTLP JSON."""

from __future__ import annotations

import base64
import json
import random

from google.protobuf import json_format
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2

BASE_NANOS = 1_790_000_000 * 10**9  # a fixed instant, so minutes are predictable


def _kv(key: str, value: object) -> common_pb2.KeyValue:
    kv = common_pb2.KeyValue(key=key)
    if isinstance(value, int):
        kv.value.int_value = value
    else:
        kv.value.string_value = str(value)
    return kv


def trace_request(
    *, spans: int, seed: int, names: tuple[str, ...] = ("POST /v1/bets", "POST /v1/login"), minutes: int = 3
) -> trace_service_pb2.ExportTraceServiceRequest:
    rng = random.Random(seed)
    request = trace_service_pb2.ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.append(_kv("service.name", "sample-platform"))
    scope = resource_spans.scope_spans.add()
    for _ in range(spans):
        span = scope.spans.add()
        span.trace_id = rng.randbytes(16)
        span.span_id = rng.randbytes(8)
        span.name = rng.choice(names)
        span.kind = 2  # server
        span.start_time_unix_nano = BASE_NANOS + rng.randrange(minutes * 60 * 10**9)
        span.end_time_unix_nano = span.start_time_unix_nano + rng.randrange(1, 2 * 10**9)
        status = rng.choice([200, 201, 201, 422, 500, 503])
        span.attributes.append(_kv("http.response.status_code", status))
        if status >= 500:
            span.status.code = 2
    return request


def metric_request(*, cumulative_total: int) -> metrics_service_pb2.ExportMetricsServiceRequest:
    request = metrics_service_pb2.ExportMetricsServiceRequest()
    resource_metrics = request.resource_metrics.add()
    resource_metrics.resource.attributes.append(_kv("service.name", "sample-platform"))
    metric = resource_metrics.scope_metrics.add().metrics.add()
    metric.name = "http.server.request.duration"
    metric.histogram.aggregation_temporality = 2  # cumulative
    point = metric.histogram.data_points.add()
    point.attributes.extend(
        [_kv("http.request.method", "POST"), _kv("http.route", "/v1/bets"), _kv("http.response.status_code", 201)]
    )
    point.start_time_unix_nano = BASE_NANOS
    point.time_unix_nano = BASE_NANOS + 30 * 10**9
    point.explicit_bounds.extend([0.1, 0.5, 1.0])
    quarter = cumulative_total // 4  # buckets of a cumulative series only ever grow
    point.bucket_counts.extend([quarter, quarter, quarter, cumulative_total - 3 * quarter])
    point.count = cumulative_total
    return request


def to_otlp_json(message) -> bytes:  # type: ignore[no-untyped-def]
    """OTLP JSON: like protobuf JSON, but trace and span ids are hex, not base64."""

    def hexify(node):  # type: ignore[no-untyped-def]
        if isinstance(node, dict):
            return {
                k: (base64.b64decode(v).hex() if k in ("traceId", "spanId", "parentSpanId") else hexify(v))
                for k, v in node.items()
            }
        if isinstance(node, list):
            return [hexify(v) for v in node]
        return node

    return json.dumps(hexify(json_format.MessageToDict(message))).encode()
