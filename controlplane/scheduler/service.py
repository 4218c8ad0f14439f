"""`controlplane scheduler`: APScheduler 3 in one process, one per store, jobs from the config file.

Usage:

    service = SchedulerService(settings, store, load_scheduler_config(path))
    service.listing()            # each job, its cadence (cron or every) and next run
    service.run_once("checkpoint")
    service.serve(stop_event)    # takes the leader lock, runs until stop_event is set

SLO evaluation judges the minute that ended `evaluation_delay` ago, so late telemetry counts, and
sends the alert transitions it finds at once; `alert-delivery` retries what could not be sent.
Jobs have stable ids (`replace_existing`), missed runs coalesce into one, a run may start up to
`MISFIRE_GRACE_SECONDS` late (APScheduler's default is 1 s, too tight for a busy machine), and a
job never overlaps itself (`max_instances=1`). Each job's outcome is logged; a failing job is
logged with its error and runs again at its next time.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, JobExecutionEvent
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import Engine

from controlplane.clock import utc_text, utcnow
from controlplane.incidents.tracker import Tracker
from controlplane.policy.recorder import record_policy
from controlplane.scheduler import jobs
from controlplane.scheduler.config import JobSpec, SchedulerFile
from controlplane.scheduler.delivery import DeliveryStats, deliver_pending, enqueue, refresh_firing
from controlplane.scheduler.leader import LeaderLock
from controlplane.scheduler.receivers import receivers_from
from controlplane.settings import Settings

log = logging.getLogger("controlplane.scheduler")
MISFIRE_GRACE_SECONDS = 60


@dataclass(frozen=True)
class ScheduledJob:
    """One enabled job as `--list` shows it: its cadence (`cron` or `every`) and its next run."""

    job: str
    next_run: datetime
    cron: str | None = None
    every: str | None = None

    @property
    def cadence(self) -> str:
        return f"every {self.every}" if self.every is not None else str(self.cron)

    def to_dict(self) -> dict[str, str]:
        """`{"job", "cron" | "every", "next_run"}`, the last in UTC with a Z."""
        cadence = {"every": self.every} if self.every is not None else {"cron": str(self.cron)}
        return {"job": self.job, **cadence, "next_run": utc_text(self.next_run)}


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
        """SLO evaluation, then each new transition queued for every receiver and sent now, so a page
        does not wait for the next `alert-delivery` run (which retries whatever fails here)."""
        now = self.clock()
        evaluation = jobs.evaluate_slos(self.settings, self.store, now=now, delay=self.config.delay)
        if evaluation.transitions and self.receivers:
            enqueue(self.store, [t["id"] for t in evaluation.transitions], self.receivers, now=now)
            try:
                evaluation.delivery = deliver_pending(self.store, self.receivers, now=now)
            except Exception as exc:  # the snapshots and the queue are stored; alert-delivery tries again
                log.error("sending new transitions failed (alert-delivery retries): %s: %s", type(exc).__name__, exc)
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
            # As of the minute SLO evaluation judged last: telemetry for later minutes may still arrive.
            "incidents": lambda: Tracker(s, store).track(now=clock() - self.config.delay),
            "budget-policy": lambda: record_policy(s, store, now=clock() - self.config.delay),
            "checkpoint": lambda: jobs.sign_checkpoint(s),
            "rollups": lambda: jobs.refresh(s, store, now=clock()),
            "retention": lambda: jobs.retention(s, store, now=clock(), minute_retention=self.config.minute_retention),
            "checklists": lambda: jobs.run_due_checklists(s, store, now=clock(), offsets=self.config.checklist_offsets),
            "cost-rollups": lambda: jobs.cost_rollups(s, store, now=clock()),
        }

    def enabled(self) -> dict[str, JobSpec]:
        """Job id -> its cadence, for the jobs this build can run and the config has on."""
        available = self.job_functions()
        return {job: spec for job, spec in self.config.jobs.items() if spec.enabled and job in available}

    def listing(self, now: datetime | None = None) -> list[ScheduledJob]:
        """Each enabled job and its next run after `now`, were the scheduler started then."""
        now = now or self.clock()
        rows = []
        for job, spec in self.enabled().items():
            interval = spec.interval
            trigger = self.config.trigger(job, start=now + interval if interval is not None else None)
            upcoming = trigger.get_next_fire_time(None, now)
            rows.append(ScheduledJob(job, upcoming, cron=spec.cron, every=spec.every))
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
        for job in self.enabled():
            scheduler.add_job(functions[job], self.config.trigger(job), id=job, name=job, replace_existing=True)
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
        summary = f"{value.snapshots} snapshots, {len(value.transitions)} transitions at {value.at:%H:%M}"
        if value.delivery is not None:
            summary += f"; sent {value.delivery.delivered} of {value.delivery.attempted} deliveries"
        return summary
    if isinstance(value, str):
        return value.splitlines()[0] if value else ""
    return str(value)[:200]
