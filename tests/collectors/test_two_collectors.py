"""Two collector processes on one store (PostgreSQL, and SQLite in WAL mode), fed at once by real
OpenTelemetry SDK exporters that split one stream of spans between them: the stored counts of every
slice add up exactly to what was sent, although both write the same slice-minutes concurrently."""

from __future__ import annotations

import random
import threading
from collections import Counter
from pathlib import Path

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode
from sqlalchemy import Engine, func, select

from controlplane.storage import make_engine
from controlplane.store import SliBucket, migrate_store
from tests.support import ServiceProcess

RESOURCE = Resource.create({"service.name": "sample-platform"})
ROUTES = ("POST /v1/bets", "POST /v1/login", "POST /v1/admin/markets/{market_id}/result", "GET /v1/markets")
SLICE_OF = {"POST /v1/bets": "bet-placement", "POST /v1/login": "login"}
SLICE_OF["POST /v1/admin/markets/{market_id}/result"] = "settlement"


def _send(url: str, seed: int, spans: int, sent: Counter, bad: Counter, lock: threading.Lock) -> None:
    provider = TracerProvider(resource=RESOURCE)
    provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{url}/v1/traces"), max_export_batch_size=50)
    )
    tracer = provider.get_tracer("test")
    rng = random.Random(seed)
    mine, mine_bad = Counter(), Counter()
    for _ in range(spans):
        name = rng.choice(ROUTES)
        status = rng.choice([200, 201, 201, 201, 422, 500])
        with tracer.start_as_current_span(
            name, kind=SpanKind.SERVER, attributes={"http.response.status_code": status}
        ) as span:
            if status >= 500:
                span.set_status(Status(StatusCode.ERROR))
        if name in SLICE_OF:
            mine[SLICE_OF[name]] += 1
            mine_bad[SLICE_OF[name]] += status >= 500
    assert provider.force_flush(60_000)
    provider.shutdown()
    with lock:
        sent.update(mine)
        bad.update(mine_bad)


def _totals(store: Engine) -> dict[str, tuple[int, int]]:
    t = SliBucket.__table__
    with store.connect() as conn:
        rows = conn.execute(select(t.c.slice, func.sum(t.c.total), func.sum(t.c.bad)).group_by(t.c.slice)).all()
    return {r[0]: (int(r[1]), int(r[2])) for r in rows}


def test_two_collectors_on_one_store_count_every_span_once(database_url: str, tmp_path: Path) -> None:
    store = make_engine(database_url)
    migrate_store(store)  # before both start, as an operator's deploy would
    env = {"CONTROLPLANE_STORE_URL": database_url, "CONTROLPLANE_COLLECTOR_KEEP_TRACES": "false"}
    collectors = [ServiceProcess("collector", env, tmp_path / f"collector-{n}.log", "/healthz") for n in range(2)]
    sent: Counter = Counter()
    bad: Counter = Counter()
    lock = threading.Lock()
    try:
        # Four exporters, two per collector, all sending the same minutes at once.
        senders = [
            threading.Thread(target=_send, args=(collectors[n % 2].url, n, 1500, sent, bad, lock)) for n in range(4)
        ]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join(timeout=300)
        assert sum(sent.values()) > 4000
    finally:
        for collector in collectors:
            collector.stop()
    assert _totals(store) == {name: (sent[name], bad[name]) for name in sent}
    store.dispose()
