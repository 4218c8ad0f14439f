"""Synthetic requests: probes (a readiness checklist, a game-day drill) mark themselves with a header.

    synthetic_label(scope)   # "checklist" for `X-Synthetic: checklist`; None for a player's request

A synthetic request is served like any other but kept apart from what measures and serves players:
its server span carries the OpenTelemetry attribute `user_agent.synthetic.type = "test"`, it is left
out of the SLO metrics (counted in `platform_synthetic_requests_total` instead), it has an admission
pool of its own, and only it is touched by `synthetic_only` faults. The header is taken on trust:
a deployment facing untrusted clients strips it at its edge.
"""

from __future__ import annotations

from starlette.types import Scope

HEADER = "X-Synthetic"
SCOPE_KEY = "platform.synthetic"  # the label, or None: read once, then kept for the other middleware
SYNTHETIC_TYPE_ATTRIBUTE = "user_agent.synthetic.type"  # OpenTelemetry semantic conventions
SYNTHETIC_TYPE = "test"
_HEADER_NAME = HEADER.lower().encode()


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
