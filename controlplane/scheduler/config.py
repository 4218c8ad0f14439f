"""The scheduler's config file (`config/scheduler.yaml`, `CONTROLPLANE_SCHEDULER_PATH`): each job's
cadence (a crontab expression, or an interval such as `every: 5s`), how long SLO evaluation waits for
late telemetry, the checklist offsets before each event, retention, and the alert receivers. Missing
file or missing keys: the defaults below.

Usage:

    config = load_scheduler_config(Path("config/scheduler.yaml"))
    config.jobs["slo-evaluation"].cron    # "* * * * *"
    config.trigger("slo-evaluation")      # a CronTrigger firing at hh:mm:15 (`evaluation_delay` in)
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from controlplane.clock import parse_duration
from controlplane.config_files import read_yaml
from controlplane.scheduler.receivers import ReceiverSpec

JOB_IDS = (
    "slo-evaluation",
    "alert-delivery",
    "incidents",
    "budget-policy",
    "checkpoint",
    "checklists",
    "rollups",
    "retention",
    "cost-rollups",
)
DEFAULT_CRON = {
    "slo-evaluation": "* * * * *",
    "alert-delivery": "* * * * *",
    "incidents": "* * * * *",
    "budget-policy": "* * * * *",
    "checkpoint": "*/5 * * * *",
    "checklists": "* * * * *",
    "rollups": "*/5 * * * *",
    "retention": "17 3 * * *",
    "cost-rollups": "7 * * * *",
}


class SchedulerConfigError(ValueError):
    """The scheduler file is wrong; the message names the file, the job and the field."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


SHORTEST_INTERVAL = timedelta(seconds=1)
LONGEST_INTERVAL = timedelta(days=1)
LONGEST_EVALUATION_DELAY = timedelta(minutes=5)


WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # crontab's numbering: 0 (and 7) is Sunday


def _weekday(token: str) -> int:
    token = token.strip().lower()
    if token.isdigit() and int(token) <= 7:
        return int(token) % 7
    if token[:3] in WEEKDAYS:
        return WEEKDAYS.index(token[:3])
    raise ValueError(f"day of week {token!r}: use 0-7 (0 and 7 are Sunday) or sun, mon ... sat")


def crontab_weekdays(field: str) -> str:
    """A crontab day-of-week field in names, as APScheduler must get it: its numbers start at Monday
    (0 = mon), crontab's at Sunday (0 = sun), so "1-5" would otherwise run Tuesday to Saturday."""
    if field == "*":
        return field
    days: set[int] = set()
    for part in field.split(","):
        span, _, step_text = part.partition("/")
        step = int(step_text) if step_text.isdigit() and int(step_text) > 0 else None
        if step_text and step is None:
            raise ValueError(f"day of week {part!r}: the step must be a whole number above 0")
        if span == "*":
            first, last = 0, 6
        elif "-" in span:
            first_text, last_text = span.split("-", 1)
            first, last = _weekday(first_text), _weekday(last_text)
            if last_text.strip() == "7":
                last = 7  # "5-7": Friday to Sunday
        else:
            first = last = _weekday(span)
        if last < first:
            raise ValueError(f"day of week {part!r}: a range runs from the earlier day to the later one")
        days.update(d % 7 for d in range(first, last + 1, step or 1))
    return ",".join(WEEKDAYS[d] for d in sorted(days))


def cron_trigger(crontab: str, *, second: int = 0) -> CronTrigger:
    """A crontab expression (UTC, days of the week numbered as crontab does: 0 is Sunday) as an
    APScheduler trigger, firing `second` seconds into each minute it names."""
    fields = crontab.split()
    if len(fields) != 5:
        raise ValueError(f"wrong number of fields: got {len(fields)}, expected 5")
    minute, hour, day, month, day_of_week = fields
    return CronTrigger(
        second=second,
        minute=minute,
        hour=hour,
        day=day,
        month=month,
        day_of_week=crontab_weekdays(day_of_week),
        timezone="UTC",
    )


