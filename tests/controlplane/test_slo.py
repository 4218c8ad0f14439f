"""The SLO engine: the Workbook's worked case, defined behaviour without traffic, budget properties."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from collectors.ingest import Batch, commit_batch
from controlplane.slices import DEFAULT_BOUNDARIES
from controlplane.slo.engine import MinuteCounts, evaluate, evaluate_all
from controlplane.slo.results import SloAlerts
from controlplane.slo.spec import SloSpec

T = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)


def spec(**overrides) -> SloSpec:  # type: ignore[no-untyped-def]
    data = {"name": "bets", "slice": "bet-placement", "objective": 0.999, "window": {"rolling_days": 30}}
    data.update(overrides)
    return SloSpec.model_validate(data)


def steady(minutes: int, per_minute: int, bad_from: int, bad_per_minute: int, first: datetime) -> MinuteCounts:
    events = [per_minute] * minutes
    bad = [bad_per_minute if i >= bad_from else 0 for i in range(minutes)]
    return MinuteCounts(int(first.timestamp()) // 60, events, bad)


def test_workbook_page_fires_between_34_and_36_minutes() -> None:
    """99.9% over 30 days, a steady 2.5% error ratio from T: the page fires at T+35 min, not before."""
    start = T - timedelta(days=3)
    before = int((T - start).total_seconds() // 60)
    counts = steady(before + 120, 1000, before, 25, start)
    fired = [m for m in range(0, 60) if evaluate(spec(), counts, at=T + timedelta(minutes=m), events={}).alerts.page]
    assert fired and 34 <= fired[0] <= 36
    assert fired[0] == 35
    assert all(m in fired for m in range(fired[0], 60))  # and it keeps firing while the errors go on


def test_no_traffic_is_defined_and_finite() -> None:
    empty = MinuteCounts(int(T.timestamp()) // 60 - 100, [0] * 100, [0] * 100)
    result = evaluate(spec(), empty, at=T, events={})
    assert result.sli == 1.0 and result.no_data is True
    assert result.budget_consumed == 0.0 and result.budget_remaining == 1.0
    assert all(rate == 0.0 for rate in result.burn_rates.values())
    assert result.alerts == SloAlerts(page=False, ticket=False)
    assert result.time_to_exhaustion_seconds is None


def test_tiny_traffic_with_an_error_is_finite_and_freezes() -> None:
    counts = MinuteCounts(int(T.timestamp()) // 60 - 1, [1], [1])
    result = evaluate(spec(), counts, at=T, events={})
    assert result.budget_consumed == pytest.approx(1000.0)
    assert result.budget_remaining < 0 and result.time_to_exhaustion_seconds == 0.0
    assert result.alerts.page is True
    assert all(math.isfinite(v) for v in result.burn_rates.values())


def test_ratios_are_event_weighted_not_averaged() -> None:
    # One busy clean minute and one quiet bad minute: averaging per-minute ratios would say 50%.
    counts = MinuteCounts(int(T.timestamp()) // 60 - 2, [999, 1], [0, 1])
    result = evaluate(spec(), counts, at=T, events={})
    assert result.sli == pytest.approx(0.999)
    assert result.burn_rates["5m"] == pytest.approx(1.0)


def test_thresholds_scale_with_the_period() -> None:
    result = evaluate(spec(window={"rolling_days": 7}), MinuteCounts(0, [], []), at=T, events={})
    assert result.alert_thresholds.page[0].burn == pytest.approx(14.4 * 7 / 30)


def test_tiers_can_be_switched_off() -> None:
    start = T - timedelta(hours=6)
    counts = steady(6 * 60, 100, 0, 100, start)
    on = evaluate(spec(), counts, at=T, events={})
    off = evaluate(spec(alerting={"page": False, "ticket": False}), counts, at=T, events={})
    assert on.alerts == SloAlerts(page=True, ticket=True)
    assert off.alerts == SloAlerts(page=False, ticket=False)


minute_lists = st.lists(st.tuples(st.integers(0, 50), st.integers(0, 50)), min_size=0, max_size=120)


@hsettings(max_examples=300, deadline=None)
@given(minutes=minute_lists, extra_at=st.integers(0, 119), extra=st.integers(1, 20))
def test_consumed_budget_never_decreases_when_bad_events_are_added(minutes, extra_at, extra) -> None:
    events = [max(e, b) for e, b in minutes]
    bad = [b for _, b in minutes]
    first = int(T.timestamp()) // 60 - len(minutes)
    base = evaluate(spec(), MinuteCounts(first, events, bad), at=T, events={})
    if minutes:
        i = extra_at % len(minutes)
        events[i] += extra
        bad[i] += extra
    worse = evaluate(spec(), MinuteCounts(first, events, bad), at=T, events={})
    assert worse.budget_consumed >= base.budget_consumed
    for result in (base, worse):
        numbers = [result.sli, result.budget_consumed, result.budget_remaining, *result.burn_rates.values()]
        assert all(math.isfinite(x) for x in numbers)
        assert 0.0 <= result.sli <= 1.0


def test_evaluate_all_reads_the_store(store) -> None:
    """Buckets written by the collector path; the latency SLI counts events over its threshold."""
    batch = Batch()
    minute = T - timedelta(minutes=10)
    delta = batch.bucket("bet-placement", minute)
    delta.total, delta.bad = 1000, 30
    delta.latency.update({"0.1": 900, "0.5": 60, "1.0": 40})
    commit_batch(store, digest="d1", signal="traces", batch=batch)
    specs = [spec(), spec(name="bets-latency", sli={"kind": "latency", "threshold_seconds": 0.5}, objective=0.99)]
    report = evaluate_all(store, specs, events={}, boundaries=DEFAULT_BOUNDARIES, at=T)
    availability, latency = report.slos
    assert availability.events == 1000 and availability.bad_events == 30
    assert availability.sli == pytest.approx(0.97)
    assert latency.bad_events == 40 and latency.sli == pytest.approx(0.96)
    assert report.exit_code == 2  # 3% errors over the last hour burns far beyond 14.4
    before = evaluate_all(store, specs, events={}, boundaries=DEFAULT_BOUNDARIES, at=minute)  # replay: data up to then
    assert before.slos[0].events == 0 and before.exit_code == 0
