"""The OTLP/HTTP receiver: `POST /v1/traces`, `POST /v1/metrics`, `POST /v1/logs`, and its own `/metrics`.

Usage:

    app = create_receiver(settings, engine=store_engine)
    uvicorn.run(app, port=4318)

Following the OTLP specification: protobuf or JSON bodies, optional gzip; the answer is in the
request's content type; items that cannot be counted are reported as partial success; an
undecodable body is 400 with a google.rpc.Status; a body over the limit once inflated, or holding more
resources, items or attributes than the `collector_max_*_per_request` settings allow, is 413 (counted
before the work that grows with them); other content types are 415; when the store already has
`collector_max_pending_writes` requests in hand, or `collector_max_large_requests` bodies over 1 MiB,
the answer is 503 with Retry-After, which exporters retry. Re-sent content is never counted twice.
Log records are not counted into SLIs: the ones inside a kept trace are kept with it (`collectors.keeper`).
"""

import hmac
import logging
from collections.abc import Callable
from datetime import timedelta
from functools import partial
from pathlib import Path

from fastapi import FastAPI, Request
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from pydantic import SecretStr
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from collectors import otlp
from collectors.exemplars import ExemplarLimits
from collectors.ingest import Batch, ItemLimits, aggregate_spans, commit_batch, content_digest, metric_points
from collectors.keeper import TraceKeeper
from controlplane.settings import Settings
from controlplane.slices import SliceConfig, load_slices
from controlplane.storage import make_engine

log = logging.getLogger(__name__)
GRPC_INVALID_ARGUMENT, GRPC_UNAVAILABLE, GRPC_RESOURCE_EXHAUSTED, GRPC_UNAUTHENTICATED = 3, 14, 8, 16
LARGE_BODY_BYTES = 2**20  # a request body over this (as sent) is large: settings.collector_max_large_requests


class ReceiverMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "collector_otlp_requests", "OTLP requests, by signal and status.", ["signal", "code"], registry=r
        )
        self.events = Counter(
            "collector_sli_events", "Events counted into SLI buckets, by signal.", ["signal"], registry=r
        )
        self.rejected = Counter(
            "collector_rejected_items", "Spans or points refused (partial success).", ["signal"], registry=r
        )
        self.synthetic = Counter(
            "collector_synthetic_items",
            "Spans or points of a slice left out of SLI buckets because they are marked synthetic "
            "(user_agent.synthetic.type).",
            ["signal"],
            registry=r,
        )
        self.client_refused = Counter(
            "collector_client_refusals",
            "Requests of a slice left out of its SLI because the client caused their refusal (a status in the "
            "slice's excluded_statuses: by default 401, 408, 413 and 429), by slice.",
            ["signal", "slice"],
            registry=r,
        )
        self.duplicates = Counter(
            "collector_duplicate_requests", "Requests whose content was already counted.", ["signal"], registry=r
        )
        self.ingest_seconds = Histogram(
            "collector_ingest_seconds", "Decode, aggregate and store one request.", ["signal"], registry=r
        )
        self.large_in_flight = Gauge(
            "collector_large_requests_in_flight",
            "Requests with a body over 1 MiB being decoded and stored now (at most collector_max_large_requests).",
            registry=r,
        )


