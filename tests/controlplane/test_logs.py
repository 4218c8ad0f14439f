"""The control plane's log lines: JSON objects with the trace and span ids of their span, and no
secret, name or credential, in a running collector's output as in the formatter."""

from __future__ import annotations

import io
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.sdk.trace import TracerProvider

from controlplane.logs import Scrub, formatter, setup_logging
from tests.support import ServiceProcess, wait_until


def _capture(fmt: str) -> tuple[logging.Logger, io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter(fmt))  # type: ignore[arg-type]
    handler.addFilter(Scrub())
    logger = logging.getLogger(f"test.controlplane.logs.{fmt}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, out


def test_a_json_line_names_its_span_and_hides_secrets() -> None:
    logger, out = _capture("json")
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("scrape") as span:
        logger.warning(
            "target http://scraper:pa55word@10.0.0.9/metrics refused Bearer abc.DEF-123",
            extra={"username": "alice", "account_id": 42, "slice": "login"},
        )
    line = json.loads(out.getvalue())
    context = span.get_span_context()
    assert line["trace_id"] == f"{context.trace_id:032x}" and line["span_id"] == f"{context.span_id:016x}"
    assert {"ts", "level", "logger", "msg"} <= line.keys() and line["ts"].endswith("Z") and line["level"] == "WARNING"
    assert line["username"] == line["account_id"] == "[redacted]" and line["slice"] == "login"
    assert "pa55word" not in out.getvalue() and "abc.DEF-123" not in out.getvalue()
    assert "http://[redacted]@10.0.0.9/metrics" in line["msg"]


def test_a_text_line_outside_any_span_has_no_ids() -> None:
    logger, out = _capture("text")
    logger.info("scraped %d targets", 2)
    assert out.getvalue().rstrip().endswith("INFO test.controlplane.logs.text: scraped 2 targets")
    assert "trace=" not in out.getvalue()


def test_a_running_collector_logs_json_without_credentials(tmp_path: Path) -> None:
    env = {
        "CONTROLPLANE_STORE_URL": f"sqlite:///{tmp_path / 'store.db'}",
        "CONTROLPLANE_COLLECTOR_TOKENS": "collector-t0ken-secret",
        "CONTROLPLANE_SCRAPE_TARGETS": "http://scraper:scrape-pa55@127.0.0.1:1/metrics",
        "CONTROLPLANE_SCRAPE_INTERVAL_SECONDS": "0.2",
    }
    collector = ServiceProcess("collector", env, tmp_path / "collector.log", "/healthz")
    try:
        refused = httpx.post(
            f"{collector.url}/v1/traces",
            content=b"",
            headers={"Content-Type": "application/x-protobuf", "Authorization": "Bearer collector-t0ken-secret-not"},
        )
        assert refused.status_code == 401
        wait_until(lambda: "is down" in collector.log.read_text(), "the collector logged the scrape target down")
    finally:
        collector.stop()
    text = collector.log.read_text()
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    down = next(line for line in lines if "is down" in line["msg"])
    assert down["level"] == "WARNING" and down["logger"] == "collectors.scraper"
    assert "scrape-pa55" not in text and "collector-t0ken-secret" not in text


class _Capture(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.bodies.append((self.path, self.headers.get("Authorization"), body))  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_with_an_otlp_endpoint_lines_also_go_out_as_otlp_logs_scrubbed() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Capture)
    server.bodies = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    provider = None
    try:
        provider = setup_logging(
            "json",
            otlp_endpoint=f"http://127.0.0.1:{server.server_address[1]}",
            otlp_headers="Authorization=Bearer%20exporter-token",
            service="controlplane-scheduler",
        )
        tracer = TracerProvider().get_tracer("test")
        with tracer.start_as_current_span("slo-evaluation") as span:
            logging.getLogger("controlplane.scheduler").warning(
                "delivery to http://am:s3cret@alerts/ failed", extra={"token": "abc", "slo": "login"}
            )
        # An exporter's own complaint is not exported (it would feed the queue it is about).
        logging.getLogger("opentelemetry.exporter.otlp.proto.http._log_exporter").warning("Transient error")
        provider.force_flush()
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
        if provider is not None:
            provider.shutdown()
        server.shutdown()
        server.server_close()
        thread.join(timeout=30)
    ((_path, auth, body),) = [b for b in server.bodies if b[0] == "/v1/logs"]  # type: ignore[attr-defined]
    assert auth == "Bearer exporter-token"
    request = ExportLogsServiceRequest.FromString(body)
    resource = request.resource_logs[0]
    assert {kv.key: kv.value.string_value for kv in resource.resource.attributes}["service.name"] == (
        "controlplane-scheduler"
    )
    (record,) = [r for scope in resource.scope_logs for r in scope.log_records]
    assert record.trace_id.hex() == f"{span.get_span_context().trace_id:032x}"
    assert record.body.string_value == "delivery to http://[redacted]@alerts/ failed"
    attributes = {kv.key: kv.value.string_value for kv in record.attributes}
    assert attributes["token"] == "[redacted]" and attributes["slo"] == "login"
