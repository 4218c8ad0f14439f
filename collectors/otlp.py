"""OTLP/HTTP request decoding per the OTLP specification: protobuf or JSON bodies, gzip, size limits.

    message = decode_request(body, content_type="application/x-protobuf", encoding="gzip",
                             kind=TRACES, max_bytes=20 * 2**20)

JSON follows the OTLP JSON mapping: lowerCamelCase keys, enums as integers, and trace and span ids
as hex strings (not base64 as plain protobuf JSON would have them).
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from google.rpc import status_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
TRACES = "traces"
METRICS = "metrics"
LOGS = "logs"
REQUESTS: dict[str, type[Message]] = {
    TRACES: trace_service_pb2.ExportTraceServiceRequest,
    METRICS: metrics_service_pb2.ExportMetricsServiceRequest,
    LOGS: logs_service_pb2.ExportLogsServiceRequest,
}
RESPONSES: dict[str, Any] = {
    TRACES: trace_service_pb2.ExportTraceServiceResponse,
    METRICS: metrics_service_pb2.ExportMetricsServiceResponse,
    LOGS: logs_service_pb2.ExportLogsServiceResponse,
}
ID_FIELDS = {"traceId": 16, "spanId": 8, "parentSpanId": 8}


class OtlpError(Exception):
    """A request the receiver refuses; `status` is the HTTP status, `message` goes in the Status body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def media_type(content_type: str | None) -> str:
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    if kind not in (PROTOBUF, JSON):
        raise OtlpError(415, f"Content-Type must be {PROTOBUF} or {JSON}, not {content_type or 'missing'!r}")
    return kind


def inflate(body: bytes, encoding: str | None, max_bytes: int) -> bytes:
    """The request body after Content-Encoding, refusing anything larger than `max_bytes` once inflated."""
    encoding = (encoding or "identity").strip().lower()
    if encoding == "identity":
        if len(body) > max_bytes:
            raise OtlpError(413, f"request body is {len(body)} bytes; the limit is {max_bytes}")
        return body
    if encoding != "gzip":
        raise OtlpError(415, f"Content-Encoding {encoding!r} is not supported; use gzip or none")
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        # Never inflate more than the limit: a small gzip bomb cannot make us allocate gigabytes.
        out = inflater.decompress(body, max_bytes + 1)
    except zlib.error as exc:
        raise OtlpError(400, f"body is not valid gzip: {exc}") from None
    if len(out) > max_bytes:
        raise OtlpError(413, f"request body inflates beyond the limit of {max_bytes} bytes")
    if not inflater.eof:
        raise OtlpError(400, "gzip body is truncated")
    return out


def _hex_ids_to_base64(node: Any) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key in ID_FIELDS and isinstance(value, str):
                out[key] = _hex_id(key, value)
            else:
                out[key] = _hex_ids_to_base64(value)
        return out
    if isinstance(node, list):
        return [_hex_ids_to_base64(item) for item in node]
    return node


def _hex_id(key: str, value: str) -> str:
    if value == "":
        return ""
    try:
        raw = binascii.unhexlify(value)
    except (binascii.Error, ValueError):
        raise OtlpError(400, f"{key} {value[:40]!r} is not hex (OTLP JSON encodes ids as hex)") from None
    if len(raw) != ID_FIELDS[key]:
        raise OtlpError(400, f"{key} must be {ID_FIELDS[key]} bytes ({2 * ID_FIELDS[key]} hex digits)")
    return base64.b64encode(raw).decode()


@dataclass(frozen=True)
class RequestLimits:
    """What one request may hold, by count: checked before the work that grows with it (a few bytes of
    protobuf or JSON can stand for an empty span, and millions of them for minutes of CPU). Over: 413."""

    max_items: int = 50_000  # spans, metric data points or log records
    max_resources: int = 1_000
    max_attributes: int = 1_000_000  # on resources, scopes and items together

    @property
    def json_objects(self) -> int:
        """JSON objects a body may hold, counted before it is parsed: 32 for each item or resource."""
        return 32 * (self.max_items + self.max_resources)


