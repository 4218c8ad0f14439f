"""Operations routes: liveness, Prometheus metrics and the service index."""

from __future__ import annotations

from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import PlainTextResponse, Response

from sample_platform.api.deps import PlatformDep
from sample_platform.api.openapi import problems
from sample_platform.api.routing import JsonBodyRoute
from sample_platform.schemas import Health, ServiceIndex

router = APIRouter(route_class=JsonBodyRoute, tags=["ops"])


@router.get("/v1/health", responses=problems(503))
def health() -> Health:
    """Liveness: answers without touching the database (the framework's own ceiling)."""
    return Health(status="ok")


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={200: {"description": "Prometheus text exposition format.", "content": {"text/plain": {}}}},
)
def prometheus_metrics(platform: PlatformDep) -> Response:
    """The platform's metrics for Prometheus to scrape; never slowed or failed by game-day faults."""
    return Response(generate_latest(platform.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/", responses=problems(503))
def root(platform: PlatformDep) -> ServiceIndex:
    """What the service is, and the limits a probe plans around (its timeout, its synthetic pool)."""
    settings = platform.settings
    return ServiceIndex(
        service="sample betting platform",
        docs="/docs",
        request_timeout_seconds=settings.request_timeout_seconds,
        synthetic_max_in_flight=settings.synthetic_max_in_flight,
    )
