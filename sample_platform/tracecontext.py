"""W3C Trace Context for what outlives a request: the `traceparent` of the span at hand, kept with an
outbox event or a bet, and read back as a span context to link to (the relay's span links to the
requests behind the events it ships, settlement's spans to the placements of the bets it settles).

Usage:

    row["traceparent"] = current_traceparent()          # None while tracing is off
    span.add_link(linked) if (linked := span_context_of(row.traceparent)) else None
"""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.trace import SpanContext, TraceFlags

MAX_LINKS = 128  # the SDK's default span link limit: a bigger batch links its first 128


def traceparent_of(context: SpanContext) -> str | None:
    if not context.is_valid:
        return None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def current_traceparent() -> str | None:
    return traceparent_of(trace.get_current_span().get_span_context())


def span_context_of(traceparent: str | None) -> SpanContext | None:
    """The remote span context a stored `traceparent` names; None for none, or a malformed one."""
    if not traceparent:
        return None
    parts = traceparent.split("-")
    if len(parts) != 4 or parts[0] != "00" or len(parts[1]) != 32 or len(parts[2]) != 16:
        return None
    try:
        context = SpanContext(
            int(parts[1], 16), int(parts[2], 16), is_remote=True, trace_flags=TraceFlags(int(parts[3], 16))
        )
    except ValueError:
        return None
    return context if context.is_valid else None