class JobSpec(Strict):
    """When a job runs: `cron` (a crontab expression, UTC) or `every` (an interval, e.g. `5s`), never both."""

    cron: str | None = None
    every: str | None = None
    enabled: bool = True

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        try:
            cron_trigger(value)
        except ValueError as exc:
            raise ValueError(f"not a crontab expression ({exc}); e.g. '*/5 * * * *'") from None
        return value

    @field_validator("every")
    @classmethod
    def _every(cls, value: str) -> str:
        interval = parse_duration(value)
        if not SHORTEST_INTERVAL <= interval <= LONGEST_INTERVAL:
            raise ValueError(f"every {value!r} is out of range; use an interval from 1s to 1d, e.g. '5s' or '10m'")
        return value

    @model_validator(mode="after")
    def _one_cadence(self) -> JobSpec:
        if self.cron is not None and self.every is not None:
            raise ValueError("both cron and every are set; keep one (cron: a crontab expression, every: e.g. '5s')")
        if self.cron is None and self.every is None:
            raise ValueError("no cadence; set cron (a crontab expression, e.g. '*/5 * * * *') or every (e.g. '5s')")
        return self

    @property
    def interval(self) -> timedelta | None:
        return parse_duration(self.every) if self.every is not None else None

    def trigger(self, *, second: int = 0, start: datetime | None = None) -> BaseTrigger:
        """The APScheduler trigger: a cron one firing `second` seconds into each of its minutes, or an
        interval one whose first run is at `start` (default: one interval from now)."""
        if self.interval is not None:
            return IntervalTrigger(seconds=self.interval.total_seconds(), start_date=start, timezone="UTC")
        return cron_trigger(str(self.cron), second=second)


class SchedulerFile(Strict):
    jobs: dict[str, JobSpec] = Field(default_factory=dict)
    checklist_offsets: list[str] = Field(default_factory=lambda: ["24h", "1h"], min_length=1)
    minute_retention: str = Field("35d", description="minute buckets older than this are purged once rolled up")
    lease_seconds: float = Field(30.0, ge=3, le=3600)
    evaluation_delay: str = Field(
        "15s", description="SLO evaluation waits this long after each minute for its late telemetry"
    )
    receivers: list[ReceiverSpec] = Field(default_factory=list)

    @field_validator("checklist_offsets")
    @classmethod
    def _offsets(cls, value: list[str]) -> list[str]:
        for offset in value:
            parse_duration(offset)
        return value

    @field_validator("minute_retention")
    @classmethod
    def _retention(cls, value: str) -> str:
        if parse_duration(value).days < 8:
            raise ValueError("keep at least 8 days of minutes (the longest burn window is 3 days)")
        return value

    @field_validator("evaluation_delay")
    @classmethod
    def _delay(cls, value: str) -> str:
        if parse_duration(value) > LONGEST_EVALUATION_DELAY:
            raise ValueError(f"{value!r} is too long; use 0s to 5m (OpenTelemetry exporters batch for about 5s)")
        return value

    @property
    def delay(self) -> timedelta:
        """`evaluation_delay` as a duration."""
        return parse_duration(self.evaluation_delay)

    def trigger(self, job: str, *, start: datetime | None = None) -> BaseTrigger:
        """The job's APScheduler trigger. On a crontab, SLO evaluation fires `evaluation_delay` into the
        minute (its seconds past whole minutes), when it evaluates the minute that ended that long ago."""
        second = int(self.delay.total_seconds()) % 60 if job == "slo-evaluation" else 0
        return self.jobs[job].trigger(second=second, start=start)

    @model_validator(mode="after")
    def _known_jobs(self) -> SchedulerFile:
        unknown = sorted(set(self.jobs) - set(JOB_IDS))
        if unknown:
            raise ValueError(f"unknown job(s) {', '.join(unknown)}; jobs are {', '.join(JOB_IDS)}")
        self.jobs = {job: self.jobs.get(job) or JobSpec(cron=DEFAULT_CRON[job]) for job in JOB_IDS}
        return self


def load_scheduler_config(path: Path) -> SchedulerFile:
    path = Path(path)
    raw = {} if not path.exists() else read_yaml(path, error=SchedulerConfigError, missing_hint="") or {}
    try:
        return SchedulerFile.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"])
            problems.append(f"{path}: {where + ': ' if where else ''}{err['msg'].removeprefix('Value error, ')}")
        raise SchedulerConfigError("; ".join(problems)) from None
