"""Invariant 6: outbox rows commit with their money change; the relay delivers in commit order, at least once."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import text

from sample_platform.db import reader
from sample_platform.outbox import JsonlSink, OutboxMessage, OutboxRelay, read_jsonl_events, write_event
from tests.support import wait_until


class ListSink:
    def __init__(self, fail_times: int = 0) -> None:
        self.messages: list[OutboxMessage] = []
        self.fail_times = fail_times

    def deliver(self, messages: list[OutboxMessage]) -> None:
        if self.fail_times:
            self.fail_times -= 1
            raise ConnectionError("sink unavailable")
        self.messages.extend(messages)


def _event(conn, n: int) -> str:  # type: ignore[no-untyped-def]
    return write_event(conn, aggregate_type="test", aggregate_id=n, event_type="test.event", payload={"n": n})


def test_rolled_back_transaction_leaves_no_event(engine) -> None:
    sink = ListSink()
    relay = OutboxRelay(engine, sink)
    with pytest.raises(RuntimeError), engine.begin() as conn:
        _event(conn, 1)
        raise RuntimeError("the money change failed")
    with engine.begin() as conn:
        _event(conn, 2)
    assert relay.drain() == 1
    assert [m.payload["n"] for m in sink.messages] == [2]


def test_relay_delivers_in_commit_order_and_never_passes_an_open_transaction(engine) -> None:
    """A writer that inserted its event first but commits last is delivered after the one that
    committed before it, and the relay does not skip it while it is still open."""
    sink = ListSink()
    relay = OutboxRelay(engine, sink)
    committed: list[int] = []
    first_open = threading.Event()
    release_first = threading.Event()

    def slow_writer() -> None:
        with engine.begin() as conn:
            _event(conn, 1)
            first_open.set()
            release_first.wait(10)
        committed.append(1)

    def fast_writer() -> None:
        with engine.begin() as conn:  # SQLite: waits here for the slow writer (BEGIN IMMEDIATE)
            _event(conn, 2)
        committed.append(2)

    slow = threading.Thread(target=slow_writer)
    slow.start()
    assert first_open.wait(10)
    fast = threading.Thread(target=fast_writer)
    fast.start()
    if engine.dialect.name == "sqlite":
        time.sleep(0.3)  # the fast writer queues behind the slow one's lock (whether it got there or not)
    else:  # writers do not queue behind each other: the fast one commits while the slow one is open
        wait_until(lambda: 2 in committed, "the fast writer's commit", timeout=60)
    relay.drain()
    # Only what has committed: nothing on SQLite (the fast writer waits for the slow one's lock), the fast
    # writer's event on PostgreSQL; never the open transaction's.
    early = [m.payload["n"] for m in sink.messages]
    assert early == ([] if engine.dialect.name == "sqlite" else [2])
    release_first.set()
    slow.join()
    fast.join()
    relay.drain()
    assert sorted(committed) == [1, 2]
    assert [m.seq for m in sink.messages] == sorted(m.seq for m in sink.messages)
    # Commit order, which the writers' own bookkeeping cannot tell on a busy machine: on SQLite the slow
    # writer commits first (the fast one waits for its lock); on PostgreSQL writers do not queue behind
    # each other, so the fast one commits first.
    expected = [1, 2] if engine.dialect.name == "sqlite" else [2, 1]
    assert [m.payload["n"] for m in sink.messages] == expected


def test_commit_order_holds_under_many_concurrent_writers(engine) -> None:
    sink = ListSink()
    relay = OutboxRelay(engine, sink)
    stop = threading.Event()

    def writer(worker: int) -> None:
        n = 0
        while not stop.is_set():
            with engine.begin() as conn:
                _event(conn, worker * 100_000 + n)
                _event(conn, worker * 100_000 + n + 1)
            n += 2

    def relaying() -> None:
        while not stop.is_set():
            relay.relay_once()

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(6)] + [threading.Thread(target=relaying)]
    for t in threads:
        t.start()
    time.sleep(2)
    stop.set()
    for t in threads:
        t.join()
    relay.drain()
    with reader(engine).connect() as conn:
        total = conn.execute(text("SELECT count(*) FROM outbox_events")).scalar_one()
    delivered = [m.payload["n"] for m in sink.messages]
    assert len(delivered) == len(set(delivered)) == total  # nothing skipped, nothing twice
    for worker in range(6):
        mine = [n for n in delivered if n // 100_000 == worker]
        assert mine == sorted(mine)  # each writer's events in the order it committed them


def test_failed_delivery_is_retried_and_not_lost(engine) -> None:
    sink = ListSink(fail_times=1)
    relay = OutboxRelay(engine, sink)
    with engine.begin() as conn:
        for n in range(3):
            _event(conn, n)
    with pytest.raises(ConnectionError):
        relay.relay_once()
    assert relay.pending() == 3
    assert relay.drain() == 3
    assert relay.pending() == 0
    assert [m.payload["n"] for m in sink.messages] == [0, 1, 2]


def test_jsonl_sink_deduplicates_redelivery(engine, tmp_path) -> None:
    path = tmp_path / "events.jsonl"
    with engine.begin() as conn:
        for n in range(5):
            _event(conn, n)
    OutboxRelay(engine, JsonlSink(path), name="a").drain()
    # A second relay from the start (as after a crash before the cursor moved) re-delivers everything.
    OutboxRelay(engine, JsonlSink(path), name="b").drain()
    with path.open("a") as fh:
        fh.write('{"torn": ')  # a crash mid-write leaves half a line
    events = read_jsonl_events(path)
    assert [m.payload["n"] for m in events] == [0, 1, 2, 3, 4]
    assert len({m.event_id for m in events}) == 5


def test_relay_position_survives_restart(engine) -> None:
    with engine.begin() as conn:
        for n in range(4):
            _event(conn, n)
    first = ListSink()
    OutboxRelay(engine, first, batch_size=3).relay_once()
    second = ListSink()
    restarted = OutboxRelay(engine, second)
    with reader(engine).connect():
        assert restarted.position() == first.messages[-1].seq
    restarted.drain()
    assert [m.payload["n"] for m in second.messages] == [3]