def create_receiver(
    settings: Settings | None = None,
    *,
    engine: Engine | None = None,
    slices: SliceConfig | None = None,
    extra_metrics: Callable[[CollectorRegistry], None] | None = None,
) -> FastAPI:
    settings = settings or Settings()
    engine = engine or make_engine(settings.store_url, **settings.engine_options())
    config = slices or load_slices(Path(settings.slices_path))
    metrics = ReceiverMetrics()
    if extra_metrics is not None:
        extra_metrics(metrics.registry)
    pending = {"writes": 0, "large": 0}
    request_limits = otlp.RequestLimits(
        max_items=settings.collector_max_items_per_request,
        max_resources=settings.collector_max_resources_per_request,
        max_attributes=settings.collector_max_attributes_per_request,
    )
    exemplars = ExemplarLimits(bad=settings.collector_keep_errors, slow=settings.collector_keep_slowest)
    keeper = None
    if settings.collector_keep_traces:
        keeper = TraceKeeper(
            engine,
            max_bytes=settings.collector_trace_max_bytes,
            retention=timedelta(days=settings.trace_retention_days),
        )
    app = FastAPI(title="OTLP/HTTP receiver", version="0.1.0")
    app.state.metrics = metrics
    app.state.slices = config
    app.state.keeper = keeper

    def ingest(kind: str, body: bytes, content_type: str | None, encoding: str | None) -> tuple[int, str]:
        """Decode and count one request in a worker thread; returns (rejected items, events)."""
        message = otlp.decode_request(
            body,
            content_type=content_type,
            encoding=encoding,
            kind=kind,
            max_bytes=settings.collector_max_body_bytes,
            limits=request_limits,
        )
        limits = ItemLimits.now(max_skew_seconds=settings.collector_max_clock_skew_seconds)
        if isinstance(message, ExportLogsServiceRequest):
            return ingest_logs(message, limits)
        then: Callable[[Connection], None] | None = None
        if isinstance(message, ExportTraceServiceRequest):
            batch, points = aggregate_spans(message, config, limits, exemplars), None
            if keeper is not None:  # kept in the transaction that counts the request
                then = partial(keeper.on_spans, message, batch)
        else:
            assert isinstance(message, ExportMetricsServiceRequest)
            points, batch = metric_points(message, config, limits)
        counted = commit_batch(
            engine, digest=content_digest(message), signal=kind, batch=batch, points=points, then=then
        )
        if not counted:
            metrics.duplicates.labels(signal=kind).inc()
        else:
            metrics.events.labels(signal=kind).inc(batch.events)
            metrics.synthetic.labels(signal=kind).inc(batch.synthetic)
            for slice_name, refused in batch.client_refused.items():
                metrics.client_refused.labels(signal=kind, slice=slice_name).inc(refused)
            if keeper is not None:
                keeper.prune_if_due()
        metrics.rejected.labels(signal=kind).inc(batch.rejected)
        return batch.rejected, batch.rejected_reason

    def ingest_logs(message: ExportLogsServiceRequest, limits: ItemLimits) -> tuple[int, str]:
        # The digest alone is recorded (no counts), so a re-sent export keeps no line twice.
        if not commit_batch(engine, digest=content_digest(message), signal=otlp.LOGS, batch=Batch()):
            metrics.duplicates.labels(signal=otlp.LOGS).inc()
            return 0, ""
        if keeper is None:
            return 0, ""
        rejected, reason = keeper.on_logs(message, limits)
        metrics.rejected.labels(signal=otlp.LOGS).inc(rejected)
        return rejected, reason

    tokens = [t.strip().encode() for t in (settings.collector_tokens or SecretStr("")).get_secret_value().split(",")]
    tokens = [t for t in tokens if t]

    def authenticated(request: Request) -> bool:
        if not tokens:
            return True
        scheme, _, presented = request.headers.get("authorization", "").partition(" ")
        given = presented.strip().encode()
        # Compared with every token, so the time taken does not say which one nearly matched.
        matches = [hmac.compare_digest(given, token) for token in tokens]
        return scheme.lower() == "bearer" and any(matches)

    async def handle(kind: str, request: Request) -> Response:
        if not authenticated(request):
            response = _error(
                metrics,
                kind,
                otlp.JSON,
                401,
                "send Authorization: Bearer <token> with one of CONTROLPLANE_COLLECTOR_TOKENS "
                "(OTEL_EXPORTER_OTLP_HEADERS=Authorization=Bearer%20<token> for an OpenTelemetry exporter)",
                GRPC_UNAUTHENTICATED,
            )
            response.headers["WWW-Authenticate"] = "Bearer"
            return response
        content_type = request.headers.get("content-type")
        try:
            media = otlp.media_type(content_type)
        except otlp.OtlpError as exc:
            metrics.requests.labels(signal=kind, code=str(exc.status)).inc()
            return Response(
                otlp.status_body(GRPC_INVALID_ARGUMENT, exc.message, otlp.JSON), exc.status, media_type=otlp.JSON
            )
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > settings.collector_max_body_bytes:
            return _error(metrics, kind, media, 413, f"body of {declared} bytes is over the limit")
        if pending["writes"] >= settings.collector_max_pending_writes:
            return _busy(metrics, kind, media, "the store is busy; retry after the Retry-After delay")
        pending["writes"] += 1
        large = False
        try:
            body = await _read_limited(request, settings.collector_max_body_bytes)
            if len(body) > LARGE_BODY_BYTES:  # few of these at once: each can take a core and memory a while
                if pending["large"] >= settings.collector_max_large_requests:
                    return _busy(metrics, kind, media, "too many large requests at once; retry after the delay")
                large = True
                pending["large"] += 1
                metrics.large_in_flight.inc()
            with metrics.ingest_seconds.labels(signal=kind).time():
                rejected, reason = await run_in_threadpool(
                    ingest, kind, body, content_type, request.headers.get("content-encoding")
                )
        except otlp.OtlpError as exc:
            return _error(metrics, kind, media, exc.status, exc.message)
        except DBAPIError as exc:
            log.warning("store unavailable while ingesting %s: %s", kind, type(exc.orig).__name__)
            return _busy(metrics, kind, media, "the store did not answer in time; retry")
        finally:
            pending["writes"] -= 1
            if large:
                pending["large"] -= 1
                metrics.large_in_flight.dec()
        metrics.requests.labels(signal=kind, code="200").inc()
        return Response(otlp.success_body(kind, media, rejected=rejected, error_message=reason), 200, media_type=media)

    @app.post("/v1/traces")
    async def traces(request: Request) -> Response:
        return await handle(otlp.TRACES, request)

    @app.post("/v1/metrics")
    async def metrics_endpoint(request: Request) -> Response:
        return await handle(otlp.METRICS, request)

    @app.post("/v1/logs")
    async def logs(request: Request) -> Response:
        return await handle(otlp.LOGS, request)

    @app.get("/metrics")
    def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok"}

    return app


async def _read_limited(request: Request, limit: int) -> bytes:
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise otlp.OtlpError(413, f"request body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _error(
    metrics: ReceiverMetrics, kind: str, media: str, status: int, message: str, code: int = GRPC_INVALID_ARGUMENT
) -> Response:
    metrics.requests.labels(signal=kind, code=str(status)).inc()
    return Response(otlp.status_body(code, message, media), status, media_type=media)


def _busy(metrics: ReceiverMetrics, kind: str, media: str, message: str) -> Response:
    """503 with Retry-After: exporters retry it."""
    response = _error(metrics, kind, media, 503, message, GRPC_UNAVAILABLE)
    response.headers["Retry-After"] = "1"
    return response
