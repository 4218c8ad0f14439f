"""Delivery of alert transitions: at least once, backoff between attempts, permanent failures given up,
one sender per due delivery even with two processes at it; and `controlplane alerts history`."""

from __future__ import annotations

import json
import random
import threading
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import Engine, select
from typer.testing import CliRunner

from controlplane.cli import app
from controlplane.scheduler.delivery import (
    DEFAULT_MAX_ATTEMPTS,
    backoff,
    deliver_pending,
    enqueue,
    refresh_firing,
)
from controlplane.scheduler.history import alert_history
from controlplane.scheduler.receivers import AlertmanagerReceiver, WebhookReceiver
from controlplane.scheduler.tables import deliveries_t
from controlplane.settings import Settings
from controlplane.storage import make_engine
from tests.controlplane.scheduler.alerting import add_transition, webhook_server

T0 = datetime(2025, 5, 1, 12, 0, tzinfo=UTC)
LATER = T0 + timedelta(days=1)  # past any backoff


def delivery(engine: Engine, transition_id: str, receiver: str = "hook"):
    d = deliveries_t
    with engine.connect() as conn:
        return conn.execute(select(d).where(d.c.transition_id == transition_id, d.c.receiver == receiver)).one()


def test_enqueue_is_idempotent(store: Engine) -> None:
    tid = add_transition(store, at=T0)
    receivers = [WebhookReceiver("hook", "http://127.0.0.1:9/x"), AlertmanagerReceiver("am", "http://127.0.0.1:9")]
    assert enqueue(store, [tid], receivers, now=T0) == 2
    assert enqueue(store, [tid, tid], receivers, now=T0 + timedelta(minutes=1)) == 0
    assert delivery(store, tid).attempts == 0


def test_a_receiver_failing_twice_gets_the_transition_once_after_three_attempts(store: Engine) -> None:
    tid = add_transition(store, at=T0)
    with webhook_server(503, 503, 200) as hook:
        receivers = [WebhookReceiver("hook", hook.url)]
        enqueue(store, [tid], receivers, now=T0)
        now = T0
        assert deliver_pending(store, receivers, now=now).retrying == 1
        # Not due again until its backoff has passed.
        assert deliver_pending(store, receivers, now=now).attempted == 0
        for _ in range(2):
            now = delivery(store, tid).next_attempt_at
            now = now.replace(tzinfo=UTC) if now.tzinfo is None else now
            deliver_pending(store, receivers, now=now)
        row = delivery(store, tid)
        assert row.attempts == 3 and row.delivered_at is not None and row.last_error is None
        assert deliver_pending(store, receivers, now=LATER).attempted == 0
        assert [r.status for r in hook.received] == [503, 503, 200]
        assert {r.headers["idempotency-key"] for r in hook.received} == {tid}
        assert len(hook.accepted()) == 1 and hook.accepted()[0].body["transition_id"] == tid
    (item,) = alert_history(store, since=T0 - timedelta(hours=1))
    assert [(d.receiver, d.status, d.attempts) for d in item.deliveries] == [("hook", "delivered", 3)]


def test_a_4xx_is_a_permanent_failure_not_retried(store: Engine) -> None:
    tid = add_transition(store, at=T0)
    with webhook_server(400) as hook:
        receivers = [WebhookReceiver("hook", hook.url)]
        enqueue(store, [tid], receivers, now=T0)
        stats = deliver_pending(store, receivers, now=T0)
        assert (stats.attempted, stats.failed) == (1, 1)
        assert deliver_pending(store, receivers, now=LATER).attempted == 0
        assert len(hook.received) == 1
    row = delivery(store, tid)
    assert row.attempts == 1 and row.delivered_at is None
    assert row.last_error.startswith("gave up: HTTP 400") and "permanent" in row.last_error
    (item,) = alert_history(store, since=T0)
    assert item.deliveries[0].status == "failed"


def test_retries_stop_after_max_attempts(store: Engine) -> None:
    tid = add_transition(store, at=T0)
    with webhook_server(503) as hook:
        receivers = [WebhookReceiver("hook", hook.url)]
        enqueue(store, [tid], receivers, now=T0)
        for day in range(5):
            deliver_pending(store, receivers, now=T0 + timedelta(days=day), max_attempts=3)
        assert len(hook.received) == 3
    row = delivery(store, tid)
    assert row.attempts == 3 and row.last_error.startswith("gave up after 3 attempts: HTTP 503")


def test_unreachable_receiver_is_retried_with_growing_jittered_backoff(store: Engine) -> None:
    tid = add_transition(store, at=T0)
    receivers = [WebhookReceiver("hook", "http://127.0.0.1:9/unreachable", timeout_seconds=5)]
    enqueue(store, [tid], receivers, now=T0)
    assert deliver_pending(store, receivers, now=T0).retrying == 1
    row = delivery(store, tid)
    assert row.attempts == 1 and "ConnectError" in row.last_error
    rng = random.Random(7)
    delays = [backoff(n, rng) for n in range(1, DEFAULT_MAX_ATTEMPTS + 1)]
    assert timedelta(seconds=15) <= delays[0] <= timedelta(seconds=30)
    assert all(d <= timedelta(hours=1) for d in delays) and delays[-1] >= timedelta(minutes=30)


