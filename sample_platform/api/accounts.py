"""Player routes for the account itself: logging in and reading the wallet."""

from __future__ import annotations

from fastapi import APIRouter, Request

from sample_platform import accounts
from sample_platform.api.deps import PlatformDep, PlayerId
from sample_platform.api.openapi import problems
from sample_platform.api.routing import JsonBodyRoute
from sample_platform.db import reader
from sample_platform.login import login
from sample_platform.problems import Problem
from sample_platform.schemas import LoginRequest, LoginSession, WalletView

router = APIRouter(route_class=JsonBodyRoute, tags=["player"])


@router.post(
    "/v1/login",
    responses=problems(
        400,
        401,
        413,
        422,
        429,
        503,
        descriptions={
            401: "The username or password is wrong (`invalid-credentials`).",
            429: "Too many attempts for the account or from the address, or the account is locked "
            "after repeated failures; `limit` says which.",
        },
    ),
)
def log_in(request: Request, body: LoginRequest, platform: PlatformDep) -> LoginSession:
    """Exchange username and password for a short-lived bearer token.

    Limits: attempts per account and per client address per minute (429 with Retry-After), and
    a lockout after `PLATFORM_LOGIN_MAX_FAILURES` consecutive wrong passwords."""
    address = request.client.host if request.client else "unknown"
    metrics = platform.metrics
    try:
        token, expires_at = login(
            platform.engine, platform.login_policy, username=body.username, password=body.password, address=address
        )
    except Problem as problem:
        outcome = problem.extensions.get("limit", problem.slug)
        metrics.login_attempts.labels(outcome=outcome).inc()
        if problem.status == 429:
            metrics.rate_limited.labels(limit=outcome).inc()
        raise
    metrics.login_attempts.labels(outcome="ok").inc()
    return LoginSession(token=token, expires_at=expires_at.isoformat(), token_type="Bearer")


@router.get("/v1/wallet", responses=problems(401, 503))
def wallet(account_id: PlayerId, platform: PlatformDep) -> WalletView:
    with reader(platform.engine).begin() as conn:
        return WalletView(account_id=account_id, **accounts.wallet(conn, account_id))
