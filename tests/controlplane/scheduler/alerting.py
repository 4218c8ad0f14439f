"""Test support for alert delivery: transitions written as the scheduler writes them, and a local
webhook receiver that answers from a script."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from sqlalchemy import Engine, insert

from controlplane.scheduler.tables import transitions_t

DETAIL = {
    "burn_rates": {"5m": 20.5, "30m": 9.0, "1h": 15.25, "6h": 4.0},
    "thresholds": {"page": [{"long": "1h", "short": "5m", "burn": 14.4}, {"long": "6h", "short": "30m", "burn": 6.0}]},
    "objective": 0.999,
    "budget_remaining": 0.82,
    "exemplars": ["4bf92f3577b34da6a3ce929d0e0e4736"],
}


def add_transition(
    engine: Engine,
    *,
    at: datetime,
    started_at: datetime | None = None,
    state: str = "firing",
    slo: str = "bet-placement-availability",
    severity: str = "page",
    slice: str = "bet-placement",
) -> str:
    """Store a transition as the SLO evaluation job does; returns its id."""
    transition_id = hashlib.sha256(f"{slo}|{severity}|{state}|{at.isoformat()}".encode()).hexdigest()[:32]
    with engine.begin() as conn:
        conn.execute(
            insert(transitions_t).values(
                id=transition_id,
                slo=slo,
                slice=slice,
                severity=severity,
                state=state,
                at=at,
                started_at=started_at or at,
                detail=json.dumps(DETAIL),
            )
        )
    return transition_id


@dataclass
class Received:
    body: dict
    headers: dict[str, str]
    status: int


@dataclass
class ScriptedReceiver:
    """Answers the n-th request with `statuses[n]` (the last one once the script runs out)."""

    statuses: list[int]
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def answer(self, body: dict, headers: dict[str, str]) -> int:
        with self.lock:
            status = self.statuses[min(len(self.received), len(self.statuses) - 1)]
            self.received.append(Received(body, headers, status))
            return status

    def accepted(self) -> list[Received]:
        with self.lock:
            return [r for r in self.received if 200 <= r.status < 300]


@contextmanager
def webhook_server(*statuses: int) -> Iterator[ScriptedReceiver]:
    receiver = ScriptedReceiver(list(statuses) or [200])

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"null")
            status = receiver.answer(body, {k.lower(): v for k, v in self.headers.items()})
            payload = b'{"ok": true}' if status < 300 else b'{"error": "scripted failure"}'
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/slo"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
