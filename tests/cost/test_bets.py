"""The denominator, from the audit log alone: a bet counts once, in the window of its first settlement,
as settled or voided by its last settlement entry; probe bets are left out; an empty window gives no
cost per settled bet, with the reason, never infinity."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from audit.log import AuditLog
from audit.schema import migrate_audit
from controlplane.cost.bets import settled_bets
from controlplane.storage import make_engine
from tests.conftest import SLICES_PATH
from tests.support import CONTROLPLANE, wait_until


@pytest.fixture
def audit(database_url: str) -> Engine:
    engine = make_engine(database_url)
    migrate_audit(engine)
    yield engine
    engine.dispose()


def _settle(log: AuditLog, bet: int, kind: str, **extra: object) -> None:
    log.append(kind="money", actor="platform", subject=f"bet:{bet}", payload={"type": kind, "bet_id": bet, **extra})


def _tick() -> datetime:
    """An instant strictly between the entries appended before and after it."""
    mark = datetime.now(UTC)
    wait_until(lambda: datetime.now(UTC) > mark + timedelta(milliseconds=5), "the clock to move")
    return mark + timedelta(milliseconds=2)


def test_each_bet_counts_once_in_the_window_of_its_first_settlement(audit: Engine) -> None:
    log = AuditLog(audit, origin="audit.test/bets")
    start = _tick()
    log.append(kind="money", actor="platform", subject="bet:1", payload={"type": "bet_placed", "stake_minor": 100})
    _settle(log, 1, "payout")  # settled before the window
    _settle(log, 2, "bet_lost")
    middle = _tick()
    _settle(log, 1, "resettlement")
    _settle(log, 1, "bet_lost")  # resettled inside the window: still counted in the first one only
    _settle(log, 3, "payout")
    _settle(log, 3, "resettlement")
    _settle(log, 3, "void")  # settled, then voided: voided
    _settle(log, 4, "void")
    _settle(log, 5, "bet_lost", synthetic=True)  # a probe's bet
    _settle(log, 6, "payout")
    end = _tick()
    _settle(log, 7, "payout")  # after the window

    early = settled_bets(audit, start, middle)
    assert (early.settled, early.voided) == (2, 0)
    late = settled_bets(audit, middle, end)
    assert (late.settled, late.voided, late.probes_excluded, late.resettled) == (1, 2, 1, 1)
    whole = settled_bets(audit, start, end)
    assert (whole.settled, whole.voided, whole.resettled) == (3, 2, 2)  # bet 1 now counts as lost, once
    assert sum(s for s, _v in whole.by_hour.values()) == sum(s for s, _v in whole.by_minute.values()) == 3
    assert settled_bets(audit, end + timedelta(hours=1), end + timedelta(hours=2)).settled == 0


def test_nothing_settled_gives_no_cost_per_bet_with_the_reason(database_url: str, tmp_path: Path) -> None:
    (tmp_path / "costs.yaml").write_text(
        '{currency: EUR, components: [{name: database, rate: {per_hour: "1.20"}, allocation: direct}]}'
    )
    env = os.environ | {
        "CONTROLPLANE_STORE_URL": database_url,
        "CONTROLPLANE_AUDIT_URL": database_url,
        "CONTROLPLANE_COSTS_PATH": str(tmp_path / "costs.yaml"),
        "CONTROLPLANE_SLICES_PATH": str(SLICES_PATH),
    }
    done = subprocess.run(
        [CONTROLPLANE, "cost", "report", "--from", "2026-01-01T00:00:00Z", "--to", "2026-01-02T00:00:00Z",
         "--format", "json", "--by", "day"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["total_cost"] == "28.800000" and report["settled_bets"] == 0
    assert report["cost_per_settled_bet"] is None
    assert "no bet was settled" in report["cost_per_settled_bet_reason"]
    assert report["components"][0]["cost_per_settled_bet"] is None
    assert [b["cost_per_settled_bet"] for b in report["buckets"]] == [None]
    assert "NaN" not in done.stdout and "Infinity" not in done.stdout
