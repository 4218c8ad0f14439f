"""The control plane's log lines (collector, scheduler): JSON objects by default, or text, each with
the trace and span ids of the span it was written in, and no secrets or names.

    setup_logging("json")   # once per server process
    # {"ts": "2026-12-05T12:30:00.123Z", "level": "INFO", "logger": "collectors.scraper",
    #  "msg": "scraped 2 targets", "trace_id": "4bf9...", "span_id": "00f0...", ...the record's extras}

JSON through python-json-logger; trace ids through OpenTelemetry's current span; scrubbing by a
filter on the handler, so every formatter and exporter gets the scrubbed record.
"""

from __future__ import annotations

import atexit
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any, Literal, TypedDict

from opentelemetry import trace
from pythonjsonlogger.json import JsonFormatter

LogFormat = Literal["json", "text"]


class LogExport(TypedDict):
    """`setup_logging`'s OTLP options (see `controlplane.cli.common.log_export`)."""

    otlp_endpoint: str
    otlp_headers: str
    service: str


REDACTED = "[redacted]"
SECRET_KEYS = re.compile(r"password|passwd|token|secret|authorization|username|account_id|api_key", re.I)
BEARER = re.compile(r"(Bearer\s+)[A-Za-z0-9._~+/=-]+", re.I)
USERINFO = re.compile(r"(://)[^/@\s:]+:[^/@\s]+@")  # credentials in a URL (a scrape target's, say)
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class NotAboutExporting(logging.Filter):
    """Keeps the OpenTelemetry SDK's and exporters' own records out of the OTLP log export (they still go
    to standard error): while the collector is unreachable, each failed export would queue its own
    warnings for export, and the buffer would never drain."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name == "opentelemetry" or record.name.startswith("opentelemetry."))


class Scrub(logging.Filter):
    """Adds the current span's ids to a record, redacts attributes named like a secret or a person and
    masks bearer tokens and URL credentials in the message."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            record.trace_id = f"{context.trace_id:032x}"
            record.span_id = f"{context.span_id:016x}"
        for key in list(vars(record)):
            if key not in _STANDARD and not key.startswith("_") and SECRET_KEYS.search(key):
                setattr(record, key, REDACTED)
        message = record.getMessage()
        masked = USERINFO.sub(r"\1" + REDACTED + "@", BEARER.sub(r"\1" + REDACTED, message))
        if masked != message:
            record.msg, record.args = masked, None
        return True


class _Json(JsonFormatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        moment = datetime.fromtimestamp(record.created, UTC)
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Text(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ids = getattr(record, "trace_id", None)
        where = f" trace={ids} span={getattr(record, 'span_id', '')}" if ids else ""
        ts = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%d %H:%M:%S")
        line = f"{ts}Z {record.levelname} {record.name}{where}: {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def formatter(fmt: LogFormat) -> logging.Formatter:
    if fmt == "text":
        return _Text()
    return _Json(
        "{asctime}{levelname}{name}{message}",
        style="{",
        rename_fields={"asctime": "ts", "levelname": "level", "name": "logger", "message": "msg"},
        json_ensure_ascii=False,
    )


def setup_logging(
    fmt: LogFormat = "json",
    *,
    level: int = logging.INFO,
    otlp_endpoint: str = "",
    otlp_headers: str = "",
    service: str = "controlplane",
) -> Any:
    """One handler on the root logger, to standard error, in `fmt`; replaces any handler already there.
    With `otlp_endpoint`, records also go out as OTLP logs (`{endpoint}/v1/logs`, `otlp_headers` as
    in OTEL_EXPORTER_OTLP_HEADERS), scrubbed the same way; returns that LoggerProvider (else None),
    whose buffer is flushed when the process exits."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(fmt))
    handler.addFilter(Scrub())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    if not otlp_endpoint:
        return None
    # local: the SDK's log pipeline and the exporter are needed only when exporting
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.instrumentation.logging.handler import LoggingHandler
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.util.re import parse_env_headers

    provider = LoggerProvider(resource=Resource.create({"service.name": service}))
    headers = parse_env_headers(otlp_headers, liberal=True) if otlp_headers else None
    exporter = OTLPLogExporter(endpoint=f"{otlp_endpoint.rstrip('/')}/v1/logs", headers=headers)
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
    exporting = LoggingHandler(level=level, logger_provider=provider)
    exporting.addFilter(NotAboutExporting())
    exporting.addFilter(Scrub())
    root.addHandler(exporting)
    atexit.register(provider.shutdown)
    return provider