def count_problem(message: Message, limits: RequestLimits) -> str | None:
    """Why the request holds more than `limits` allow, or None. Stops counting at the first limit passed."""
    resources = list(getattr(message, _RESOURCES[type(message).__name__]))
    if len(resources) > limits.max_resources:
        return _over(f"{len(resources)} resources", limits.max_resources, "RESOURCES")
    items = attributes = 0
    for resource in resources:
        attributes += len(resource.resource.attributes)
        for scope, members in _scoped_items(resource):
            attributes += len(scope.scope.attributes)
            for item in members:
                items += 1
                attributes += len(item.attributes)
            if items > limits.max_items:
                return _over(f"over {limits.max_items} items", limits.max_items, "ITEMS")
            if attributes > limits.max_attributes:
                return _over(f"over {limits.max_attributes} attributes", limits.max_attributes, "ATTRIBUTES")
    return None


def _over(held: str, limit: int, what: str) -> str:
    return f"holds {held}; the limit is {limit} (CONTROLPLANE_COLLECTOR_MAX_{what}_PER_REQUEST)"


_RESOURCES = {
    "ExportTraceServiceRequest": "resource_spans",
    "ExportMetricsServiceRequest": "resource_metrics",
    "ExportLogsServiceRequest": "resource_logs",
}


def _scoped_items(resource: Any) -> Iterator[tuple[Any, Iterable[Any]]]:
    """(scope, its spans, data points or log records) of one resource's entry."""
    if hasattr(resource, "scope_spans"):
        for scope in resource.scope_spans:
            yield scope, scope.spans
    elif hasattr(resource, "scope_logs"):
        for scope in resource.scope_logs:
            yield scope, scope.log_records
    else:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                which = metric.WhichOneof("data")
                yield scope, getattr(metric, which).data_points if which else ()


def decode_request(
    body: bytes,
    *,
    content_type: str | None,
    encoding: str | None,
    kind: str,
    max_bytes: int,
    limits: RequestLimits | None = None,
) -> Message:
    limits = limits or RequestLimits()
    media = media_type(content_type)
    data = inflate(body, encoding, max_bytes)
    message = REQUESTS[kind]()
    if media == PROTOBUF:
        try:
            message.ParseFromString(data)
        except (DecodeError, ValueError, RecursionError) as exc:
            raise OtlpError(400, f"body is not a valid {message.DESCRIPTOR.name} protobuf: {exc}") from None
        problem = count_problem(message, limits)
        if problem:
            raise OtlpError(413, f"the request {problem}")
        return message
    objects = data.count(b"{")  # an upper bound on its objects, before parsing makes each one
    if objects > limits.json_objects:
        raise OtlpError(
            413,
            f"the JSON body holds up to {objects} objects; the limit is {limits.json_objects} "
            "(32 for each item or resource a request may hold)",
        )
    try:
        document = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise OtlpError(400, f"body is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise OtlpError(400, f"body must be a JSON object ({message.DESCRIPTOR.name})")
    problem = _json_count_problem(document, limits)
    if problem:
        raise OtlpError(413, f"the request {problem}")
    try:
        json_format.ParseDict(_hex_ids_to_base64(document), message, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, RecursionError) as exc:
        raise OtlpError(400, f"body is not a valid OTLP JSON {message.DESCRIPTOR.name}: {exc}") from None
    problem = count_problem(message, limits)
    if problem:
        raise OtlpError(413, f"the request {problem}")
    return message


def _json_count_problem(document: dict, limits: RequestLimits) -> str | None:
    """The resources a JSON body lists, counted before the (slow) conversion to protobuf."""
    for key in ("resourceSpans", "resourceMetrics", "resourceLogs"):
        listed = document.get(key)
        if isinstance(listed, list) and len(listed) > limits.max_resources:
            return _over(f"{len(listed)} resources", limits.max_resources, "RESOURCES")
    return None


def encode(message: Message, media: str) -> bytes:
    if media == PROTOBUF:
        return message.SerializeToString()
    return json.dumps(json_format.MessageToDict(message), separators=(",", ":")).encode()


def status_body(code: int, message: str, media: str) -> bytes:
    """A google.rpc.Status, as the OTLP spec asks for error responses."""
    return encode(status_pb2.Status(code=code, message=message), media)


def success_body(kind: str, media: str, *, rejected: int = 0, error_message: str = "") -> bytes:
    response = RESPONSES[kind]()
    if rejected:
        partial = response.partial_success
        if kind == TRACES:
            partial.rejected_spans = rejected
        elif kind == LOGS:
            partial.rejected_log_records = rejected
        else:
            partial.rejected_data_points = rejected
        partial.error_message = error_message
    return encode(response, media)
