"""Synthetic requests: probes (a readiness checklist, a game-day drill) mark themselves with a header.

    synthetic_label(scope)   # "checklist" for `X-Synthetic: checklist`; None for a player's request

A synthetic request is served like any other but kept apart from what measures and serves players:
its server span carries the OpenTelemetry attribute `user_agent.synthetic.type = "test"`, it is left
out of the SLO metrics (counted in `platform_synthetic_requests_total` instead), it has an admission
pool of its own, and only it is touched by `synthetic_only` faults. So the header counts only with a
probe's credentials (`SyntheticGate`): `X-Probe-Token: <one of PLATFORM_PROBE_TOKENS, or the admin
token>`. From anyone else it is ignored, and counted: a client cannot hide its traffic from the SLIs
nor have its failures taken for probes'.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

HEADER = "X-Synthetic"
SCOPE_KEY = "platform.synthetic"  # the label, or None: read once, then kept for the other middleware
SYNTHETIC_TYPE_ATTRIBUTE = "user_agent.synthetic.type"  # OpenTelemetry semantic conventions
SYNTHETIC_TYPE = "test"
PROBE_HEADER = "X-Probe-Token"
_HEADER_NAME = HEADER.lower().encode()
_PROBE_HEADER_NAME = PROBE_HEADER.lower().encode()


def synthetic_label(scope: Scope) -> str | None:
    """The request's `X-Synthetic` label (the first non-empty one), or None when it is not synthetic."""
    if SCOPE_KEY not in scope:
        label = None
        for name, value in scope.get("headers", ()):
            if name.lower() == _HEADER_NAME and (text := value.decode("latin-1").strip()):
                label = text
                break
        scope[SCOPE_KEY] = label
    return scope[SCOPE_KEY]


def is_synthetic(scope: Scope) -> bool:
    return synthetic_label(scope) is not None


class SyntheticGate:
    """Outermost middleware: a request's X-Synthetic label stands only with a probe token in X-Probe-Token
    (compared with each of `tokens` in constant time); without one it is dropped and `ignored()` called,
    before any other middleware reads it."""

    def __init__(self, app: ASGIApp, *, tokens: list[str], ignored: Callable[[], None]) -> None:
        self.app = app
        self.tokens = [t.encode() for t in tokens if t]
        self.ignored = ignored

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and synthetic_label(scope) is not None:
            presented = b""
            for name, value in scope.get("headers", ()):
                if name.lower() == _PROBE_HEADER_NAME:
                    presented = value.strip()
                    break
            if not any([hmac.compare_digest(presented, token) for token in self.tokens]):
                scope[SCOPE_KEY] = None
                self.ignored()
        await self.app(scope, receive, send)
