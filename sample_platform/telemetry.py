"""OpenTelemetry for the platform: server spans, internal spans, and semantic-convention metrics.

Usage:

    setup_telemetry(settings)          # once per process; exports over OTLP/HTTP if an endpoint is set
    with tracer.start_as_current_span("risk check"): ...

Spans and instruments come from the global OpenTelemetry API, so they cost nothing until
`setup_telemetry` installs providers (the process serving the platform does; library users and
tests that do not export get no-ops). No personal data: HTTP spans carry the route template, the
method and the status code, never paths with ids, query strings, client addresses or tokens.
Synthetic requests (`X-Synthetic`) are marked `user_agent.synthetic.type = "test"` on their server
span, the spans inside it and their `http.server.request.duration` points, so a collector can drop them.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from opentelemetry import context, metrics, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.util.re import parse_env_headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sample_platform.logs import Redact
from sample_platform.metrics import HTTP_DURATION_BUCKETS, LAG_BUCKETS
from sample_platform.settings import PlatformSettings
from sample_platform.synthetic import SYNTHETIC_TYPE, SYNTHETIC_TYPE_ATTRIBUTE, is_synthetic
from sample_platform.tracecontext import traceparent_of

log = logging.getLogger(__name__)
SERVICE_NAME = "sample-platform"
tracer = trace.get_tracer("sample_platform")
meter = metrics.get_meter("sample_platform")
request_duration = meter.create_histogram(
    "http.server.request.duration", unit="s", description="Duration of HTTP server requests."
)
odds_publish_lag = meter.create_histogram(
    "platform.odds.publish_lag",
    unit="s",
    description="From a price change's commit until every subscriber's connection has it (one per change).",
)
_installed = False
_logs: Any = None  # the LoggerProvider, once exporting
_endpoint = ""  # where it exports to, once exporting


class NotAboutExporting(logging.Filter):
    """Keeps the OpenTelemetry SDK's and exporters' own records out of the export. They are about the
    export itself: while the collector is unreachable each failed export would queue its warnings
    behind it, the queue would never empty, and a flush (the SDK's ignores its timeout) never end.
    They still go to standard error."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name == "opentelemetry" or record.name.startswith("opentelemetry."))


def exporting_handler(provider: Any, level: int) -> logging.Handler:
    """The logging handler that turns records into OTLP logs of `provider`: scrubbed, and without
    the exporters' own records."""
    # local: see setup_telemetry
    from opentelemetry.instrumentation.logging.handler import LoggingHandler

    handler = LoggingHandler(level=level, logger_provider=provider)
    handler.addFilter(NotAboutExporting())
    handler.addFilter(Redact())
    return handler


def setup_telemetry(settings: PlatformSettings) -> bool:
    """Install OTLP/HTTP exporters for traces, metrics and logs if `settings.otlp_endpoint` is set.

    Log records of INFO and above also go out as OTLP logs, with the trace and span ids of the span
    they were written in, scrubbed by the same filter as the log lines on standard error."""
    global _installed, _logs, _endpoint
    if _installed or not settings.otlp_endpoint:
        return _installed
    # local: the SDK and the OTLP exporter cost ~50-100 ms at import (measured, -X importtime) in every
    # process that imports the platform, and only a process that exports needs them.
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    endpoint = settings.otlp_endpoint.rstrip("/")
    resource = Resource.create({"service.name": SERVICE_NAME, "service.version": "0.1.0"})
    traces = TracerProvider(resource=resource)
    traces.add_span_processor(_synthetic_children())  # first: the mark is set before any export sees the span
    # Unset: the exporters read the standard OTEL_EXPORTER_OTLP_HEADERS themselves.
    headers = (
        parse_env_headers(settings.otlp_headers.get_secret_value(), liberal=True) if settings.otlp_headers else None
    )
    traces.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces", headers=headers)))
    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=f"{endpoint}/v1/metrics", headers=headers),
        export_interval_millis=int(settings.otlp_metric_interval_seconds * 1000),
    )
    views = [
        # Seconds, on the semantic-convention boundaries (not the SDK's millisecond defaults).
        View(
            instrument_name="http.server.request.duration",
            aggregation=ExplicitBucketHistogramAggregation(boundaries=HTTP_DURATION_BUCKETS),
        ),
        View(
            instrument_name="platform.odds.publish_lag",
            aggregation=ExplicitBucketHistogramAggregation(boundaries=LAG_BUCKETS),
        ),
    ]
    trace.set_tracer_provider(traces)
    metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=[reader], views=views))
    _logs = LoggerProvider(resource=resource)
    _logs.add_log_record_processor(
        BatchLogRecordProcessor(OTLPLogExporter(endpoint=f"{endpoint}/v1/logs", headers=headers))
    )
    logging.getLogger().addHandler(exporting_handler(_logs, logging.INFO))
    _installed, _endpoint = True, endpoint
    log.info("exporting OpenTelemetry traces, metrics and logs to %s", endpoint)
    return True


