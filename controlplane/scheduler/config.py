"""The scheduler's config file (`config/scheduler.yaml`, `CONTROLPLANE_SCHEDULER_PATH`): each job's
cadence as a crontab expression, the checklist offsets before each event, retention, and the alert
receivers. Missing file or missing keys: the defaults below.

Usage:

    config = load_scheduler_config(Path("config/scheduler.yaml"))
    config.jobs["slo-evaluation"].cron    # "* * * * *"
"""

from __future__ import annotations

from pathlib import Path

from apscheduler.triggers.cron import CronTrigger
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from controlplane.clock import parse_duration
from controlplane.config_files import read_yaml
from controlplane.scheduler.receivers import ReceiverSpec

JOB_IDS = ("slo-evaluation", "alert-delivery", "checkpoint", "checklists", "rollups", "retention", "cost-rollups")
DEFAULT_CRON = {
    "slo-evaluation": "* * * * *",
    "alert-delivery": "* * * * *",
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


class JobSpec(Strict):
    cron: str
    enabled: bool = True

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        try:
            CronTrigger.from_crontab(value, timezone="UTC")
        except ValueError as exc:
            raise ValueError(f"not a crontab expression ({exc}); e.g. '*/5 * * * *'") from None
        return value


class SchedulerFile(Strict):
    jobs: dict[str, JobSpec] = Field(default_factory=dict)
    checklist_offsets: list[str] = Field(default_factory=lambda: ["24h", "1h"], min_length=1)
    minute_retention: str = Field("35d", description="minute buckets older than this are purged once rolled up")
    lease_seconds: float = Field(30.0, ge=3, le=3600)
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
