"""The platform's log lines: JSON or text, with the trace and span ids of the span they were written in,
and nothing that names a person or a secret."""

from __future__ import annotations

import io
import json
import logging

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from sample_platform.logs import REDACTED, JsonFormatter, TextFormatter


def _line(formatter: logging.Formatter, **extra: object) -> str:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    logger = logging.getLogger(f"test.logs.{id(formatter)}")
    logger.handlers, logger.propagate = [handler], False
    logger.setLevel(logging.INFO)
    tracer = TracerProvider().get_tracer("test")  # not the global provider: nothing else is touched
    with tracer.start_as_current_span("work") as span:
        logger.info("login for %s with Authorization: Bearer abc.DEF-123", "someone", extra=extra)
        context = span.get_span_context()
    return out.getvalue() + f"|{context.trace_id:032x}|{context.span_id:016x}"


def test_a_json_line_has_its_trace_and_no_secret() -> None:
    text, trace_id, span_id = _line(JsonFormatter(), username="ana", password="hunter2", account_id=7, market=3).split(
        "|"
    )
    doc = json.loads(text)
    assert doc["trace_id"] == trace_id and doc["span_id"] == span_id and doc["level"] == "INFO"
    assert doc["username"] == doc["password"] == doc["account_id"] == REDACTED and doc["market"] == 3
    assert "abc.DEF-123" not in text and "hunter2" not in text and "ana" not in text.replace("span", "")


@pytest.mark.parametrize("formatter", [TextFormatter(), JsonFormatter()])
def test_outside_a_span_a_line_has_no_ids(formatter: logging.Formatter) -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    record = logging.makeLogRecord({"msg": "relay waiting", "levelname": "WARNING", "name": "x"})
    assert trace.get_current_span().get_span_context().is_valid is False
    handler.emit(record)
    assert "trace" not in out.getvalue() and "relay waiting" in out.getvalue()


def test_a_text_line_names_its_trace() -> None:
    text, trace_id, _span = _line(TextFormatter(), token="t0k3n").split("|")
    assert f"trace={trace_id}" in text and "t0k3n" not in text and f"token={REDACTED}" in text
