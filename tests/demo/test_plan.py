"""The demo's timeline, for a start at every few seconds of a minute: the checklist runs after a
complete minute of telemetry and before kickoff, the game day follows the peak in order, and the
lock-wait fault starts early enough in its minute for that minute to page."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from controlplane.demo.plan import (
    CHECKLIST_LEAD,
    LOCK_LATEST_SECOND,
    PAGE_SLACK,
    WARM_UP,
    early_in_a_minute,
    next_minute,
    plan_demo,
)

BASE = datetime(2026, 11, 28, 20, 14, 0, tzinfo=UTC)


@pytest.mark.parametrize("duration", [30, 60, 120, 600])
@pytest.mark.parametrize("second", range(0, 60, 7))
def test_the_timeline_holds_its_promises(duration: int, second: int) -> None:
    now = BASE + timedelta(seconds=second, microseconds=250_000)
    plan = plan_demo(now, duration=duration, settle_lag=15)
    assert plan.start > now
    # A minute with at least WARM_UP seconds of load has ended, and its telemetry had time to arrive,
    # before the checklist runs.
    assert plan.checklist_at >= next_minute(plan.start + timedelta(seconds=WARM_UP)) + timedelta(seconds=15)
    assert plan.kickoff - plan.checklist_at == timedelta(seconds=CHECKLIST_LEAD)
    # The crowd curve's build-up (a quarter of it) ends at the off; the load never starts in the past.
    assert plan.curve_start >= plan.start
    assert plan.kickoff - plan.curve_start == timedelta(seconds=0.25 * duration)
    assert plan.lead_in >= 0
    kinds = [f.kind for f in plan.faults]
    assert kinds == ["cache_off", "broker_slow", "lock_wait"]
    peak_end = plan.kickoff + timedelta(seconds=min(10, 0.1 * duration) + 0.2 * duration)
    assert plan.faults[0].start > peak_end, "the game day starts after the peak"
    for before, after in zip(plan.faults, plan.faults[1:], strict=False):
        assert after.start >= before.start + timedelta(seconds=before.hold), "one fault at a time"
    lock = plan.faults[-1]
    assert lock.until_page
    assert lock.start.second <= LOCK_LATEST_SECOND or lock.start.second == 1
    # The minute the lock starts in holds at least 25 s of it, and the hold lasts until the minute
    # after it has been judged as well (a second chance on a busy machine).
    assert 60 - lock.start.second >= 25
    judged_twice = lock.start.replace(second=0) + timedelta(minutes=2, seconds=15)
    assert lock.start + timedelta(seconds=lock.hold) == judged_twice + timedelta(seconds=PAGE_SLACK)
    # The arrivals outlast the longest lock-wait hold, and the curve.
    assert plan.latest_end >= lock.start + timedelta(seconds=lock.hold)
    assert plan.latest_end >= plan.curve_start + timedelta(seconds=duration)
    assert plan.extend == pytest.approx(max(0.0, (plan.latest_end - plan.curve_start).total_seconds() - duration))


def test_a_moment_late_in_its_minute_moves_to_the_next() -> None:
    assert early_in_a_minute(BASE + timedelta(seconds=20)) == BASE + timedelta(seconds=20)
    assert early_in_a_minute(BASE + timedelta(seconds=LOCK_LATEST_SECOND)) == BASE + timedelta(
        seconds=LOCK_LATEST_SECOND
    )
    assert early_in_a_minute(BASE + timedelta(seconds=50)) == BASE + timedelta(minutes=1, seconds=1)
    assert next_minute(BASE) == BASE + timedelta(minutes=1)


@pytest.mark.parametrize("duration", [0, 29, 1801, float("nan")])
def test_a_duration_out_of_range_is_refused(duration: float) -> None:
    with pytest.raises(ValueError, match="--duration must be 30 to 1800 seconds"):
        plan_demo(BASE, duration=duration)