def test_two_processes_delivering_at_once_send_each_delivery_once(store: Engine, store_settings: Settings) -> None:
    ids = [add_transition(store, at=T0 + timedelta(minutes=i)) for i in range(30)]
    second = make_engine(store_settings.store_url, **store_settings.engine_options())
    try:
        with webhook_server(200) as hook:
            receivers = [WebhookReceiver("hook", hook.url)]
            enqueue(store, ids, receivers, now=T0)
            start = threading.Barrier(2)
            results = []

            def run(engine: Engine) -> None:
                start.wait()
                # Small batches, so that the two claim turn about rather than one taking everything.
                while (stats := deliver_pending(engine, receivers, now=LATER, limit=3)).attempted:
                    results.append(stats)

            threads = [threading.Thread(target=run, args=(e,)) for e in (store, second)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=120)
            assert sum(r.attempted for r in results) == 30 and sum(r.delivered for r in results) == 30
            keys = [r.headers["idempotency-key"] for r in hook.received]
            assert sorted(keys) == sorted(ids)  # each once
    finally:
        second.dispose()
    assert all(delivery(store, tid).attempts == 1 for tid in ids)


def test_refresh_keeps_firing_alerts_open_and_stops_once_resolved(store: Engine) -> None:
    sent: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.extend(json.loads(request.content))
        return httpx.Response(200)

    am = AlertmanagerReceiver("am", "http://am.example:9093", transport=httpx.MockTransport(handler))
    hook = WebhookReceiver("hook", "http://hook.example/x", transport=httpx.MockTransport(handler))
    firing = add_transition(store, at=T0)
    enqueue(store, [firing], [am, hook], now=T0)
    # Not delivered yet: nothing to refresh (deliver_pending sends it first).
    assert refresh_firing(store, [am, hook], now=T0) == 0
    deliver_pending(store, [am, hook], now=T0)
    sent.clear()
    assert refresh_firing(store, [am, hook], now=T0 + timedelta(minutes=5)) == 1  # Alertmanager only
    assert sent[0]["endsAt"] == "2025-05-01T12:20:00Z"
    resolved = add_transition(store, at=T0 + timedelta(minutes=30), started_at=T0, state="resolved")
    enqueue(store, [resolved], [am], now=T0 + timedelta(minutes=30))
    assert refresh_firing(store, [am], now=T0 + timedelta(minutes=31)) == 0


def test_a_firing_delivered_after_its_resolution_is_sent_as_ended(store: Engine) -> None:
    sent: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.extend(json.loads(request.content))
        return httpx.Response(200)

    am = AlertmanagerReceiver("am", "http://am.example:9093", transport=httpx.MockTransport(handler))
    firing = add_transition(store, at=T0)
    resolved = add_transition(store, at=T0 + timedelta(minutes=9), started_at=T0, state="resolved")
    enqueue(store, [firing, resolved], [am], now=T0 + timedelta(minutes=9))
    assert deliver_pending(store, [am], now=T0 + timedelta(hours=2)).delivered == 2
    assert [a["endsAt"] for a in sent] == ["2025-05-01T12:09:00Z", "2025-05-01T12:09:00Z"]


def test_alerts_history_cli(store: Engine, store_settings: Settings) -> None:
    runner = CliRunner()
    recent = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    old = recent - timedelta(days=30)
    tid = add_transition(store, at=recent)
    add_transition(store, at=old, slo="login-availability", slice="login")
    enqueue(store, [tid], [WebhookReceiver("hook", "http://127.0.0.1:9/x")], now=recent)
    url = ["--store-url", store_settings.store_url]
    result = runner.invoke(app, ["alerts", "history", *url, "--format", "json"])
    assert result.exit_code == 0, result.output
    (item,) = json.loads(result.output)["transitions"]
    assert item["id"] == tid and item["alertname"] == "SLOErrorBudgetBurnPage"
    assert item["deliveries"] == [
        {
            "receiver": "hook",
            "status": "pending",
            "attempts": 0,
            "delivered_at": None,
            "next_attempt_at": recent.isoformat().replace("+00:00", "Z"),
            "last_error": None,
        }
    ]
    result = runner.invoke(app, ["alerts", "history", *url, "--since", "60d", "--slo", "login-availability"])
    assert result.exit_code == 0, result.output
    assert "login-availability" in result.output and "bet-placement" not in result.output
    result = runner.invoke(app, ["alerts", "history", *url, "--since", "last tuesday"])
    assert result.exit_code == 3 and "--since: cannot read 'last tuesday'" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
