"""One checklist run from settings to record, as the scheduler and the CLI start it.

Usage:

    run = run_and_record(settings, store, event=events["cup-final"], at=utcnow())
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Engine

from controlplane.checklist.context import CheckContext
from controlplane.checklist.records import save_run
from controlplane.checklist.results import ChecklistRun
from controlplane.checklist.runner import run_checklist
from controlplane.checklist.spec import Checklist, load_checklist
from controlplane.clock import utcnow
from controlplane.settings import Settings
from controlplane.slices import SliceConfig, load_slices
from controlplane.slo.spec import EventSpec, SloSpec, load_events, load_slos


def new_context(
    settings: Settings,
    store: Engine,
    *,
    slos: list[SloSpec],
    events: dict[str, EventSpec],
    slices: SliceConfig,
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
        slos=slos,
        events=events,
        slices=slices,
    )


def run_and_record(
    settings: Settings, store: Engine, *, event: EventSpec | None, at: datetime | None = None
) -> ChecklistRun:
    """Load the files, run every check, keep the run in the store and the audit log. Config errors
    (ChecklistConfigError, SloConfigError, SliceConfigError) and record errors propagate."""
    events = load_events(settings.events_path)
    slos = load_slos(settings.slos_path, events=events)
    checklist: Checklist = load_checklist(settings.checklist_path, slo_names={s.name for s in slos})
    now = utcnow()
    ctx = new_context(
        settings, store, slos=slos, events=events, slices=load_slices(settings.slices_path),
        event=event, at=at or now, now=now,
    )  # fmt: skip
    try:
        run = run_checklist(checklist, ctx)
    finally:
        ctx.close()
    return save_run(settings, store, run)
