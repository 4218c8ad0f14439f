"""The one problem+json helper (RFC 9457) for every HTTP answer of the sample platform.

Usage:

    raise Problem(422, "stake-limit", "Stake above limit", "stake 500000 exceeds max_stake_minor 100000")
"""

from __future__ import annotations

import json
import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from opentelemetry import trace
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger(__name__)


class Problem(Exception):
    """An error a client can act on. `slug` names the problem type (`/problems/<slug>`)."""

    def __init__(
        self,
        status: int,
        slug: str,
        title: str,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.title = title
        self.detail = detail
        self.headers = headers or {}
        self.extensions = extensions

    def to_dict(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": f"/problems/{self.slug}" if self.slug != "about:blank" else "about:blank",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            body["instance"] = instance
        body.update(self.extensions)
        context = trace.get_current_span().get_span_context()
        if context.is_valid:  # a bettor's support ticket can name the trace (only when tracing is on)
            body.setdefault("trace_id", format(context.trace_id, "032x"))
        return body

    def body_text(self, instance: str | None = None) -> str:
        return json.dumps(self.to_dict(instance), separators=(",", ":"), default=str)

    def response(self, instance: str | None = None) -> Response:
        return Response(
            self.body_text(instance), status_code=self.status, media_type=PROBLEM_JSON, headers=self.headers
        )


def missing_token() -> Problem:
    return Problem(
        401,
        "unauthenticated",
        "Authentication required",
        "send Authorization: Bearer <token>",
        headers={"WWW-Authenticate": "Bearer"},
    )


def unknown_token() -> Problem:
    return Problem(
        401,
        "unauthenticated",
        "Unknown or expired token",
        "the bearer token is not valid; log in again with POST /v1/login",
        headers={"WWW-Authenticate": "Bearer"},
    )


def admin_only() -> Problem:
    return Problem(403, "forbidden", "Forbidden", "this call needs the admin token")


def database_busy() -> Problem:
    """Transient: nothing was committed, and a retry is safe."""
    return Problem(
        503,
        "database-busy",
        "Database busy",
        "the database did not answer in time; nothing was written, retry with the same Idempotency-Key",
        headers={"Retry-After": "1"},
        retryable=True,
    )


def http_problem(status: int, detail: str, **extensions: Any) -> Problem:
    """A problem with no type of its own (`about:blank`): the status code says it all."""
    return Problem(status, "about:blank", HTTPStatus(status).phrase, detail, **extensions)


def _describe_validation(exc: RequestValidationError) -> tuple[str, list[dict[str, Any]]]:
    errors = []
    for err in exc.errors():
        location = ".".join(str(part) for part in err.get("loc", ()) if part != "body")
        errors.append({"field": location or "body", "message": err.get("msg", "invalid")})
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors) or "the request is not valid"
    return detail, errors


def install_problem_handlers(app: FastAPI) -> None:
    """Make every error leave the app as problem+json: ours, the framework's, and the unexpected."""

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> Response:
        route = getattr(request.scope.get("route"), "path", None)
        log.info(
            "request refused: %s",
            exc.title,
            extra={"problem.type": exc.slug, "http.response.status_code": exc.status, "http.route": route},
        )
        return exc.response(request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        detail, errors = _describe_validation(exc)
        problem = Problem(422, "validation", "Request is not valid", detail, errors=errors)
        return problem.response(request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        problem = http_problem(exc.status_code, str(exc.detail))
        problem.headers = dict(exc.headers or {})
        return problem.response(request.url.path)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return http_problem(500, "an unexpected error occurred; it has been logged").response(request.url.path)
