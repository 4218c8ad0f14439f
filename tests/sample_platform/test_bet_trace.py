"""One bet, one trace (and its log line): the real OTLP/HTTP exporter of a platform process sends its
spans to a capturing receiver; a placed bet's trace holds the API, idempotency, risk, ledger and outbox spans with the bet's
attributes, the outbox relay and the audit log's append link back to it, settlement links to every
placement, the response names the trace (`traceparent`), and a refusal's problem body carries its
trace id. No username or token becomes a span attribute."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from sample_platform.client import PlatformClient
from tests.conftest import ADMIN_TOKEN, bet_body
from tests.support import PlatformProcess, wait_until


class _Capture(BaseHTTPRequestHandler):
    spans: list[dict[str, Any]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path == "/v1/traces":
            request = ExportTraceServiceRequest.FromString(body)
            for resource in request.resource_spans:
                for scope in resource.scope_spans:
                    for span in scope.spans:
                        attributes = {a.key: _value(a.value) for a in span.attributes}
                        self.server.spans.append(
                            {
                                "name": span.name,
                                "trace_id": span.trace_id.hex(),
                                "span_id": span.span_id.hex(),
                                "parent": span.parent_span_id.hex(),
                                "attributes": attributes,
                                "links": [(link.trace_id.hex(), link.span_id.hex()) for link in span.links],
                            }
                        )
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def _settled_in_audit(url: str) -> int:
    """Settlement entries the outbox relay has appended to the audit log so far."""
    from audit.query import find_entries
    from controlplane.storage import make_engine

    engine = make_engine(url)
    try:
        return sum(1 for e in find_entries(engine, kind="money") if e.payload.get("type") in ("payout", "bet_lost"))
    except Exception:  # the platform has not created the log's tables yet
        return 0
    finally:
        engine.dispose()


def _value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


@pytest.fixture
def capture() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Capture)
    server.spans = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=30)


def test_a_bet_is_one_trace_named_by_its_response(
    capture: ThreadingHTTPServer, tmp_path: Path, database_url: str
) -> None:
    control_plane = f"sqlite:///{tmp_path / 'controlplane.db'}"  # the audit log the outbox delivers to
    platform = PlatformProcess(
        database_url,
        tmp_path / "outbox.jsonl",
        PLATFORM_OTLP_ENDPOINT=f"http://127.0.0.1:{capture.server_address[1]}",
        CONTROLPLANE_OUTBOX_SINK="audit",
        CONTROLPLANE_AUDIT_URL=control_plane,
        CONTROLPLANE_STORE_URL=control_plane,
        CONTROLPLANE_AUDIT_KEY_DIR=str(tmp_path / "keys"),
    )
    username = f"t{uuid.uuid4().hex[:8]}"
    try:
        admin = PlatformClient(platform.url, admin_token=ADMIN_TOKEN)
        player = admin.create_account(username)
        admin.deposit(player["id"], 1_000_000)
        market = admin.create_market("Trace cup", [("A", "2.00"), ("B", "2.00")])
        placed = admin.place_bet(player["token"], bet_body(market, stake=100))
        refused = admin.place_bet(player["token"], bet_body(market, stake=100, market_id=999_999))
        more = [admin.place_bet(player["token"], bet_body(market, stake=100)) for _ in range(49)]
        admin.result(market["id"], winner_selection_id=market["selections"][0]["id"])
        wait_until(lambda: _settled_in_audit(control_plane) >= 50, "the outbox relayed the settlements")
        admin.close()
    finally:
        platform.stop()  # SIGTERM: the exporter flushes on the way out
    assert placed.status_code == 201 and refused.status_code == 422, refused.text
    version, trace_id, span_id, flags = placed.headers["traceparent"].split("-")
    assert version == "00" and len(trace_id) == 32 and int(flags, 16) & 1  # sampled
    spans = [s for s in capture.spans if s["trace_id"] == trace_id]
    names = {s["name"] for s in spans}
    assert {"POST /v1/bets", "idempotency claim", "risk check", "ledger commit", "outbox write"} <= names, names
    server = next(s for s in spans if s["name"] == "POST /v1/bets")
    assert server["span_id"] == span_id  # the header names the server span
    assert server["attributes"]["bet.id"] == placed.json()["id"] and server["attributes"]["bet.outcome"] == "placed"
    assert server["attributes"]["bet.market_id"] == market["id"]
    outbox = next(s for s in spans if s["name"] == "outbox write")
    assert outbox["attributes"]["bet.id"] == placed.json()["id"]

    refusal = refused.json()
    assert refusal["trace_id"] == refused.headers["traceparent"].split("-")[1]
    refused_server = next(
        s for s in capture.spans if s["trace_id"] == refusal["trace_id"] and s["name"] == "POST /v1/bets"
    )
    assert refused_server["attributes"]["bet.outcome"] == "refused"
    assert refused_server["attributes"]["problem.type"] == refusal["type"].removeprefix("/problems/")
    # The relay's span, and the audit log's append span, link to the request that wrote each event.
    for name in ("outbox relay", "audit append"):
        links = {link for s in capture.spans if s["name"] == name for link in s["links"]}
        assert any(t == trace_id for t, _span in links), f"no {name} span links to the bet's request"
    # Settling the market's 50 bets (in batches): its spans link to every placement.
    placements = {r.headers["traceparent"].split("-")[1] for r in [placed, *more]}
    assert len(placements) == 50 and all(r.status_code == 201 for r in more)
    settled = {t for s in capture.spans if s["name"] == "settlement batch" for t, _span in s["links"]}
    assert placements <= settled, len(placements - settled)
    # The platform's JSON log line of the refusal carries the same trace and span ids as its response.
    lines = [json.loads(line) for line in platform.log.read_text().splitlines() if line.startswith("{")]
    (line,) = [x for x in lines if x.get("trace_id") == refusal["trace_id"]]
    assert line["msg"].startswith("request refused") and line["problem.type"] == "unknown-market"
    assert line["span_id"] == refused.headers["traceparent"].split("-")[2] and line["level"] == "INFO"
    for secret in (username, player["token"], ADMIN_TOKEN):
        assert secret not in platform.log.read_text(), "a username or token reached the platform's log"
    everything = repr(capture.spans)
    assert username not in everything and player["token"] not in everything
