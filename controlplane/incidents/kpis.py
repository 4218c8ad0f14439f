"""An incident's key figures, computed from the SLI per minute and the alert transitions alone (pure
functions: the tracker and the tests give them the same inputs).

A minute is **bad** for an SLO when its error ratio (bad ÷ events) is above the SLO's allowed ratio
(1 - objective); a minute without events is not bad. A minute is bad for the slice when it is bad for
any of the slice's SLOs.

- `impact_started_at`: the first minute of the unbroken run of bad minutes (of the SLO that paged) that
  ended at or before the first page, looked for within the page rules' longest window (6 h) before it;
- `detected_at`: the first page transition (a declared incident without one: when it was declared);
- `mitigated_at`: the end of the first bad minute, from the impact start on, after which the slice
  stayed good for the quiet period (complete minutes only: none until the quiet period has passed);
- `resolved_at`: the last resolution of the incident's alerts, once none fires;
- `user_impact_minutes`: the slice's bad minutes in [impact start, mitigated) (up to now while
  unmitigated); `bad_events`: each SLO's bad events (failed, or slow, as the SLO counts them) there.
- `time_to_detect_s` = detected - impact start; `time_to_mitigate_s` = mitigated - detected, 0 when the
  SLI had recovered before the page.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from controlplane.slo.engine import MinuteCounts
from controlplane.slo.periods import minute_index, minute_start

ONE_MINUTE = timedelta(minutes=1)
IMPACT_LOOKBACK = timedelta(hours=6)  # the longest page rule's long window: how far back a run may reach
IMPACT_RECENT = timedelta(minutes=30)  # the slowest page rule's short window: a run that led to a page ends in it


@dataclass(frozen=True)
class AlertEpisode:
    """One alert of one SLO and severity, from firing to resolution (None while it fires)."""

    slo: str
    severity: str
    fired_at: datetime
    resolved_at: datetime | None


@dataclass(frozen=True)
class Minutes:
    """Each SLO's per-minute counts over the same span, with the ratio above which a minute is bad."""

    counts: dict[str, MinuteCounts]
    allowed: dict[str, float]  # slo -> 1 - objective

    def bad(self, slo: str, i: int) -> bool:
        c = self.counts[slo]
        j = i - c.first
        if not 0 <= j < len(c.events) or c.events[j] == 0:
            return False
        return c.bad[j] / c.events[j] > self.allowed[slo]

    def slice_bad(self, i: int) -> bool:
        return any(self.bad(slo, i) for slo in self.counts)

    def bad_events(self, slo: str, lo: int, hi: int) -> int:
        c = self.counts[slo]
        return sum(c.bad[max(lo - c.first, 0) : max(hi - c.first, 0)])


@dataclass(frozen=True)
class Kpis:
    impact_started_at: datetime
    detected_at: datetime
    mitigated_at: datetime | None
    resolved_at: datetime | None
    user_impact_minutes: int
    bad_events: dict[str, int]

    @property
    def time_to_detect_s(self) -> float:
        return max((self.detected_at - self.impact_started_at).total_seconds(), 0.0)

    @property
    def time_to_mitigate_s(self) -> float | None:
        if self.mitigated_at is None:
            return None
        return max((self.mitigated_at - self.detected_at).total_seconds(), 0.0)


def impact_start(minutes: Minutes, slo: str | None, detected_at: datetime) -> datetime:
    """The first minute of the unbroken bad run that ended last before `detected_at`, within the 30 minutes
    before it (the slice's run when no SLO paged), reaching back at most 6 h; `detected_at` itself when
    no bad minute came in those 30 minutes (an older run did not lead to this page)."""
    bad = (lambda i: minutes.bad(slo, i)) if slo is not None else minutes.slice_bad
    detected = minute_index(detected_at)
    floor = minute_index(detected_at - IMPACT_LOOKBACK)
    recent = minute_index(detected_at - IMPACT_RECENT)
    last = next((i for i in range(detected - 1, recent - 1, -1) if bad(i)), None)
    if last is None:
        return detected_at
    first = last
    while first - 1 >= floor and bad(first - 1):
        first -= 1
    return minute_start(first)


def mitigation(minutes: Minutes, start: datetime, now: datetime, quiet: timedelta) -> datetime | None:
    """The end of the first bad minute from `start` on that the quiet period of good minutes followed."""
    first, end = minute_index(start), minute_index(now)  # minutes before `end` are complete
    need = max(int(quiet / ONE_MINUTE), 1)
    last_bad = first - 1
    for i in range(first, end):
        if minutes.slice_bad(i):
            last_bad = i
        elif i - last_bad >= need:
            return minute_start(max(last_bad + 1, first))
    return None


def compute(
    minutes: Minutes,
    alerts: list[AlertEpisode],
    *,
    opened_at: datetime,
    now: datetime,
    quiet: timedelta,
) -> Kpis:
    """The figures of an incident opened at `opened_at` with these alerts, as of `now`."""
    pages = sorted((a for a in alerts if a.severity == "page"), key=lambda a: a.fired_at)
    detected_at = pages[0].fired_at if pages else opened_at
    started = impact_start(minutes, pages[0].slo if pages else None, detected_at)
    mitigated = mitigation(minutes, started, now, quiet)
    resolved = None
    if alerts and all(a.resolved_at is not None for a in alerts):
        resolved = max(a.resolved_at for a in alerts if a.resolved_at is not None)
    lo, hi = minute_index(started), minute_index(mitigated if mitigated is not None else now)
    return Kpis(
        impact_started_at=started,
        detected_at=detected_at,
        mitigated_at=mitigated,
        resolved_at=resolved,
        user_impact_minutes=sum(1 for i in range(lo, hi) if minutes.slice_bad(i)),
        bad_events={slo: minutes.bad_events(slo, lo, hi) for slo in sorted(minutes.counts)},
    )
