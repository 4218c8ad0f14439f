"""A staged incident on the bet-placement slice, every figure of it known by hand.

Minutes from T0, 100 requests each, failures answered fast (so only the availability SLO sees them):
- m40: 5 failures (a lone bad minute, not part of the run that paged);
- m60..m64: 30 failures each, m65..m66 clean (shorter than the quiet period), m67: 20 failures;
- everything else clean, data up to m90.
Alerts: availability page fires at m63 and resolves at m75; availability ticket fires at m64 and
resolves at m78. Changes in the audit log: a fault set 30 s before m60 by riley.gameday, an SLO change
at m35, a user change at m20 (more than 30 minutes before the impact: not a candidate).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

import audit.log
from audit.schema import migrate_audit
from collectors.ingest import Batch, commit_batch
from controlplane.settings import Settings
from controlplane.slo.periods import floor_minute
from controlplane.storage import make_engine
from tests.controlplane.scheduler.alerting import add_transition

CONFIG = Path(__file__).parents[3] / "config"
SLICE = "bet-placement"
AVAILABILITY = "bet-placement-availability"
FAILURES = {40: 5, **{m: 30 for m in range(60, 65)}, 67: 20}
LAST_MINUTE = 90


def minute(t0: datetime, m: float) -> datetime:
    return t0 + timedelta(minutes=m)


@pytest.fixture
def t0() -> datetime:
    return floor_minute(datetime.now(UTC)) - timedelta(hours=3)


@pytest.fixture
def incident_settings(controlplane_settings: Settings) -> Settings:
    return controlplane_settings


def write_minutes(store: Engine, t0: datetime, failures: dict[int, int], *, slice_name: str = SLICE) -> None:
    """Through the collector's own batch commit, as spans would arrive."""
    batch = Batch()
    for m in range(LAST_MINUTE + 1):
        delta = batch.bucket(slice_name, minute(t0, m))
        bad = failures.get(m, 0)
        delta.total, delta.bad = 100, bad
        delta.latency["0.1"] = 100  # failures answered fast: the latency SLO stays good
    commit_batch(store, digest=f"staged-{slice_name}-{t0.isoformat()}", signal="traces", batch=batch)


def append_change(monkeypatch: pytest.MonkeyPatch, log: audit.log.AuditLog, when: datetime, **entry: Any) -> int:
    """An entry stamped `when` (the log's clock patched for this one append only)."""
    with monkeypatch.context() as patched:
        patched.setattr(audit.log, "_now", lambda: when)
        return log.append(**entry).seq


@pytest.fixture
def staged(
    incident_settings: Settings, store: Engine, t0: datetime, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, Any]]:
    write_minutes(store, t0, FAILURES)
    add_transition(store, at=minute(t0, 63), slo=AVAILABILITY, severity="page")
    add_transition(store, at=minute(t0, 64), slo=AVAILABILITY, severity="ticket")
    add_transition(store, at=minute(t0, 75), started_at=minute(t0, 63), state="resolved", slo=AVAILABILITY)
    add_transition(
        store, at=minute(t0, 78), started_at=minute(t0, 64), state="resolved", slo=AVAILABILITY, severity="ticket"
    )
    engine = make_engine(incident_settings.audit_url)
    migrate_audit(engine)
    log = audit.log.AuditLog(engine, origin=incident_settings.audit_origin)
    seqs = {
        "user": append_change(
            monkeypatch, log, minute(t0, 20), kind="change", actor="morgan.lead", subject="user:ana",
            payload={"type": "dashboard_user", "reason": "new on-call"},
        ),
        "slo": append_change(
            monkeypatch, log, minute(t0, 35), kind="change", actor="sam.sre", subject="slo:bet-placement-latency",
            payload={"before": {}, "after": {}},
        ),
        "fault": append_change(
            monkeypatch, log, minute(t0, 59.5), kind="change", actor="riley.gameday", subject="fault:f1",
            payload={"type": "fault_set", "fault": {"kind": "lock_wait", "route": "*"}, "actor": "riley.gameday",
                     "reason": "game day: the ledger lock is held"},
        ),
    }  # fmt: skip
    yield {"t0": t0, "seqs": seqs}
    engine.dispose()
