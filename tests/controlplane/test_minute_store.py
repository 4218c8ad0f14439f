"""Packed minutes: a store written as minute rows (the layout before `sli_minute_blocks`), migrated and
packed, gives every SLO the same answers as before, and so do late events landing beside packed hours;
compactions running beside collectors lose and double nothing; a block decodes to exactly what was
packed, an absent latency bucket apart from a zero one."""

from __future__ import annotations

import random
import threading
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, func, select

from collectors.ingest import Batch, commit_batch
from collectors.sli import sli_rows
from controlplane.settings import Settings
from controlplane.slices import DEFAULT_BOUNDARIES
from controlplane.slo.engine import evaluate_all
from controlplane.slo.minute_store import ALL_TIME, Block, blocks_t, compact_minutes, minute_latency, minute_totals
from controlplane.slo.minutes import worst_minutes
from controlplane.slo.periods import minute_index, minute_start
from controlplane.slo.rolled import evaluate_all_from_rollups
from controlplane.slo.rollups import refresh_rollups
from controlplane.slo.spec import EventSpec, SloSpec
from controlplane.storage import make_engine
from controlplane.store import SliBucket, SliLatencyBucket, migrate_store, table
from tests.controlplane.test_rollups import END, SPAN_MINUTES, make_specs, random_instant, random_minutes, write

START = END - timedelta(minutes=SPAN_MINUTES)


def _count(engine: Engine, t: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(t)).scalar_one())


def answers(engine: Engine, specs: list[SloSpec], events: dict[str, EventSpec], instants: list) -> dict[str, Any]:
    """Everything a user reads from minutes: every SLO at each instant (from minutes and through rollups),
    the minutes as `controlplane sli` lists them, and each slice's worst minutes."""
    slices = sorted({s.slice for s in specs})
    return {
        "minutes": [
            evaluate_all(engine, specs, events=events, boundaries=DEFAULT_BOUNDARIES, at=at) for at in instants
        ],
        "rolled": [
            evaluate_all_from_rollups(engine, specs, events=events, boundaries=DEFAULT_BOUNDARIES, at=at)
            for at in instants
        ],
        "sli": [row.to_dict() for row in sli_rows(engine, since=START - timedelta(days=1))],
        "worst": {name: worst_minutes(engine, name, START, END, limit=20) for name in slices},
    }


def test_a_store_of_minute_rows_migrated_and_packed_answers_as_before(store_settings: Settings) -> None:
    engine = make_engine(store_settings.store_url, **store_settings.engine_options())
    try:
        migrate_store(engine, "s0009")  # the layout of minute rows only
        rng = random.Random(5)
        specs, events = [], {}
        for n in range(3):
            name = f"slice-{n}"
            kickoff = END - timedelta(minutes=rng.randrange(SPAN_MINUTES))
            events[f"final-{n}"] = EventSpec(
                name=f"final-{n}", kickoff=kickoff, settlement_expected=kickoff + timedelta(hours=3)
            )
            specs += make_specs(rng, name, f"final-{n}")
            write(engine, rng, name, random_minutes(rng, 300))
        rows = _count(engine, table(SliBucket)) + _count(engine, table(SliLatencyBucket))

        migrate_store(engine)  # adds the blocks, moves nothing: the answers are the rows' own
        refresh_rollups(engine, until=END - timedelta(days=2), specs=specs)
        instants = [random_instant(rng) for _ in range(4)] + [END]
        before = answers(engine, specs, events, instants)
        assert _count(engine, blocks_t) == 0 and any(r.events for a in before["minutes"] for r in a.slos)
        packed = compact_minutes(engine, before=END + timedelta(days=1))
        assert packed["rows_moved"] == rows and packed["slice_hours"] == _count(engine, blocks_t) > 0
        assert _count(engine, table(SliBucket)) == _count(engine, table(SliLatencyBucket)) == 0
        assert answers(engine, specs, events, instants) == before

        # Late events, many in packed hours: rows again beside the blocks, read together, then packed too.
        for n in range(3):
            write(engine, rng, f"slice-{n}", random_minutes(rng, 60))
        late = answers(engine, specs, events, instants)
        assert late != before and _count(engine, table(SliBucket)) > 0
        compact_minutes(engine, before=END + timedelta(days=1))
        assert _count(engine, table(SliBucket)) == 0 and answers(engine, specs, events, instants) == late
        refresh_rollups(engine, until=END + timedelta(days=1), specs=specs)
        assert answers(engine, specs, events, instants) == late
    finally:
        engine.dispose()


