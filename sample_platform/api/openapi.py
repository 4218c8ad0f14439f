"""What the OpenAPI document says about errors: the `Problem` schema (RFC 9457), the problem responses
each route declares, and the one pass that files them under application/problem+json."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from sample_platform.api.routing import route_class
from sample_platform.middleware import UNTIMED_PATHS
from sample_platform.problems import PROBLEM_JSON
from sample_platform.schemas import MAX_ID

ResponseDocs = dict[int | str, dict[str, Any]]
# Optional members are left out of a problem, never sent as null.
Absent = SkipJsonSchema[None]

PROBLEM_DESCRIPTIONS = {
    400: "The body is not JSON (`malformed-json`), or a required header is missing or malformed.",
    401: "No bearer token, or one the platform does not know (`unauthenticated`).",
    403: "A valid token that may not call this route (`forbidden`): admin routes need the admin token.",
    404: "The resource named in the path or the body does not exist.",
    408: "The body did not arrive whole within `PLATFORM_BODY_READ_TIMEOUT_SECONDS` (`body-timeout`): it is "
    "read before the request takes a place in any in-flight bound. Send it at once.",
    409: "The request conflicts with the current state; `type` says how.",
    413: "The body is larger than `PLATFORM_MAX_BODY_BYTES` (`body-too-large`).",
    422: "Not valid: `validation` names each bad field in `errors`; other types name the rule refused.",
    429: "Too many requests (`too-many-requests`: past this player's in-flight cap or rate for this kind of "
    "route, or past the cap for requests without a valid token from one address; or a login or bet limit). "
    "Retry after `Retry-After` seconds.",
    503: "Overloaded, database busy or a game-day fault; nothing was written. Retry after `Retry-After` seconds.",
    504: "No answer within `PLATFORM_REQUEST_TIMEOUT_SECONDS` (`timeout`, retryable); the work may still "
    "complete: retry (bets: with the same Idempotency-Key).",
}
MALFORMED_HTTP = (
    "A request that is not valid HTTP (a control character in a header or the target) is refused in "
    "plain text by the HTTP server, before any route runs."
)
RETRY_AFTER = {"description": "Seconds to wait before retrying.", "schema": {"type": "integer", "minimum": 0}}
PROBLEM_HEADERS: dict[int, dict[str, Any]] = {
    401: {
        "WWW-Authenticate": {
            "description": "`Bearer` when the token is missing or unknown.",
            "schema": {"type": "string"},
        }
    },
    409: {"Retry-After": RETRY_AFTER},
    429: {"Retry-After": RETRY_AFTER | {"required": True}},
    503: {"Retry-After": RETRY_AFTER | {"required": True}},
    504: {"Retry-After": RETRY_AFTER | {"required": True}},
}


class FieldError(BaseModel):
    field: str = Field(description='Where the bad value is: a body field ("stake_minor"), "path.market_id", or "body".')
    message: str


class Problem(BaseModel):
    """An error a client can act on (RFC 9457). Members beyond the standard five depend on `type`."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(
        description='"/problems/<slug>" naming the problem, or "about:blank" when the status code says it all.',
        examples=["/problems/stake-limit"],
    )
    title: str
    status: int = Field(ge=400, le=599)
    detail: str = Field(description="What went wrong for this request, and how to fix it.")
    instance: str | Absent = Field(default=None, description="The path of the request.")
    errors: list[FieldError] | Absent = Field(default=None, description="`validation`: one entry per bad field.")
    retryable: bool | Absent = Field(default=None, description="True when the same request may simply be retried.")
    limit: str | Absent = Field(default=None, description="Risk and login limits: the limit that refused the request.")
    limit_value: int | Absent = Field(default=None, description="Risk limits: the value of that limit.")
    current_odds: str | Absent = Field(default=None, description="`price-changed`: the selection's odds now.")
    current_price_version: int | Absent = Field(default=None, description="`price-changed`: the market's version now.")


def problems(*statuses: int, descriptions: dict[int, str] | None = None) -> ResponseDocs:
    """The `responses=` entries for these problem statuses, with a route's own `descriptions` for some."""
    docs: ResponseDocs = {}
    for status in statuses:
        entry: dict[str, Any] = {
            "model": Problem,
            "description": (descriptions or {}).get(status, PROBLEM_DESCRIPTIONS[status]),
        }
        if status in PROBLEM_HEADERS:
            entry["headers"] = PROBLEM_HEADERS[status]
        docs[status] = entry
    return docs


def platform_openapi(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document, with every error response under application/problem+json."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title,
        version=app.version,
        openapi_version=app.openapi_version,
        description=app.description,
        routes=app.routes,
        tags=app.openapi_tags,
    )
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            responses = operation.get("responses", {})
            if not path.startswith(UNTIMED_PATHS):  # any other route may time out
                responses.setdefault("504", _timeout_response())
            # FastAPI adds its own 422 to any route with parameters. Routes whose parameters can be
            # refused document theirs as a Problem; the rest (free-text query strings) never send one.
            if _is_fastapi_validation_error(responses.get("422")):
                del responses["422"]
            if "413" in responses:  # a route that takes a body: it may come too slowly, too
                responses.setdefault("408", _timeout_response(408))
            for method in operations:
                if route_class(method.upper(), path) is not None:  # admitted: per-client limits and bounds
                    responses.setdefault("429", _timeout_response(429))
                    responses.setdefault("503", _timeout_response(503))
            for status, response in responses.items():
                content = response.get("content", {})
                # FastAPI files every `model=` response under the route's media type; errors are not JSON.
                if status[0] in "45" and "application/json" in content:
                    content[PROBLEM_JSON] = content.pop("application/json")
            _document_malformed_http(responses)
    components = schema.get("components", {}).get("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
    _exact_integer_bounds(schema)
    app.openapi_schema = schema
    return schema


_BOUNDS = ("maximum", "minimum", "exclusiveMaximum", "exclusiveMinimum")
_EXACT = {float(bound): bound for bound in (MAX_ID,)}  # bounds past 2**53 that a float would round


def _exact_integer_bounds(node: Any) -> None:
    """Integer bounds as integers: FastAPI's document model carries them as floats, and 2**63 - 1 as a
    float is 2**63, a value the server refuses (a client generating from the document would send it)."""
    if isinstance(node, dict):
        if node.get("type") == "integer":
            for key in _BOUNDS:
                value = node.get(key)
                if isinstance(value, float) and value.is_integer():
                    node[key] = _EXACT.get(value, int(value))
        for child in node.values():
            _exact_integer_bounds(child)
    elif isinstance(node, list):
        for child in node:
            _exact_integer_bounds(child)


def _timeout_response(status: int = 504) -> dict[str, Any]:
    return {
        "description": PROBLEM_DESCRIPTIONS[status],
        "headers": PROBLEM_HEADERS.get(status, {}),
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


def _document_malformed_http(responses: dict[str, Any]) -> None:
    """Any route may get a request that is not valid HTTP (a NUL in a header, say): the HTTP server
    refuses it with a plain-text 400 before any route runs, so every route documents that answer."""
    refused = responses.setdefault("400", {"description": MALFORMED_HTTP})
    if refused["description"] != MALFORMED_HTTP:
        refused["description"] += f" {MALFORMED_HTTP}"
    refused.setdefault("content", {})["text/plain"] = {"schema": {"type": "string"}}


def _is_fastapi_validation_error(response: dict[str, Any] | None) -> bool:
    schema = (response or {}).get("content", {}).get("application/json", {}).get("schema", {})
    return bool(schema.get("$ref", "").endswith("/HTTPValidationError"))
