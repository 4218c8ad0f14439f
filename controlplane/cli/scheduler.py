"""`controlplane scheduler`: the control plane's periodic work in one process per store."""

from __future__ import annotations

import json
import signal
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from controlplane.cli.common import (
    LogFormatOption,
    StoreUrl,
    TableOrJson,
    fail,
    load_settings,
    log_export,
    store_engine,
)
from controlplane.logs import LogFormat, setup_logging
from controlplane.scheduler.config import SchedulerConfigError, load_scheduler_config
from controlplane.scheduler.jobs import Evaluation
from controlplane.scheduler.leader import NotLeader
from controlplane.scheduler.receivers import ReceiverConfigError
from controlplane.scheduler.service import SchedulerService


def scheduler(
    list_jobs: Annotated[
        bool, typer.Option("--list", help="Show each job, its cadence (cron or every) and its next run, then exit.")
    ] = False,
    once: Annotated[str | None, typer.Option("--once", help="Run this job now and exit (e.g. slo-evaluation).")] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="Scheduler file (default: $CONTROLPLANE_SCHEDULER_PATH).")
    ] = None,
    store_url: StoreUrl = None,
    fmt: TableOrJson = "table",
    log_format: LogFormatOption = "json",
) -> None:
    """Run SLO evaluation and alert transitions, checkpoints, pre-event checklists and rollups on their
    schedules; one scheduler per store (a second one refuses to start)."""

    settings = load_settings(store_url=store_url, scheduler_path=config)
    try:
        spec = load_scheduler_config(settings.scheduler_path)
    except SchedulerConfigError as exc:
        raise fail(str(exc)) from None
    store = store_engine(settings)
    try:
        try:
            service = SchedulerService(settings, store, spec)
        except ReceiverConfigError as exc:
            raise fail(str(exc)) from None
        _run(service, list_jobs=list_jobs, once=once, fmt=fmt, log_format=log_format)
    finally:
        store.dispose()


def _run(service: SchedulerService, *, list_jobs: bool, once: str | None, fmt: str, log_format: LogFormat) -> None:

    if list_jobs:
        rows = service.listing()
        if fmt == "json":
            typer.echo(json.dumps({"jobs": [row.to_dict() for row in rows]}, indent=2))
        else:
            typer.echo(f"{'job':<16} {'cadence':<14} next run")
            for row in rows:
                typer.echo(f"{row.job:<16} {row.cadence:<14} {row.to_dict()['next_run']}")
        return
    if once is not None:
        known = list(service.job_functions())
        if once not in known:
            raise fail(f"--once: no job {once!r}; jobs are {', '.join(known)}")
        try:
            result = service.run_once(once)
        except Exception as exc:  # the job's own failure: say what, exit 2 (critical) for cron
            raise fail(f"job {once} failed: {type(exc).__name__}: {str(exc).splitlines()[0]}", 2) from None
        typer.echo(_render(once, result, fmt))
        return
    setup_logging(log_format, **log_export(service.settings, "controlplane-scheduler"))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        service.serve(stop)
    except NotLeader as exc:
        raise fail(str(exc)) from None


def _render(job: str, result: object, fmt: str) -> str:

    document: object = result
    if isinstance(result, Evaluation):
        evaluation: dict[str, object] = {
            "at": result.at.isoformat().replace("+00:00", "Z"),
            "snapshots": result.snapshots,
            "transitions": [
                {k: (v.isoformat().replace("+00:00", "Z") if hasattr(v, "isoformat") else v) for k, v in t.items()}
                for t in result.transitions
            ],
        }
        if result.delivery is not None:
            evaluation["delivery"] = asdict(result.delivery)
        document = evaluation
    if fmt == "json":
        return json.dumps({"job": job, "result": document}, indent=2, default=str)
    if isinstance(document, str):
        return document.rstrip("\n")
    return f"{job}: {json.dumps(document, default=str)}"
