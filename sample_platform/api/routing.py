"""How the platform's routes read bodies and answer wrong methods.

`JsonBodyRoute` reads every body as JSON, as the platform always has: whatever the Content-Type says,
with decimals kept exact, and a body that is not JSON is 400 `malformed-json` (after authentication,
like any other body error). `method_not_allowed` answers 405 with every method the path answers in `Allow`.
`route_class` says which in-flight bound a route counts against.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Coroutine, Iterable
from decimal import Decimal
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import BaseRoute, Route

from sample_platform.problems import Problem, http_problem

Handler = Callable[[Request], Coroutine[Any, Any, Response]]
ExceptionHandler = Callable[[Request, Exception], Coroutine[Any, Any, Response]]
# Stands in for a body that is not JSON: FastAPI refuses it as missing, and we answer 400 instead.
_NOT_JSON = None


MAX_JSON_DEPTH = 32  # no body of this API nests beyond 3; refused before parsing could recurse
_STRUCTURE = re.compile(rb'[\[\]{}"\\]')


def json_depth(body: bytes) -> int:
    """How deep arrays and objects nest in `body`, brackets inside strings not counted (no parsing)."""
    depth = deepest = 0
    in_string = escaped = False
    last = -2
    for match in _STRUCTURE.finditer(body):
        char, position = match.group(), match.start()
        if in_string:
            if escaped and position == last + 1:
                escaped = False
            elif char == b"\\":
                escaped, last = True, position
            elif char == b'"':
                in_string = False
            continue
        if char == b'"':
            in_string, escaped = True, False
        elif char in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        elif char in (b"]", b"}"):
            depth -= 1
    return deepest


class _ParsedJsonRequest(Request):
    """A request whose body was already read and parsed by `JsonBodyRoute`."""

    def __init__(self, request: Request, body: bytes, document: Any) -> None:
        super().__init__(request.scope, request.receive)
        self._read_body = body
        self._document = document
        raw = [(k, v) for k, v in request.scope["headers"] if k != b"content-type"]
        self._json_headers = Headers(raw=[*raw, (b"content-type", b"application/json")])

    @property
    def headers(self) -> Headers:
        # FastAPI hands only JSON-typed bodies to validation, but clients such as `curl -d` send JSON
        # as form data and the platform has always accepted it: the body was parsed as JSON already.
        return self._json_headers

    async def body(self) -> bytes:
        return self._read_body

    async def json(self) -> Any:
        return self._document


class JsonBodyRoute(APIRoute):
    def get_route_handler(self) -> Handler:
        handle = super().get_route_handler()
        if self.body_field is None:
            return handle

        async def handle_json(request: Request) -> Response:
            try:
                body = await request.body()
            except ClientDisconnect as exc:
                # Nobody will read the answer; end the request quietly instead of as a server error.
                raise Problem(
                    400, "client-disconnected", "Client disconnected", "the client went away mid-request"
                ) from exc
            malformed: Problem | None = None
            try:
                if json_depth(body) > MAX_JSON_DEPTH:
                    raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels")
                document = json.loads(body, parse_float=Decimal)
            except (ValueError, RecursionError) as exc:
                document = _NOT_JSON
                malformed = Problem(
                    400,
                    "malformed-json",
                    "Malformed JSON",
                    f"the request body is not valid JSON ({exc}); send a JSON object",
                )
            try:
                return await handle(_ParsedJsonRequest(request, body, document))
            except RequestValidationError:
                # Dependencies (authentication, Idempotency-Key) ran and passed: now the body's turn.
                if malformed is not None:
                    raise malformed from None
                raise

        return handle_json


def method_not_allowed(routes: Iterable[BaseRoute]) -> ExceptionHandler:
    """The 405 handler: `Allow` lists every method some route answers on the path.

    The framework's own 405 names only the methods of the first route whose path matches, and every
    method of a path is a route of its own here (or nothing at all, for routes of included routers)."""
    by_pattern = [(route.path_regex, route.methods) for route in routes if isinstance(route, Route) and route.methods]

    async def answer(request: Request, exc: Exception) -> Response:
        path = request.scope["path"]
        allowed = sorted({method for pattern, methods in by_pattern if pattern.match(path) for method in methods})
        detail = exc.detail if isinstance(exc, HTTPException) else "Method Not Allowed"
        problem = http_problem(405, str(detail))
        problem.headers = {"Allow": ", ".join(allowed)}
        return problem.response(request.url.path)

    return answer


NEVER_SHED = frozenset({"/v1/health", "/metrics", "/v1/admin/faults", "/v1/odds/stream", "/", "/openapi.json", "/docs"})


def route_class(method: str, template: str) -> str | None:
    """Which in-flight bound a route's requests count against; None: never shed (no database, or the
    switches a game day is stopped with)."""
    if template in NEVER_SHED or template.startswith("/docs"):
        return None
    if (method, template) == ("POST", "/v1/bets"):
        return "bets"
    return "reads" if method in ("GET", "HEAD") else "writes"
