"""The demo's timeline: when the undercard settles, when the pre-kickoff checklist runs, the kickoff,
the derby-night crowd curve, and the game day's faults, laid out on the wall clock.

Usage:

    plan = plan_demo(utcnow(), duration=120)
    plan.kickoff, plan.checklist_offset, [f.kind for f in plan.faults]

SLIs are counted per minute and SLO windows hold only complete minutes, so two moments are placed
on minute boundaries rather than at fixed offsets:
- the checklist's budget gates need a complete minute holding bets, logins and a settlement: the
  undercard settles before `start`, and the checklist runs once a minute with at least
  `WARM_UP` seconds of load has ended and its telemetry has arrived (`settle_lag`);
- the lock-wait fault starts early enough in a minute (by second `LOCK_LATEST_SECOND`) that the
  minute ends with a large share of failed bets, so the next evaluation can page; the fault is then
  held until the page fires, or until the second minute after it was set has been judged too
  (`page_deadline`: one more chance on a busy machine), whichever comes first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from controlplane.clock import as_utc

MIN_DURATION, MAX_DURATION = 30, 1800
WARM_UP = 40.0  # seconds of load at least before the checklist's minute ends (a warm risk cache)
CHECKLIST_LEAD = 25  # the pre-kickoff checklist runs this long before kickoff ("T-1h", scaled)
CHECKLIST_OFFSET = f"{CHECKLIST_LEAD}s"  # the scheduler's checklist offset in the demo
LOCK_LATEST_SECOND = 35  # the lock-wait fault starts at most this many seconds into a minute
PAGE_SLACK = 10.0  # seconds past the judgement of the second faulted minute before giving up on the page
AFTER_CLEAR = 4.0  # seconds of load after the last fault is cleared, before the arrivals stop


@dataclass(frozen=True)
class FaultStep:
    kind: str
    start: datetime
    hold: float  # seconds; for `until_page`, the longest hold (see `page_deadline`)
    reason: str
    options: dict[str, object] = field(default_factory=dict)
    until_page: bool = False  # cleared as soon as the page alert fires


@dataclass(frozen=True)
class DemoPlan:
    start: datetime  # the load is started (its setup, then the build-up at the baseline rate)
    checklist_at: datetime  # the scheduler's pre-kickoff run is due
    kickoff: datetime  # the derby's off: the crowd ramps up to 15x
    curve_start: datetime  # t = 0 of the derby-night curve (`lead_in` seconds after `start`)
    curve_seconds: float  # the derby-night curve's length (--duration)
    faults: tuple[FaultStep, ...]
    latest_end: datetime  # arrivals stop by then at the latest

    @property
    def lead_in(self) -> float:
        return (self.curve_start - self.start).total_seconds()

    @property
    def extend(self) -> float:
        """Seconds of arrivals after the curve's end, at most (the game day may outlast the curve)."""
        return max(0.0, (self.latest_end - self.curve_start).total_seconds() - self.curve_seconds)

    def at(self, moment: datetime) -> float:
        """Seconds from the start of the load to `moment`."""
        return (as_utc(moment) - self.start).total_seconds()


def next_minute(moment: datetime) -> datetime:
    """The first whole minute strictly after `moment`."""
    floor = moment.replace(second=0, microsecond=0)
    return floor + timedelta(minutes=1)


def early_in_a_minute(moment: datetime, latest_second: int = LOCK_LATEST_SECOND) -> datetime:
    """`moment`, or the start of the next minute (plus a second) when `moment` is late in its minute."""
    if moment.second + moment.microsecond / 1e6 <= latest_second:
        return moment
    return next_minute(moment) + timedelta(seconds=1)


def page_deadline(set_at: datetime, settle_lag: float) -> datetime:
    """Until when a fault set at `set_at` is held waiting for the page: the minute it was set in and
    the next one each get judged (`settle_lag` after they end), plus `PAGE_SLACK`."""
    floor = as_utc(set_at).replace(second=0, microsecond=0)
    return floor + timedelta(minutes=2, seconds=settle_lag + PAGE_SLACK)


def plan_demo(now: datetime, *, duration: float = 120.0, settle_lag: float = 15.0) -> DemoPlan:
    """The timeline for a load starting at `now` whose derby-night curve lasts `duration` seconds.

    `settle_lag`: how long after a minute ends its telemetry is counted (the exporters' batching plus
    the scheduler's evaluation delay)."""
    if not MIN_DURATION <= duration <= MAX_DURATION:
        raise ValueError(f"--duration must be {MIN_DURATION} to {MAX_DURATION} seconds, not {duration:g}")
    start = as_utc(now).replace(microsecond=0) + timedelta(seconds=1)
    checklist_at = next_minute(start + timedelta(seconds=WARM_UP)) + timedelta(seconds=settle_lag)
    build_up = 0.25 * duration  # the derby-night curve's quiet part before the off
    kickoff = max(checklist_at + timedelta(seconds=CHECKLIST_LEAD), start + timedelta(seconds=build_up))
    checklist_at = kickoff - timedelta(seconds=CHECKLIST_LEAD)
    curve_start = kickoff - timedelta(seconds=build_up)
    ramp = min(10.0, 0.1 * duration)
    peak_end = kickoff + timedelta(seconds=ramp + 0.2 * duration)
    step = max(8.0, 0.1 * duration)
    cache_at = peak_end + timedelta(seconds=2)
    broker_at = cache_at + timedelta(seconds=step)
    lock_at = early_in_a_minute(broker_at + timedelta(seconds=step))
    faults = (
        FaultStep("cache_off", cache_at, step, "game day: the risk feature cache goes away after the peak"),
        FaultStep(
            "broker_slow", broker_at, step, "game day: the message broker slows down", options={"latency_ms": 300}
        ),
        FaultStep(
            "lock_wait",
            lock_at,
            (page_deadline(lock_at, settle_lag) - lock_at).total_seconds(),
            "game day: a long transaction holds the ledger lock; held until the page fires",
            until_page=True,
        ),
    )
    latest_end = page_deadline(lock_at, settle_lag) + timedelta(seconds=AFTER_CLEAR)
    latest_end = max(latest_end, curve_start + timedelta(seconds=duration))
    return DemoPlan(
        start=start,
        checklist_at=checklist_at,
        kickoff=kickoff,
        curve_start=curve_start,
        curve_seconds=float(duration),
        faults=faults,
        latest_end=latest_end,
    )
