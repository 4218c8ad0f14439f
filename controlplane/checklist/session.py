"""One checklist run from settings to record, as the scheduler and the CLI start it.

Usage:

    run = run_and_record(settings, store, event=events["cup-final"], at=utcnow())
    run = run_and_record(settings, store, event=None, actor="ana")  # a person ran it (the dashboard)

The run's audit entry names its actor: `controlplane` when the scheduler or the CLI starts it, the
signed-in person when someone starts it from the dashboard.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Engine

from controlplane.checklist.context import CheckContext
from controlplane.checklist.records import SYSTEM_ACTOR, save_run
from controlplane.checklist.results import ChecklistRun
from controlplane.checklist.runner import run_checklist
from controlplane.clock import utcnow
from controlplane.config import ControlPlaneConfig, load_config
from controlplane.settings import Settings
from controlplane.slo.spec import EventSpec


def new_context(
    settings: Settings,
    store: Engine,
    config: ControlPlaneConfig,
    *,
    event: EventSpec | None,
    at: datetime,
    now: datetime,
) -> CheckContext:
    return CheckContext(
        settings=settings,
        store=store,
        at=at,
        now=now,
        run_id=uuid.uuid4().hex[:16],
        event=event,
        slos=config.specs,
        events=config.events,
        slices=config.slices,
    )


def run_and_record(
    settings: Settings,
    store: Engine,
    *,
    event: EventSpec | None,
    at: datetime | None = None,
    actor: str = SYSTEM_ACTOR,
) -> ChecklistRun:
    """Load the files, run every check, keep the run in the store and the audit log (its entry's actor is
    `actor`). Config errors (one of `controlplane.config.CONFIG_ERRORS`) and record errors propagate."""
    config = load_config(settings)
    checklist = config.checklist()
    now = utcnow()
    ctx = new_context(settings, store, config, event=event, at=at or now, now=now)
    return save_run(settings, store, run_checklist(checklist, ctx), actor=actor)
