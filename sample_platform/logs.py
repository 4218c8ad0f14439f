"""The platform's log lines: JSON (one object per line, the default for `platform serve`) or text, each
with the trace and span ids of the span it was written in (OpenTelemetry's log correlation), so a
line leads to its trace and a trace to its lines. No personal data: attributes named like a secret or
a person (password, token, username, account id, authorization) are redacted at the formatter, and
bearer tokens in a message are masked.

Usage:

    setup_logging("json")                     # once per process, before serving
    log.info("request refused", extra={"problem.type": "price-changed", "http.route": "/v1/bets"})
    # {"ts": "2026-12-05T09:10:00.123Z", "level": "INFO", "logger": "sample_platform.problems",
    #  "msg": "request refused", "trace_id": "4bf9...", "span_id": "00f0...", "problem.type": ...}
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any, Literal

from opentelemetry import trace

LogFormat = Literal["json", "text"]
REDACTED = "[redacted]"
SECRET_KEYS = re.compile(r"password|passwd|token|secret|authorization|username|account_id|api_key", re.I)
BEARER = re.compile(r"(Bearer\s+)[A-Za-z0-9._~+/=-]+", re.I)
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def _ids() -> dict[str, str]:
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return {}
    return {"trace_id": f"{context.trace_id:032x}", "span_id": f"{context.span_id:016x}"}


def _attributes(record: logging.LogRecord) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in vars(record).items():
        if key in _STANDARD or key.startswith("_"):
            continue
        out[key] = REDACTED if SECRET_KEYS.search(key) else value
    return out


def scrub(text: str) -> str:
    return BEARER.sub(r"\1" + REDACTED, text)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        doc: dict[str, Any] = {"ts": ts, "level": record.levelname, "logger": record.name,
                               "msg": scrub(record.getMessage()), **_ids(), **_attributes(record)}  # fmt: skip
        if record.exc_info:
            doc["exception"] = scrub(self.formatException(record.exc_info))
        return json.dumps(doc, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ids = _ids()
        where = f" trace={ids['trace_id']} span={ids['span_id']}" if ids else ""
        attrs = " ".join(f"{k}={v}" for k, v in _attributes(record).items())
        ts = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%d %H:%M:%S")
        line = f"{ts}Z {record.levelname} {record.name}{where}: {scrub(record.getMessage())}"
        line += f" {attrs}" if attrs else ""
        if record.exc_info:
            line += "\n" + scrub(self.formatException(record.exc_info))
        return line


class Redact(logging.Filter):
    """Scrubs a record in place before any handler sees it: attributes named like a secret or a person
    are replaced and bearer tokens in the message masked, so no exporter (OTLP included) gets them."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key in list(vars(record)):
            if key not in _STANDARD and not key.startswith("_") and SECRET_KEYS.search(key):
                setattr(record, key, REDACTED)
        message = record.getMessage()
        masked = scrub(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def setup_logging(fmt: LogFormat = "json", level: int = logging.INFO) -> None:
    """One handler on the root logger, to standard error, in `fmt`; replaces any handler already there."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(Redact())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
