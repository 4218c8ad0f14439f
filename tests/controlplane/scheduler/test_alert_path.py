"""From telemetry to a person: a burst of 5xx sent through the collector fires one page transition,
delivered to a real Alertmanager and to a webhook that fails twice first; when good traffic dilutes
the burst, the alert resolves and Alertmanager drops it."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from sqlalchemy import func, select

from controlplane.scheduler.config import SchedulerFile
from controlplane.scheduler.service import SchedulerService
from controlplane.scheduler.tables import deliveries_t
from controlplane.settings import Settings
from controlplane.slo.periods import floor_minute
from controlplane.store import SliBucket, table
from tests.collectors.otlp_samples import _kv
from tests.conftest import SLICES_PATH
from tests.controlplane.scheduler.alerting import webhook_server
from tests.controlplane.scheduler.test_alertmanager import _alerts, alertmanager  # noqa: F401 - the fixture
from tests.support import ServiceProcess, wait_until

CONFIG = Path(__file__).parents[3] / "config"
PB = {"Content-Type": "application/x-protobuf"}


def _spans(minute: datetime, count: int, status: int, seed: int) -> bytes:
    rng = random.Random(seed)
    request = trace_service_pb2.ExportTraceServiceRequest()
    resource = request.resource_spans.add()
    resource.resource.attributes.append(_kv("service.name", "sample-platform"))
    scope = resource.scope_spans.add()
    base = int(minute.timestamp()) * 10**9
    for _ in range(count):
        span = scope.spans.add()
        span.trace_id, span.span_id = rng.randbytes(16), rng.randbytes(8)
        span.name, span.kind = "POST /v1/bets", 2
        span.start_time_unix_nano = base + rng.randrange(50 * 10**9)
        span.end_time_unix_nano = span.start_time_unix_nano + 10**7  # 10 ms: fast, only the status matters
        span.attributes.append(_kv("http.response.status_code", status))
        if status >= 500:
            span.status.code = 2
    return request.SerializeToString()


def _bets_counted(store) -> int:
    with store.connect() as conn:
        total = select(func.coalesce(func.sum(table(SliBucket).c.total), 0)).where(
            table(SliBucket).c.slice == "bet-placement"
        )
        return int(conn.execute(total).scalar() or 0)


def test_a_burst_pages_someone_once_and_resolves(database_url, store, tmp_path: Path, alertmanager: str) -> None:  # noqa: F811
    collector = ServiceProcess(
        "collector",
        {"CONTROLPLANE_STORE_URL": database_url, "CONTROLPLANE_SLICES_PATH": str(SLICES_PATH)},
        tmp_path / "collector.log",
        "/healthz",
    )
    burst = floor_minute(datetime.now(UTC)) - timedelta(minutes=3)
    diluted = burst + timedelta(minutes=1)
    try:
        httpx.post(f"{collector.url}/v1/traces", content=_spans(burst, 30, 500, 1), headers=PB).raise_for_status()
        wait_until(lambda: _bets_counted(store) == 30, "the burst counted by the collector")
        settings = Settings(
            environment="test",
            store_url=database_url,
            slices_path=SLICES_PATH,
            slos_path=CONFIG / "slos.yaml",
            events_path=tmp_path / "no-events.yaml",
            dashboard_url="https://ops.example",
        )
        with webhook_server(503, 503, 503, 503, 200) as hook:  # fails the first attempts of page and ticket
            config = SchedulerFile.model_validate(
                {"receivers": [
                    {"name": "am", "kind": "alertmanager", "url": alertmanager},
                    {"name": "hook", "kind": "webhook", "url": hook.url},
                ]}
            )  # fmt: skip
            # Past the evaluation delay: the minute of the burst has ended that long ago, and counts.
            clock = {"now": diluted + config.delay + timedelta(seconds=5)}
            service = SchedulerService(settings, store, config, clock=lambda: clock["now"])

            firing = service.run_once("slo-evaluation")
            pages = [
                t for t in firing.transitions if t["slo"] == "bet-placement-availability" and t["severity"] == "page"
            ]
            assert [t["state"] for t in pages] == ["firing"]
            assert service.run_once("slo-evaluation").transitions == [], "the minute is evaluated once"
            page_id = pages[0]["id"]

            # Deliveries: Alertmanager at once (in the evaluation's run); the webhook after failures,
            # retried with backoff by alert-delivery.
            real = datetime.now(UTC)
            for step in range(6):
                clock["now"] = real + timedelta(minutes=5 * step)
                service.run_once("alert-delivery")
            firing_hooks = [r for r in hook.received if r.headers.get("idempotency-key") == page_id]
            statuses = [r.status for r in firing_hooks]
            assert statuses[-1] == 200 and statuses.count(200) == 1 and statuses.count(503) >= 1, statuses
            with store.connect() as conn:
                attempts = conn.execute(
                    select(deliveries_t.c.receiver, deliveries_t.c.attempts).where(
                        deliveries_t.c.transition_id == page_id
                    )
                ).all()
            assert dict(attempts) == {"am": 1, "hook": len(statuses)}
            wait_until(
                lambda: any(a["labels"]["severity"] == "page" and a["status"]["state"] == "active"
                            for a in _alerts(alertmanager)),
                "the page showing as active in Alertmanager",
            )  # fmt: skip
            (page,) = [a for a in _alerts(alertmanager) if a["labels"]["severity"] == "page"]
            assert page["annotations"]["runbook_url"] == "https://ops.example/runbook?name=bet-placement"
            assert firing_hooks[-1].body["runbook_url"] == "https://ops.example/runbook?name=bet-placement"

            # Good traffic dilutes the burst below every page threshold: the page resolves.
            httpx.post(
                f"{collector.url}/v1/traces", content=_spans(diluted, 6000, 201, 2), headers=PB
            ).raise_for_status()
            wait_until(lambda: _bets_counted(store) == 6030, "the good traffic counted")
            clock["now"] = floor_minute(datetime.now(UTC)) + config.delay + timedelta(seconds=5)
            resolved = service.run_once("slo-evaluation")
            assert [t["state"] for t in resolved.transitions
                    if t["slo"] == "bet-placement-availability" and t["severity"] == "page"] == ["resolved"]  # fmt: skip
            # No alert-delivery run: the evaluation sent the resolution itself.
            wait_until(
                lambda: not [a for a in _alerts(alertmanager) if a["labels"]["severity"] == "page"],
                "the page resolved in Alertmanager",
            )
    finally:
        collector.stop()
