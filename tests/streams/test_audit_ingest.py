"""The platform's outbox on NATS JetStream and the audit log fed by a consumer group: every outbox event
is appended exactly once through a broker killed and restarted mid-run (bets accepted meanwhile) with
two ingesters sharing the stream; a poison event becomes a dead letter with an audit entry saying why,
and replaying it after the fix appends it once."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest
from nats.errors import Error as NatsError
from sqlalchemy import Engine, select

from audit.log import AuditLog
from audit.schema import entries
from audit.sink import OutboxAuditSink, SubjectKeys, check_money
from controlplane.streams.dead_letters import DeadLetterError, list_dead_letters, replay_dead_letter
from controlplane.streams.ingester import Ingester
from sample_platform.client import PlatformClient
from sample_platform.outbox import all_event_ids
from tests.conftest import ADMIN_TOKEN, bet_body
from tests.streams.conftest import NatsServer, outbox_event, publish, running
from tests.support import PlatformProcess, wait_until


def _appended(audit: Engine) -> list[str]:
    with audit.connect() as conn:
        outbox = select(entries.c.event_id).where(entries.c.event_id.is_not(None), entries.c.kind != "system")
        return list(conn.execute(outbox).scalars())


def test_every_outbox_event_is_appended_once_through_a_broker_restart(
    nats_server: NatsServer, database_url: str, engine: Engine, audit: Engine, tmp_path: Path
) -> None:
    log = AuditLog(audit, origin="audit.test/stream")
    sink = OutboxAuditSink(log, SubjectKeys(audit))
    platform = PlatformProcess(
        database_url, tmp_path / "outbox.jsonl", PLATFORM_OUTBOX_SINK="nats", PLATFORM_NATS_URL=nats_server.url
    )
    placed = []
    try:
        first = Ingester(nats_server.url, sink, log, durable="audit-ingest", batch=20)
        second = Ingester(nats_server.url, sink, log, durable="audit-ingest", batch=20)
        with running(first), running(second), PlatformClient(platform.url, admin_token=ADMIN_TOKEN) as admin:
            player = admin.create_account(f"s{uuid.uuid4().hex[:8]}")
            admin.deposit(player["id"], 1_000_000)
            market = admin.create_market("Stream cup", [("A", "2.00"), ("B", "2.00")])
            placed += [admin.place_bet(player["token"], bet_body(market, stake=100)) for _ in range(10)]
            wait_until(lambda: len(_appended(audit)) >= 10, "the first bets reached the audit log")
            nats_server.kill()
            placed += [admin.place_bet(player["token"], bet_body(market, stake=100)) for _ in range(10)]
            nats_server.start()
            placed += [admin.place_bet(player["token"], bet_body(market, stake=100)) for _ in range(10)]
            admin.result(market["id"], winner_selection_id=market["selections"][0]["id"])
            wanted = lambda: set(all_event_ids(engine))  # noqa: E731
            wait_until(lambda: set(_appended(audit)) >= wanted(), "every outbox event reached the audit log", 120)
    finally:
        platform.stop()
    assert [r.status_code for r in placed] == [201] * 30, "bets are accepted while the broker is away"
    appended = _appended(audit)
    assert len(appended) == len(set(appended)) == len(set(all_event_ids(engine)))
    money = check_money(log)
    assert money.ok and money.bets == 30, money.problems[:5]
    verified = log.verify()
    assert verified.ok and verified.entries == len(appended), verified.problem


class FlakySink:
    """Fails every delivery that holds one event, until fixed."""

    def __init__(self, sink: OutboxAuditSink, poison: str) -> None:
        self.sink, self.poison, self.fixed = sink, poison, False
        self.log = sink.log

    def deliver(self, messages: list) -> None:
        if not self.fixed and any(m.event_id == self.poison for m in messages):
            raise ValueError(f"cannot append {self.poison}")
        self.sink.deliver(messages)


def test_a_poison_event_is_a_dead_letter_and_its_replay_appends_once(nats_server: NatsServer, audit: Engine) -> None:
    log = AuditLog(audit, origin="audit.test/dead")
    good, poison = str(uuid.uuid4()), str(uuid.uuid4())
    sink = FlakySink(OutboxAuditSink(log, SubjectKeys(audit)), poison)
    ingester = Ingester(nats_server.url, sink, log, durable="audit-ingest", max_deliver=2, ack_wait=15)
    with running(ingester):
        asyncio.run(publish(nats_server.url, [outbox_event(good), outbox_event(poison), b"{not json"]))
        wait_until(lambda: len(asyncio.run(list_dead_letters(nats_server.url))) == 2, "two dead letters", 90)
    assert _appended(audit) == [good]
    letters = asyncio.run(list_dead_letters(nats_server.url))
    assert sorted(letter.event_id or "-" for letter in letters) == sorted([poison, "-"])
    why = {letter.event_id: letter.reason for letter in letters}
    assert why[poison] == f"ValueError: cannot append {poison}" and why[None].startswith("not JSON")
    with audit.connect() as conn:
        rows = conn.execute(select(entries.c.entry).where(entries.c.kind == "system")).scalars()
        dead = [json.loads(entry)["payload"] for entry in rows]
    assert {d["type"] for d in dead} == {"dead_letter"} and {d["event_id"] for d in dead} == {poison, None}

    sink.fixed = True
    replayed = next(letter for letter in letters if letter.event_id == poison)
    with running(Ingester(nats_server.url, sink, log, durable="audit-ingest", max_deliver=2, ack_wait=15)):
        asyncio.run(replay_dead_letter(nats_server.url, seq=replayed.seq))
        wait_until(lambda: poison in _appended(audit), "the replayed event was appended")
    assert sorted(_appended(audit)) == sorted([good, poison])
    with pytest.raises(DeadLetterError, match="no dead letter"):
        asyncio.run(replay_dead_letter(nats_server.url, seq=replayed.seq))
    assert [letter.event_id for letter in asyncio.run(list_dead_letters(nats_server.url))] == [None]


class _Sub:
    """A pull subscription whose follow-up fetch ends as nats-py's does when nothing more arrives in time:
    with asyncio's own TimeoutError (not nats.errors.TimeoutError), or with the broker gone (a client error or
    a reset socket)."""

    def __init__(self, second: BaseException) -> None:
        self.second = second
        self.calls: list[int] = []

    async def fetch(self, batch: int, timeout: float) -> list[str]:
        self.calls.append(batch)
        if len(self.calls) == 1:
            return ["the event in hand"]
        raise self.second


@pytest.mark.parametrize("second", [TimeoutError(), NatsError("gone"), OSError("reset")])
def test_the_event_in_hand_is_kept_when_the_follow_up_fetch_ends(second: BaseException) -> None:
    ingester = Ingester("nats://127.0.0.1:1", None, None, durable="g", batch=50)  # type: ignore[arg-type]
    sub = _Sub(second)
    # Dropped here, the event would wait out the consumer's ack_wait (30 s) before another delivery.
    assert asyncio.run(ingester._pull(sub)) == ["the event in hand"]
    assert sub.calls == [1, 49]