def _synthetic_children() -> Any:
    """A span processor that gives a span the synthetic mark of its parent."""
    # local: the SDK is loaded only once exporting starts (see setup_telemetry, the only caller).
    from opentelemetry.sdk.trace import Span, SpanProcessor

    class SyntheticChildren(SpanProcessor):
        def on_start(self, span: Span, parent_context: context.Context | None = None) -> None:
            parent = trace.get_current_span(parent_context)
            mark = (getattr(parent, "attributes", None) or {}).get(SYNTHETIC_TYPE_ATTRIBUTE)
            if mark is not None:
                span.set_attribute(SYNTHETIC_TYPE_ATTRIBUTE, mark)

    return SyntheticChildren()


def shutdown_telemetry() -> None:
    """Export what is buffered and stop exporting (before the collector it talks to goes away)."""
    global _installed, _logs, _endpoint
    for provider in (trace.get_tracer_provider(), metrics.get_meter_provider(), _logs):
        if hasattr(provider, "shutdown"):
            provider.shutdown()
    if _logs is not None:
        root = logging.getLogger()
        for handler in [h for h in root.handlers if type(h).__name__ == "LoggingHandler"]:
            root.removeHandler(handler)
    _installed, _logs, _endpoint = False, None, ""


def flush_telemetry(timeout_millis: int = 10_000) -> bool:
    """Export what is buffered now, for at most `timeout_millis` in all (the app calls it as it shuts
    down: uvicorn ends the process by re-raising SIGTERM, so nothing after the server loop would run).
    Returns False, and says so on the log, if the exports did not end in time (a collector that is down
    or slow): what they still held is lost with the process, which stops anyway."""
    every = (trace.get_tracer_provider(), metrics.get_meter_provider(), _logs)
    providers = [provider for provider in every if hasattr(provider, "force_flush")]
    done = threading.Event()

    def flush() -> None:
        try:
            for provider in providers:
                provider.force_flush(timeout_millis)
        finally:
            done.set()

    # The SDK's flushes retry each batch until the exporter's own timeout, batch after batch: they run
    # in a thread of their own, which the process does not wait for once the time is up.
    threading.Thread(target=flush, name="telemetry-flush", daemon=True).start()
    if done.wait(timeout_millis / 1000):
        return True
    log.warning(
        "telemetry not exported within %g s of the stop (is the collector at %s reachable?); "
        "the spans, metrics and logs still buffered are dropped",
        timeout_millis / 1000,
        _endpoint,
    )
    return False


class ServerSpans:
    """One SERVER span per request, named `{method} {route}`, with stable HTTP semantic conventions,
    and the `http.server.request.duration` histogram; the response names the span in a W3C
    `traceparent` header (while tracing is on). Status Error for 5xx. Both end as the
    response's last byte is sent (a timed-out request's 504), not when abandoned work behind it does."""

    def __init__(self, app: ASGIApp, *, streaming: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.streaming = streaming

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        started = time.perf_counter()
        status = {"code": 500, "ended": False}
        mark = {SYNTHETIC_TYPE_ATTRIBUTE: SYNTHETIC_TYPE} if is_synthetic(scope) else {}

        def end(span: trace.Span) -> None:
            if status["ended"]:
                return
            status["ended"] = True
            route = getattr(scope.get("route"), "path", None)
            code = status["code"]
            attributes: dict[str, str | int] = {
                "http.request.method": method,
                "http.response.status_code": code,
                "url.scheme": scope.get("scheme", "http"),
                **mark,
            }
            if route:
                attributes["http.route"] = route
                span.update_name(f"{method} {route}")
            span.set_attributes(attributes)
            if code >= 500:
                span.set_status(Status(StatusCode.ERROR))
            span.end()
            if route not in self.streaming:
                request_duration.record(time.perf_counter() - started, attributes)

        with tracer.start_as_current_span(
            method,
            kind=SpanKind.SERVER,
            attributes=mark,
            end_on_exit=False,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            named = traceparent_of(span.get_span_context())
            traceparent = named.encode() if named else None

            async def recording_send(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status["code"] = message["status"]
                    if traceparent is not None:  # W3C Trace Context: the response names its trace
                        message = {**message, "headers": [*message.get("headers", []), (b"traceparent", traceparent)]}
                await send(message)
                if message["type"] == "http.response.body" and not message.get("more_body", False):
                    end(span)

            try:
                await self.app(scope, receive, recording_send)
            except Exception as exc:
                if not status["ended"]:
                    span.record_exception(exc)
                raise
            finally:
                end(span)
