"""Game-day routes: inject, list and clear faults (the admin bearer token). These routes are never
faulted themselves, so a game day can always be ended."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from sample_platform.api.deps import AdminOnly, PlatformDep
from sample_platform.api.openapi import problems
from sample_platform.api.routing import JsonBodyRoute
from sample_platform.faults import Fault
from sample_platform.problems import Problem
from sample_platform.schemas import FaultCreate, FaultList, FaultsCleared, FaultView

PLAIN_TEXT = r"^[^\x00-\x1f]*$"  # no NUL nor other control characters

router = APIRouter(route_class=JsonBodyRoute, tags=["game days"], dependencies=[AdminOnly])
# Adding or clearing a fault writes an outbox event, which a lock_wait fault can hold up.
WRITE_BLOCKED = {503: "The database is busy (a `lock_wait` fault holds it); retry after `Retry-After` seconds."}


@router.post(
    "/v1/admin/faults",
    status_code=201,
    responses=problems(
        400,
        401,
        403,
        413,
        422,
        503,
        descriptions={
            422: "Not valid (`validation`), or `ttl_seconds` above `PLATFORM_FAULT_MAX_TTL_SECONDS` "
            "(`fault-ttl-too-long`).",
            **WRITE_BLOCKED,
        },
    ),
)
def set_fault(body: FaultCreate, platform: PlatformDep) -> FaultView:
    """Inject a fault for a game day. It expires by itself after `ttl_seconds`; every change is
    written to the outbox as a `change.fault_*` event."""
    max_ttl = platform.settings.fault_max_ttl_seconds
    if body.ttl_seconds > max_ttl:
        raise Problem(
            422,
            "fault-ttl-too-long",
            "Fault TTL too long",
            f"ttl_seconds {body.ttl_seconds} is above the longest allowed TTL "
            f"(PLATFORM_FAULT_MAX_TTL_SECONDS={max_ttl})",
        )
    options = body.model_dump(exclude={"kind", "ttl_seconds"})
    fault = platform.faults.add(Fault.new(body.kind, ttl_seconds=float(body.ttl_seconds), **options))
    platform.metrics.faults_active.labels(kind=fault.kind).inc()
    return FaultView.model_validate(fault.to_dict())


@router.get("/v1/admin/faults", responses=problems(401, 403))
def list_faults(platform: PlatformDep) -> FaultList:
    """The faults in force."""
    return FaultList.model_validate({"faults": [f.to_dict() for f in platform.faults.active()]})


@router.delete(
    "/v1/admin/faults",
    responses=problems(
        401,
        403,
        422,
        503,
        descriptions={
            **WRITE_BLOCKED,
            422: "A query value is too long or holds control characters (`validation`).",
        },
    ),
)
def clear_faults(
    platform: PlatformDep,
    kind: Annotated[
        str | None, Query(max_length=32, pattern=PLAIN_TEXT, description="Clear only the faults of this kind.")
    ] = None,
    id: Annotated[
        str | None, Query(max_length=64, pattern=PLAIN_TEXT, description="Clear only the fault with this id.")
    ] = None,
    actor: Annotated[
        str, Query(max_length=100, pattern=PLAIN_TEXT, description="Who cleared the faults (for the audit log).")
    ] = "admin",
) -> FaultsCleared:
    """Clear every fault, or those of one `kind`, or the one with `id`."""
    cleared = platform.faults.clear(kind=kind, fault_id=id, actor=actor)
    for fault in cleared:
        platform.metrics.faults_active.labels(kind=fault.kind).dec()
    return FaultsCleared.model_validate({"cleared": [f.to_dict() for f in cleared]})
