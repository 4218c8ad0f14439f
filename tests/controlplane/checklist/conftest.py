"""Fixtures for readiness checklists: settings with a store and an audit log on the test database,
a check context, and helpers that seed SLI minutes, scraped samples and audit entries."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from audit.log import AuditLog
from audit.schema import migrate_audit
from controlplane.checklist.context import CheckContext
from controlplane.checklist.results import Outcome
from controlplane.checklist.spec import CheckSpec
from controlplane.settings import Settings
from controlplane.slices import load_slices
from controlplane.slo.periods import floor_minute
from controlplane.slo.spec import load_events, load_slos
from controlplane.storage import make_engine
from controlplane.store import ScrapedSample, SliBucket, table
from tests.conftest import SLICES_PATH

CONFIG = Path(__file__).parents[3] / "config"


@pytest.fixture
def cp_settings(controlplane_settings: Settings) -> Settings:
    return controlplane_settings


@pytest.fixture
def now() -> datetime:
    return floor_minute(datetime.now(UTC))


@pytest.fixture
def make_ctx(cp_settings: Settings, store: Engine, now: datetime) -> Iterator[Callable[..., CheckContext]]:
    events = load_events(cp_settings.events_path)

    def make(at: datetime | None = None, event: str | None = None, **settings: object) -> CheckContext:
        current = datetime.now(UTC)
        ctx = CheckContext(
            settings=cp_settings.model_copy(update=settings),
            store=store,
            at=at or current,
            now=current,
            run_id=uuid.uuid4().hex[:16],
            event=events[event] if event else None,
            slos=load_slos(cp_settings.slos_path, events=events),
            events=events,
            slices=load_slices(SLICES_PATH),
        )
        return ctx

    yield make


@pytest.fixture
def seed_minutes(store: Engine) -> Callable[..., None]:
    """seed_minutes("bet-placement", start, minutes=60, total=100, bad=0): one row per minute."""

    def seed(slice_name: str, start: datetime, *, minutes: int, total: int, bad: int) -> None:
        rows = [
            {"slice": slice_name, "minute": start + timedelta(minutes=i), "total": total, "bad": bad}
            for i in range(minutes)
        ]
        with store.begin() as conn:
            conn.execute(table(SliBucket).insert(), rows)

    return seed


@pytest.fixture
def seed_samples(store: Engine) -> Callable[..., None]:
    """seed_samples("platform_outbox_depth", [(time, value), ...], labels={"result": "hit"})."""

    def seed(name: str, points: list[tuple[datetime, float]], *, labels: dict | None = None, target: str = "t") -> None:
        import json

        text = json.dumps(labels or {}, sort_keys=True, separators=(",", ":"))
        with store.begin() as conn:
            conn.execute(
                table(ScrapedSample).insert(),
                [{"target": target, "name": name, "labels": text, "value": v, "scraped_at": t} for t, v in points],
            )

    return seed


@pytest.fixture
def audit_log(cp_settings: Settings) -> Iterator[AuditLog]:
    engine = make_engine(cp_settings.audit_url)
    migrate_audit(engine)
    yield AuditLog(engine, origin=cp_settings.audit_origin)
    engine.dispose()


def check(evaluator: dict, *, id: str = "c", severity: str = "blocking", **fields: object) -> CheckSpec:
    return CheckSpec.model_validate(
        {"id": id, "title": "t", "severity": severity, "owner": "o", "runbook": "r", "evaluator": evaluator, **fields}
    )


def assert_outcome(outcome: Outcome, status: str, *words: str) -> None:
    assert outcome.status == status, (outcome.status, outcome.reason, outcome.evidence)
    for word in words:
        assert word in outcome.reason, (word, outcome.reason)
