"""Rollups: evaluation through days, hours and minutes equals the minute-level evaluation, whatever the
data, the instant and the refresh history (late minutes included); refreshes are idempotent and safe
to run at once; the budget curve equals evaluating at each of its instants."""

from __future__ import annotations

import random
import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, delete, func, select

from collectors.ingest import Batch, commit_batch
from controlplane.slices import DEFAULT_BOUNDARIES
from controlplane.slo.curves import budget_curve, hourly_budget_curve
from controlplane.slo.engine import evaluate_all
from controlplane.slo.periods import DAILY, HOURLY
from controlplane.slo.rolled import evaluate_all_from_rollups
from controlplane.slo.rollups import refresh_rollups
from controlplane.slo.spec import EventSpec, SloSpec
from controlplane.slo.tables import changes_t, latency_t, rollups_t, slices_t
from controlplane.store import SliBucket, SliLatencyBucket, table

END = datetime(2026, 11, 5, 0, 0, tzinfo=UTC)  # data lies in the 5 days before END
SPAN_MINUTES = 5 * 1440
LABELS = ("0.1", "0.5", "1.0", "+Inf")
CASES = 12


def make_specs(rng: random.Random, name: str, event: str | None = None) -> list[SloSpec]:
    windows: list[dict] = [{"rolling_days": rng.randint(1, 3)}, {"calendar": "month"}]
    windows += [{"event": event}] if event else []
    specs = []
    for i, sli in enumerate(
        [
            {"kind": "ratio"},
            {"kind": "latency", "threshold_seconds": rng.choice([0.1, 0.5, 1.0])},
            {"kind": "freshness", "threshold_seconds": rng.choice([0.1, 0.5]), "percentile": rng.choice([0.5, 0.9])},
        ]
    ):
        specs.append(
            SloSpec.model_validate(
                {
                    "name": f"{name}-{i}",
                    "slice": name,
                    "sli": sli,
                    "objective": rng.choice([0.9, 0.99, 0.999]),
                    "window": rng.choice(windows),
                }
            )
        )
    return specs


