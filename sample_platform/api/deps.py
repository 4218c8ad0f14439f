"""Dependencies of the routes: the shared `Platform`, who is calling (admin or player), the
Idempotency-Key, and the request body exactly as the client sent it."""

from __future__ import annotations

import hmac
from typing import Annotated, Any, cast

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine

from sample_platform import accounts
from sample_platform.admission import CALLER_KEY, Caller
from sample_platform.api.platform import Platform
from sample_platform.db import reader
from sample_platform.idempotency import MAX_KEY_LENGTH, parse_key_header
from sample_platform.login import account_for_session
from sample_platform.problems import admin_only, missing_token, unknown_token

# auto_error=False: a missing or malformed header is answered by us, as problem+json.
admin_bearer = HTTPBearer(
    scheme_name="AdminToken", description="The admin token (`PLATFORM_ADMIN_TOKEN`).", auto_error=False
)
player_bearer = HTTPBearer(
    scheme_name="PlayerToken",
    description="A player's token: from `POST /v1/accounts` (long-lived) or `POST /v1/login` (a session).",
    auto_error=False,
)


def get_platform(request: Request) -> Platform:
    return cast(Platform, request.app.state.platform)


PlatformDep = Annotated[Platform, Depends(get_platform)]


def _caller(request: Request) -> Caller | None:
    """Who the admission gate found the caller to be, on the routes it bounds."""
    return cast(Caller | None, request.scope.get(CALLER_KEY))


def require_admin(
    request: Request,
    platform: PlatformDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(admin_bearer)],
) -> None:
    caller = _caller(request)
    if caller is not None:
        if caller.kind != "admin":
            raise admin_only() if caller.token_sent else missing_token()
        return
    if credentials is None:
        raise missing_token()
    admin = platform.settings.admin_token.get_secret_value().encode()
    if not hmac.compare_digest(credentials.credentials.encode(), admin):
        raise admin_only()


def current_player(
    request: Request,
    platform: PlatformDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(player_bearer)],
) -> int:
    """The id of the calling player's account (as the gate identified it, on the routes it bounds)."""
    caller = _caller(request)
    if caller is not None:
        if caller.kind != "player" or caller.account_id is None:
            raise unknown_token() if caller.token_sent else missing_token()
        return caller.account_id
    if credentials is None:
        raise missing_token()
    account_id = player_account(platform.engine, credentials.credentials)
    if account_id is None:
        raise unknown_token()
    return account_id


def player_account(engine: Engine, token: str) -> int | None:
    """The account of a player's long-lived token or of a live session; one indexed read each."""
    with reader(engine).connect() as conn:
        return accounts.account_for_token(conn, token) or account_for_session(conn, token)


AdminOnly = Depends(require_admin)
PlayerId = Annotated[int, Depends(current_player)]


def idempotency_key(request: Request) -> str:
    # Read by hand, not declared as a Header parameter: FastAPI would answer a missing key with 422,
    # and the draft standard (and our clients) expect 400. `IDEMPOTENCY_KEY_PARAMETER` documents it.
    return parse_key_header(request.headers.get("Idempotency-Key"))


IdempotencyKey = Annotated[str, Depends(idempotency_key)]

IDEMPOTENCY_KEY_PARAMETER: dict[str, Any] = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": True,
    "description": (
        f"1-{MAX_KEY_LENGTH} printable ASCII characters, bare or as a Structured Field string "
        '(`"a-fresh-uuid"`); a UUID is a good choice. Send the same key when you retry the same bet. '
        "Missing or malformed: 400."
    ),
    "example": "7f1c0a52-3f0e-4c8e-9a57-8f2b6e1d4c90",
    "schema": {
        "type": "string",
        # Quoted: any printable ASCII inside; bare: none of the surrounding spaces HTTP would strip.
        "pattern": (
            rf'^(?!""$)(?:"[\x20-\x7e]{{1,{MAX_KEY_LENGTH}}}"'
            rf"|[\x21-\x7e](?:[\x20-\x7e]{{0,{MAX_KEY_LENGTH - 2}}}[\x21-\x7e])?)$"
        ),
    },
}


async def json_document(request: Request) -> Any:
    """The body as parsed JSON (decimals kept exact), for fingerprinting what the client sent."""
    return await request.json()


JsonDocument = Annotated[Any, Depends(json_document)]
