"""A platform whose collector has gone away still stops when told to: what it could not export is
dropped after a bounded wait, and the exporters' own complaints are not queued for export themselves."""

from __future__ import annotations

import logging

import httpx
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

from controlplane.demo.stack import free_port
from sample_platform.telemetry import NotAboutExporting, exporting_handler
from tests.support import PlatformProcess, wait_until


def test_a_platform_whose_collector_is_gone_still_stops_on_sigterm(engine, database_url, tmp_path) -> None:
    gone = f"http://127.0.0.1:{free_port()}"  # nothing listens there: every export fails
    platform = PlatformProcess(
        database_url,
        tmp_path / "outbox.jsonl",
        PLATFORM_OTLP_ENDPOINT=gone,
        PLATFORM_OTLP_METRIC_INTERVAL_SECONDS="0.5",
    )
    try:
        with httpx.Client(base_url=platform.url, timeout=30) as http:
            for _ in range(20):
                assert http.get("/v1/markets").status_code == 200  # spans and log records to export
        wait_until(lambda: "Failed to export" in platform.log.read_text(), "an export to fail", timeout=120)
        platform.proc.terminate()
        code = platform.proc.wait(timeout=120)
    finally:
        if platform.proc.poll() is None:
            platform.proc.kill()
            platform.proc.wait(timeout=30)
    said = platform.log.read_text()
    assert code in (0, -15), said  # a clean stop (uvicorn may end by re-raising SIGTERM)
    assert "telemetry not exported" in said, said[-3000:]


def test_the_exporters_own_records_stay_out_of_the_export() -> None:
    exported = InMemoryLogRecordExporter()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exported))
    handler = exporting_handler(provider, logging.INFO)
    assert any(isinstance(f, NotAboutExporting) for f in handler.filters)
    logger = logging.getLogger("tests.exporting")
    sdk = logging.getLogger("opentelemetry.exporter.otlp.proto.http._log_exporter")
    for one in (logger, sdk):
        one.addHandler(handler)
        one.propagate = False
    try:
        logger.warning("a bet was refused")
        sdk.warning("Transient error, retrying")
    finally:
        for one in (logger, sdk):
            one.removeHandler(handler)
            one.propagate = True
    bodies = [record.log_record.body for record in exported.get_finished_logs()]
    assert bodies == ["a bet was refused"]