def random_minutes(rng: random.Random, count: int) -> list[datetime]:
    """Minutes in the span, crowded around hour and day edges, where windows are cut."""
    minutes = set()
    for _ in range(count):
        if rng.random() < 0.5:
            edge = rng.randrange(SPAN_MINUTES // 60) * 60 + rng.choice([-2, -1, 0, 1, 59])
            minutes.add(min(max(edge, 0), SPAN_MINUTES - 1))
        else:
            minutes.add(rng.randrange(SPAN_MINUTES))
    start = END - timedelta(minutes=SPAN_MINUTES)
    return [start + timedelta(minutes=m) for m in sorted(minutes)]


def write(engine: Engine, rng: random.Random, name: str, minutes: list[datetime]) -> None:
    """Through the collector's own write path (adds to rows already there)."""
    batch = Batch()
    for minute in minutes:
        delta = batch.bucket(name, minute)
        counts = {le: rng.choice([0, 0, 1, 3, 20]) for le in LABELS}
        delta.total = max(sum(counts.values()), 1)
        delta.bad = rng.randint(0, delta.total) if rng.random() < 0.3 else 0
        delta.latency.update({le: n for le, n in counts.items() if n})
    commit_batch(engine, digest=uuid.uuid4().hex, signal="traces", batch=batch)


def random_instant(rng: random.Random) -> datetime:
    base = END - timedelta(minutes=rng.randrange(-2 * 1440, SPAN_MINUTES - 1440))
    return base.replace(minute=rng.choice([0, 0, 1, 59, rng.randrange(60)]), second=rng.choice([0, 0, 17]))


def assert_same(engine: Engine, specs: list[SloSpec], events: dict[str, EventSpec], at: datetime) -> None:
    minutes = evaluate_all(engine, specs, events=events, boundaries=DEFAULT_BOUNDARIES, at=at)
    rolled = evaluate_all_from_rollups(engine, specs, events=events, boundaries=DEFAULT_BOUNDARIES, at=at)
    assert rolled == minutes, at


def test_rollup_evaluation_equals_minute_evaluation_on_random_data(store: Engine) -> None:
    for case in range(CASES):
        rng = random.Random(case)
        name = f"slice-{case}"
        kickoff = END - timedelta(minutes=rng.randrange(SPAN_MINUTES), seconds=rng.randrange(60))
        events = {"final": EventSpec(name="final", kickoff=kickoff, settlement_expected=kickoff + timedelta(hours=3))}
        specs = make_specs(rng, name, "final")
        write(store, rng, name, random_minutes(rng, rng.randint(50, 400)))
        for step in range(3):
            until = random_instant(rng) if step < 2 else END + timedelta(days=1)
            refresh_rollups(store, until=until, specs=specs if rng.random() < 0.7 else ())
            for _ in range(4):
                assert_same(store, specs, events, random_instant(rng))
            assert_same(store, specs, events, END)
            # Late minutes, some in hours and days already rolled up: exact before the next refresh too.
            write(store, rng, name, random_minutes(rng, rng.randint(1, 40)))
            assert_same(store, specs, events, random_instant(rng))


def rollup_rows(engine: Engine) -> list[tuple]:
    with engine.connect() as conn:
        return [
            tuple(row)
            for t in (rollups_t, latency_t, slices_t)
            for row in conn.execute(select(t).order_by(*t.primary_key.columns))
        ]


def test_refresh_is_idempotent_and_picks_up_late_minutes(store: Engine) -> None:
    rng = random.Random(7)
    specs = [
        *make_specs(rng, "bets")[:2],
        SloSpec.model_validate(
            {
                "name": "fresh",
                "slice": "bets",
                "sli": {"kind": "freshness", "threshold_seconds": 0.5},
                "objective": 0.99,
                "window": {"rolling_days": 3},
            }
        ),
    ]
    write(store, rng, "bets", random_minutes(rng, 300))
    first = refresh_rollups(store, until=END, specs=specs)
    assert first.hours > 0 and first.days > 0 and first.series_built == 1 and first.pending_hours == 0
    rows = rollup_rows(store)
    again = refresh_rollups(store, until=END, specs=specs)
    assert (again.hours, again.days, again.series_built) == (0, 0, 0)
    assert rollup_rows(store) == rows
    late = END - timedelta(days=2, minutes=30)  # inside a day rolled up already
    write(store, rng, "bets", [late])
    marked = refresh_rollups(store, until=END, specs=specs)
    assert (marked.hours, marked.days) == (1, 1)
    assert rollup_rows(store) != rows
    assert_same(store, specs, {}, END)
    with store.connect() as conn:
        hour_total = conn.execute(
            select(rollups_t.c.total).where(
                rollups_t.c.slice == "bets", rollups_t.c.period == HOURLY, rollups_t.c.start == late.replace(minute=0)
            )
        ).scalar_one()
        b = table(SliBucket)
        minutes_total = conn.execute(
            select(func.sum(b.c.total)).where(
                b.c.slice == "bets",
                b.c.minute >= late.replace(minute=0),
                b.c.minute < late.replace(minute=0) + timedelta(hours=1),
            )
        ).scalar_one()
    assert hour_total == minutes_total


def test_an_hour_not_complete_by_until_waits(store: Engine) -> None:
    write(store, random.Random(1), "bets", [END - timedelta(minutes=30)])
    stats = refresh_rollups(store, until=END - timedelta(minutes=10))
    assert (stats.hours, stats.pending_hours) == (0, 1)
    stats = refresh_rollups(store, until=END)
    assert (stats.hours, stats.days, stats.pending_hours) == (1, 1, 0)


def test_evaluation_reads_rollups_once_minutes_are_gone(store: Engine) -> None:
    """After a refresh, deleting old minutes (retention) leaves the rolled-up days counted."""
    spec = SloSpec.model_validate({"name": "bets", "slice": "bets", "objective": 0.99, "window": {"rolling_days": 3}})
    rng = random.Random(3)
    write(store, rng, "bets", random_minutes(rng, 200))
    refresh_rollups(store, until=END)
    before = evaluate_all_from_rollups(store, [spec], events={}, boundaries=DEFAULT_BOUNDARIES, at=END).slos[0]
    with store.begin() as conn:
        for t in (table(SliBucket), table(SliLatencyBucket)):
            conn.execute(delete(t))
    after = evaluate_all_from_rollups(store, [spec], events={}, boundaries=DEFAULT_BOUNDARIES, at=END).slos[0]
    assert before.events > 0 and after == before
    assert evaluate_all(store, [spec], events={}, boundaries=DEFAULT_BOUNDARIES, at=END).slos[0].events == 0


def test_concurrent_refreshes_beside_a_writer_stay_exact(store: Engine) -> None:
    specs = make_specs(random.Random(5), "bets")[:2]
    write(store, random.Random(5), "bets", random_minutes(random.Random(5), 300))
    errors: list[BaseException] = []
    done = threading.Event()

    def refresher() -> None:
        try:
            while not done.is_set():
                refresh_rollups(store, until=END)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=refresher) for _ in range(3)]
    for thread in threads:
        thread.start()
    rng = random.Random(6)
    for _ in range(15):
        write(store, rng, "bets", random_minutes(rng, 5))
    done.set()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert_same(store, specs, {}, END)
    refresh_rollups(store, until=END)
    with store.connect() as conn:
        assert conn.execute(select(func.count()).select_from(changes_t)).scalar_one() == 0
    assert_same(store, specs, {}, END)
    assert_same(store, specs, {}, END - timedelta(hours=30, minutes=7))


