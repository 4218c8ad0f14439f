"""The readiness checks of the event stream, read from a real nats-server: the consumer group's lag (the
age of the oldest event it has not acked) and dead letters waiting for a replay; without a stream they
pass saying the audit log is fed in-process; a broker that cannot be reached is unknown, never a pass."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import nats
from sqlalchemy import Engine

from audit.log import AuditLog
from audit.sink import OutboxAuditSink, SubjectKeys
from controlplane.checklist.context import CheckContext
from controlplane.checklist.spec import DeadLetters, StreamLag
from controlplane.checklist.stream_checks import IN_PROCESS, dead_letters, stream_lag
from controlplane.demo.stack import free_port
from controlplane.settings import Settings
from controlplane.streams.ingester import Ingester, ensure_streams
from controlplane.streams.status import group_status
from controlplane.streams.wire import STREAM
from tests.streams.conftest import NatsServer, outbox_event, publish, running
from tests.support import wait_until

LAG = StreamLag(type="stream_lag", at_most_seconds=30)
DEAD = DeadLetters(type="dead_letters")


def _ctx(settings: Settings, store: Engine, url: str, *, ahead: timedelta = timedelta()) -> CheckContext:
    now = datetime.now(UTC) + ahead  # "now" later than the events: they look that old
    return CheckContext(
        settings=settings.model_copy(update={"nats_url": url}), store=store, at=now, now=now, run_id=uuid.uuid4().hex
    )


def test_without_a_stream_both_checks_say_the_log_is_fed_in_process(store_settings, store) -> None:
    ctx = _ctx(store_settings, store, "")
    assert (stream_lag(LAG, ctx).status, stream_lag(LAG, ctx).reason) == ("pass", IN_PROCESS)
    assert dead_letters(DEAD, ctx).status == "pass"


def test_a_broker_away_is_unknown(store_settings, store) -> None:
    ctx = _ctx(store_settings, store, f"nats://127.0.0.1:{free_port()}")
    for outcome in (stream_lag(LAG, ctx), dead_letters(DEAD, ctx)):
        assert outcome.status == "unknown" and "cannot read the stream" in outcome.reason


def test_lag_and_dead_letters_as_the_group_works_through_the_stream(
    nats_server: NatsServer, store_settings: Settings, store: Engine, audit: Engine
) -> None:
    url = nats_server.url
    lag = stream_lag(LAG, _ctx(store_settings, store, url))
    assert lag.status == "fail" and "no consumer group 'audit-ingest'" in lag.reason

    log = AuditLog(audit, origin="audit.test/checks")
    ingester = Ingester(url, OutboxAuditSink(log, SubjectKeys(audit)), log, durable="audit-ingest", max_deliver=2)

    async def create_group() -> None:
        nc = await nats.connect(url)
        js = nc.jetstream()
        await ensure_streams(js)
        await js.add_consumer(STREAM, ingester.consumer_config())
        await nc.close()

    asyncio.run(create_group())
    events = [str(uuid.uuid4()) for _ in range(3)]
    asyncio.run(publish(url, [outbox_event(e) for e in events]))
    status = asyncio.run(group_status(url, durable="audit-ingest"))
    assert (status.pending, status.unacked, status.oldest_unacked_seq) == (3, 0, 1)
    behind = stream_lag(LAG, _ctx(store_settings, store, url, ahead=timedelta(minutes=2)))
    assert behind.status == "fail" and behind.evidence["lag_seconds"] >= 110 and behind.evidence["pending"] == 3
    assert "3 events not yet appended" in behind.reason

    with running(ingester):
        asyncio.run(publish(url, [b"{not json"]))
        wait_until(lambda: asyncio.run(group_status(url, durable="audit-ingest")).behind == 0, "the group caught up")
        wait_until(lambda: asyncio.run(group_status(url, durable="audit-ingest")).dead_letters == 1, "a dead letter")
    caught_up = stream_lag(LAG, _ctx(store_settings, store, url, ahead=timedelta(minutes=2)))
    assert caught_up.status == "pass" and caught_up.evidence["lag_seconds"] == 0
    dead = dead_letters(DEAD, _ctx(store_settings, store, url))
    assert dead.status == "fail" and dead.evidence["dead_letters"] == 1 and "audit dead-letters" in dead.reason
    assert dead_letters(DeadLetters(type="dead_letters", at_most=1), _ctx(store_settings, store, url)).status == "pass"
