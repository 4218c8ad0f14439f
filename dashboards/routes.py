"""The dashboard's own HTTP routes, beside Streamlit's (mounted by `dashboards.webapp`):

    GET /api/session/claim?nonce=N   sets (or clears) the cookie a page registered under N: 204
    GET /api/exports/{key}           an export, to the browser it was prepared for; each fetch is an
                                     `access` entry naming the user, the export and its sha256

Both answer only what `dashboards.handoff` holds; errors are application/problem+json.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from controlplane.auditing import AuditUnavailable, audit_append
from controlplane.clock import utcnow
from controlplane.settings import Settings
from controlplane.storage import make_engine
from controlplane.users import session_user
from dashboards.handoff import CLAIMS, GRANT_COOKIE, GRANTS, SERVED, SESSION_COOKIE, SHELF, Grantee, digest

PROBLEM_JSON = "application/problem+json"
NO_STORE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
_engines: dict[tuple[str, tuple[tuple[str, int], ...]], Engine] = {}  # one per store URL (tests change it)
_lock = threading.Lock()


def _settings() -> Settings:
    return Settings()


def _store() -> Engine:
    settings = _settings()
    key = (settings.store_url, tuple(sorted(settings.engine_options().items())))
    with _lock:
        engine = _engines.get(key)
        if engine is None:
            engine = _engines[key] = make_engine(settings.store_url, **settings.engine_options())
        return engine


def close_engines() -> None:
    """Dispose the store engines these routes opened (a test's database is about to go)."""
    with _lock:
        while _engines:
            _engines.popitem()[1].dispose()


def problem(status: int, slug: str, title: str, detail: str) -> Response:
    body = {"type": f"/problems/{slug}", "title": title, "status": status, "detail": detail}
    return Response(json.dumps(body), status_code=status, media_type=PROBLEM_JSON, headers=NO_STORE)


def secure(request: Request) -> bool:
    """Whether the browser reaches the dashboard over https (the request, or CONTROLPLANE_DASHBOARD_URL)."""
    return request.url.scheme == "https" or _settings().dashboard_url.lower().startswith("https:")


async def claim(request: Request) -> Response:
    found = CLAIMS.take(request.query_params.get("nonce", ""))
    if found is None:
        return problem(404, "unknown-claim", "Unknown claim", "this address is for one use within a minute; reload")
    response = Response(status_code=204, headers=NO_STORE)
    response.set_cookie(
        found.cookie,
        found.value,
        max_age=found.max_age,
        path="/",
        secure=secure(request),
        httponly=True,
        samesite="strict",
    )
    return response


def viewer(cookies: dict[str, str]) -> tuple[Grantee | None, str]:
    """Who the browser is, from its cookies (a live local session, or a single-sign-on grant), and the
    digest its exports are bound to."""
    token = cookies.get(SESSION_COOKIE)
    if token:
        user = session_user(_store(), token, utcnow())
        if user is not None:
            return Grantee(user.username, user.role, "local"), digest(token)
    grant = cookies.get(GRANT_COOKIE)
    if grant and (grantee := GRANTS.find(grant)) is not None:
        return grantee, digest(grant)
    return None, ""


async def export(request: Request) -> Response:
    return await run_in_threadpool(serve_export, request.path_params["key"], dict(request.cookies))


def serve_export(key: str, cookies: dict[str, str]) -> Response:
    who, owner = viewer(cookies)
    if who is None:
        return problem(401, "unauthenticated", "Sign in first", "sign in on the dashboard, then fetch the export there")
    item = SHELF.get(key)
    if item is None or item.owner != owner:  # another browser's export is as unknown as an expired one
        return problem(404, "unknown-export", "Unknown export", "exports last 15 minutes; prepare it again on its page")
    if who.role not in item.roles:
        return problem(403, "forbidden", "Not for your role", f"the {who.role} role may not take this export")
    payload: dict[str, Any] = {
        "type": "export",
        "what": item.what,
        "via": "dashboard",
        "file": item.file_name,
        "sha256": item.sha256,
        "bytes": len(item.data),
        **item.detail,
    }
    try:
        audit_append(_settings(), kind="access", actor=who.username, subject=f"export:{item.what}", payload=payload)
    except AuditUnavailable:
        return problem(503, "audit-unavailable", "Not recorded", "the audit log cannot record this export; retry")
    headers = {**NO_STORE, "Content-Disposition": f'attachment; filename="{item.file_name}"'}
    return Response(item.data, media_type=item.mime, headers=headers)


def routes() -> list[BaseRoute]:
    """The routes, for `st.App`; mounting them tells the pages they are served (`handoff.SERVED`)."""
    SERVED.set()
    return [Route("/api/session/claim", claim), Route("/api/exports/{key}", export)]
