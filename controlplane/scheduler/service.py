"""`controlplane scheduler`: APScheduler 3 in one process, one per store, jobs from the config file.

Usage:

    service = SchedulerService(settings, store, load_scheduler_config(path))
    service.listing()            # each job, its cron and next run
    service.run_once("checkpoint")
    service.serve(stop_event)    # takes the leader lock, runs until stop_event is set

Jobs have stable ids (`replace_existing`), missed runs coalesce into one, a run may start up to
`MISFIRE_GRACE_SECONDS` late (APScheduler's default is 1 s, too tight for a busy machine), and a
job never overlaps itself (`max_instances=1`). Each job's outcome is logged; a failing job is
logged with its error and runs again at its next time.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, JobExecutionEvent
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import Engine

from controlplane.clock import utcnow
from controlplane.scheduler import jobs
from controlplane.scheduler.config import SchedulerFile
from controlplane.scheduler.delivery import DeliveryStats, deliver_pending, enqueue, refresh_firing
from controlplane.scheduler.leader import LeaderLock
from controlplane.scheduler.receivers import receivers_from
from controlplane.settings import Settings

log = logging.getLogger("controlplane.scheduler")
MISFIRE_GRACE_SECONDS = 60


class SchedulerService:
    def __init__(
        self, settings: Settings, store: Engine, config: SchedulerFile, *, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self.settings = settings
        self.store = store
        self.config = config
        self.clock = clock
        self.receivers = receivers_from(settings, config.receivers)

    def evaluate_and_enqueue(self) -> jobs.Evaluation:
        """SLO evaluation, then each new transition queued for every receiver."""
        now = self.clock()
        evaluation = jobs.evaluate_slos(self.settings, self.store, now=now)
        if evaluation.transitions and self.receivers:
            enqueue(self.store, [t["id"] for t in evaluation.transitions], self.receivers, now=now)
        return evaluation

    def deliver(self) -> DeliveryStats:
        """Due deliveries sent (retried with backoff), and firing alerts kept open in Alertmanager."""
        now = self.clock()
        stats = deliver_pending(self.store, self.receivers, now=now)
        refresh_firing(self.store, self.receivers, now=now)
        return stats

    def job_functions(self) -> dict[str, Callable[[], Any]]:
        s, store, clock = self.settings, self.store, self.clock
        return {
            "slo-evaluation": self.evaluate_and_enqueue,
            "alert-delivery": self.deliver,
            "checkpoint": lambda: jobs.sign_checkpoint(s),
            "rollups": lambda: jobs.refresh(s, store, now=clock()),
            "retention": lambda: jobs.retention(s, store, now=clock(), minute_retention=self.config.minute_retention),
            "checklists": lambda: jobs.run_due_checklists(s, store, now=clock(), offsets=self.config.checklist_offsets),
            "cost-rollups": lambda: jobs.cost_rollups(s, store, now=clock()),
        }

    def enabled(self) -> dict[str, str]:
        """Job id -> crontab, for the jobs this build can run and the config has on."""
        available = self.job_functions()
        return {job: spec.cron for job, spec in self.config.jobs.items() if spec.enabled and job in available}

    def listing(self, now: datetime | None = None) -> list[dict[str, Any]]:
        now = now or self.clock()
        rows = []
        for job, cron in self.enabled().items():
            trigger = CronTrigger.from_crontab(cron, timezone="UTC")
            upcoming = trigger.get_next_fire_time(None, now)
            rows.append({"job": job, "cron": cron, "next_run": upcoming.isoformat().replace("+00:00", "Z")})
        return rows

    def run_once(self, job: str) -> Any:
        functions = self.job_functions()
        if job not in functions:
            raise KeyError(job)
        return functions[job]()

    def build(self) -> BackgroundScheduler:
        scheduler = BackgroundScheduler(
            timezone="UTC",
            job_defaults={"coalesce": True, "misfire_grace_time": MISFIRE_GRACE_SECONDS, "max_instances": 1},
        )
        functions = self.job_functions()
        for job, cron in self.enabled().items():
            scheduler.add_job(
                functions[job], CronTrigger.from_crontab(cron, timezone="UTC"), id=job, name=job, replace_existing=True
            )
        scheduler.add_listener(_log_outcome, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
        return scheduler

    def serve(self, stop: threading.Event, *, on_started: Callable[[], None] | None = None) -> None:
        """Lead the store (or raise NotLeader), run the jobs until `stop` is set or the lease is lost."""
        lock = LeaderLock(self.store, lease_seconds=self.config.lease_seconds)
        lock.acquire()
        scheduler = self.build()
        try:
            scheduler.start()
            log.info("scheduler started as %s with jobs %s", lock.holder, ", ".join(self.enabled()))
            if on_started is not None:
                on_started()
            while not stop.wait(0.5):
                if lock.lost.is_set():
                    log.error("lost the scheduler lease to another process; stopping")
                    break
        finally:
            scheduler.shutdown(wait=True)
            lock.release()


def _log_outcome(event: JobExecutionEvent) -> None:
    if event.exception is not None:
        log.error("job %s failed: %s: %s", event.job_id, type(event.exception).__name__, event.exception)
    else:
        log.info("job %s done: %s", event.job_id, _summary(event.retval))


def _summary(value: Any) -> str:
    if isinstance(value, jobs.Evaluation):
        return f"{value.snapshots} snapshots, {len(value.transitions)} transitions at {value.at:%H:%M}"
    if isinstance(value, str):
        return value.splitlines()[0] if value else ""
    return str(value)[:200]