def assert_points_evaluate_alike(store: Engine, spec: SloSpec, points: list, events: dict[str, EventSpec]) -> None:
    for point in points:
        status = evaluate_all(store, [spec], events=events, boundaries=DEFAULT_BOUNDARIES, at=point.at).slos[0]
        assert (point.events, point.bad_events, point.sli) == (status.events, status.bad_events, status.sli)
        assert (point.budget_consumed, point.budget_remaining) == (status.budget_consumed, status.budget_remaining)


def test_budget_curve_equals_evaluating_at_each_instant(store: Engine) -> None:
    rng = random.Random(11)
    specs = make_specs(rng, "bets")
    write(store, rng, "bets", random_minutes(rng, 400))
    refresh_rollups(store, until=END - timedelta(days=1, minutes=13), specs=specs)
    write(store, rng, "bets", random_minutes(rng, 20))  # late, not rolled up yet
    start = END - timedelta(days=3, minutes=25)
    for spec in (s.model_copy(update={"window": s.window.model_copy(update={"rolling_days": 2})}) for s in specs):
        curve = budget_curve(store, spec, events={}, boundaries=DEFAULT_BOUNDARIES, start=start, end=END)
        assert len(curve) == 73 and curve[0].at == start and curve[-1].at == END - timedelta(minutes=25)
        assert_points_evaluate_alike(store, spec, curve[::7] + curve[-1:], {})
        assert any(p.bad_events for p in curve)


def test_hourly_curve_ends_at_now_over_calendar_and_event_windows(store: Engine) -> None:
    rng = random.Random(12)
    kickoff = END - timedelta(days=2, hours=5, minutes=17)
    events = {"final": EventSpec(name="final", kickoff=kickoff, settlement_expected=kickoff + timedelta(hours=30))}
    write(store, rng, "bets", random_minutes(rng, 400))
    at = END - timedelta(hours=7, minutes=41, seconds=13)
    for window in ({"calendar": "month"}, {"event": "final"}, {"rolling_days": 1}):
        for spec in make_specs(rng, "bets"):
            spec = spec.model_copy(update={"window": spec.window.model_validate(window)})
            refresh_rollups(store, until=at - timedelta(hours=20), specs=[spec])
            curve = hourly_budget_curve(store, spec, events=events, boundaries=DEFAULT_BOUNDARIES, at=at, days=3)
            hours = [p.at for p in curve[:-1]]
            assert len(curve) == 3 * 24 + 2 and curve[-1].at == at.replace(second=0)
            assert all(t.minute == 0 for t in hours) and hours == sorted(hours) and hours[-1] < curve[-1].at
            assert_points_evaluate_alike(store, spec, curve[::5] + curve[-2:], events)
            assert any(p.events for p in curve)


def test_budget_curve_refuses_a_step_under_a_minute(store: Engine) -> None:
    spec = SloSpec.model_validate({"name": "bets", "slice": "bets", "objective": 0.99, "window": {"rolling_days": 3}})
    with pytest.raises(ValueError, match="shorter than a minute"):
        budget_curve(
            store, spec, events={}, boundaries=DEFAULT_BOUNDARIES, start=END, end=END, step=timedelta(seconds=30)
        )


def test_day_marks_wait_for_the_day_to_end(store: Engine) -> None:
    write(store, random.Random(2), "bets", [END - timedelta(hours=5)])
    refresh_rollups(store, until=END - timedelta(hours=2))
    with store.connect() as conn:
        periods = sorted(p for (p,) in conn.execute(select(changes_t.c.period)))
    assert periods == [DAILY]