def test_compactions_beside_collectors_lose_and_double_nothing(store: Engine) -> None:
    rng = random.Random(9)
    minutes = random_minutes(rng, 200)
    written = [0]
    stop = threading.Event()
    errors: list[BaseException] = []

    def collector() -> None:
        local = random.Random(1)
        try:
            for _ in range(30):
                batch = Batch()
                for minute in local.sample(minutes, 20):
                    batch.bucket("bets", minute).total += 3
                    written[0] += 3
                commit_batch(store, digest=uuid.uuid4().hex, signal="traces", batch=batch)
        except BaseException as exc:
            errors.append(exc)
        finally:
            stop.set()

    def compactor() -> None:
        try:
            while not stop.is_set():
                compact_minutes(store, before=END, hours_per_transaction=7)
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=collector),
        threading.Thread(target=compactor),
        threading.Thread(target=compactor),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors, errors
    with store.connect() as conn:
        total = sum(t for _, _, t, _ in minute_totals(conn, "bets", [(minute_start(0), ALL_TIME)]))
    assert total == written[0] == 30 * 20 * 3
    compact_minutes(store, before=END)
    with store.connect() as conn:
        assert sum(t for _, _, t, _ in minute_totals(conn, "bets", [(minute_start(0), ALL_TIME)])) == written[0]
    assert _count(store, table(SliBucket)) == 0


def test_a_block_decodes_to_what_was_packed() -> None:
    rng = random.Random(3)
    hour = 29_000_000 // 60 * 60
    block = Block()
    for _ in range(500):
        minute = hour + rng.randrange(60)
        if rng.random() < 0.6:
            block.add_total(minute, rng.randrange(10**6), rng.randrange(10))
        if rng.random() < 0.6:
            block.add_latency(minute, rng.choice(["0.1", "0.25", "1.0", "+Inf"]), rng.choice([0, 1, 10**9]))
    again = Block.decode(block.encode(hour), hour)
    assert again.totals == block.totals and again.latency == block.latency
    assert any(0 in buckets.values() for buckets in again.latency.values()), "a zero bucket stays a zero"
    assert any(len(buckets) < 4 for buckets in again.latency.values()), "an absent bucket stays absent"
    assert Block.decode(Block().encode(hour), hour).totals == {}


def _everything(engine: Engine) -> dict[tuple, Any]:
    """Every minute's counts as the readers see them (rows and blocks added up)."""
    out: dict[tuple, Any] = {}
    everything = [(minute_start(0), ALL_TIME)]
    with engine.connect() as conn:
        for name, minute, total, bad in minute_totals(conn, None, everything):
            t, b = out.get(("t", name, minute), (0, 0))
            out[("t", name, minute)] = (t + total, b + bad)
        for name, minute, le, count in minute_latency(conn, None, everything):
            out[("l", name, minute, le)] = out.get(("l", name, minute, le), 0) + count
    return out


def test_downgrading_unpacks_the_blocks_into_the_rows_they_were(store_settings: Settings) -> None:
    from alembic import command

    from controlplane.storage import alembic_config
    from controlplane.store import MIGRATIONS

    engine = make_engine(store_settings.store_url, **store_settings.engine_options())
    try:
        migrate_store(engine)
        rng = random.Random(2)
        minutes = random_minutes(rng, 200)
        write(engine, rng, "bets", minutes)
        compact_minutes(engine, before=END)
        write(engine, rng, "bets", minutes[::7])  # late events for packed minutes: rows beside the blocks
        expected = _everything(engine)
        assert _count(engine, blocks_t) > 0 and _count(engine, table(SliBucket)) == len(minutes[::7])
        config = alembic_config(engine, MIGRATIONS)
        with engine.connect() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "s0009")
            connection.commit()
        with engine.connect() as conn:
            assert not engine.dialect.has_table(conn, "sli_minute_blocks")
            totals = conn.execute(select(table(SliBucket))).all()
            latency = conn.execute(select(table(SliLatencyBucket))).all()
        back = {("t", r.slice, minute_index(r.minute)): (r.total, r.bad) for r in totals}
        back |= {("l", r.slice, minute_index(r.minute), r.le): r._mapping["count"] for r in latency}
        assert len(back) == len(totals) + len(latency), "one row per minute (and bucket)"
        assert back == expected
    finally:
        engine.dispose()
